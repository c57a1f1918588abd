/**
 * The whole extension end to end, without VS Code: the shipped bundle (out/extension.js, with the
 * real vscode-languageclient inside) is loaded against the mocked `vscode` module, activated on a
 * temporary git repository, and starts the REAL promptrail server. Then "promptrail: Run Prompt"
 * is run as a user would (the input box answered by the test) and what the user would see is
 * checked: the output channel, the status bar, the Runs view, the Show Run document.
 */

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import Module, { createRequire } from 'node:module';

import { afterAll, beforeAll, describe, expect, it, type TestContext, vi } from 'vitest';

import { vscodeModule } from '../mocks/deepStub';
import * as mock from '../mocks/vscode';
import { makeScratchRepo, REQUIRE, type ScratchRepo, serverCommand, TRANSCRIPT, until } from './support';

type Loader = (request: string, ...rest: unknown[]) => unknown;
const moduleWithLoad = Module as unknown as { _load: Loader };
const originalLoad = moduleWithLoad._load;
const bundle = new URL('../../out/extension.js', import.meta.url).pathname;

let scratch: ScratchRepo;
let extension: { activate(context: unknown): Promise<void>; deactivate(): Promise<void> };
let channel: { lines: string[] };
let startError: string | undefined;
let lastRunId = '';
const savedEnv = { ...process.env };

function command(id: string): (...args: unknown[]) => Promise<unknown> {
  const call = vi.mocked(mock.commands.registerCommand).mock.calls.find(([name]) => name === id);
  if (!call) throw new Error(`${id} was not registered`);
  return call[1] as (...args: unknown[]) => Promise<unknown>;
}

function provider(scheme: string): { provideTextDocumentContent(uri: unknown): string | Promise<string> } {
  const call = vi.mocked(mock.workspace.registerTextDocumentContentProvider).mock.calls.find(([s]) => s === scheme);
  return call![1] as never;
}

function statusBarText(): string {
  return (vi.mocked(mock.window.createStatusBarItem).mock.results[0].value as { text: string }).text;
}

function requireServer(context: TestContext): void {
  if (startError) {
    if (REQUIRE) throw new Error(`PROMPTRAIL_REQUIRE_E2E=1 and the extension could not start the server: ${startError}`);
    context.skip(`the promptrail server did not start: ${startError}`);
  }
}

beforeAll(async () => {
  scratch = makeScratchRepo('promptrail-vscode-ext-');
  const server = serverCommand(); // before the environment is isolated (it reads PROMPTRAIL_SERVER_CMD)
  // The extension starts the server with its own environment: isolate it like the other tests.
  Object.assign(process.env, scratch.env);
  for (const key of Object.keys(process.env)) if (!(key in scratch.env)) delete process.env[key];
  mock.__reset();
  Object.assign(mock.__config, {
    'promptrail.serverCommand': server,
    'promptrail.agent': 'replay',
    'promptrail.replayTranscript': TRANSCRIPT,
  });
  mock.workspace.workspaceFolders = [{ uri: mock.Uri.file(scratch.repo), name: 'repo', index: 0 }];
  vi.mocked(mock.workspace.getWorkspaceFolder).mockImplementation(() => (mock.workspace.workspaceFolders as never[])[0]);
  const vscode = vscodeModule(mock as unknown as Record<string, unknown>);
  moduleWithLoad._load = function load(this: unknown, request: string, ...rest: unknown[]) {
    return request === 'vscode' ? vscode : originalLoad.call(this, request, ...rest);
  };
  extension = createRequire(import.meta.url)(bundle);
  await extension.activate({ subscriptions: [], extensionPath: '/x' });
  channel = vi.mocked(mock.window.createOutputChannel).mock.results[0].value as never;
  try {
    await until('the server to start', () => {
      const states = vi.mocked(mock.commands.executeCommand).mock.calls
        .filter(([name, key]) => name === 'setContext' && key === 'promptrail.serverState').map((call) => call[2]);
      if (states.includes('failed')) throw new Error(channel.lines.join('\n'));
      return states.includes('running') || undefined;
    }, 30_000);
  } catch (error) {
    startError = error instanceof Error ? error.message : String(error);
  }
});

