/**
 * The shapes the promptrail language server sends (see server/promptrail/lsp/ and
 * `promptrail show RUN --json`). Every field the server may leave out is optional here, so the
 * extension keeps working against an older or newer server.
 */

export interface Tokens {
  input?: number | null;
  output?: number | null;
  cache_read?: number | null;
  cache_write?: number | null;
}

export interface Actor {
  name?: string | null;
  email?: string | null;
}

export interface FileChange {
  path: string;
  old_path?: string | null;
  status?: string | null; // added | modified | deleted | renamed | copied | type_changed
  additions?: number | null;
  deletions?: number | null;
}

export interface SignOff {
  actor_email?: string | null;
  actor_name?: string | null;
  decision?: string | null;
  comment?: string | null;
  commit_sha?: string | null;
  ts?: string | null;
  [key: string]: unknown;
}

export interface CheckResult {
  name?: string | null;
  status?: string | null;
  exit_code?: number | null;
  duration_s?: number | null;
  [key: string]: unknown;
}

/** The gate as `showRun` gives it (issue 4); `history` and runStatus carry only `status`. */
export interface Gate {
  /** A label: `pending`, `1/2 approvals`, `approved by lead@example.com`, `stale`, `merged`... */
  status?: string | null;
  label?: string | null;
  target?: string | null;
  sha?: string | null;
  approvals?: SignOff[] | null;
  rejections?: SignOff[] | null;
  checks?: CheckResult[] | null;
  blocking?: Violation[] | null;
  required_approvals?: number | null;
  stale_signoffs?: number | null;
  merge_blockers?: string[] | null;
  can_merge?: boolean | null;
  canMerge?: boolean | null;
  error?: string | null;
  [key: string]: unknown;
}

/** The CLAUDE.md check of a run, as counted in runStatus (issue 3). */
export interface ViolationCounts {
  total?: number;
  error?: number;
  warning?: number;
  info?: number;
  hint?: number;
  policy_change?: boolean;
}

export interface Violation {
  rule?: string | null;
  rule_id?: string | null;
  path?: string | null;
  line?: number | null;
  severity?: string | null;
  message?: string | null;
  [key: string]: unknown;
}

/** One run as `promptrail.showRun` / `promptrail show --json` (and, without files, `history`) give it. */
export interface RunJson {
  id: string;
  prompt?: string | null;
  summary?: string | null;
  status?: string | null;
  actor?: Actor | string | null;
  agent?: string | null;
  agent_label?: string | null;
  model?: string | null;
  mode?: string | null;
  base_sha?: string | null;
  commit_sha?: string | null;
  branch?: string | null;
  worktree?: string | null;
  files?: FileChange[] | null;
  tokens?: Tokens | null;
  cost_usd?: number | null;
  cost_source?: string | null;
  num_turns?: number | null;
  gate?: Gate | null;
  violations?: Violation[] | null;
  error?: string | null;
  started_at?: string | null;
  ended_at?: string | null;
  [key: string]: unknown;
}

export interface LogEntry {
  seq: number;
  ts: string;
  kind: string;
  text: string;
}

/** `promptrail/log` */
export interface LogParams {
  runId: string;
  entries: LogEntry[];
}

/** `promptrail/runStatus` */
export interface RunStatusParams {
  runId: string;
  status: string;
  final?: boolean;
  commit?: string;
  costUsd?: number | null;
  tokens?: Tokens;
  gate?: Gate;
  error?: string;
  violations?: ViolationCounts;
  /** Today's total spend, when the server sends it (issue 5). */
  costsToday?: number | null;
}

/** One row of `promptrail.feed` (the hash-chained activity feed). */
export interface FeedEvent {
  seq: number;
  ts: string;
  kind: string;
  run_id?: string | null;
  actor?: string | null;
  data?: Record<string, unknown> | null;
  hash?: string;
  prev_hash?: string;
}

/** States after which a run does not change any more (mirrors runs.FINAL_STATES). */
export const FINAL_STATES = new Set([
  'succeeded', 'no_changes', 'failed', 'cancelled', 'incomplete', 'hook_failed', 'needs_attention',
  'interrupted', 'budget_exceeded',
]);

export function isFinalStatus(status: string | null | undefined): boolean {
  return !!status && FINAL_STATES.has(status);
}

/** A runStatus is final when the server says so, or when its status is an end state (a gate
 *  update on an ended run repeats the run's status without `final`). */
export function isFinalNotification(params: { status: string; final?: boolean }): boolean {
  return params.final === true || isFinalStatus(params.status);
}
