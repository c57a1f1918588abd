/**
 * What the gate commands answer, in one line for a notification: `promptrail.gate.*` answer
 * `{status (a label), state, canMerge, blockers, sha, target}`; `promptrail.rollback` answers the
 * rollback run (as `showRun` gives it).
 */

import { oneLine, shortId, shortSha } from './format';

export interface GateResult {
  status?: string | null;
  state?: string | null;
  canMerge?: boolean | null;
  blockers?: string[] | null;
  sha?: string | null;
  target?: string | null;
}

export function describeGateResult(result: unknown): string {
  if (!result || typeof result !== 'object') {
    return typeof result === 'string' ? result : 'done';
  }
  const value = result as GateResult & { id?: unknown; commit_sha?: unknown; message?: unknown };
  if (typeof value.message === 'string') {
    return value.message;
  }
  if (typeof value.id === 'string') { // a rollback run
    const commit = typeof value.commit_sha === 'string' ? ` (commit ${shortSha(value.commit_sha)})` : '';
    return `reverted by run ${shortId(value.id)}${commit}`;
  }
  const parts: string[] = [];
  if (value.status) parts.push(`gate: ${value.status}`);
  if (value.target) parts.push(`target ${value.target}`);
  if (value.blockers?.length) {
    parts.push(`merge blocked: ${value.blockers.map((blocker) => oneLine(blocker, 120)).join('; ')}`);
  } else if (value.canMerge) {
    parts.push('ready to merge');
  }
  return parts.join(' · ') || 'done';
}
