/**
 * Tree items for the "Runs" and "Activity" views, described as plain data from the server's JSON
 * (the glue turns a description into a `vscode.TreeItem`). `contextValue` drives the menus in
 * package.json: `run` plus `:running`, `:commit` (there is a commit to diff, simulate, approve...).
 */

import {
  actorLabel, formatAge, formatCost, formatTokens, gateLabel, oneLine, runTitle, shortId, shortSha, violationsLabel,
} from './format';
import type { FeedEvent, FileChange, RunJson, ViolationCounts } from './types';
import { isFinalStatus } from './types';

export interface ItemDescription {
  id: string;
  label: string;
  description?: string;
  /** Markdown. */
  tooltip?: string;
  /** A codicon id, e.g. `pass`, `sync~spin`. */
  icon?: string;
  /** A theme color id for the icon, e.g. `testing.iconPassed`. */
  iconColor?: string;
  contextValue?: string;
  collapsible: 'none' | 'collapsed' | 'expanded';
  /** The UI command a click runs, with its arguments. */
  command?: { command: string; title: string; arguments: unknown[] };
}

const STATUS_ICONS: Record<string, [string, string | undefined]> = {
  queued: ['clock', undefined],
  running: ['sync~spin', undefined],
  committing: ['sync~spin', undefined],
  succeeded: ['pass', 'testing.iconPassed'],
  no_changes: ['circle-large-outline', undefined],
  failed: ['error', 'testing.iconFailed'],
  cancelled: ['circle-slash', undefined],
  incomplete: ['warning', 'problemsWarningIcon.foreground'],
  hook_failed: ['warning', 'problemsWarningIcon.foreground'],
  needs_attention: ['warning', 'problemsWarningIcon.foreground'],
  interrupted: ['debug-disconnect', 'problemsWarningIcon.foreground'],
  budget_exceeded: ['warning', 'problemsWarningIcon.foreground'],
};

export function statusIcon(status: string | null | undefined): [string, string | undefined] {
  return STATUS_ICONS[status ?? ''] ?? ['circle-outline', undefined];
}

