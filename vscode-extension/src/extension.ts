/**
 * promptrail for VS Code: wires the language client (`connection.ts`) to the output channel, the
 * status bar, the Runs and Activity views and the commands. The logic these use lives in
 * `logic/` (no `vscode` import there), which is what the unit tests cover.
 */

import * as vscode from 'vscode';

import { Connection } from './connection';
import { GIT_SCHEME } from './logic/diff';
import { RunTracker } from './logic/tracker';
import { isFinalNotification } from './logic/types';
import { registerCommands } from './ui/commands';
import { COSTS_SCHEME, GitDocuments, RunDocuments, RUN_SCHEME, TextDocuments } from './ui/documents';
import { TraceChannel } from './ui/output';
import { forgetRepositories } from './ui/repositories';
import { StatusBar } from './ui/statusBar';
import { ActivityTree, RunsTree } from './ui/trees';

let connection: Connection | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const channel = vscode.window.createOutputChannel('promptrail');
  const trace = new TraceChannel();
  connection = new Connection(channel, trace);
  const tracker = new RunTracker();
  const runDocuments = new RunDocuments();
  const costDocuments = new TextDocuments(COSTS_SCHEME);
  const statusBar = new StatusBar(connection, tracker);
  const runsTree = new RunsTree(connection);
  const activityTree = new ActivityTree(connection);
  const write = (lines: string[]) => {
    for (const line of lines) channel.appendLine(line);
  };
  context.subscriptions.push(
    channel, trace, connection, runDocuments, costDocuments, statusBar, runsTree, activityTree,
    vscode.workspace.registerTextDocumentContentProvider(RUN_SCHEME, runDocuments),
    vscode.workspace.registerTextDocumentContentProvider(COSTS_SCHEME, costDocuments),
    vscode.workspace.registerTextDocumentContentProvider(GIT_SCHEME, new GitDocuments()),
    vscode.window.createTreeView('promptrail.runs', { treeDataProvider: runsTree, showCollapseAll: true }),
    vscode.window.createTreeView('promptrail.activity', { treeDataProvider: activityTree }),
  );

  const conn = connection;
  context.subscriptions.push(
    conn.onLog.event((params) => {
      write(tracker.onLog(params));
      const view = runDocuments.get(params.runId);
      if (view) {
        // An open Show Run document follows the log: new entries are appended to what it shows
        // (which may have come from the CLI when the document was opened mid-run).
        const shown = view.log?.entries ?? [];
        const last = shown.length ? shown[shown.length - 1].seq : 0;
        const fresh = params.entries.filter((entry) => entry.seq > last).sort((a, b) => a.seq - b.seq);
        if (fresh.length) {
          runDocuments.update(params.runId, {
            log: { entries: [...shown, ...fresh], source: view.log?.source ?? 'live', dropped: view.log?.dropped },
            logUnavailable: undefined,
          });
        }
      }
    }),
    conn.onStatus.event((params) => {
      write(tracker.onStatus(params));
      statusBar.update();
      runsTree.refresh();
      activityTree.refresh();
      if (isFinalNotification(params)) {
        void statusBar.refreshToday();
        if (runDocuments.has(params.runId)) {
          // The final row has the files, cost and gate the document should show.
          void conn.executeCommand('promptrail.showRun', { runId: params.runId })
            .then((run) => runDocuments.update(params.runId, { run: run as never }), () => undefined);
        }
      }
    }),
    conn.onState.event((state) => {
      if (state === 'failed' || state === 'stopped') {
        write(tracker.abandonRunning('the language server stopped'));
      }
      statusBar.update();
      runsTree.refresh(0);
      activityTree.refresh(0);
      if (state === 'running') {
        void statusBar.refreshToday();
      }
    }),
    vscode.workspace.onDidChangeWorkspaceFolders(() => {
      forgetRepositories();
      runsTree.refresh(0);
      activityTree.refresh(0);
      void statusBar.refreshToday();
    }),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('promptrail.serverCommand')) {
        void conn.restart();
      } else if (event.affectsConfiguration('promptrail.history.limit')) {
        runsTree.refresh(0);
      } else if (event.affectsConfiguration('promptrail.feed.limit')) {
        activityTree.refresh(0);
      }
    }),
  );

  registerCommands(context, {
    connection: conn, tracker, channel, runDocuments, costDocuments, statusBar, runsTree, activityTree, write,
  });

  await vscode.commands.executeCommand('setContext', 'promptrail.serverState', 'starting');
  // Not awaited: activation must not wait for the server; a failure is reported by the connection.
  void conn.start();
}

export async function deactivate(): Promise<void> {
  await connection?.stop();
  connection = undefined;
}
