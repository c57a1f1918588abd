/**
 * The one error a user sees when the language server cannot start (or keeps crashing), with a
 * button that opens the `promptrail.serverCommand` setting and one that shows the output.
 */

import * as vscode from 'vscode';

import { OPEN_SETTINGS, SHOW_OUTPUT, startFailureMessage, type UserMessage } from '../logic/errors';

export const RESTART = 'Restart Server';

export async function showStartFailure(
  error: unknown, display: string, channel: vscode.OutputChannel, extraActions: string[] = [],
): Promise<string | undefined> {
  return showWithActions(startFailureMessage(error, display), channel, extraActions);
}

export async function showWithActions(
  { message, actions }: UserMessage, channel: vscode.OutputChannel, extraActions: string[] = [],
): Promise<string | undefined> {
  channel.appendLine(`[error] ${message}`);
  const choice = await vscode.window.showErrorMessage(message, ...extraActions, ...actions);
  if (choice === OPEN_SETTINGS) {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'promptrail.serverCommand');
  } else if (choice === SHOW_OUTPUT) {
    channel.show(true);
  }
  return choice;
}
