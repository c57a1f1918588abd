/**
 * What the status bar item says. While runs go on: a spinner, the elapsed time and the cost so
 * far (when the server has reported one); otherwise today's spend. Clicking it opens the history.
 */

import { formatCost, formatElapsed, oneLine, shortId } from './format';
import { formatSpend, type Spend } from './costs';
import type { TrackedRun } from './tracker';

export interface StatusBarView {
  text: string;
  tooltip: string;
  /** True while something runs: the glue may use a highlighted background. */
  busy: boolean;
}

export interface StatusBarInput {
  running: Pick<TrackedRun, 'runId' | 'prompt' | 'startedAt' | 'costUsd' | 'status'>[];
  now: number;
  /** Today's spend from the history; undefined until it is known. */
  today?: Spend;
  /** `costsToday` from the server's runStatus, which wins over the history's sum when present. */
  costsToday?: number | null;
  /** The server is not running (failed to start or stopped). */
  serverDown?: boolean;
}

export function statusBarView(input: StatusBarInput): StatusBarView {
  if (input.serverDown) {
    return {
      text: '$(error) promptrail',
      tooltip: 'The promptrail language server is not running. Click for details.',
      busy: false,
    };
  }
  const running = input.running;
  if (running.length > 0) {
    const oldest = Math.min(...running.map((run) => run.startedAt));
    const elapsed = formatElapsed(input.now - oldest);
    const costs = running.map((run) => run.costUsd).filter((c): c is number => typeof c === 'number');
    const cost = costs.length > 0 ? ` · ${formatCost(costs.reduce((a, b) => a + b, 0))}` : '';
    const what = running.length === 1 ? 'promptrail' : `${running.length} runs`;
    const lines = running.map((run) =>
      `${shortId(run.runId)} ${run.status} · ${formatElapsed(input.now - run.startedAt)} · ` +
      `${typeof run.costUsd === 'number' ? formatCost(run.costUsd) : 'cost so far not reported yet'}` +
      (run.prompt ? ` · ${oneLine(run.prompt, 60)}` : ''));
    return {
      text: `$(sync~spin) ${what} ${elapsed}${cost}`,
      tooltip: `${lines.join('\n')}\n\nClick for the run history.`,
      busy: true,
    };
  }
  const today = todayLabel(input);
  if (today === undefined) {
    return { text: '$(history) promptrail', tooltip: 'promptrail: click for the run history.', busy: false };
  }
  return {
    text: `$(history) ${today} today`,
    tooltip: `promptrail: AI spend today ${today}` +
      (input.today && input.costsToday == null ? ` (${input.today.runs} run${input.today.runs === 1 ? '' : 's'})` : '') +
      '. Click for the run history.',
    busy: false,
  };
}

function todayLabel(input: StatusBarInput): string | undefined {
  if (typeof input.costsToday === 'number') {
    // The server's figure is exact for the known costs; the history says how many are unknown.
    const known = input.costsToday === 0 ? '$0.00' : formatCost(input.costsToday);
    return input.today?.unknown ? `${known} + ${input.today.unknown} unknown` : known;
  }
  return input.today ? formatSpend(input.today) : undefined;
}
