/**
 * The language client: starting `promptrail serve` from the setting, reporting a failed start
 * once (with a button to the setting), restarting a crashed server a few times, and the one
 * place requests go through. Server commands (`promptrail.runPrompt`...) are registered with VS
 * Code by the client itself; this extension sends them as plain `workspace/executeCommand`
 * requests and never registers those ids again.
 */

import * as vscode from 'vscode';
import {
  CloseAction, ErrorAction, ExecuteCommandRequest, LanguageClient, type LanguageClientOptions,
  type ServerOptions, State,
} from 'vscode-languageclient/node';

import { REQUEST_FAILED, ServerStartError } from './logic/errors';
import { type ResolvedCommand, resolveServerCommand, SettingError } from './logic/serverCommand';
import type { LogParams, RunJson, RunStatusParams } from './logic/types';
import { explainEarlyExit, type ServerProcess, spawnServer } from './process';
import { clientLogChannel, type TraceChannel } from './ui/output';
import { RESTART, showStartFailure } from './ui/startFailure';

export type ConnectionState = 'stopped' | 'starting' | 'running' | 'failed';

/** Crashes tolerated within `RESTART_WINDOW_MS` before the server is left stopped. */
const MAX_RESTARTS = 4;
const RESTART_WINDOW_MS = 3 * 60 * 1000;

class PromptrailClient extends LanguageClient {
  /**
   * The extension reports a failed start itself, once, with a button to the setting; the
   * client's own forced "couldn't create connection to server" notification would be a second,
   * less helpful error. It still goes to the output channel.
   */
  override error(message: string, data?: unknown, showNotification: boolean | 'force' = true): void {
    if (/couldn't create connection|Restarting server failed|Start failed/.test(message)) {
      showNotification = false;
    }
    // A server command the client ran for a code lens failed with promptrail's RequestFailed: the
    // server already showed its one-line reason (window/showMessage).
    if (message.startsWith('Request workspace/executeCommand failed') &&
        (data as { code?: number } | undefined)?.code === REQUEST_FAILED) {
      showNotification = false;
    }
    super.error(message, data, showNotification);
  }
}

export class Connection implements vscode.Disposable {
  private client: PromptrailClient | undefined;
  private server: ServerProcess | undefined;
  private resolved: ResolvedCommand | undefined;
  private starting: Promise<boolean> | undefined;
  private crashes: number[] = [];
  private stopping = false;
  /** Set once a failure was shown, so one failure is one message whichever path noticed it. */
  private failureReported = false;
  private lastSpawnError: unknown;
  private _state: ConnectionState = 'stopped';

  readonly onLog = new vscode.EventEmitter<LogParams>();
  readonly onStatus = new vscode.EventEmitter<RunStatusParams>();
  readonly onState = new vscode.EventEmitter<ConnectionState>();
  /** A `promptrail.showRun` the client ran for a code lens click: its result, to be shown. */
  readonly onShowRunResult = new vscode.EventEmitter<RunJson>();

  constructor(private readonly channel: vscode.OutputChannel, private readonly trace: TraceChannel) {}

  get state(): ConnectionState {
    return this._state;
  }

  /** The promptrail program (without `serve`), for CLI fallbacks. */
  get program(): string[] | undefined {
    return this.resolved?.program;
  }

  private setState(state: ConnectionState): void {
    if (state !== this._state) {
      this._state = state;
      void vscode.commands.executeCommand('setContext', 'promptrail.serverState', state);
      this.onState.fire(state);
    }
  }

  start(): Promise<boolean> {
    if (this._state === 'running') {
      return Promise.resolve(true);
    }
    this.starting ??= this.doStart().finally(() => {
      this.starting = undefined;
    });
    return this.starting;
  }

