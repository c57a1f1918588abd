/**
 * The extension's own commands (`promptrail.ui.*`): input boxes and pickers around the server's
 * commands. The server's command ids (`promptrail.runPrompt`...) are never registered here — the
 * language client registers them already — they are sent as `workspace/executeCommand` requests.
 */

import { execFile } from 'node:child_process';
import * as path from 'node:path';

import * as vscode from 'vscode';

import type { Connection } from '../connection';
import { hasCommit, repoRoot } from '../git';
import { buildPrompt, type EditorContext } from '../logic/context';
import { type CostDimension, groupSpend } from '../logic/costs';
import { type FileDiff, runDiffs } from '../logic/diff';
import { commandFailure } from '../logic/errors';
import { describeGateResult } from '../logic/gate';
import { formatCost, gateLabel, oneLine, runTitle, shortId } from '../logic/format';
import { renderCosts, renderServerCosts, type RunLog } from '../logic/render';
import { statusIcon } from '../logic/tree';
import type { RunTracker } from '../logic/tracker';
import type { LogEntry, RunJson } from '../logic/types';
import { isFinalStatus } from '../logic/types';
import { GitDocuments, type RunDocuments, type TextDocuments } from './documents';
import { forgetRepositories } from './repositories';
import type { StatusBar } from './statusBar';
import type { ActivityTree, RunsTree } from './trees';

export interface Deps {
  connection: Connection;
  tracker: RunTracker;
  channel: vscode.OutputChannel;
  runDocuments: RunDocuments;
  costDocuments: TextDocuments;
  statusBar: StatusBar;
  runsTree: RunsTree;
  activityTree: ActivityTree;
  write(lines: string[]): void;
}

/** The gate and rollback commands: UI id, server command, label, and what the user confirms. */
export const GATE_COMMANDS = [
  { id: 'promptrail.ui.simulate', server: 'promptrail.gate.simulate', label: 'Simulate' },
  { id: 'promptrail.ui.approve', server: 'promptrail.gate.approve', label: 'Approve', comment: 'optional' },
  { id: 'promptrail.ui.reject', server: 'promptrail.gate.reject', label: 'Reject', comment: 'asked' },
  { id: 'promptrail.ui.merge', server: 'promptrail.gate.merge', label: 'Merge', confirm: 'Merge' },
  { id: 'promptrail.ui.rollback', server: 'promptrail.rollback', label: 'Rollback', confirm: 'Roll Back' },
] as const;

/** A run id from whatever a command was invoked with: an id, a tree node, a lens argument. */
export function runIdOf(arg: unknown): string | undefined {
  if (typeof arg === 'string' && arg) return arg;
  if (arg && typeof arg === 'object') {
    const value = arg as { runId?: unknown; run?: { id?: unknown }; event?: { run_id?: unknown }; id?: unknown };
    if (typeof value.runId === 'string') return value.runId;
    if (value.run && typeof value.run.id === 'string') return value.run.id;
    if (value.event && typeof value.event.run_id === 'string') return value.event.run_id;
  }
  return undefined;
}