afterAll(async () => {
  await extension?.deactivate();
  moduleWithLoad._load = originalLoad;
  for (const key of Object.keys(process.env)) delete process.env[key];
  Object.assign(process.env, savedEnv);
  if (scratch) rmSync(scratch.scratch, { recursive: true, force: true });
});

describe('the extension driving the real server', () => {
  it('runs a prompt from the input box and shows it in the output channel, status bar, view and document', async (context) => {
    requireServer(context);
    expect(mock.window.showErrorMessage).not.toHaveBeenCalled();
    vi.mocked(mock.window.showInputBox).mockResolvedValueOnce('add a greet function' as never);
    // The user has README.md open with its first line selected.
    const readme = mock.Uri.file(join(scratch.repo, 'README.md'));
    const line = { line: 0, character: 0 };
    (mock.window as { activeTextEditor: unknown }).activeTextEditor = {
      document: { uri: readme, languageId: 'markdown', getText: () => '# sample' },
      selection: { isEmpty: false, start: line, end: { line: 0, character: 8 }, active: line },
    };

    await command('promptrail.ui.runPrompt')();
    (mock.window as { activeTextEditor: unknown }).activeTextEditor = undefined;

    const footer = await until('the run footer in the output channel',
      () => channel.lines.find((line) => /^━━━ run \w+ succeeded/.test(line)), 30_000, () => channel.lines.join('\n'));
    const runId = /^━━━ run (\w+)/.exec(footer)![1];
    const header = channel.lines.indexOf(`━━━ promptrail run ${runId} · add a greet function · replay ━━━`);
    expect(header).toBeGreaterThanOrEqual(0);
    const section = channel.lines.slice(header, channel.lines.indexOf(footer) + 1);
    expect(section.some((line) => /^\d\d:\d\d:\d\d\.\d{3} tool_use +Write greet\.py/.test(line))).toBe(true);
    expect(footer).toMatch(/succeeded · commit [0-9a-f]{12} · \$0\.033 · .* · gate: pending/);
    expect(channel.lines.filter((line) => line.includes(`run ${runId} started`))).toEqual([]); // no duplicate server lines
    expect(mock.window.showErrorMessage).not.toHaveBeenCalled();

    // The prompt went out with the selection as context, after the user's words (which stay the summary).
    const stored = scratch.git('log', '-1', '--format=%B', `promptrail/${runId}`);
    expect(stored.split('\n')[0]).toBe('add a greet function');
    expect(stored).toContain('--- editor context (added by the promptrail VS Code extension) ---\n' +
      'Current file: README.md (selected: line 1)\n```markdown\n# sample\n```\n--- end of editor context ---');

    await until("today's spend in the status bar", () => statusBarText() === '$(history) $0.033 today' || undefined, 10_000,
      () => statusBarText());

    const runsView = vi.mocked(mock.window.createTreeView).mock.calls.find(([id]) => id === 'promptrail.runs')![1] as {
      treeDataProvider: { getChildren(node?: unknown): Promise<unknown[]>; getTreeItem(node: unknown): { label: string; description: string } };
    };
    const nodes = await runsView.treeDataProvider.getChildren();
    const item = runsView.treeDataProvider.getTreeItem(nodes[0]);
    expect(item.label).toBe('add a greet function (replay)');
    expect(item.description).toMatch(/^succeeded · \$0\.033 · gate: pending/);
    const files = await runsView.treeDataProvider.getChildren(nodes[0]);
    expect(runsView.treeDataProvider.getTreeItem(files[0]).label).toBe('greet.py');

    await command('promptrail.ui.showRun')(runId);
    const document = await provider('promptrail-run').provideTextDocumentContent(mock.Uri.from({
      scheme: 'promptrail-run', path: `/run ${runId}.md` }));
    expect(document).toContain('# ✦ add a greet function (replay)');
    expect(document).toContain('| Cost | $0.033 (reported) |');
    expect(document).toContain('| added | greet.py | 2 | 0 |');
    expect(document).toMatch(/## Log \(\d+ entries\)/);

    // The diff editor's right side: greet.py at the run's commit, read with git show.
    const commit = scratch.git('rev-parse', `promptrail/${runId}`).trim();
    const right = await provider('promptrail-git').provideTextDocumentContent(mock.Uri.from({
      scheme: 'promptrail-git', path: '/greet.py',
      query: new URLSearchParams({ sha: commit, path: 'greet.py', repo: scratch.repo }).toString() }));
    expect(right).toBe("def greet(name):\n    return f'Hello, {name}!'\n");
    lastRunId = runId;
  });

  it('leaves the server command ids to the language client (nothing registered twice)', (context) => {
    requireServer(context);
    const ids = vi.mocked(mock.commands.registerCommand).mock.calls.map(([id]) => id);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
    expect(ids).toEqual(expect.arrayContaining(['promptrail.showRun', 'promptrail.runPrompt', 'promptrail.ui.showRun']));
  });

  it('opens the run when a code lens (the server command promptrail.showRun) is clicked', async (context) => {
    requireServer(context);
    vi.mocked(mock.commands.executeCommand).mockClear();
    // The language client registered promptrail.showRun; a lens click runs it with the lens's arguments.
    await command('promptrail.showRun')({ runId: lastRunId });
    await until('the run document', () => vi.mocked(mock.commands.executeCommand).mock.calls
      .find(([name]) => name === 'markdown.showPreview'), 5000);
    const [, uri] = vi.mocked(mock.commands.executeCommand).mock.calls.find(([name]) => name === 'markdown.showPreview')!;
    expect(String((uri as { path: string }).path)).toBe(`/run ${lastRunId}.md`);
  });

  it('shows costs by day', async (context) => {
    requireServer(context);
    vi.mocked(mock.window.showQuickPick).mockImplementationOnce((async (items: Array<{ by: string }>) =>
      items.find((item) => item.by === 'day')) as never);
    await command('promptrail.ui.showCosts')();
    const text = await provider('promptrail-costs').provideTextDocumentContent(
      mock.Uri.from({ scheme: 'promptrail-costs', path: '/costs by day.md' }));
    expect(text).toContain('# promptrail · AI spend by day');
    expect(text).toContain('$0.033');
  });

  it('answers a gate action with exactly one message', async (context) => {
    requireServer(context);
    const messages = () => vi.mocked(mock.window.showErrorMessage).mock.calls.length +
      vi.mocked(mock.window.showInformationMessage).mock.calls.length;
    vi.mocked(mock.window.showErrorMessage).mockClear();
    vi.mocked(mock.window.showInformationMessage).mockClear();
    vi.mocked(mock.window.showInputBox).mockResolvedValueOnce('looks right' as never);
    await command('promptrail.ui.approve')(lastRunId);
    await until('a message', () => messages() > 0 || undefined, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300)); // a second message would come now
    expect(messages()).toBe(1);
    const [text] = [...vi.mocked(mock.window.showErrorMessage).mock.calls, ...vi.mocked(mock.window.showInformationMessage).mock.calls][0];
    // Ada prompted the run, so by default she may not approve it herself (or the server is older).
    expect(String(text)).toMatch(/^promptrail: /);
  });

  it('says there is nothing to cancel when no run is going on', async (context) => {
    requireServer(context);
    vi.mocked(mock.window.showInformationMessage).mockClear();
    await command('promptrail.ui.cancelRun')();
    expect(mock.window.showInformationMessage).toHaveBeenCalledWith('promptrail: no run is going on.');
  });
});
