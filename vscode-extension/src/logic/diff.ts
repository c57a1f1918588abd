/**
 * Which two versions Show Diff compares for each file of a run: the file at the run's base commit
 * and at the run's commit (an added file has an empty left side, a deleted one an empty right
 * side, a renamed one its old path on the left). The glue turns each side into a
 * `promptrail-git:` URI whose content is `git show <sha>:<path>`.
 */

import { shortId, shortSha } from './format';
import type { FileChange, RunJson } from './types';

export const GIT_SCHEME = 'promptrail-git';

export interface GitSide {
  /** Empty string: the file does not exist on this side (shown empty). */
  sha: string;
  path: string;
}

export interface FileDiff {
  path: string;
  title: string;
  left: GitSide;
  right: GitSide;
}

export class NoDiffError extends Error {}

export function fileDiff(run: RunJson, file: FileChange): FileDiff {
  if (!run.commit_sha) {
    throw new NoDiffError(`run ${run.id} has no commit (status: ${run.status ?? 'unknown'}); nothing to diff`);
  }
  const base = run.base_sha ?? '';
  const status = file.status ?? 'modified';
  const leftPath = file.old_path && (status === 'renamed' || status === 'copied') ? file.old_path : file.path;
  const left: GitSide = { sha: status === 'added' || !base ? '' : base, path: leftPath };
  const right: GitSide = { sha: status === 'deleted' ? '' : run.commit_sha, path: file.path };
  const name = file.path.split('/').pop() ?? file.path;
  const leftLabel = left.sha ? shortSha(left.sha).slice(0, 8) : 'new file';
  const rightLabel = right.sha ? `run ${shortId(run.id)}` : 'deleted';
  return { path: file.path, title: `${name} (${leftLabel} ↔ ${rightLabel})`, left, right };
}

export function runDiffs(run: RunJson): FileDiff[] {
  return (run.files ?? []).map((file) => fileDiff(run, file));
}

/** The query part of a `promptrail-git:` URI; the URI path is the file path (for the language). */
export function encodeGitQuery(side: GitSide, repoRoot: string): string {
  return new URLSearchParams({ sha: side.sha, path: side.path, repo: repoRoot }).toString();
}

export function decodeGitQuery(query: string): { sha: string; path: string; repo: string } {
  const params = new URLSearchParams(query);
  return { sha: params.get('sha') ?? '', path: params.get('path') ?? '', repo: params.get('repo') ?? '' };
}

/** `git show` wants `sha:path` with forward slashes, relative to the repository root. */
export function gitObjectName(sha: string, path: string): string {
  return `${sha}:${path.replace(/\\/g, '/').replace(/^\/+/, '')}`;
}
