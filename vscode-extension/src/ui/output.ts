/**
 * The one `promptrail` output channel, and the two LogOutputChannel faces the language client
 * writes to: its messages go into `promptrail` (filtered by `serverLogLine`, so a run's lines are
 * not written twice), and the LSP trace goes to a separate channel that exists only while
 * `promptrail.trace.server` is not `off`.
 */

import * as vscode from 'vscode';

import { serverLogLine, type ServerLogLevel } from '../logic/serverLog';

function asText(message: string | Error, args: unknown[]): string {
  const head = message instanceof Error ? message.stack ?? message.message : message;
  const rest = args.map((arg) => (arg instanceof Error ? arg.message : typeof arg === 'string' ? arg : JSON.stringify(arg)));
  return [head, ...rest].join(' ');
}

/** A LogOutputChannel that writes the client's messages into the plain `promptrail` channel. */
export function clientLogChannel(channel: vscode.OutputChannel): vscode.LogOutputChannel {
  const never = new vscode.EventEmitter<vscode.LogLevel>();
  const write = (level: ServerLogLevel, message: string | Error, args: unknown[]) => {
    const line = serverLogLine(level, asText(message, args));
    if (line !== null) {
      channel.appendLine(line);
    }
  };
  return {
    name: channel.name,
    get logLevel() {
      return vscode.LogLevel.Info;
    },
    onDidChangeLogLevel: never.event,
    trace: () => undefined,
    debug: () => undefined,
    info: (message: string, ...args: unknown[]) => write('info', message, args),
    warn: (message: string, ...args: unknown[]) => write('warn', message, args),
    error: (message: string | Error, ...args: unknown[]) => write('error', message, args),
    append: (value: string) => channel.append(value),
    appendLine: (value: string) => channel.appendLine(value),
    replace: (value: string) => channel.replace(value),
    clear: () => channel.clear(),
    show: (column?: vscode.ViewColumn | boolean, preserveFocus?: boolean) => {
      channel.show(typeof column === 'boolean' ? column : preserveFocus ?? true);
    },
    hide: () => channel.hide(),
    dispose: () => never.dispose(),
  };
}

/**
 * The trace face: its log level is `Trace` while `promptrail.trace.server` is not `off` (that is how
 * vscode-languageclient 10 decides whether to trace); the channel it writes to is created the
 * first time a trace line comes.
 */
export class TraceChannel implements vscode.Disposable {
  private channel: vscode.LogOutputChannel | undefined;
  private readonly changed = new vscode.EventEmitter<vscode.LogLevel>();
  private readonly listener: vscode.Disposable;
  private level: vscode.LogLevel;

  constructor() {
    this.level = TraceChannel.configuredLevel();
    this.listener = vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('promptrail.trace.server')) {
        this.level = TraceChannel.configuredLevel();
        this.changed.fire(this.level);
      }
    });
  }

  static configuredLevel(): vscode.LogLevel {
    const setting = vscode.workspace.getConfiguration('promptrail').get<string>('trace.server', 'off');
    return setting && setting !== 'off' ? vscode.LogLevel.Trace : vscode.LogLevel.Info;
  }

  private get target(): vscode.LogOutputChannel {
    this.channel ??= vscode.window.createOutputChannel('promptrail LSP trace', { log: true });
    return this.channel;
  }

  face(): vscode.LogOutputChannel {
    const self = this;
    return {
      name: 'promptrail LSP trace',
      get logLevel() {
        return self.level;
      },
      onDidChangeLogLevel: this.changed.event,
      trace: (message: string, ...args: unknown[]) => self.target.trace(asText(message, args)),
      debug: (message: string, ...args: unknown[]) => self.target.debug(asText(message, args)),
      info: (message: string, ...args: unknown[]) => self.target.info(asText(message, args)),
      warn: (message: string, ...args: unknown[]) => self.target.warn(asText(message, args)),
      error: (message: string | Error, ...args: unknown[]) => self.target.error(asText(message, args)),
      append: (value: string) => self.target.append(value),
      appendLine: (value: string) => self.target.appendLine(value),
      replace: (value: string) => self.target.replace(value),
      clear: () => self.channel?.clear(),
      show: (column?: vscode.ViewColumn | boolean, preserveFocus?: boolean) =>
        self.target.show(typeof column === 'boolean' ? column : preserveFocus ?? true),
      hide: () => self.channel?.hide(),
      dispose: () => undefined,
    };
  }

  dispose(): void {
    this.listener.dispose();
    this.changed.dispose();
    this.channel?.dispose();
  }
}
