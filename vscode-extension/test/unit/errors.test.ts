import { vi } from 'vitest';
import { beforeEach, describe, expect, it } from 'vitest';
import * as vscode from 'vscode';

import {
  commandFailure, isUnknownCommand, OPEN_SETTINGS, ServerStartError, SHOW_OUTPUT, startFailureMessage,
} from '../../src/logic/errors';
import { showStartFailure } from '../../src/ui/startFailure';
import { __reset } from '../mocks/vscode';

describe('why the server did not start', () => {
  it('names a missing program and how to fix it', () => {
    const message = startFailureMessage(new ServerStartError('not-found', 'promptrail was not found'), 'promptrail serve');
    expect(message.message).toBe('promptrail: cannot start the language server: "promptrail serve" was not found. ' +
      'Install promptrail (pip install promptrail) or set "promptrail.serverCommand" to its path.');
    expect(message.actions).toEqual([OPEN_SETTINGS, SHOW_OUTPUT]);
  });

  it('quotes the end of stderr when the server exited early', () => {
    const error = new ServerStartError('exited', 'exited', {
      exitCode: 1, stderr: 'Traceback...\n\n/usr/bin/python3: No module named promptrail\n',
    });
    expect(startFailureMessage(error, '/usr/bin/python3 -m promptrail serve').message).toBe(
      'promptrail: the language server "/usr/bin/python3 -m promptrail serve" exited with code 1 before it started: ' +
      'Traceback... ⏎ /usr/bin/python3: No module named promptrail. Check "promptrail.serverCommand".');
  });

  it('explains a bad setting', () => {
    const message = startFailureMessage(new ServerStartError('setting', 'unbalanced " quote'), '"x');
    expect(message.message).toBe('promptrail: the setting "promptrail.serverCommand" is not valid: unbalanced " quote.');
    expect(message.actions).toEqual([OPEN_SETTINGS]);
  });
});

describe('the start failure in the UI', () => {
  beforeEach(() => __reset());

  it('is one error with a button that opens the setting', async () => {
    const channel = vscode.window.createOutputChannel('promptrail');
    vi.mocked(vscode.window.showErrorMessage).mockResolvedValueOnce(OPEN_SETTINGS as never);
    await showStartFailure(new ServerStartError('not-found', 'x'), 'promptrail serve', channel);
    expect(vscode.window.showErrorMessage).toHaveBeenCalledTimes(1);
    const [message, ...buttons] = vi.mocked(vscode.window.showErrorMessage).mock.calls[0];
    expect(message).toContain('"promptrail serve" was not found');
    expect(buttons).toEqual([OPEN_SETTINGS, SHOW_OUTPUT]);
    expect(vscode.commands.executeCommand).toHaveBeenCalledWith('workbench.action.openSettings', 'promptrail.serverCommand');
    expect(channel.appendLine).toHaveBeenCalledWith(expect.stringContaining('[error] promptrail: cannot start'));
  });

  it('shows the output on the other button', async () => {
    const channel = vscode.window.createOutputChannel('promptrail');
    vi.mocked(vscode.window.showErrorMessage).mockResolvedValueOnce(SHOW_OUTPUT as never);
    await showStartFailure(new Error('boom'), 'promptrail serve', channel);
    expect(channel.show).toHaveBeenCalled();
    expect(vscode.commands.executeCommand).not.toHaveBeenCalled();
  });
});

describe('failed server commands', () => {
  it('recognises "unknown command" answers (pygls, LSP MethodNotFound)', () => {
    expect(isUnknownCommand({ code: -32602, message: "Command name 'promptrail.gate.simulate' is not defined" })).toBe(true);
    expect(isUnknownCommand({ code: -32601, message: 'Unhandled method promptrail/costs' })).toBe(true);
    expect(isUnknownCommand({ code: -32803, message: 'run ab12 not found' })).toBe(false);
  });

  it('says the server is too old for a gate command', () => {
    const failure = commandFailure({ code: -32602, message: "Command name 'promptrail.gate.simulate' is not defined" },
      'Simulate', 'promptrail.gate.simulate');
    expect(failure).toEqual({
      message: 'promptrail: "Simulate" is not available: this promptrail server does not know ' +
        '"promptrail.gate.simulate" yet. Update promptrail (pip install -U promptrail) and reload the window.',
      shownByServer: false,
      unknownCommand: true,
    });
  });

  it("does not repeat a user error the server already showed", () => {
    const failure = commandFailure({ code: -32803, message: 'prompt is required' }, 'Run Prompt', 'promptrail.runPrompt');
    expect(failure).toEqual({ message: 'promptrail: prompt is required', shownByServer: true, unknownCommand: false });
    const quiet = commandFailure({ code: -32803, message: "unknown run id 'x'", data: { shown: false } }, 'Show Run',
      'promptrail.showRun');
    expect(quiet).toEqual({ message: "promptrail: unknown run id 'x'", shownByServer: false, unknownCommand: false });
  });

  it('points at the server when it is not running', () => {
    const failure = commandFailure(new Error('the promptrail language server is not running'), 'History', 'promptrail.history');
    expect(failure.message).toContain('"History" needs the language server, which is not running');
  });
});