  private async doStart(): Promise<boolean> {
    const setting = vscode.workspace.getConfiguration('promptrail').get<unknown>('serverCommand');
    let resolved: ResolvedCommand;
    try {
      resolved = resolveServerCommand(setting);
    } catch (error) {
      this.setState('failed');
      const reason = new ServerStartError('setting', error instanceof SettingError ? error.message : String(error));
      void showStartFailure(reason, String(setting), this.channel);
      return false;
    }
    this.resolved = resolved;
    this.setState('starting');
    this.channel.appendLine(`[promptrail] starting the language server: ${resolved.display}`);

    const cwd = vscode.workspace.workspaceFolders?.find((folder) => folder.uri.scheme === 'file')?.uri.fsPath;
    const serverOptions: ServerOptions = async () => {
      this.lastSpawnError = undefined;
      try {
        this.server = await spawnServer(resolved, {
          cwd,
          onStderr: (line) => line.trim() && this.channel.appendLine(`[server stderr] ${line}`),
        });
      } catch (error) {
        this.lastSpawnError = error;
        throw error;
      }
      return this.server.child;
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: [{ scheme: 'file' }],
      outputChannel: clientLogChannel(this.channel),
      traceOutputChannel: this.trace.face(),
      // stderr is read by spawnServer (kept for the start-failure message, passed on line by line).
      stdioOptions: { stdout: () => undefined, stderr: () => undefined },
      errorHandler: {
        error: (_error, _message, count) => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown, handled: true,
        }),
        closed: () => this.onClosed(),
      },
      middleware: {
        executeCommand: async (command, args, next) => {
          const result = await next(command, args);
          if (command === 'promptrail.showRun' && result && typeof result === 'object' && 'id' in result) {
            this.onShowRunResult.fire(result as RunJson);
          }
          return result;
        },
      },
    };
    const client = new PromptrailClient('promptrail', 'promptrail', serverOptions, clientOptions);
    client.onNotification('promptrail/log', (params: LogParams) => this.onLog.fire(params));
    client.onNotification('promptrail/runStatus', (params: RunStatusParams) => this.onStatus.fire(params));
    client.onDidChangeState((event) => {
      if (event.newState === State.Running) {
        this.setState('running');
      } else if (event.newState === State.Starting) {
        this.setState('starting');
      } else if (event.newState === State.Stopped && !this.stopping && !this.starting && this.client === client) {
        // The server ended and was not (or could not be) restarted: a restart after a crash failed,
        // or the crashes were too many (onClosed).
        this.setState('failed');
        void this.explainFailure().then((reason) => this.reportFailure(reason, [RESTART]));
      }
    });
    this.client = client;
    try {
      await client.start();
    } catch (error) {
      let reason: unknown = error;
      if (!(error instanceof ServerStartError) && this.server) {
        reason = (await explainEarlyExit(this.server)) ?? error;
      }
      this.client = undefined;
      await client.dispose(2000).catch(() => undefined);
      this.setState('failed');
      this.reportFailure(reason);
      return false;
    }
    this.crashes = [];
    this.failureReported = false;
    this.setState('running');
    return true;
  }

  private async explainFailure(): Promise<unknown> {
    if (this.lastSpawnError) {
      return this.lastSpawnError;
    }
    const exit = this.server ? await explainEarlyExit(this.server, 500) : null;
    if (this.crashes.length > MAX_RESTARTS) {
      const tail = exit?.detail.stderr ? `: ${exit.detail.stderr.trim().split('\n').slice(-1)[0]}` : '';
      return new Error(`it stopped ${this.crashes.length} times in ${RESTART_WINDOW_MS / 60000} minutes and is ` +
        `not restarted again${tail}`);
    }
    return exit ?? new Error('it stopped');
  }

  private reportFailure(reason: unknown, extraActions: string[] = []): void {
    if (this.failureReported) {
      return;
    }
    this.failureReported = true;
    void this.offerRestart(showStartFailure(reason, this.resolved?.display ?? 'promptrail serve', this.channel,
      extraActions));
  }

  private async onClosed(): Promise<{ action: CloseAction; handled: boolean }> {
    if (this._state !== 'running') {
      return { action: CloseAction.DoNotRestart, handled: true }; // reported by doStart
    }
    const now = Date.now();
    this.crashes = [...this.crashes.filter((at) => now - at < RESTART_WINDOW_MS), now];
    const server = this.server;
    const why = server ? await explainEarlyExit(server, 500) : null;
    const tail = why?.detail.stderr ? `: ${why.detail.stderr.trim().split('\n').slice(-1)[0]}` : '';
    if (this.crashes.length <= MAX_RESTARTS) {
      this.channel.appendLine(`[promptrail] the language server stopped${tail}; restarting it ` +
        `(${this.crashes.length} of ${MAX_RESTARTS})`);
      return { action: CloseAction.Restart, handled: true };
    }
    this.setState('failed');
    void this.explainFailure().then((reason) => this.reportFailure(reason, [RESTART]));
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private async offerRestart(choice: Promise<string | undefined>): Promise<void> {
    if ((await choice) === RESTART) {
      await this.restart();
    }
  }

  async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.stopping = true;
    try {
      if (client) {
        // The server cancels its runs on shutdown and gives them a few seconds to record that.
        await client.stop(7000).catch(() => undefined);
        await client.dispose().catch(() => undefined);
      }
    } finally {
      this.stopping = false;
    }
    this.setState('stopped');
  }

  async restart(): Promise<boolean> {
    await this.stop();
    this.crashes = [];
    this.failureReported = false;
    return this.start();
  }

  /** The running client, starting the server if it is stopped. Throws if it cannot run. */
  private async ready(): Promise<PromptrailClient> {
    if (this._state !== 'running' && !(await this.start())) {
      throw new Error('the promptrail language server is not running');
    }
    if (!this.client) {
      throw new Error('the promptrail language server is not running');
    }
    return this.client;
  }

  /** False when the running server announced its commands and `command` is not one of them. */
  supportsCommand(command: string): boolean | undefined {
    const commands = this.client?.initializeResult?.capabilities.executeCommandProvider?.commands;
    return commands ? commands.includes(command) : undefined;
  }

  async executeCommand<T>(command: string, args: Record<string, unknown>): Promise<T> {
    const client = await this.ready();
    return (await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] })) as T;
  }

  async request<T>(method: string, params: unknown): Promise<T> {
    const client = await this.ready();
    return (await client.sendRequest(method, params)) as T;
  }

  dispose(): void {
    void this.stop();
    this.onLog.dispose();
    this.onStatus.dispose();
    this.onState.dispose();
    this.onShowRunResult.dispose();
  }
}
