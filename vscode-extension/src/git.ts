/**
 * The few git calls the extension makes itself: the content of a file at a commit (for the diff
 * editor) and whether a folder's repository has a commit. Real `git` processes, no vscode.
 */

import { execFile } from 'node:child_process';

import { gitObjectName } from './logic/diff';

function git(cwd: string, args: string[], maxBuffer = 64 * 1024 * 1024): Promise<{ ok: boolean; stdout: Buffer; stderr: string }> {
  return new Promise((resolve) => {
    execFile('git', args, { cwd, encoding: 'buffer', maxBuffer, windowsHide: true }, (error, stdout, stderr) => {
      resolve({ ok: !error, stdout: stdout ?? Buffer.alloc(0), stderr: stderr?.toString('utf8') ?? String(error) });
    });
  });
}

/** The file at `sha` as text; '' when `sha` is empty (the side where the file does not exist). */
export async function gitShow(repo: string, sha: string, path: string): Promise<string> {
  if (!sha) {
    return '';
  }
  const result = await git(repo, ['show', '--no-textconv', gitObjectName(sha, path)]);
  if (!result.ok) {
    throw new Error(`git show ${gitObjectName(sha, path)} failed in ${repo}: ${result.stderr.trim()}`);
  }
  return result.stdout.toString('utf8');
}

export async function hasCommit(repo: string, sha: string): Promise<boolean> {
  return (await git(repo, ['cat-file', '-e', `${sha}^{commit}`])).ok;
}

export async function repoRoot(folder: string): Promise<string | null> {
  const result = await git(folder, ['rev-parse', '--show-toplevel']);
  return result.ok ? result.stdout.toString('utf8').trim() : null;
}
