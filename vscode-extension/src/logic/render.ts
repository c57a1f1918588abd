/**
 * Read-only Markdown documents: one run (Show Run) and a spend summary (Show Costs). The text is
 * built here, without `vscode`, and shown by a TextDocumentContentProvider.
 */

import { type CostDimension, type CostGroup, formatSpend } from './costs';
import {
  actorLabel, formatCost, formatLogEntry, formatTokens, oneLine, runTitle, shortSha, totalTokens,
} from './format';
import type { Gate, LogEntry, RunJson, SignOff, Tokens, Violation } from './types';

/** A fence longer than any backtick run in `text`, so a prompt with ``` cannot break out of it. */
export function fence(text: string, info = 'text'): string {
  const longest = Math.max(0, ...(text.match(/`+/g) ?? []).map((run) => run.length));
  const ticks = '`'.repeat(Math.max(3, longest + 1));
  return `${ticks}${info}\n${text.replace(/\n+$/, '')}\n${ticks}`;
}

/** Table cells: no newlines, no unescaped pipes. */
function cell(text: string): string {
  return text.replace(/\r?\n/g, ' ').replace(/\|/g, '\\|');
}

function count(n: number | null | undefined): string {
  return (n ?? 0).toLocaleString('en-US');
}

export interface RunLog {
  entries: LogEntry[];
  /** Where the entries come from: `live` (this window's notifications), `server`, `cli`. */
  source: 'live' | 'server' | 'cli';
  /** Older entries not included. */
  dropped?: number;
}

export function renderViolation(v: Violation): string {
  const where = v.path ? `${v.path}${v.line ? `:${v.line}` : ''}` : '';
  const rule = v.rule_id ?? v.rule ?? '';
  return `- **${v.severity ?? 'violation'}** ${where ? `\`${where}\` ` : ''}${rule ? `[${rule}] ` : ''}` +
    `${v.message ?? ''}`.trimEnd();
}

export function renderRun(run: RunJson, log?: RunLog | null, logUnavailable?: string): string {
  const out: string[] = [];
  const replay = run.agent === 'replay' ? ' (replay)' : '';
  out.push(`# ✦ ${runTitle(run, 120)}${replay}`, '');
  const facts: Array<[string, string]> = [];
  facts.push(['Run', `\`${run.id}\``]);
  facts.push(['Status', run.status ?? 'unknown']);
  if (actorLabel(run.actor)) facts.push(['Prompted by', actorLabel(run.actor)]);
  const agent = [run.agent_label ? `${run.agent} (${run.agent_label})` : run.agent, run.model,
    run.mode ? `${run.mode} mode` : null].filter(Boolean).join(' · ');
  if (agent) facts.push(['Agent', agent]);
  if (run.started_at) facts.push(['Started', run.started_at + (run.ended_at ? ` · ended ${run.ended_at}` : '')]);
  if (run.base_sha) facts.push(['Base', `\`${shortSha(run.base_sha)}\``]);
  if (run.commit_sha) {
    facts.push(['Commit', `\`${shortSha(run.commit_sha)}\`${run.branch ? ` on \`${run.branch}\`` : ''}`]);
  } else if (run.branch) {
    facts.push(['Branch', `\`${run.branch}\` (no commit)`]);
  }
  const tokens = run.tokens ?? {};
  facts.push(['Tokens', totalTokens(tokens) > 0
    ? `${formatTokens(tokens)} — ${count(tokens.input)} input · ${count(tokens.output)} output · ` +
      `${count(tokens.cache_read)} cache read · ${count(tokens.cache_write)} cache write`
    : 'none recorded']);
  facts.push(['Cost', formatCost(run.cost_usd) + (run.cost_usd != null && run.cost_source ? ` (${run.cost_source})` : '')]);
  facts.push(['Gate', run.gate?.label || run.gate?.status || 'not opened']);
  if (run.policy_change === true) facts.push(['Policy', 'this run changes CLAUDE.md or .promptrail.toml']);
  if (run.error) facts.push(['Error', run.error]);
  out.push('| | |', '|---|---|', ...facts.map(([k, v]) => `| ${k} | ${cell(v)} |`), '');

  out.push('## Prompt', '', fence(run.prompt ?? ''), '');

  const files = run.files ?? [];
  out.push(`## Files (${files.length})`, '');
  if (files.length === 0) {
    out.push(run.commit_sha ? '_No file list from the server._' : '_No files changed._', '');
  } else {
    out.push('| | file | + | − |', '|---|---|--:|--:|');
    for (const file of files) {
      const path = file.old_path && file.old_path !== file.path ? `${file.old_path} → ${file.path}` : file.path;
      out.push(`| ${file.status ?? ''} | ${cell(path)} | ${file.additions ?? 0} | ${file.deletions ?? 0} |`);
    }
    out.push('');
  }

  out.push(...renderGate(run.gate));

  const violations = run.violations;
  if (Array.isArray(violations)) {
    out.push(`## CLAUDE.md violations (${violations.length})`, '');
    out.push(violations.length ? violations.map(renderViolation).join('\n') : '_None._', '');
  }

  if (log && log.entries.length > 0) {
    const note = log.dropped ? ` — the first ${log.dropped} not shown` : '';
    out.push(`## Log (${log.entries.length + (log.dropped ?? 0)} entries${note})`, '');
    out.push(fence(log.entries.map((entry) => `${String(entry.seq).padStart(5)} ${formatLogEntry(entry)}`)
      .join('\n')), '');
  } else {
    out.push('## Log', '', logUnavailable ? `_${logUnavailable}_` : '_No log entries._', '');
  }
  return out.join('\n');
}

function signOffLine(signOff: SignOff): string {
  const who = signOff.actor_email || signOff.actor_name || 'someone';
  const sha = signOff.commit_sha ? ` on \`${shortSha(signOff.commit_sha)}\`` : '';
  const when = signOff.ts ? ` · ${signOff.ts}` : '';
  return `- ${signOff.decision === 'reject' ? 'rejected' : 'approved'} by ${who}${sha}${when}` +
    (signOff.comment ? ` — ${oneLine(signOff.comment, 200)}` : '');
}

/** The gate's details when the server sends them (issue 4): sign-offs, checks, what blocks a merge. */
export function renderGate(gate: Gate | null | undefined): string[] {
  if (!gate || !(gate.target || gate.approvals || gate.checks || gate.merge_blockers || gate.error)) {
    return [];
  }
  const out = ['## Gate', ''];
  const head = [`**${gate.label || gate.status || 'unknown'}**`];
  if (gate.target) head.push(`target \`${gate.target}\``);
  if (gate.sha) head.push(`on \`${shortSha(gate.sha)}\``);
  if (typeof gate.required_approvals === 'number') head.push(`${gate.required_approvals} approval(s) required`);
  out.push(head.join(' · '), '');
  if (gate.error) out.push(`⚠ ${gate.error}`, '');
  const signOffs = [...(gate.approvals ?? []), ...(gate.rejections ?? [])];
  if (signOffs.length) out.push(...signOffs.map(signOffLine), '');
  if (gate.stale_signoffs) out.push(`_${gate.stale_signoffs} sign-off(s) on an older commit no longer count._`, '');
  if (gate.checks?.length) {
    out.push('| check | result | exit code |', '|---|---|--:|');
    for (const check of gate.checks) {
      out.push(`| ${cell(check.name ?? '')} | ${cell(check.status ?? '')} | ${check.exit_code ?? ''} |`);
    }
    out.push('');
  }
  if (gate.merge_blockers?.length) {
    out.push('Merge is blocked:', '', ...gate.merge_blockers.map((blocker) => `- ${blocker}`), '');
  } else if (gate.can_merge === true) {
    out.push('Ready to merge.', '');
  }
  return out;
}

export function renderCosts(groups: CostGroup[], by: CostDimension, note?: string): string {
  const out = [`# promptrail · AI spend by ${by}`, ''];
  if (note) {
    out.push(`_${note}_`, '');
  }
  if (groups.length === 0) {
    out.push('_No runs yet._');
    return out.join('\n');
  }
  out.push(`| ${by} | runs | spend |`, '|---|--:|--:|');
  for (const group of groups) {
    out.push(`| ${cell(group.key)} | ${group.spend.runs} | ${formatSpend(group.spend)} |`);
  }
  return `${out.join('\n')}\n`;
}

interface CostReport {
  by?: string;
  since?: string | null;
  groups: Array<{ key?: unknown; runs?: number; cost_usd?: number | null; unknown_cost_runs?: number;
    cost_mismatch_runs?: number; tokens?: Tokens }>;
  total?: { runs?: number; cost_usd?: number | null; unknown_cost_runs?: number };
}

function isCostReport(value: unknown): value is CostReport {
  return !!value && typeof value === 'object' && Array.isArray((value as CostReport).groups);
}

function spendCell(cost: number | null | undefined, runs: number, unknown: number): string {
  return formatSpend({ total: cost ?? 0, runs, unknown: cost == null ? runs : unknown });
}

/** What `promptrail/costs` answers, as Markdown: its report (`{by, since, groups, total}`) as a
 *  table; any other shape as a generic table or JSON. */
export function renderServerCosts(result: unknown, by: string): string {
  if (isCostReport(result)) {
    const out = [`# promptrail · AI spend by ${result.by ?? by}${result.since ? ` since ${result.since}` : ''}`, ''];
    if (result.groups.length === 0) {
      out.push('_No runs yet._');
      return out.join('\n');
    }
    out.push(`| ${result.by ?? by} | runs | spend | tokens | cost mismatch |`, '|---|--:|--:|--:|--:|');
    for (const group of result.groups) {
      out.push(`| ${cell(String(group.key ?? '(none)'))} | ${group.runs ?? 0} | ` +
        `${spendCell(group.cost_usd, group.runs ?? 0, group.unknown_cost_runs ?? 0)} | ${formatTokens(group.tokens)} | ` +
        `${group.cost_mismatch_runs || ''} |`);
    }
    if (result.total) {
      const total = result.total;
      out.push(`| **total** | **${total.runs ?? 0}** | **${spendCell(total.cost_usd, total.runs ?? 0,
        total.unknown_cost_runs ?? 0)}** | | |`);
    }
    return `${out.join('\n')}\n`;
  }
  const rows = Array.isArray(result) ? result
    : result && typeof result === 'object' && Array.isArray((result as { rows?: unknown }).rows)
      ? (result as { rows: unknown[] }).rows : null;
  const out = [`# promptrail · AI spend by ${by}`, ''];
  if (!rows) {
    out.push(fence(JSON.stringify(result, null, 2), 'json'));
    return out.join('\n');
  }
  if (rows.length === 0) {
    out.push('_No runs yet._');
    return out.join('\n');
  }
  const keys = [...new Set(rows.flatMap((row) => (row && typeof row === 'object' ? Object.keys(row) : [])))];
  out.push(`| ${keys.join(' | ')} |`, `|${keys.map(() => '---').join('|')}|`);
  for (const row of rows as Array<Record<string, unknown>>) {
    out.push(`| ${keys.map((key) => cell(costCell(key, row[key]))).join(' | ')} |`);
  }
  return `${out.join('\n')}\n`;
}

function costCell(key: string, value: unknown): string {
  if (/cost|usd|spend/i.test(key) && (typeof value === 'number' || value === null)) {
    return formatCost(value as number | null);
  }
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}