export function registerCommands(context: vscode.ExtensionContext, deps: Deps): void {
  const { connection } = deps;
  const register = (id: string, handler: (...args: unknown[]) => Promise<unknown> | unknown) =>
    context.subscriptions.push(vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await handler(...args);
      } catch (error) {
        deps.channel.appendLine(`[error] ${id}: ${error instanceof Error ? error.message : String(error)}`);
        void vscode.window.showErrorMessage(`promptrail: ${error instanceof Error ? error.message : String(error)}`);
        return undefined;
      }
    }));

  /** A server command; on failure the user is told once, and `undefined` comes back. */
  async function call<T>(label: string, command: string, args: Record<string, unknown>): Promise<T | undefined> {
    try {
      return await connection.executeCommand<T>(command, args);
    } catch (error) {
      report(label, command, error);
      return undefined;
    }
  }

  function report(label: string, command: string, error: unknown): void {
    const failure = commandFailure(error, label, command);
    deps.channel.appendLine(`[error] ${failure.message}`);
    if (!failure.shownByServer) {
      void vscode.window.showErrorMessage(failure.message);
    }
  }

  async function pickRun(title: string, filter: (run: RunJson) => boolean, empty: string): Promise<string | undefined> {
    const limit = vscode.workspace.getConfiguration('promptrail').get<number>('history.limit', 50);
    const runs = await call<RunJson[]>('History', 'promptrail.history', { limit });
    if (!runs) return undefined;
    const candidates = runs.filter(filter);
    if (candidates.length === 0) {
      void vscode.window.showInformationMessage(`promptrail: ${empty}`);
      return undefined;
    }
    const picked = await vscode.window.showQuickPick(candidates.map(runPickItem), {
      title, matchOnDescription: true, matchOnDetail: true, placeHolder: 'Type to filter by prompt, status or id',
    });
    return picked?.runId;
  }

  async function showRun(runId: string): Promise<void> {
    const run = await call<RunJson>('Show Run', 'promptrail.showRun', { runId });
    if (run) {
      await presentRun(run);
    }
  }

  async function presentRun(run: RunJson): Promise<void> {
    const [log, logUnavailable] = await runLog(run);
    await deps.runDocuments.show({ run, log, logUnavailable });
  }

  /** The run's log: from this window's notifications when it saw the whole run, else the server
   *  (`promptrail.log`, if it has it), else the CLI (`promptrail log RUN --json`). */
  async function runLog(run: RunJson): Promise<[RunLog | null, string | undefined]> {
    const tracked = deps.tracker.get(run.id);
    if (tracked && tracked.entries.length > 0 && (tracked.entries[0].seq === 1 || tracked.droppedEntries > 0)) {
      return [{ entries: tracked.entries, source: 'live', dropped: tracked.droppedEntries }, undefined];
    }
    if (connection.supportsCommand('promptrail.log')) {
      try {
        const entries = await connection.executeCommand<LogEntry[]>('promptrail.log', { runId: run.id });
        return [{ entries, source: 'server' }, undefined];
      } catch {
        // fall through to the CLI
      }
    }
    const program = connection.program;
    const folder = await folderFor(run);
    if (program && folder) {
      try {
        const entries = await cliJson<LogEntry[]>(program, ['log', run.id, '--json', '--repo', folder], folder);
        return [{ entries, source: 'cli' }, undefined];
      } catch (error) {
        return [null, `The log could not be read (${oneLine(String(error), 200)}); ` +
          `run \`promptrail log ${run.id}\` in a terminal.`];
      }
    }
    return [null, `Run \`promptrail log ${run.id}\` in a terminal for the full log.`];
  }

  /** The workspace folder whose repository holds the run's commit (or its base). */
  async function folderFor(run: RunJson): Promise<string | undefined> {
    const folders = (vscode.workspace.workspaceFolders ?? []).filter((f) => f.uri.scheme === 'file');
    const sha = run.commit_sha ?? run.base_sha;
    for (const folder of folders) {
      const root = await repoRoot(folder.uri.fsPath);
      if (root && (!sha || (await hasCommit(root, sha)))) {
        return root;
      }
    }
    return undefined;
  }

  // -- running -------------------------------------------------------------------------------
  register('promptrail.ui.runPrompt', async (initial?: unknown) => {
    const config = vscode.workspace.getConfiguration('promptrail');
    const editor = vscode.window.activeTextEditor;
    const folders = vscode.workspace.workspaceFolders ?? [];
    let folder = editor ? vscode.workspace.getWorkspaceFolder(editor.document.uri) : undefined;
    if (!folder && folders.length === 1) {
      folder = folders[0];
    } else if (!folder && folders.length > 1) {
      folder = await vscode.window.showWorkspaceFolderPick({ placeHolder: 'Which repository should the agent work in?' });
      if (!folder) return;
    }
    if (!folder) {
      void vscode.window.showErrorMessage('promptrail: open a folder that is a git repository to run a prompt.');
      return;
    }
    const editorContext = config.get<boolean>('sendEditorContext', true) ? contextOf(editor, folder) : undefined;
    const what = editorContext?.selection ? `the selection in ${editorContext.path}`
      : editorContext ? editorContext.path : undefined;
    const prompt = typeof initial === 'string' && initial.trim() ? initial : await vscode.window.showInputBox({
      title: 'promptrail: Run Prompt',
      prompt: what ? `What should the agent do? (${what} goes along as context)` : 'What should the agent do?',
      placeHolder: 'add retries with exponential backoff to fetch()',
      ignoreFocusOut: true,
      validateInput: (value) => (value.trim() ? undefined : 'Type what the agent should do.'),
    });
    if (!prompt?.trim()) return;
    const agent = config.get<string>('agent') || undefined;
    const args: Record<string, unknown> = {
      prompt: buildPrompt(prompt, editorContext),
      workspaceFolder: folder.uri.toString(),
    };
    if (agent) args.agent = agent;
    if (config.get<string>('model')) args.model = config.get<string>('model');
    if (config.get<string>('mode')) args.mode = config.get<string>('mode');
    const transcript = config.get<string>('replayTranscript');
    if (agent === 'replay' && transcript) {
      args.transcript = path.isAbsolute(transcript) ? transcript : path.join(folder.uri.fsPath, transcript);
    }
    const result = await call<{ runId: string }>('Run Prompt', 'promptrail.runPrompt', args);
    if (!result?.runId) return;
    deps.write(deps.tracker.started(result.runId, { prompt, agent, model: args.model as string | undefined,
      mode: args.mode as string | undefined }));
    deps.channel.show(true);
    deps.statusBar.update();
    deps.runsTree.refresh();
  });

  register('promptrail.ui.cancelRun', async (arg?: unknown) => {
    let runId = runIdOf(arg);
    if (!runId) {
      const running = deps.tracker.running();
      if (running.length === 0) {
        void vscode.window.showInformationMessage('promptrail: no run is going on.');
        return;
      }
      const picked = await vscode.window.showQuickPick(running.map((run) => ({
        label: `$(sync~spin) ${oneLine(run.prompt, 70) || `run ${run.runId}`}`,
        description: `${run.status} · ${shortId(run.runId)}`,
        runId: run.runId,
      })), { title: 'promptrail: Cancel Run', placeHolder: 'Which run should stop?' });
      runId = picked?.runId;
    }
    if (!runId) return;
    const result = await call<{ runId: string; status: string }>('Cancel Run', 'promptrail.cancelRun', { runId });
    if (result) {
      const message = result.status === 'cancelling' ? `promptrail: cancelling run ${shortId(result.runId)}…`
        : `promptrail: run ${shortId(result.runId)} had already ended (${result.status}).`;
      void vscode.window.showInformationMessage(message);
    }
  });

  // -- asking --------------------------------------------------------------------------------
  register('promptrail.ui.showRun', async (arg?: unknown) => {
    const runId = runIdOf(arg) ?? await pickRun('promptrail: Show Run', () => true, 'no runs yet.');
    if (runId) await showRun(runId);
  });

  register('promptrail.ui.showHistory', async () => {
    const runId = await pickRun('promptrail: Run History', () => true, 'no runs yet in this repository.');
    if (runId) await showRun(runId);
  });

  register('promptrail.ui.showDiff', async (arg?: unknown, filePath?: unknown) => {
    const runId = runIdOf(arg) ?? await pickRun('promptrail: Show Diff', (run) => !!run.commit_sha,
      'no run has a commit yet.');
    if (!runId) return;
    const run = await call<RunJson>('Show Diff', 'promptrail.showRun', { runId });
    if (!run) return;
    if (!run.commit_sha) {
      void vscode.window.showInformationMessage(
        `promptrail: run ${shortId(run.id)} has no commit (${run.status ?? 'unknown'}); there is nothing to diff.`);
      return;
    }
    const diffs = runDiffs(run);
    if (diffs.length === 0) {
      void vscode.window.showInformationMessage(`promptrail: run ${shortId(run.id)} changed no files.`);
      return;
    }
    const repo = await folderFor(run);
    if (!repo) {
      void vscode.window.showErrorMessage(`promptrail: commit ${run.commit_sha.slice(0, 12)} of run ` +
        `${shortId(run.id)} is in none of the open folders' repositories.`);
      return;
    }
    const open = (diff: FileDiff) => vscode.commands.executeCommand('vscode.diff',
      GitDocuments.uriOf(diff.left, repo), GitDocuments.uriOf(diff.right, repo), diff.title, { preview: true });
    // A file of the Runs view: its path comes as the second argument (click) or in the node (menu).
    const nodePath = (arg as { file?: { path?: unknown } } | undefined)?.file?.path;
    const wantedPath = typeof filePath === 'string' ? filePath : typeof nodePath === 'string' ? nodePath : undefined;
    const wanted = wantedPath ? diffs.find((diff) => diff.path === wantedPath) : undefined;
    if (wanted || diffs.length === 1) {
      await open(wanted ?? diffs[0]);
      return;
    }
    const all = { label: `$(files) All ${diffs.length} files`, description: runTitle(run, 60), diff: undefined };
    const picked = await vscode.window.showQuickPick(
      [all, ...diffs.map((diff) => ({ label: diff.path, description: diff.title, diff }))],
      { title: `promptrail: Show Diff · run ${shortId(run.id)}` });
    if (!picked) return;
    if (picked.diff) {
      await open(picked.diff);
      return;
    }
    try {
      await vscode.commands.executeCommand('vscode.changes', `promptrail run ${shortId(run.id)}: ${runTitle(run, 50)}`,
        diffs.map((diff) => [vscode.Uri.file(path.join(repo, diff.path)), GitDocuments.uriOf(diff.left, repo),
          GitDocuments.uriOf(diff.right, repo)]));
    } catch {
      for (const diff of diffs) {
        await open(diff);
      }
    }
  });

  register('promptrail.ui.showFeed', async () => {
    deps.activityTree.refresh(0);
    await vscode.commands.executeCommand('promptrail.activity.focus');
  });

  register('promptrail.ui.showCosts', async () => {
    const picked = await vscode.window.showQuickPick(
      (['day', 'model', 'agent', 'user'] as CostDimension[]).map((by) => ({ label: `by ${by}`, by })),
      { title: 'promptrail: Show Costs' });
    if (!picked) return;
    const by = picked.by;
    let text: string;
    try {
      text = renderServerCosts(await connection.request<unknown>('promptrail/costs', { by }), by);
    } catch (error) {
      if (!commandFailure(error, 'Show Costs', 'promptrail/costs').unknownCommand) {
        report('Show Costs', 'promptrail/costs', error);
        return;
      }
      // An older server: sum the history here (the server's own report, when it has one, wins).
      const runs = await call<RunJson[]>('Show Costs', 'promptrail.history', { limit: 10000 });
      if (!runs) return;
      text = renderCosts(groupSpend(runs, by), by,
        'Summed by the extension from the run history (this promptrail server has no promptrail/costs request).');
    }
    await deps.costDocuments.show(`costs by ${by}.md`, text);
  });

  register('promptrail.ui.showOutput', () => deps.channel.show(false));

  register('promptrail.ui.restartServer', async () => {
    if (await connection.restart()) {
      void vscode.window.showInformationMessage('promptrail: the language server was restarted.');
    }
  });

  register('promptrail.ui.refresh', () => {
    forgetRepositories();
    deps.runsTree.refresh(0);
    deps.activityTree.refresh(0);
    void deps.statusBar.refreshToday();
  });

  // -- gates ---------------------------------------------------------------------------------
  for (const gate of GATE_COMMANDS) {
    register(gate.id, async (arg?: unknown) => {
      if (connection.state === 'running' && connection.supportsCommand(gate.server) === false) {
        report(gate.label, gate.server, new Error(`Command name '${gate.server}' is not defined`));
        return;
      }
      const runId = runIdOf(arg) ?? await pickRun(`promptrail: ${gate.label}`, (run) => !!run.commit_sha,
        'no run has a commit to act on.');
      if (!runId) return;
      const args: Record<string, unknown> = { runId };
      let at = '';
      if ('comment' in gate) {
        // A sign-off binds to the commit the user reviewed: send it, so the server refuses if the
        // run's branch moved in the meantime.
        const run = await call<RunJson>(gate.label, 'promptrail.showRun', { runId });
        if (!run) return;
        const sha = run.gate?.sha ?? run.commit_sha;
        if (sha) {
          args.sha = sha;
          at = ` at ${sha.slice(0, 12)}`;
        }
        const comment = await vscode.window.showInputBox({
          title: `promptrail: ${gate.label} run ${shortId(runId)}${at} · ${runTitle(run, 50)}`,
          prompt: gate.comment === 'asked' ? 'Why? (recorded with the sign-off)' : 'Comment (optional, recorded with the sign-off)',
          ignoreFocusOut: true,
        });
        if (comment === undefined) return;
        if (comment.trim()) args.comment = comment.trim();
      }
      if ('confirm' in gate) {
        const sure = await vscode.window.showWarningMessage(
          gate.label === 'Merge' ? `Merge run ${shortId(runId)} into its target branch?`
            : `Revert the commit of run ${shortId(runId)} on its target branch?`,
          { modal: true }, gate.confirm);
        if (sure !== gate.confirm) return;
      }
      if (gate.server === 'promptrail.gate.simulate') {
        // The checks' output streams into the channel like a run's log.
        deps.write(['', `━━━ promptrail: running the gate's checks for run ${runId} ━━━`]);
        deps.channel.show(true);
      }
      const result = await call<unknown>(gate.label, gate.server, args);
      if (result === undefined) return;
      const summary = `promptrail: ${gate.label} · run ${shortId(runId)}: ${describeGateResult(result)}`;
      deps.channel.appendLine(summary);
      void vscode.window.showInformationMessage(summary);
      deps.runsTree.refresh(0);
      deps.activityTree.refresh(0);
    });
  }

  // A code lens runs the server's promptrail.showRun through the client: show what it returned.
  context.subscriptions.push(connection.onShowRunResult.event((run) => void presentRun(run)));
}

