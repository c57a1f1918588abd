/**
 * Text the extension shows: costs, token counts, elapsed times and the lines of the live log.
 * Pure functions, no `vscode` import, so every label is unit-tested. Cost and token labels match
 * the server's own (`queries.format_cost`, `format_tokens`), so a lens and a tree item agree.
 */

import type { LogEntry, RunJson, RunStatusParams, Tokens, ViolationCounts } from './types';

/** `$0.0042`, `$0.033`, `$12.50`; an unknown cost (null) is "cost unknown", never `$0`. */
export function formatCost(cost: number | null | undefined): string {
  if (cost === null || cost === undefined || !Number.isFinite(cost)) {
    return 'cost unknown';
  }
  if (cost < 0.01) {
    return `$${pyFixed(cost, 4)}`;
  }
  if (cost < 10) {
    return `$${pyFixed(cost, 3)}`;
  }
  const [whole, fraction] = pyFixed(cost, 2).split('.');
  return `$${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ',')}.${fraction}`;
}

/**
 * `value` with `digits` decimals exactly as Python's `f"{value:.{digits}f}"` writes it: rounded from
 * the exact binary value, an exact tie to the even digit (`toFixed` rounds a tie up, so 0.0625 would
 * be 0.063 here and 0.062 in the lens). `toFixed(100)` is the exact decimal expansion of the double.
 */
export function pyFixed(value: number, digits: number): string {
  const rounded = value.toFixed(digits);
  if (Math.abs(value) >= 1e21) {
    return rounded;
  }
  const exact = Math.abs(value).toFixed(100);
  const point = exact.indexOf('.');
  const rest = exact.slice(point + 1 + digits);
  if (!/^50*$/.test(rest)) {
    return rounded;
  }
  const kept = exact.slice(0, point + 1 + digits).replace(/\.$/, '');
  const lastDigit = Number(kept[kept.length - 1]);
  if (lastDigit % 2 === 0) {
    return (value < 0 ? '-' : '') + kept;
  }
  return rounded;
}

export function totalTokens(tokens: Tokens | null | undefined): number {
  if (!tokens) {
    return 0;
  }
  return (tokens.input ?? 0) + (tokens.output ?? 0) + (tokens.cache_read ?? 0) + (tokens.cache_write ?? 0);
}

/** `340 tok`, `18.3k tok`, `1.2M tok` (all four kinds counted, as the lens does). */
export function formatTokens(tokens: Tokens | null | undefined): string {
  const total = totalTokens(tokens);
  if (total >= 1_000_000) {
    return `${(total / 1_000_000).toFixed(1)}M tok`;
  }
  return total >= 1000 ? `${(total / 1000).toFixed(1)}k tok` : `${total} tok`;
}

