/**
 * End to end against the REAL promptrail language server, over stdio, with vscode-jsonrpc (the
 * library vscode-languageclient is built on): initialize on a temporary git repository → run a
 * prompt with the replay agent → the log notifications arrive complete and in order → the final
 * runStatus → the run's branch is merged → code lenses on the changed file. The extension's own
 * logic (log lines, tree items, the run document, error messages) is fed the real answers.
 *
 * The server command is found by `serverCommand()` (support.ts; $PROMPTRAIL_SERVER_CMD overrides).
 * When it cannot start the tests are skipped — unless PROMPTRAIL_REQUIRE_E2E=1, when they fail.
 */

import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import {
  createMessageConnection, type MessageConnection, StreamMessageReader, StreamMessageWriter,
} from 'vscode-jsonrpc/node';

import { spendToday } from '../../src/logic/costs';
import { commandFailure, isUnknownCommand } from '../../src/logic/errors';
import { formatCost } from '../../src/logic/format';
import { renderRun } from '../../src/logic/render';
import { RunTracker } from '../../src/logic/tracker';
import { feedItem, runItem } from '../../src/logic/tree';
import type { FeedEvent, LogParams, RunJson, RunStatusParams } from '../../src/logic/types';
import { makeScratchRepo, REQUIRE, serverCommand, TRANSCRIPT, until as waitFor } from './support';

const START_TIMEOUT_MS = 30_000;

type Event = { kind: 'log'; params: LogParams } | { kind: 'status'; params: RunStatusParams };

let scratch = '';
let repo = '';
let env: NodeJS.ProcessEnv = {};
let git: (...args: string[]) => string = () => '';

let child: ChildProcessWithoutNullStreams | undefined;
let connection: MessageConnection | undefined;
let startError: Error | undefined;
let stderr = '';
let serverCommands: string[] = [];
const events: Event[] = [];
const progress: Array<{ token: string | number; value: { kind: string; title?: string; message?: string } }> = [];
const shownMessages: string[] = [];
let lensRefreshes = 0;

function requireServer(context: TestContext): MessageConnection {
  if (!connection) {
    if (REQUIRE) {
      throw new Error(`PROMPTRAIL_REQUIRE_E2E=1 and the promptrail server did not start (${serverCommand().join(' ')}): ` +
        `${startError?.message ?? 'unknown error'}\n${stderr.slice(-2000)}`);
    }
    context.skip(`the promptrail server did not start: ${startError?.message}`);
  }
  return connection!;
}

async function startServer(): Promise<void> {
  const [command, ...args] = serverCommand();
  const proc = spawn(command, args, { cwd: repo, env, stdio: 'pipe' });
  child = proc;
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk: string) => { stderr += chunk; });
  const exited = new Promise<never>((_, reject) => {
    proc.once('error', (error) => reject(error));
    proc.once('exit', (code, signal) => reject(new Error(`the server exited (code ${code}, signal ${signal}) during start-up`)));
  });
  const conn = createMessageConnection(new StreamMessageReader(proc.stdout), new StreamMessageWriter(proc.stdin));
  conn.onNotification('promptrail/log', (params: LogParams) => { events.push({ kind: 'log', params }); });
  conn.onNotification('promptrail/runStatus', (params: RunStatusParams) => { events.push({ kind: 'status', params }); });
  conn.onNotification('$/progress', (params: (typeof progress)[number]) => { progress.push(params); });
  conn.onNotification('window/showMessage', (params: { message: string }) => { shownMessages.push(params.message); });
  conn.onNotification('window/logMessage', () => undefined);
  conn.onRequest('window/workDoneProgress/create', () => null);
  conn.onRequest('workspace/codeLens/refresh', () => { lensRefreshes += 1; return null; });
  conn.onRequest('client/registerCapability', () => null);
  conn.onRequest('workspace/configuration', (params: { items: unknown[] }) => params.items.map(() => null));
  conn.listen();
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`no answer to initialize within ${START_TIMEOUT_MS} ms`)), START_TIMEOUT_MS).unref());
  const result = await Promise.race([conn.sendRequest('initialize', {
    processId: process.pid,
    clientInfo: { name: 'promptrail-vscode-e2e' },
    rootUri: pathToFileURL(repo).href,
    workspaceFolders: [{ uri: pathToFileURL(repo).href, name: 'repo' }],
    capabilities: {
      window: { workDoneProgress: true },
      workspace: { workspaceFolders: true, codeLens: { refreshSupport: true } },
      textDocument: { codeLens: {} },
      general: { positionEncodings: ['utf-16'] },
    },
  }), exited, timeout]) as { capabilities: { executeCommandProvider?: { commands?: string[] } } };
  serverCommands = result.capabilities.executeCommandProvider?.commands ?? [];
  await conn.sendNotification('initialized', {});
  exited.catch(() => undefined); // from now on an exit is the tests' to notice
  connection = conn;
}

