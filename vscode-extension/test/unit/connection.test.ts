/**
 * The start-failure path of the real `Connection` glue, with a stand-in for the language client
 * that behaves like vscode-languageclient on a failed start (it calls the server-options function,
 * which spawns a real process, then rejects, after forcing its own error notification).
 */

import { beforeEach, describe, expect, it, vi } from 'vitest';
import * as vscode from 'vscode';

import { Connection } from '../../src/connection';
import { OPEN_SETTINGS, SHOW_OUTPUT } from '../../src/logic/errors';
import { TraceChannel } from '../../src/ui/output';
import { __config, __reset } from '../mocks/vscode';

const clientErrors = vi.hoisted(() => [] as Array<{ message: string; showNotification: unknown }>);

vi.mock('vscode-languageclient/node', () => {
  class LanguageClient {
    initializeResult: unknown;
    constructor(
      readonly id: string, readonly name: string,
      readonly serverOptions: () => Promise<import('node:child_process').ChildProcess>,
      readonly clientOptions: unknown,
    ) {}
    onNotification(): void {}
    onDidChangeState() {
      return { dispose: () => undefined };
    }
    error(message: string, _data?: unknown, showNotification: unknown = true): void {
      clientErrors.push({ message, showNotification });
    }
    async start(): Promise<void> {
      try {
        const child = await this.serverOptions();
        // The real client would do the LSP handshake now; this server just ends.
        await new Promise((resolve) => child.once('close', resolve));
        throw new Error('Pending response rejected since connection got disposed');
      } catch (error) {
        this.error("promptrail client: couldn't create connection to server.", error, 'force');
        throw error;
      }
    }
    async stop(): Promise<void> {}
    async dispose(): Promise<void> {}
  }
  return {
    LanguageClient,
    State: { Stopped: 1, Running: 2, Starting: 3 },
    ErrorAction: { Continue: 1, Shutdown: 2 },
    CloseAction: { DoNotRestart: 1, Restart: 2 },
    ExecuteCommandRequest: { type: { method: 'workspace/executeCommand' } },
  };
});

function makeConnection() {
  const channel = vscode.window.createOutputChannel('promptrail') as unknown as vscode.OutputChannel & { lines: string[] };
  return { channel, connection: new Connection(channel, new TraceChannel()) };
}

async function settle(): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 20));
}

describe('when the server cannot start', () => {
  beforeEach(() => {
    __reset();
    clientErrors.length = 0;
  });

  it('shows one error with a button that opens promptrail.serverCommand', async () => {
    __config['promptrail.serverCommand'] = '/nonexistent/bin/promptrail';
    vi.mocked(vscode.window.showErrorMessage).mockResolvedValueOnce(OPEN_SETTINGS as never);
    const { connection } = makeConnection();

    expect(await connection.start()).toBe(false);
    await settle();

    expect(connection.state).toBe('failed');
    expect(vscode.window.showErrorMessage).toHaveBeenCalledTimes(1);
    expect(vi.mocked(vscode.window.showErrorMessage).mock.calls[0]).toEqual([
      'promptrail: cannot start the language server: "/nonexistent/bin/promptrail serve" was not found. ' +
      'Install promptrail (pip install promptrail) or set "promptrail.serverCommand" to its path.',
      OPEN_SETTINGS, SHOW_OUTPUT,
    ]);
    expect(vscode.commands.executeCommand).toHaveBeenCalledWith('workbench.action.openSettings', 'promptrail.serverCommand');
    expect(vscode.commands.executeCommand).toHaveBeenCalledWith('setContext', 'promptrail.serverState', 'failed');
    // The client's own forced notification was turned into an output-channel line only.
    expect(clientErrors).toEqual([{ message: "promptrail client: couldn't create connection to server.", showNotification: false }]);
  });

  it('quotes the stderr of a server that exits at once', async () => {
    __config['promptrail.serverCommand'] = [process.execPath, '-e',
      "console.error('/usr/bin/python3: No module named promptrail'); process.exit(1)"];
    const { channel, connection } = makeConnection();

    expect(await connection.start()).toBe(false);
    await settle();

    expect(vscode.window.showErrorMessage).toHaveBeenCalledTimes(1);
    const [message, ...buttons] = vi.mocked(vscode.window.showErrorMessage).mock.calls[0];
    expect(message).toMatch(/^promptrail: the language server ".*" exited with code 1 before it started: /);
    expect(message).toContain('/usr/bin/python3: No module named promptrail. Check "promptrail.serverCommand".');
    expect(buttons).toEqual([OPEN_SETTINGS, SHOW_OUTPUT]);
    expect(channel.lines).toContain('[server stderr] /usr/bin/python3: No module named promptrail');
  });

  it('explains a setting it cannot use without starting anything', async () => {
    __config['promptrail.serverCommand'] = 42;
    const { connection } = makeConnection();
    expect(await connection.start()).toBe(false);
    await settle();
    expect(vi.mocked(vscode.window.showErrorMessage).mock.calls[0]).toEqual([
      'promptrail: the setting "promptrail.serverCommand" is not valid: it must be a string or an array of strings.',
      OPEN_SETTINGS,
    ]);
  });
});
