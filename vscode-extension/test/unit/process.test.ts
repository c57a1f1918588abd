import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { ServerStartError, startFailureMessage } from '../../src/logic/errors';
import { resolveServerCommand } from '../../src/logic/serverCommand';
import { explainEarlyExit, spawnServer } from '../../src/process';

const dir = mkdtempSync(join(tmpdir(), 'promptrail-vscode-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('starting the server process (real processes)', () => {
  it('reports a program that does not exist as not found', async () => {
    const resolved = resolveServerCommand(join(dir, 'no-such-promptrail'));
    const error = await spawnServer(resolved).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ServerStartError);
    expect((error as ServerStartError).kind).toBe('not-found');
    expect(startFailureMessage(error, resolved.display).message).toContain(`"${resolved.display}" was not found`);
  });

  it('reports a file that cannot be executed', async () => {
    const file = join(dir, 'not-executable');
    writeFileSync(file, '#!/bin/sh\n');
    chmodSync(file, 0o644);
    const error = await spawnServer(resolveServerCommand(file)).catch((e: unknown) => e);
    expect((error as ServerStartError).kind).toBe('not-executable');
  });

  it('explains an early exit with the end of stderr', async () => {
    const lines: string[] = [];
    const resolved = resolveServerCommand([process.execPath, '-e',
      "console.error('Traceback (most recent call last):'); console.error('ModuleNotFoundError: No module named promptrail'); process.exit(1)"]);
    const server = await spawnServer(resolved, { onStderr: (line) => lines.push(line) });
    const why = await explainEarlyExit(server, 5000);
    expect(why?.kind).toBe('exited');
    expect(why?.detail.exitCode).toBe(1);
    expect(lines).toEqual(['Traceback (most recent call last):', 'ModuleNotFoundError: No module named promptrail']);
    expect(startFailureMessage(why, 'x').message).toContain(
      'exited with code 1 before it started: Traceback (most recent call last): ⏎ ModuleNotFoundError: No module named promptrail');
  });
});
