import { describe, expect, it } from 'vitest';

import { spendToday } from '../../src/logic/costs';
import { statusBarView } from '../../src/logic/statusBar';

const now = new Date(2026, 11, 3, 15, 0, 0).getTime();
const at = (hour: number, day = 3) => new Date(2026, 11, day, hour, 0, 0).toISOString();

describe('status bar while a run is going', () => {
  it('shows a spinner and the elapsed time; the cost only once it is known', () => {
    const view = statusBarView({
      running: [{ runId: 'ab12cd34ef56', prompt: 'add retries', startedAt: now - 7_400, costUsd: undefined, status: 'running' }],
      now,
    });
    expect(view.text).toBe('$(sync~spin) promptrail 0:07');
    expect(view.busy).toBe(true);
    expect(view.tooltip).toContain('ab12cd34 running · 0:07 · cost so far not reported yet · add retries');
  });

  it('adds the cost so far', () => {
    const view = statusBarView({
      running: [{ runId: 'ab12cd34ef56', startedAt: now - 65_000, costUsd: 0.0325, status: 'committing' }], now,
    });
    expect(view.text).toBe('$(sync~spin) promptrail 1:05 · $0.033');
  });

  it('counts several runs, timed from the oldest', () => {
    const view = statusBarView({
      running: [
        { runId: 'a1', startedAt: now - 12_000, costUsd: 0.5, status: 'running' },
        { runId: 'b2', startedAt: now - 3_000, costUsd: null, status: 'running' },
      ],
      now,
    });
    expect(view.text).toBe('$(sync~spin) 2 runs 0:12 · $0.500');
  });
});

describe('status bar when idle', () => {
  const history = [
    { id: 'a', started_at: at(9), cost_usd: 0.12715025 },
    { id: 'b', started_at: at(11), cost_usd: 0.0325 },
    { id: 'c', started_at: at(10, 2), cost_usd: 5 }, // yesterday: not counted
  ];

  it("shows today's spend from the history", () => {
    const today = spendToday(history, new Date(now));
    expect(today).toEqual({ total: 0.12715025 + 0.0325, runs: 2, unknown: 0 });
    const view = statusBarView({ running: [], now, today });
    expect(view.text).toBe('$(history) $0.160 today');
    expect(view.busy).toBe(false);
    expect(view.tooltip).toContain('(2 runs)');
  });

  it('never turns an unknown cost into $0', () => {
    const today = spendToday([{ id: 'x', started_at: at(9), cost_usd: null }], new Date(now));
    expect(statusBarView({ running: [], now, today }).text).toBe('$(history) cost unknown today');
    const mixed = spendToday([...history, { id: 'y', started_at: at(12), cost_usd: null }], new Date(now));
    expect(statusBarView({ running: [], now, today: mixed }).text).toBe('$(history) $0.160 + 1 unknown today');
  });

  it('says $0.00 on a day without runs, and prefers costsToday from the server', () => {
    expect(statusBarView({ running: [], now, today: { total: 0, runs: 0, unknown: 0 } }).text)
      .toBe('$(history) $0.00 today');
    expect(statusBarView({ running: [], now, today: spendToday(history, new Date(now)), costsToday: 2.5 }).text)
      .toBe('$(history) $2.500 today');
  });

  it('shows just the name before anything is known, and an error when the server is down', () => {
    expect(statusBarView({ running: [], now }).text).toBe('$(history) promptrail');
    expect(statusBarView({ running: [], now, serverDown: true }).text).toBe('$(error) promptrail');
  });
});

describe("today's spend from the server", () => {
  it('adds the count of unknown costs the history knows of', () => {
    expect(statusBarView({ running: [], now, costsToday: 0.0325, today: { total: 0.0325, runs: 2, unknown: 1 } }).text)
      .toBe('$(history) $0.033 + 1 unknown today');
  });
});
