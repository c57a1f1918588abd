/**
 * Whether any open folder is a git repository, asked before the views and the status bar query
 * the server in the background: the server answers a query outside a repository with an error
 * *and* a `window/showMessage` popup, which a view refresh must not cause again and again.
 */

import * as vscode from 'vscode';

import { repoRoot } from '../git';

let cached: Promise<boolean> | undefined;

export function anyRepository(): Promise<boolean> {
  cached ??= (async () => {
    for (const folder of vscode.workspace.workspaceFolders ?? []) {
      if (folder.uri.scheme === 'file' && (await repoRoot(folder.uri.fsPath))) {
        return true;
      }
    }
    return false;
  })();
  return cached;
}

/** Folders changed, or a `git init` may have happened: ask again next time. */
export function forgetRepositories(): void {
  cached = undefined;
}

export const NO_REPOSITORY = 'Open a folder that is a git repository to see its AI runs.';
