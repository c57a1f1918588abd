/**
 * Read-only virtual documents: a run (`promptrail-run:`), a spend summary (`promptrail-costs:`)
 * and a file at a commit for the diff editor (`promptrail-git:`, content from `git show`).
 */

import * as vscode from 'vscode';

import { gitShow } from '../git';
import { decodeGitQuery, encodeGitQuery, GIT_SCHEME, type GitSide } from '../logic/diff';
import { renderRun, type RunLog } from '../logic/render';
import type { RunJson } from '../logic/types';

export const RUN_SCHEME = 'promptrail-run';
export const COSTS_SCHEME = 'promptrail-costs';

interface RunView {
  run: RunJson;
  log?: RunLog | null;
  logUnavailable?: string;
}

export class RunDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly views = new Map<string, RunView>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  private readonly pending = new Map<string, ReturnType<typeof setTimeout>>();
  readonly onDidChange = this.changed.event;

  static uriOf(runId: string): vscode.Uri {
    return vscode.Uri.from({ scheme: RUN_SCHEME, path: `/run ${runId}.md` });
  }

  static runIdOf(uri: vscode.Uri): string {
    return /run (.+)\.md$/.exec(uri.path)?.[1] ?? '';
  }

  provideTextDocumentContent(uri: vscode.Uri): string {
    const view = this.views.get(RunDocuments.runIdOf(uri));
    if (!view) {
      return `# promptrail\n\n_This run is not loaded any more: run "promptrail: Show Run" again._\n`;
    }
    return renderRun(view.run, view.log, view.logUnavailable);
  }

  has(runId: string): boolean {
    return this.views.has(runId);
  }

  get(runId: string): RunView | undefined {
    return this.views.get(runId);
  }

  async show(view: RunView): Promise<void> {
    this.views.set(view.run.id, view);
    const uri = RunDocuments.uriOf(view.run.id);
    this.changed.fire(uri);
    await showMarkdown(uri);
  }

  /** New data for a run whose document may be open; re-rendered at most twice a second. */
  update(runId: string, change: Partial<RunView>): void {
    const view = this.views.get(runId);
    if (!view) {
      return;
    }
    Object.assign(view, change);
    if (!this.pending.has(runId)) {
      this.pending.set(runId, setTimeout(() => {
        this.pending.delete(runId);
        this.changed.fire(RunDocuments.uriOf(runId));
      }, 500));
    }
  }

  dispose(): void {
    for (const timer of this.pending.values()) {
      clearTimeout(timer);
    }
    this.changed.dispose();
  }
}

export class TextDocuments implements vscode.TextDocumentContentProvider, vscode.Disposable {
  private readonly texts = new Map<string, string>();
  private readonly changed = new vscode.EventEmitter<vscode.Uri>();
  readonly onDidChange = this.changed.event;

  constructor(private readonly scheme: string) {}

  provideTextDocumentContent(uri: vscode.Uri): string {
    return this.texts.get(uri.path) ?? '';
  }

  async show(name: string, text: string): Promise<void> {
    const uri = vscode.Uri.from({ scheme: this.scheme, path: `/${name}` });
    this.texts.set(uri.path, text);
    this.changed.fire(uri);
    await showMarkdown(uri);
  }

  dispose(): void {
    this.changed.dispose();
  }
}

/** Rendered (the built-in Markdown preview follows the provider's changes); as text when the
 *  Markdown extension is disabled. */
async function showMarkdown(uri: vscode.Uri): Promise<void> {
  const document = await vscode.workspace.openTextDocument(uri);
  try {
    await vscode.commands.executeCommand('markdown.showPreview', uri);
  } catch {
    await vscode.languages.setTextDocumentLanguage(document, 'markdown');
    await vscode.window.showTextDocument(document, { preview: true });
  }
}

export class GitDocuments implements vscode.TextDocumentContentProvider {
  static uriOf(side: GitSide, repoRoot: string): vscode.Uri {
    // The path keeps the file name, so the diff editor picks the right language.
    return vscode.Uri.from({ scheme: GIT_SCHEME, path: `/${side.path}`, query: encodeGitQuery(side, repoRoot) });
  }

  async provideTextDocumentContent(uri: vscode.Uri): Promise<string> {
    const { sha, path, repo } = decodeGitQuery(uri.query);
    return gitShow(repo, sha, path);
  }
}