/** Characters that would start markdown in a tooltip line are escaped. */
export function escapeMarkdown(text: string): string {
  return text.replace(/([\\`*_{}[\]()#+\-.!|<>~])/g, '\\$1');
}

export function runItem(run: RunJson, now: Date): ItemDescription {
  const status = run.status ?? 'unknown';
  const [icon, iconColor] = statusIcon(status);
  const replay = run.agent === 'replay' ? ' (replay)' : '';
  const details = [status, formatCost(run.cost_usd), gateLabel(run), formatAge(run.started_at, now)]
    .filter(Boolean);
  const flags = [isFinalStatus(status) ? '' : ':running', run.commit_sha ? ':commit' : ''].join('');
  const tooltip = [
    `**${escapeMarkdown(runTitle(run, 200))}**${replay}`,
    `run \`${run.id}\` · ${escapeMarkdown(status)}`,
    actorLabel(run.actor) ? `by ${escapeMarkdown(actorLabel(run.actor))}` : '',
    [run.agent, run.model, run.mode ? `${run.mode} mode` : ''].filter(Boolean).map((s) => escapeMarkdown(String(s)))
      .join(' · '),
    `${formatCost(run.cost_usd)} · ${formatTokens(run.tokens)}`,
    run.commit_sha ? `commit \`${shortSha(run.commit_sha)}\`${run.branch ? ` on \`${run.branch}\`` : ''}` : '',
    gateLabel(run) ? escapeMarkdown(gateLabel(run)) : '',
    run.error ? `⚠ ${escapeMarkdown(oneLine(run.error, 300))}` : '',
  ].filter(Boolean).join('\n\n');
  return {
    id: `run:${run.id}`,
    label: `${runTitle(run, 60)}${replay}`,
    description: details.join(' · '),
    tooltip,
    icon,
    iconColor,
    contextValue: `run${flags}`,
    // Expanding a run lists its files (asked from the server then); without a commit there are none.
    collapsible: run.commit_sha ? 'collapsed' : 'none',
    command: { command: 'promptrail.ui.showRun', title: 'Show Run', arguments: [run.id] },
  };
}

const FILE_STATUS_LETTER: Record<string, string> = {
  added: 'A', modified: 'M', deleted: 'D', renamed: 'R', copied: 'C', type_changed: 'T',
};

export function fileItem(run: RunJson, file: FileChange): ItemDescription {
  const slash = file.path.lastIndexOf('/');
  const name = slash >= 0 ? file.path.slice(slash + 1) : file.path;
  const folder = slash >= 0 ? file.path.slice(0, slash) : '';
  const counts = `+${file.additions ?? 0} −${file.deletions ?? 0}`;
  const status = file.status ?? 'modified';
  const renamed = file.old_path && file.old_path !== file.path ? ` ← ${file.old_path}` : '';
  return {
    id: `file:${run.id}:${file.path}`,
    label: name,
    description: [FILE_STATUS_LETTER[status] ?? status, counts, folder + renamed].filter(Boolean).join(' · '),
    tooltip: `${escapeMarkdown(file.path)}${renamed ? ` (renamed from ${escapeMarkdown(file.old_path ?? '')})` : ''}` +
      `\n\n${escapeMarkdown(status)} · ${counts}`,
    icon: status === 'added' ? 'diff-added' : status === 'deleted' ? 'diff-removed'
      : status === 'renamed' ? 'diff-renamed' : 'diff-modified',
    contextValue: 'runFile',
    collapsible: 'none',
    command: { command: 'promptrail.ui.showDiff', title: 'Show Diff', arguments: [run.id, file.path] },
  };
}

/** `run.succeeded` → `succeeded`, `gate.approved` → `approved`, `deployed` → `deployed`. */
function eventVerb(kind: string): string {
  const dot = kind.lastIndexOf('.');
  return (dot >= 0 ? kind.slice(dot + 1) : kind).replace(/_/g, ' ');
}

const EVENT_ICONS: Array<[RegExp, string]> = [
  [/started$/, 'play'],
  [/committed$/, 'git-commit'],
  [/succeeded$|approved$/, 'pass'],
  [/failed$|rejected$/, 'error'],
  [/cancelled$/, 'circle-slash'],
  [/merged$|deployed$/, 'git-merge'],
  [/rolled_?back$|revert/, 'discard'],
  [/simulat|check/, 'beaker'],
];

export function feedItem(event: FeedEvent, now: Date): ItemDescription {
  const icon = EVENT_ICONS.find(([pattern]) => pattern.test(event.kind))?.[1] ?? 'circle-small-filled';
  const data = event.data ?? {};
  const detail = typeof data.prompt === 'string' ? oneLine(data.prompt, 60)
    : /checked$/.test(event.kind) && typeof data.total === 'number'
      ? violationsLabel(data as ViolationCounts) || 'no CLAUDE.md violations'
      : typeof data.commit === 'string' ? `commit ${shortSha(data.commit)}`
        : '';
  const cost = 'cost_usd' in data ? formatCost(data.cost_usd as number | null) : '';
  const label = event.run_id ? `${eventVerb(event.kind)} · ${shortId(event.run_id)}` : eventVerb(event.kind);
  const dataLines = Object.entries(data).map(([key, value]) =>
    `- ${escapeMarkdown(key)}: \`${oneLine(typeof value === 'string' ? value : JSON.stringify(value), 200)
      .replace(/`/g, "'")}\``);
  return {
    id: `event:${event.seq}`,
    label,
    description: [detail, cost, event.actor ? actorName(event.actor) : '', formatAge(event.ts, now)]
      .filter(Boolean).join(' · '),
    tooltip: [`**${escapeMarkdown(event.kind)}** #${event.seq} · ${escapeMarkdown(event.ts)}`,
      event.actor ? `by ${escapeMarkdown(event.actor)}` : '', ...dataLines].filter(Boolean).join('\n\n'),
    icon,
    contextValue: event.run_id ? 'event:run' : 'event',
    collapsible: 'none',
    command: event.run_id
      ? { command: 'promptrail.ui.showRun', title: 'Show Run', arguments: [event.run_id] }
      : undefined,
  };
}

/** `Ada Lovelace <ada@example.com>` → `Ada Lovelace`. */
function actorName(actor: string): string {
  return actor.replace(/\s*<[^>]*>\s*$/, '') || actor;
}