beforeAll(async () => {
  ({ scratch, repo, env, git } = makeScratchRepo('promptrail-vscode-e2e-'));
  try {
    await startServer();
  } catch (error) {
    startError = error instanceof Error ? error : new Error(String(error));
    child?.kill('SIGKILL');
  }
});

afterAll(async () => {
  if (connection && child) {
    const ended = new Promise((resolve) => child!.once('exit', resolve));
    try {
      await Promise.race([connection.sendRequest('shutdown'), new Promise((r) => setTimeout(r, 8000))]);
      await connection.sendNotification('exit');
    } catch {
      // the server is gone already
    }
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5000))]);
    connection.dispose();
  }
  child?.kill('SIGKILL');
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function until<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  return waitFor(what, check, timeoutMs, () => `server stderr:\n${stderr.slice(-3000)}`);
}

function execute<T>(conn: MessageConnection, command: string, args: Record<string, unknown>): Promise<T> {
  return conn.sendRequest('workspace/executeCommand', { command, arguments: [args] }) as Promise<T>;
}

describe('the real promptrail server over stdio', () => {
  let runId = '';

  it('runs a prompt: log in order, final status, then one code lens on the changed file', async (context) => {
    const conn = requireServer(context);
    expect(serverCommands).toEqual(expect.arrayContaining(['promptrail.runPrompt', 'promptrail.cancelRun',
      'promptrail.showRun', 'promptrail.history', 'promptrail.feed']));

    const answer = await execute<{ runId: string }>(conn, 'promptrail.runPrompt', {
      prompt: 'add a greet function', agent: 'replay', transcript: TRANSCRIPT, workspaceFolder: pathToFileURL(repo).href,
    });
    runId = answer.runId;
    expect(runId).toMatch(/^[0-9a-f]{6,}$/);

    const final = await until('the final runStatus', () =>
      events.find((e): e is Extract<Event, { kind: 'status' }> => e.kind === 'status' && e.params.runId === runId && !!e.params.final));
    expect(final.params.status).toBe('succeeded');
    expect(final.params.commit).toBe(git('rev-parse', `promptrail/${runId}`).trim());
    expect(final.params.costUsd).toBeCloseTo(0.0325, 6);
    expect(final.params.gate?.status).toBe('pending');

    // The log: seqs 1..N, in arrival order, no gap, all before the final status.
    const mine = events.filter((e) => e.params.runId === runId);
    const seqs = mine.flatMap((e) => (e.kind === 'log' ? e.params.entries.map((entry) => entry.seq) : []));
    expect(seqs.length).toBeGreaterThan(3);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    expect(mine[mine.length - 1]).toBe(final);
    expect(mine.filter((e) => e.kind === 'status').map((e) => e.params.status)).toEqual(
      expect.arrayContaining(['running', 'succeeded']));

    // What the output channel shows for those notifications.
    const tracker = new RunTracker();
    const lines = [...tracker.started(runId, { prompt: 'add a greet function', agent: 'replay' }),
      ...mine.flatMap((e) => (e.kind === 'log' ? tracker.onLog(e.params) : tracker.onStatus(e.params)))];
    expect(lines[1]).toBe(`━━━ promptrail run ${runId} · add a greet function · replay ━━━`);
    expect(lines.some((line) => /^\d\d:\d\d:\d\d\.\d{3} tool_use +Write greet\.py/.test(line))).toBe(true);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^━━━ run ${runId} succeeded · commit [0-9a-f]{12} · \\$0\\.033 · .* · gate: pending`));
    expect(lines.some((line) => line.includes('did not arrive'))).toBe(false);
    expect(tracker.running()).toEqual([]);

    // $/progress: begun and ended for the run; the lens refresh request once the commit landed.
    await until('the end of the progress', () =>
      progress.some((p) => p.value.kind === 'end' && (p.value.message ?? '').includes('succeeded')) || undefined, 5000);
    expect(progress.some((p) => p.value.kind === 'begin')).toBe(true);
    await until('workspace/codeLens/refresh', () => (lensRefreshes > 0 ? true : undefined), 5000);

    // Merge the run's branch; the changed file gets one lens that resolves to the run.
    git('merge', '-q', '--ff-only', `promptrail/${runId}`);
    const greet = join(repo, 'greet.py');
    const uri = pathToFileURL(greet).href;
    const text = readFileSync(greet, 'utf8');
    expect(text).toBe("def greet(name):\n    return f'Hello, {name}!'\n");
    await conn.sendNotification('textDocument/didOpen', { textDocument: { uri, languageId: 'python', version: 1, text } });
    const lenses = await conn.sendRequest('textDocument/codeLens', { textDocument: { uri } }) as Array<Record<string, unknown>>;
    expect(lenses).toHaveLength(1);
    const resolved = await conn.sendRequest('codeLens/resolve', lenses[0]) as {
      range: { start: { line: number } }; command: { title: string; command: string; arguments: Array<{ runId: string }> };
    };
    expect(resolved.range.start.line).toBe(0);
    expect(resolved.command.title).toContain('$0.033');
    expect(resolved.command.title).toContain('gate: pending');
    expect(resolved.command.title).toContain('add a greet function');
    expect(resolved.command.command).toBe('promptrail.showRun');
    expect(resolved.command.arguments[0].runId).toBe(runId);
  });

  it('answers showRun, history and feed with what the views need', async (context) => {
    const conn = requireServer(context);
    if (!runId) context.skip('needs the run of the first test');
    const run = await execute<RunJson>(conn, 'promptrail.showRun', { runId });
    expect(run.files?.map((file) => [file.path, file.status])).toEqual([['greet.py', 'added']]);
    expect(formatCost(run.cost_usd)).toBe('$0.033');
    const item = runItem(run, new Date());
    expect(item.label).toBe('add a greet function (replay)');
    expect(item.description).toMatch(/^succeeded · \$0\.033 · gate: pending/);
    expect(item.contextValue).toBe('run:commit');
    const document = renderRun(run, null);
    expect(document).toContain('| Cost | $0.033 (reported) |');
    expect(document).toContain('| added | greet.py | 2 | 0 |');

    const history = await execute<RunJson[]>(conn, 'promptrail.history', { limit: 10 });
    expect(history.map((row) => row.id)).toContain(runId);
    expect(spendToday(history, new Date()).total).toBeCloseTo(0.0325, 6);

    const feed = await execute<FeedEvent[]>(conn, 'promptrail.feed', { limit: 20 });
    const labels = feed.map((event) => feedItem(event, new Date()).label);
    expect(labels).toContain(`started · ${runId.slice(0, 8)}`);
    expect(labels).toContain(`succeeded · ${runId.slice(0, 8)}`);
  });

  it('turns a command the server does not know into the "not available" message', async (context) => {
    const conn = requireServer(context);
    const error = await execute(conn, 'promptrail.noSuchCommand', { runId: 'x' }).catch((e: unknown) => e);
    expect(isUnknownCommand(error)).toBe(true);
    expect(commandFailure(error, 'Simulate', 'promptrail.noSuchCommand').message)
      .toContain('this promptrail server does not know "promptrail.noSuchCommand" yet');
    const costs = await conn.sendRequest('promptrail/costs', { by: 'day' }).then((value) => ({ value }), (e: unknown) => ({ error: e }));
    if ('error' in costs) {
      expect(isUnknownCommand(costs.error)).toBe(true); // the extension then sums the history itself
    }
  });

  it('reports a user error once: as the server showed it, not again', async (context) => {
    const conn = requireServer(context);
    const error = await execute(conn, 'promptrail.cancelRun', { runId: 'zzzz-no-such-run' }).catch((e: unknown) => e);
    const failure = commandFailure(error, 'Cancel Run', 'promptrail.cancelRun');
    expect(failure.unknownCommand).toBe(false);
    expect(failure.shownByServer).toBe(true);
    await until('the server’s showMessage', () => shownMessages.find((m) => m.includes('zzzz-no-such-run')), 5000);
  });

  it('leaves a query’s error for the extension to show', async (context) => {
    const conn = requireServer(context);
    const error = await execute(conn, 'promptrail.showRun', { runId: 'yyyy-no-such-run' }).catch((e: unknown) => e);
    const failure = commandFailure(error, 'Show Run', 'promptrail.showRun');
    expect(failure.shownByServer).toBe(false);
    expect(failure.message).toBe("promptrail: unknown run id 'yyyy-no-such-run'; `promptrail history` lists the runs");
    expect(shownMessages.find((m) => m.includes('yyyy-no-such-run'))).toBeUndefined();
  });
});
