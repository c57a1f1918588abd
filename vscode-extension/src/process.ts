/**
 * Starting the `promptrail serve` process (no `vscode` import, so its failure paths are tested
 * with real processes). A program that does not exist or cannot be executed is reported as a
 * `ServerStartError` right away, before the language client tries to talk to it; the process's
 * stderr is kept (its tail explains an early exit) and passed on line by line.
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';

import { ServerStartError } from './logic/errors';
import type { ResolvedCommand } from './logic/serverCommand';

export interface ServerProcess {
  child: ChildProcessWithoutNullStreams;
  /** Resolves when the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The last few KB of stderr. */
  stderr(): string;
}

const STDERR_KEEP = 8192;

export async function spawnServer(
  resolved: ResolvedCommand,
  options: { cwd?: string; env?: NodeJS.ProcessEnv; onStderr?: (line: string) => void } = {},
): Promise<ServerProcess> {
  let child: ChildProcessWithoutNullStreams;
  try {
    child = spawn(resolved.command, resolved.args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: 'pipe',
      windowsHide: true,
    });
  } catch (error) {
    throw asStartError(error, resolved);
  }
  let stderr = '';
  let partial = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEEP);
    if (options.onStderr) {
      const lines = (partial + chunk).split(/\r?\n/);
      partial = lines.pop() ?? '';
      for (const line of lines) {
        options.onStderr(line);
      }
    }
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('close', (code, signal) => {
      if (partial && options.onStderr) {
        options.onStderr(partial);
        partial = '';
      }
      resolve({ code, signal });
    });
  });
  await new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (error) => reject(asStartError(error, resolved)));
  });
  // Errors after the spawn (a write to a closed stdin...) are the language client's to report.
  child.on('error', () => undefined);
  return { child, exited, stderr: () => stderr };
}

function asStartError(error: unknown, resolved: ResolvedCommand): ServerStartError {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT') {
    return new ServerStartError('not-found', `${resolved.command} was not found`, { code });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'ENOEXEC') {
    return new ServerStartError('not-executable', `${resolved.command} cannot be executed`, { code });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ServerStartError('other', message, { code });
}

/** After the language client failed to start: if the process ended, say how (with its stderr). */
export async function explainEarlyExit(server: ServerProcess, waitMs = 1000): Promise<ServerStartError | null> {
  const timeout = new Promise<null>((resolve) => setTimeout(() => resolve(null), waitMs));
  const result = await Promise.race([server.exited, timeout]);
  if (!result) {
    return null;
  }
  return new ServerStartError('exited', 'the server exited before it started', {
    exitCode: result.code, signal: result.signal, stderr: server.stderr(),
  });
}
