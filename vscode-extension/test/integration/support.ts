/**
 * What the end-to-end tests share: how to find the real server, the recorded Claude Code session
 * to replay, and a temporary git repository with its own identity and an isolated HOME.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { splitCommandLine } from '../../src/logic/serverCommand';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const TRANSCRIPT = process.env.PROMPTRAIL_TRANSCRIPT
  ?? join(REPO_ROOT, 'tests', 'fixtures', 'claude-2.1.197-sample.jsonl');
/** CI sets this: a server that cannot start fails the tests instead of skipping them. */
export const REQUIRE = process.env.PROMPTRAIL_REQUIRE_E2E === '1';

/** $PROMPTRAIL_SERVER_CMD, else $PROMPTRAIL_PYTHON -m promptrail serve, else the repository's .venv,
 *  else `promptrail serve` on PATH. */
export function serverCommand(): string[] {
  if (process.env.PROMPTRAIL_SERVER_CMD) return splitCommandLine(process.env.PROMPTRAIL_SERVER_CMD);
  if (process.env.PROMPTRAIL_PYTHON) return [process.env.PROMPTRAIL_PYTHON, '-m', 'promptrail', 'serve'];
  const venv = join(REPO_ROOT, '.venv', 'bin', 'python');
  if (existsSync(venv)) return [venv, '-m', 'promptrail', 'serve'];
  return ['promptrail', 'serve'];
}

export interface ScratchRepo {
  scratch: string;
  home: string;
  repo: string;
  /** For the server and git: no global or system git config; worktrees under the temp HOME. */
  env: NodeJS.ProcessEnv;
  git(...args: string[]): string;
}

export function makeScratchRepo(prefix: string): ScratchRepo {
  const scratch = mkdtempSync(join(tmpdir(), prefix));
  const home = join(scratch, 'home');
  const repo = join(scratch, 'repo');
  mkdirSync(home, { recursive: true });
  mkdirSync(repo, { recursive: true });
  const env: NodeJS.ProcessEnv = {
    ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(GIT_|PROMPTRAIL_(?!CLAUDE))/.test(key))),
    HOME: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache'), GIT_CONFIG_NOSYSTEM: '1',
  };
  const git = (...args: string[]) => execFileSync('git', args, { cwd: repo, env, encoding: 'utf8' });
  git('init', '-q', '-b', 'main');
  git('config', 'user.name', 'Ada Lovelace');
  git('config', 'user.email', 'ada@example.com');
  writeFileSync(join(repo, 'README.md'), '# sample\n');
  git('add', 'README.md');
  git('commit', '-q', '-m', 'initial');
  return { scratch, home, repo, env, git };
}

export async function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000,
  explain: () => string = () => ''): Promise<T> {
  const start = Date.now();
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() - start > timeoutMs) {
      throw new Error(`timed out waiting for ${what}${explain() ? `\n${explain()}` : ''}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
