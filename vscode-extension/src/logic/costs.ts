/**
 * Spend from run rows: today's total for the status bar and a summary for Show Costs when the
 * server has no `promptrail/costs` request yet. A run with an unknown cost is counted as unknown,
 * never as $0.
 */

import { formatCost } from './format';
import type { RunJson } from './types';

export interface Spend {
  /** Sum of the known costs. */
  total: number;
  runs: number;
  /** Runs whose cost is unknown (null): the total is a lower bound when this is > 0. */
  unknown: number;
}

/** Local calendar day of an ISO timestamp, `YYYY-MM-DD`. */
export function localDay(iso: string | Date): string {
  const date = typeof iso === 'string' ? new Date(iso) : iso;
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function spendOf(runs: RunJson[]): Spend {
  const spend: Spend = { total: 0, runs: 0, unknown: 0 };
  for (const run of runs) {
    spend.runs += 1;
    if (typeof run.cost_usd === 'number') {
      spend.total += run.cost_usd;
    } else {
      spend.unknown += 1;
    }
  }
  return spend;
}

/** Today's runs (by local day of `started_at`) and what they cost. */
export function spendToday(history: RunJson[], now: Date): Spend {
  const today = localDay(now);
  return spendOf(history.filter((run) => run.started_at && localDay(run.started_at) === today));
}

/** `$0.127`, `$0.127 + 1 unknown`, `$0.00` for no runs, `cost unknown` when every run's is. */
export function formatSpend(spend: Spend): string {
  if (spend.runs === 0) {
    return '$0.00';
  }
  if (spend.unknown === spend.runs) {
    return formatCost(null);
  }
  const known = spend.total === 0 ? '$0.00' : formatCost(spend.total);
  return spend.unknown > 0 ? `${known} + ${spend.unknown} unknown` : known;
}

export interface CostGroup {
  key: string;
  spend: Spend;
}

export type CostDimension = 'day' | 'model' | 'agent' | 'user';

function keyOf(run: RunJson, by: CostDimension): string {
  switch (by) {
    case 'day':
      return run.started_at ? localDay(run.started_at) : '(no date)';
    case 'model':
      return run.model || '(default model)';
    case 'agent':
      return run.agent || '(unknown agent)';
    case 'user': {
      const actor = run.actor;
      if (!actor) return '(unknown)';
      return typeof actor === 'string' ? actor : actor.email || actor.name || '(unknown)';
    }
  }
}

/** Runs grouped by a dimension, biggest known spend first (days: newest first). */
export function groupSpend(history: RunJson[], by: CostDimension): CostGroup[] {
  const groups = new Map<string, RunJson[]>();
  for (const run of history) {
    const key = keyOf(run, by);
    groups.set(key, [...(groups.get(key) ?? []), run]);
  }
  const rows = [...groups.entries()].map(([key, runs]) => ({ key, spend: spendOf(runs) }));
  return by === 'day'
    ? rows.sort((a, b) => b.key.localeCompare(a.key))
    : rows.sort((a, b) => b.spend.total - a.spend.total || a.key.localeCompare(b.key));
}
