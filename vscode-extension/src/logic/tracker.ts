/**
 * The runs this window knows are going on, built from `promptrail/log` and `promptrail/runStatus`
 * notifications, and the output-channel text they produce. No `vscode` import: the glue feeds it
 * notifications and writes the lines it returns.
 *
 * What it guarantees about the output: a header line the first time a run is seen, every log
 * entry once and in `seq` order (a duplicate is dropped; a gap is said, never hidden), a line per
 * status change and a footer with the outcome when the run is final. The entries are also kept
 * (up to `maxEntries` per run) so Show Run can show the log of a run seen live.
 */

import { formatLogEntry, runFooter, runHeader, shortId, statusLine } from './format';
import type { LogEntry, LogParams, RunStatusParams, Tokens } from './types';
import { isFinalNotification } from './types';

export interface TrackedRun {
  runId: string;
  prompt?: string;
  agent?: string;
  model?: string;
  mode?: string;
  status: string;
  /** When this window first heard of the run (ms since epoch), for the elapsed time. */
  startedAt: number;
  endedAt?: number;
  final: boolean;
  commit?: string;
  costUsd?: number | null;
  tokens?: Tokens;
  gate?: { status?: string | null };
  error?: string;
  lastSeq: number;
  entries: LogEntry[];
  /** Entries dropped from `entries` because of `maxEntries` (the oldest go first). */
  droppedEntries: number;
  headerWritten: boolean;
}

export interface TrackerOptions {
  now?: () => number;
  maxEntries?: number;
  /** How many ended runs to remember (their logs are kept for Show Run). */
  maxEndedRuns?: number;
}

export class RunTracker {
  private readonly runs = new Map<string, TrackedRun>();
  private readonly now: () => number;
  private readonly maxEntries: number;
  private readonly maxEndedRuns: number;
  /** Today's spend as the server last reported it in a runStatus (`costsToday`), if it does. */
  costsToday: number | null | undefined;
  /** When `costsToday` arrived (ms since epoch): it is today's only on the same local day. */
  costsTodayAt: number | undefined;

  constructor(options: TrackerOptions = {}) {
    this.now = options.now ?? Date.now;
    this.maxEntries = options.maxEntries ?? 5000;
    this.maxEndedRuns = options.maxEndedRuns ?? 50;
  }

  get(runId: string): TrackedRun | undefined {
    return this.runs.get(runId);
  }

  /** Runs not final yet, oldest first. */
  running(): TrackedRun[] {
    return [...this.runs.values()].filter((run) => !run.final).sort((a, b) => a.startedAt - b.startedAt);
  }

  /** A run this window started: its prompt and options are known before any notification. */
  started(runId: string, info: { prompt?: string; agent?: string; model?: string; mode?: string } = {}): string[] {
    const run = this.ensure(runId);
    run.prompt ??= info.prompt;
    run.agent ??= info.agent;
    run.model ??= info.model;
    run.mode ??= info.mode;
    return this.header(run);
  }

  /** Lines for the output channel for one `promptrail/log` notification. */
  onLog(params: LogParams): string[] {
    const run = this.ensure(params.runId);
    const lines = this.header(run);
    const prefix = this.prefixFor(run);
    const sorted = [...params.entries].sort((a, b) => a.seq - b.seq);
    for (const entry of sorted) {
      if (entry.seq <= run.lastSeq) {
        continue; // already written (a resent batch)
      }
      if (entry.seq > run.lastSeq + 1) {
        const missing = entry.seq - run.lastSeq - 1;
        lines.push(`⚠ ${missing} log ${missing === 1 ? 'entry' : 'entries'} of run ${run.runId} did not arrive ` +
          `(seq ${run.lastSeq + 1}–${entry.seq - 1}); \`promptrail log ${run.runId}\` has them all`);
      }
      run.lastSeq = entry.seq;
      run.entries.push(entry);
      lines.push(formatLogEntry(entry, prefix));
    }
    if (run.entries.length > this.maxEntries) {
      const excess = run.entries.length - this.maxEntries;
      run.entries.splice(0, excess);
      run.droppedEntries += excess;
    }
    return lines;
  }

  /** Lines for the output channel for one `promptrail/runStatus` notification. */
  onStatus(params: RunStatusParams): string[] {
    const run = this.ensure(params.runId);
    const lines = this.header(run);
    if ('costsToday' in params) {
      this.costsToday = params.costsToday;
      this.costsTodayAt = this.now();
    }
    run.status = params.status;
    if (params.commit) run.commit = params.commit;
    if (params.costUsd !== undefined) run.costUsd = params.costUsd;
    if (params.tokens) run.tokens = params.tokens;
    if (params.gate) run.gate = params.gate;
    if (params.error) run.error = params.error;
    const final = isFinalNotification(params);
    if (final && !run.final) {
      run.final = true;
      run.endedAt = this.now();
      lines.push(runFooter({ ...params, costUsd: run.costUsd, tokens: run.tokens, gate: run.gate }));
    } else if (final && params.gate?.status) {
      // A gate step on an ended run (approve, simulate...): one line saying where the gate is now.
      lines.push(`── run ${run.runId} · gate: ${params.gate.status}`);
      this.forgetOldRuns();
    } else if (!final) {
      lines.push(statusLine(params, this.prefixFor(run)));
    }
    return lines;
  }

  /**
   * The server stopped: the runs it was running will send nothing more to this window. They are
   * marked ended here (the server cancels its runs on shutdown and records that; `promptrail show`
   * has the final word).
   */
  abandonRunning(reason: string): string[] {
    const lines: string[] = [];
    for (const run of this.running()) {
      run.final = true;
      run.endedAt = this.now();
      lines.push(`━━━ run ${run.runId}: ${reason}; its final status is in \`promptrail show ${run.runId}\` ━━━`);
    }
    return lines;
  }

  private ensure(runId: string): TrackedRun {
    let run = this.runs.get(runId);
    if (!run) {
      run = {
        runId, status: 'running', startedAt: this.now(), final: false, lastSeq: 0, entries: [],
        droppedEntries: 0, headerWritten: false,
      };
      this.runs.set(runId, run);
    }
    return run;
  }

  private header(run: TrackedRun): string[] {
    if (run.headerWritten) {
      return [];
    }
    run.headerWritten = true;
    return ['', runHeader(run)];
  }

  /** A short run id before each line, but only while several runs write at once. */
  private prefixFor(run: TrackedRun): string | undefined {
    const others = this.running().filter((other) => other.runId !== run.runId);
    return others.length > 0 ? shortId(run.runId) : undefined;
  }

  private forgetOldRuns(): void {
    const ended = [...this.runs.values()].filter((run) => run.final)
      .sort((a, b) => (a.endedAt ?? 0) - (b.endedAt ?? 0));
    for (const run of ended.slice(0, Math.max(0, ended.length - this.maxEndedRuns))) {
      this.runs.delete(run.runId);
    }
  }
}