function runPickItem(run: RunJson): vscode.QuickPickItem & { runId: string } {
  const [icon] = statusIcon(run.status);
  return {
    label: `$(${icon}) ${runTitle(run, 70)}${run.agent === 'replay' ? ' (replay)' : ''}`,
    description: [run.status, formatCost(run.cost_usd), gateLabel(run)].filter(Boolean).join(' · '),
    detail: [run.id, run.started_at?.replace('T', ' ').slice(0, 16), isFinalStatus(run.status) ? '' : 'running']
      .filter(Boolean).join(' · '),
    runId: run.id,
  };
}

function contextOf(editor: vscode.TextEditor | undefined, folder: vscode.WorkspaceFolder): EditorContext | undefined {
  if (!editor || editor.document.uri.scheme !== 'file') {
    return undefined;
  }
  const document = editor.document;
  const relative = path.relative(folder.uri.fsPath, document.uri.fsPath);
  const display = relative && !relative.startsWith('..') ? relative.split(path.sep).join('/') : document.uri.fsPath;
  const selection = editor.selection;
  return {
    path: display,
    languageId: document.languageId,
    cursorLine: selection.active.line + 1,
    selection: selection.isEmpty ? undefined : {
      startLine: selection.start.line + 1,
      endLine: selection.end.line + (selection.end.character === 0 && selection.end.line > selection.start.line ? 0 : 1),
      text: document.getText(selection),
    },
  };
}

function cliJson<T>(program: string[], args: string[], cwd: string): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(program[0], [...program.slice(1), ...args], { cwd, maxBuffer: 64 * 1024 * 1024, timeout: 20000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(stderr.trim() || error.message));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as T);
        } catch (parseError) {
          reject(parseError);
        }
      });
  });
}
