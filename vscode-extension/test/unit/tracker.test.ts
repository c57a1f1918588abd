import { describe, expect, it } from 'vitest';

import { RunTracker } from '../../src/logic/tracker';

const entry = (seq: number, text = `line ${seq}`, kind = 'text') =>
  ({ seq, ts: `2026-12-03T18:47:0${seq % 10}.000Z`, kind, text });

function clock(start = 1_000_000) {
  let now = start;
  return { now: () => now, advance: (ms: number) => { now += ms; } };
}

describe('RunTracker', () => {
  it('writes one header per run, then the entries in seq order', () => {
    const tracker = new RunTracker();
    const head = tracker.started('ab12cd34ef56', { prompt: 'add a greet function', agent: 'replay' });
    expect(head).toEqual(['', '━━━ promptrail run ab12cd34ef56 · add a greet function · replay ━━━']);
    expect(tracker.started('ab12cd34ef56')).toEqual([]);
    const lines = tracker.onLog({ runId: 'ab12cd34ef56', entries: [entry(2), entry(1)] });
    expect(lines).toEqual(['18:47:01.000 text        line 1', '18:47:02.000 text        line 2']);
    expect(tracker.get('ab12cd34ef56')?.entries.map((e) => e.seq)).toEqual([1, 2]);
  });

  it('writes a header for a run first heard of through a notification', () => {
    const tracker = new RunTracker();
    const lines = tracker.onLog({ runId: 'ffff00001111', entries: [entry(1)] });
    expect(lines[1]).toBe('━━━ promptrail run ffff00001111 ━━━');
    expect(lines).toHaveLength(3);
  });

  it('drops a resent entry and says so when entries are missing', () => {
    const tracker = new RunTracker();
    tracker.onLog({ runId: 'r1r1r1r1', entries: [entry(1), entry(2)] });
    expect(tracker.onLog({ runId: 'r1r1r1r1', entries: [entry(2)] })).toEqual([]);
    const lines = tracker.onLog({ runId: 'r1r1r1r1', entries: [entry(5)] });
    expect(lines[0]).toContain('2 log entries of run r1r1r1r1 did not arrive (seq 3–4)');
    expect(lines[1]).toBe('18:47:05.000 text        line 5');
  });

  it('writes status changes and a footer once the run is final', () => {
    const time = clock();
    const tracker = new RunTracker({ now: time.now });
    tracker.started('r2r2r2r2', { prompt: 'p' });
    expect(tracker.onStatus({ runId: 'r2r2r2r2', status: 'committing', final: false })).toEqual(['── committing']);
    expect(tracker.running().map((run) => run.runId)).toEqual(['r2r2r2r2']);
    const end = tracker.onStatus({
      runId: 'r2r2r2r2', status: 'succeeded', final: true, commit: 'abcdef0123456789', costUsd: null,
      gate: { status: 'pending' },
    });
    expect(end).toEqual(['━━━ run r2r2r2r2 succeeded · commit abcdef012345 · cost unknown · gate: pending ━━━']);
    expect(tracker.running()).toEqual([]);
    // A repeated final status is not a second footer.
    expect(tracker.onStatus({ runId: 'r2r2r2r2', status: 'succeeded', final: true })).toEqual([]);
  });

  it('prefixes lines with a short run id while two runs write at once', () => {
    const tracker = new RunTracker();
    tracker.started('aaaaaaaa1111');
    tracker.started('bbbbbbbb2222');
    expect(tracker.onLog({ runId: 'aaaaaaaa1111', entries: [entry(1)] }))
      .toEqual(['[aaaaaaaa] 18:47:01.000 text        line 1']);
    tracker.onStatus({ runId: 'bbbbbbbb2222', status: 'cancelled', final: true });
    expect(tracker.onLog({ runId: 'aaaaaaaa1111', entries: [entry(2)] }))
      .toEqual(['18:47:02.000 text        line 2']);
  });

  it('keeps costsToday when the server reports it, and caps stored entries', () => {
    const tracker = new RunTracker({ maxEntries: 3 });
    tracker.onStatus({ runId: 'c1c1c1c1', status: 'running', final: false, costsToday: 1.5 });
    expect(tracker.costsToday).toBe(1.5);
    tracker.onLog({ runId: 'c1c1c1c1', entries: [1, 2, 3, 4, 5].map((seq) => entry(seq)) });
    const run = tracker.get('c1c1c1c1')!;
    expect(run.entries.map((e) => e.seq)).toEqual([3, 4, 5]);
    expect(run.droppedEntries).toBe(2);
  });

  it('ends the runs it was following when the server stops', () => {
    const tracker = new RunTracker();
    tracker.started('dddd00001111', { prompt: 'x' });
    expect(tracker.abandonRunning('the language server stopped')).toEqual([
      '━━━ run dddd00001111: the language server stopped; its final status is in `promptrail show dddd00001111` ━━━',
    ]);
    expect(tracker.running()).toEqual([]);
  });

  it('treats a status that is an end state as final even without `final` (a gate update)', () => {
    const tracker = new RunTracker();
    tracker.onStatus({ runId: 'eeee00001111', status: 'succeeded', final: true, gate: { status: 'pending' } });
    expect(tracker.onStatus({ runId: 'eeee00001111', status: 'succeeded', gate: { status: 'approved by lead@example.com' } }))
      .toEqual(['── run eeee00001111 · gate: approved by lead@example.com']);
    expect(tracker.running()).toEqual([]);
  });
});
