/**
 * The "Runs" and "Activity" views. Their items come from `logic/tree.ts`; this file asks the
 * server (`promptrail.history`, `promptrail.showRun`, `promptrail.feed`) and refreshes on
 * notifications, debounced so a burst of status changes is one refresh.
 */

import * as vscode from 'vscode';

import type { Connection } from '../connection';
import { commandFailure } from '../logic/errors';
import { feedItem, fileItem, type ItemDescription, runItem } from '../logic/tree';
import type { FeedEvent, FileChange, RunJson } from '../logic/types';
import { anyRepository, NO_REPOSITORY } from './repositories';

export type RunNode =
  | { kind: 'run'; run: RunJson }
  | { kind: 'file'; run: RunJson; file: FileChange }
  | { kind: 'message'; text: string; icon?: string };

export type ActivityNode = { kind: 'event'; event: FeedEvent } | { kind: 'message'; text: string; icon?: string };

export function toTreeItem(description: ItemDescription): vscode.TreeItem {
  const state = description.collapsible === 'collapsed' ? vscode.TreeItemCollapsibleState.Collapsed
    : description.collapsible === 'expanded' ? vscode.TreeItemCollapsibleState.Expanded
      : vscode.TreeItemCollapsibleState.None;
  const item = new vscode.TreeItem(description.label, state);
  item.id = description.id;
  item.description = description.description;
  if (description.tooltip) {
    item.tooltip = new vscode.MarkdownString(description.tooltip);
  }
  if (description.icon) {
    item.iconPath = new vscode.ThemeIcon(description.icon,
      description.iconColor ? new vscode.ThemeColor(description.iconColor) : undefined);
  }
  item.contextValue = description.contextValue;
  item.command = description.command;
  return item;
}

function messageItem(text: string, icon = 'info'): vscode.TreeItem {
  const item = new vscode.TreeItem(text, vscode.TreeItemCollapsibleState.None);
  item.iconPath = new vscode.ThemeIcon(icon);
  return item;
}

abstract class Debounced implements vscode.Disposable {
  protected readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private timer: ReturnType<typeof setTimeout> | undefined;

  refresh(delayMs = 300): void {
    if (this.timer) {
      return;
    }
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.changed.fire();
    }, delayMs);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.changed.dispose();
  }
}

function failureText(error: unknown, label: string, command: string): string {
  return commandFailure(error, label, command).message.replace(/^promptrail: /, '');
}

export class RunsTree extends Debounced implements vscode.TreeDataProvider<RunNode> {
  /** Full runs (with files) by id and status, so expanding twice asks once. */
  private readonly details = new Map<string, RunJson>();

  constructor(private readonly connection: Connection) {
    super();
  }

  getTreeItem(node: RunNode): vscode.TreeItem {
    if (node.kind === 'run') return toTreeItem(runItem(node.run, new Date()));
    if (node.kind === 'file') return toTreeItem(fileItem(node.run, node.file));
    return messageItem(node.text, node.icon);
  }

  async getChildren(node?: RunNode): Promise<RunNode[]> {
    if (this.connection.state !== 'running') {
      return []; // the view's welcome text says why
    }
    if (!node) {
      if (!(await anyRepository())) {
        return [{ kind: 'message', text: NO_REPOSITORY }];
      }
      const limit = vscode.workspace.getConfiguration('promptrail').get<number>('history.limit', 50);
      try {
        const runs = await this.connection.executeCommand<RunJson[]>('promptrail.history', { limit });
        return runs.map((run) => ({ kind: 'run', run }));
      } catch (error) {
        return [{ kind: 'message', text: failureText(error, 'History', 'promptrail.history'), icon: 'warning' }];
      }
    }
    if (node.kind !== 'run') {
      return [];
    }
    const key = `${node.run.id}:${node.run.status}:${node.run.commit_sha}`;
    let run = this.details.get(key);
    if (!run) {
      try {
        run = await this.connection.executeCommand<RunJson>('promptrail.showRun', { runId: node.run.id });
        this.details.set(key, run);
      } catch (error) {
        return [{ kind: 'message', text: failureText(error, 'Show Run', 'promptrail.showRun'), icon: 'warning' }];
      }
    }
    const files = run.files ?? [];
    return files.length ? files.map((file) => ({ kind: 'file', run: run!, file }))
      : [{ kind: 'message', text: 'no files changed' }];
  }
}

export class ActivityTree extends Debounced implements vscode.TreeDataProvider<ActivityNode> {
  constructor(private readonly connection: Connection) {
    super();
  }

  getTreeItem(node: ActivityNode): vscode.TreeItem {
    return node.kind === 'event' ? toTreeItem(feedItem(node.event, new Date())) : messageItem(node.text, node.icon);
  }

  async getChildren(node?: ActivityNode): Promise<ActivityNode[]> {
    if (node || this.connection.state !== 'running') {
      return [];
    }
    if (!(await anyRepository())) {
      return [{ kind: 'message', text: NO_REPOSITORY }];
    }
    const limit = vscode.workspace.getConfiguration('promptrail').get<number>('feed.limit', 100);
    try {
      const events = await this.connection.executeCommand<FeedEvent[]>('promptrail.feed', { limit });
      return events.map((event) => ({ kind: 'event', event }));
    } catch (error) {
      return [{ kind: 'message', text: failureText(error, 'Activity Feed', 'promptrail.feed'), icon: 'warning' }];
    }
  }
}
