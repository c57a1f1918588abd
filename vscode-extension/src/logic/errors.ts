/**
 * Errors as the user reads them: why the server did not start (with what to do about it), and
 * what a failed server command means — above all "this server does not know that command yet",
 * which is how an older promptrail answers the gate, rollback and costs commands.
 */

export type StartFailureKind = 'not-found' | 'not-executable' | 'exited' | 'setting' | 'other';

/** The server process could not be started, or ended before the LSP handshake finished. */
export class ServerStartError extends Error {
  constructor(
    readonly kind: StartFailureKind,
    message: string,
    readonly detail: { code?: string; exitCode?: number | null; signal?: string | null; stderr?: string } = {},
  ) {
    super(message);
    this.name = 'ServerStartError';
  }
}

export const OPEN_SETTINGS = 'Open Settings';
export const SHOW_OUTPUT = 'Show Output';

export interface UserMessage {
  message: string;
  actions: string[];
}

/** The last non-empty lines of a process's stderr, for a one-glance reason. */
export function stderrTail(stderr: string | undefined, lines = 3): string {
  if (!stderr) {
    return '';
  }
  return stderr.split(/\r?\n/).map((line) => line.trimEnd()).filter(Boolean).slice(-lines).join(' ⏎ ');
}

/**
 * The one error the user sees when the language server cannot start. `display` is the command
 * line that was tried.
 */
export function startFailureMessage(error: unknown, display: string): UserMessage {
  const actions = [OPEN_SETTINGS, SHOW_OUTPUT];
  if (error instanceof ServerStartError) {
    switch (error.kind) {
      case 'not-found':
        return {
          message: `promptrail: cannot start the language server: "${display}" was not found. ` +
            'Install promptrail (pip install promptrail) or set "promptrail.serverCommand" to its path.',
          actions,
        };
      case 'not-executable':
        return {
          message: `promptrail: cannot start the language server: "${display}" is not executable ` +
            `(${error.detail.code ?? 'permission denied'}). Check "promptrail.serverCommand".`,
          actions,
        };
      case 'exited': {
        const how = error.detail.signal ? `was killed by ${error.detail.signal}`
          : `exited with code ${error.detail.exitCode ?? '?'}`;
        const tail = stderrTail(error.detail.stderr);
        return {
          message: `promptrail: the language server "${display}" ${how} before it started` +
            `${tail ? `: ${tail}` : ''}. Check "promptrail.serverCommand".`,
          actions,
        };
      }
      case 'setting':
        return {
          message: `promptrail: the setting "promptrail.serverCommand" is not valid: ${error.message}.`,
          actions: [OPEN_SETTINGS],
        };
      default:
        break;
    }
  }
  const text = error instanceof Error ? error.message : String(error);
  return {
    message: `promptrail: cannot start the language server "${display}": ${text}. Check "promptrail.serverCommand".`,
    actions,
  };
}

/** The shape of a JSON-RPC error as vscode-jsonrpc's `ResponseError` carries it. */
interface RpcErrorLike {
  code?: number;
  message?: string;
  /** promptrail sets `shown: false` on errors of queries, which it answers without a popup. */
  data?: { shown?: boolean };
}

export const METHOD_NOT_FOUND = -32601;
export const INVALID_PARAMS = -32602;
/** LSP `RequestFailed`: the server understood and refused for a stated reason (promptrail's user errors). */
export const REQUEST_FAILED = -32803;

/** True when the server answered that it does not know the command or request at all. */
export function isUnknownCommand(error: unknown): boolean {
  const rpc = (error ?? {}) as RpcErrorLike;
  if (rpc.code === METHOD_NOT_FOUND) {
    return true;
  }
  const text = typeof rpc.message === 'string' ? rpc.message : String(error);
  // pygls: `Command name 'promptrail.gate.simulate' is not defined` (as InvalidParams);
  // vscode-languageclient, for a command the server never announced: `... is not supported`.
  return /command name .* is not defined|unknown command|unhandled method|method not found|no handler for/i.test(text);
}

export interface CommandFailure {
  message: string;
  /** The server already showed this error itself (`window/showMessage`), so do not show it twice. */
  shownByServer: boolean;
  unknownCommand: boolean;
}

/** What to tell the user when the server command `serverCommand` behind the UI action `label` failed. */
export function commandFailure(error: unknown, label: string, serverCommand: string): CommandFailure {
  if (isUnknownCommand(error)) {
    return {
      message: `promptrail: "${label}" is not available: this promptrail server does not know ` +
        `"${serverCommand}" yet. Update promptrail (pip install -U promptrail) and reload the window.`,
      shownByServer: false,
      unknownCommand: true,
    };
  }
  const rpc = (error ?? {}) as RpcErrorLike;
  const text = typeof rpc.message === 'string' && rpc.message ? rpc.message : String(error);
  if (rpc.code === REQUEST_FAILED) {
    // promptrail's user errors of actions arrive as RequestFailed *and* as a window/showMessage;
    // those of queries (data.shown === false) only as RequestFailed.
    return { message: `promptrail: ${text}`, shownByServer: rpc.data?.shown !== false, unknownCommand: false };
  }
  if (/not running|client is not running|connection (got )?(disposed|closed)/i.test(text)) {
    return {
      message: `promptrail: "${label}" needs the language server, which is not running. ` +
        'Run "promptrail: Restart Server" or check "promptrail.serverCommand".',
      shownByServer: false,
      unknownCommand: false,
    };
  }
  return { message: `promptrail: ${label} failed: ${text}`, shownByServer: false, unknownCommand: false };
}
