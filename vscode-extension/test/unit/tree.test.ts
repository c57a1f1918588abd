import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';
import * as vscode from 'vscode';

import { feedItem, fileItem, runItem } from '../../src/logic/tree';
import type { FeedEvent, RunJson } from '../../src/logic/types';
import { toTreeItem } from '../../src/ui/trees';

// Real output of `promptrail show RUN --json` and `promptrail feed --json` from `promptrail demo`.
const run = JSON.parse(readFileSync(new URL('../fixtures/demo-run.json', import.meta.url), 'utf8')) as RunJson;
const feed = JSON.parse(readFileSync(new URL('../fixtures/demo-feed.json', import.meta.url), 'utf8')) as FeedEvent[];
const now = new Date('2026-12-03T20:47:00Z');

describe('Runs view items from run JSON', () => {
  it('labels a run with its summary, status, cost, gate and age', () => {
    const item = runItem(run, now);
    expect(item.label).toBe('add retries with exponential backoff to fetch() (replay)');
    expect(item.description).toBe('succeeded · $0.127 · gate: pending · 2 h ago');
    expect(item.icon).toBe('pass');
    expect(item.contextValue).toBe('run:commit');
    expect(item.collapsible).toBe('collapsed');
    expect(item.command).toEqual({ command: 'promptrail.ui.showRun', title: 'Show Run', arguments: ['ff03a33ef976'] });
    expect(item.tooltip).toContain('commit `61b1ecd9f447` on `promptrail/ff03a33ef976`');
    expect(item.tooltip).toContain('$0.127 · 29.0k tok');
  });

  it('marks a running run (cancel menu), and one with an unknown cost', () => {
    const item = runItem({ id: 'ab12', prompt: 'fix it', status: 'running', cost_usd: null }, now);
    expect(item.contextValue).toBe('run:running');
    expect(item.icon).toBe('sync~spin');
    expect(item.description).toBe('running · cost unknown');
    expect(item.collapsible).toBe('none');
  });

  it('lists the files of a run, each opening its diff', () => {
    const files = (run.files ?? []).map((file) => fileItem(run, file));
    expect(files.map((f) => [f.label, f.description, f.icon])).toEqual([
      ['fetch.py', 'M · +3 −0 · weather', 'diff-modified'],
      ['retry.py', 'A · +30 −0 · weather', 'diff-added'],
    ]);
    expect(files[1].command?.arguments).toEqual(['ff03a33ef976', 'weather/retry.py']);
  });

  it('becomes a vscode.TreeItem', () => {
    const item = toTreeItem(runItem(run, now));
    expect(item).toBeInstanceOf(vscode.TreeItem);
    expect(item.label).toBe('add retries with exponential backoff to fetch() (replay)');
    expect(item.collapsibleState).toBe(vscode.TreeItemCollapsibleState.Collapsed);
    expect((item.iconPath as vscode.ThemeIcon).id).toBe('pass');
    expect(((item.iconPath as vscode.ThemeIcon).color as unknown as { id: string }).id).toBe('testing.iconPassed');
    expect((item.tooltip as vscode.MarkdownString).value).toContain('run `ff03a33ef976` · succeeded');
    expect(item.contextValue).toBe('run:commit');
  });
});

describe('Activity view items from the feed', () => {
  it('names the event, its run and what it carries', () => {
    const items = feed.map((event) => feedItem(event, now));
    expect(items.map((item) => item.label)).toEqual([
      'succeeded · ff03a33e', 'checked · ff03a33e', 'committed · ff03a33e', 'started · ff03a33e',
    ]);
    expect(items[1].description).toBe('no CLAUDE.md violations · Promptrail Demo · 2 h ago');
    expect(items[0].description).toBe('commit 61b1ecd9f447 · $0.127 · Promptrail Demo · 2 h ago');
    expect(items[3].description).toBe('add retries with exponential backoff to fetch() · Promptrail Demo · 2 h ago');
    expect(items.map((item) => item.icon)).toEqual(['pass', 'beaker', 'git-commit', 'play']);
    expect(items[0].command?.arguments).toEqual(['ff03a33ef976']);
  });

  it('shows an unknown cost as unknown', () => {
    const item = feedItem({ seq: 9, ts: '2026-12-03T20:00:00Z', kind: 'run.incomplete', run_id: 'ab12cd34',
      data: { cost_usd: null } }, now);
    expect(item.description).toContain('cost unknown');
  });
});