/** `0:07`, `12:30`, `1:02:03`. */
export function formatElapsed(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s)}` : `${m}:${pad(s)}`;
}

/** `3 min ago`, `yesterday`... for tree descriptions. */
export function formatAge(iso: string | null | undefined, now: Date): string {
  if (!iso) {
    return '';
  }
  const then = Date.parse(iso);
  if (Number.isNaN(then)) {
    return '';
  }
  const seconds = Math.round((now.getTime() - then) / 1000);
  if (seconds < 45) {
    return 'just now';
  }
  const minutes = Math.round(seconds / 60);
  if (minutes < 60) {
    return `${minutes} min ago`;
  }
  const hours = Math.round(minutes / 60);
  if (hours < 24) {
    return `${hours} h ago`;
  }
  const days = Math.round(hours / 24);
  if (days === 1) {
    return 'yesterday';
  }
  if (days < 30) {
    return `${days} days ago`;
  }
  return iso.slice(0, 10);
}

export function shortId(runId: string): string {
  return runId.slice(0, 8);
}

export function shortSha(sha: string | null | undefined): string {
  return sha ? sha.slice(0, 12) : '';
}

/** The first non-empty line, cut to `width` characters. */
export function oneLine(text: string | null | undefined, width = 80): string {
  const line = (text ?? '').split(/\r?\n/).map((l) => l.trim()).find((l) => l) ?? '';
  return line.length <= width ? line : `${line.slice(0, width - 1)}…`;
}

/** `HH:MM:SS.mmm` of an ISO timestamp as the server wrote it (UTC, like `promptrail log`). */
export function formatTime(ts: string): string {
  const match = /T(\d\d:\d\d:\d\d(?:\.\d{1,3})?)/.exec(ts);
  return match ? match[1].padEnd(12, ' ') : ts;
}

const KIND_WIDTH = 11;

/**
 * One log entry as output-channel lines, like `promptrail log`: time, kind, then the text; the
 * text's further lines are indented under its first. `prefix` (a short run id) is added when
 * several runs write to the channel at once, so their lines can be told apart.
 */
export function formatLogEntry(entry: LogEntry, prefix?: string): string {
  const head = `${prefix ? `[${prefix}] ` : ''}${formatTime(entry.ts)} ${entry.kind.padEnd(KIND_WIDTH)} `;
  const indent = ' '.repeat(head.length);
  const lines = entry.text.replace(/\r\n/g, '\n').replace(/\n+$/, '').split('\n');
  return lines.map((line, i) => (i === 0 ? head + line : indent + line)).join('\n').trimEnd();
}

export interface RunHeaderInfo {
  runId: string;
  prompt?: string | null;
  agent?: string | null;
  model?: string | null;
  mode?: string | null;
}

/** The line that opens a run's section of the output channel. */
export function runHeader(info: RunHeaderInfo): string {
  const parts = [`promptrail run ${info.runId}`];
  if (info.prompt) {
    parts.push(oneLine(info.prompt, 80));
  }
  const how = [info.agent, info.model, info.mode ? `${info.mode} mode` : null].filter(Boolean).join(' · ');
  if (how) {
    parts.push(how);
  }
  return `━━━ ${parts.join(' · ')} ━━━`;
}

/** The line a non-final status change writes (`running`, `committing`...). */
export function statusLine(params: RunStatusParams, prefix?: string): string {
  return `${prefix ? `[${prefix}] ` : ''}── ${params.status}`;
}

/** The line that closes a run's section: outcome, commit, cost, tokens, gate, error. */
export function runFooter(params: RunStatusParams): string {
  const parts = [`run ${params.runId} ${params.status}`];
  if (params.commit) {
    parts.push(`commit ${shortSha(params.commit)}`);
  }
  parts.push(formatCost(params.costUsd));
  if (params.tokens && totalTokens(params.tokens) > 0) {
    parts.push(formatTokens(params.tokens));
  }
  if (params.gate?.status) {
    parts.push(`gate: ${params.gate.status}`);
  }
  if (violationsLabel(params.violations)) {
    parts.push(violationsLabel(params.violations));
  }
  if (params.error) {
    parts.push(oneLine(params.error, 200));
  }
  return `━━━ ${parts.join(' · ')} ━━━`;
}

/** What a run is called in pickers and trees: its summary (first prompt line). */
export function runTitle(run: Pick<RunJson, 'summary' | 'prompt' | 'id'>, width = 80): string {
  return oneLine(run.summary || run.prompt || `run ${run.id}`, width);
}

export function actorLabel(actor: RunJson['actor']): string {
  if (!actor) {
    return '';
  }
  if (typeof actor === 'string') {
    return actor;
  }
  if (actor.name && actor.email) {
    return `${actor.name} <${actor.email}>`;
  }
  return actor.name || actor.email || '';
}

export function gateLabel(run: Pick<RunJson, 'gate'>): string {
  const status = run.gate?.label || run.gate?.status;
  return status ? `gate: ${status}` : '';
}

/** `2 CLAUDE.md violations (1 error, 1 warning)`; '' when there are none. */
export function violationsLabel(counts: ViolationCounts | null | undefined): string {
  if (!counts || !counts.total) {
    return '';
  }
  const kinds = (['error', 'warning', 'info', 'hint'] as const)
    .filter((kind) => counts[kind]).map((kind) => `${counts[kind]} ${kind}${counts[kind] === 1 ? '' : 's'}`);
  return `${counts.total} CLAUDE.md violation${counts.total === 1 ? '' : 's'}${kinds.length ? ` (${kinds.join(', ')})` : ''}`;
}
