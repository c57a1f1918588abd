import { describe, expect, it } from 'vitest';

import {
  formatAge, formatCost, formatElapsed, formatLogEntry, formatTokens, oneLine, pyFixed, runFooter, runHeader,
} from '../../src/logic/format';

describe('formatCost', () => {
  it('says "cost unknown" for a null cost, never $0', () => {
    expect(formatCost(null)).toBe('cost unknown');
    expect(formatCost(undefined)).toBe('cost unknown');
    expect(formatCost(Number.NaN)).toBe('cost unknown');
  });

  it('matches the server lens labels (queries.format_cost)', () => {
    expect(formatCost(0.0325)).toBe('$0.033'); // the sample transcript's reported cost
    expect(formatCost(0.12715025)).toBe('$0.127');
    expect(formatCost(0.004)).toBe('$0.0040');
    expect(formatCost(0)).toBe('$0.0000');
    expect(formatCost(9.9994)).toBe('$9.999');
    expect(formatCost(1234.5)).toBe('$1,234.50');
  });

  it('rounds an exact binary tie to even, as Python does', () => {
    expect(pyFixed(0.0625, 3)).toBe('0.062');
    expect(pyFixed(0.1875, 3)).toBe('0.188');
    expect(pyFixed(10.125, 2)).toBe('10.12');
    expect(formatCost(0.0625)).toBe('$0.062');
  });
});

describe('token, time and text labels', () => {
  it('counts all four kinds of tokens', () => {
    expect(formatTokens({ input: 4800, output: 340, cache_read: 0, cache_write: 0 })).toBe('5.1k tok');
    expect(formatTokens({ input: 16159, output: 880, cache_read: 8798, cache_write: 3193 })).toBe('29.0k tok');
    expect(formatTokens({ input: 12 })).toBe('12 tok');
    expect(formatTokens({ input: 1_250_000 })).toBe('1.3M tok');
    expect(formatTokens(null)).toBe('0 tok');
  });

  it('formats elapsed time', () => {
    expect(formatElapsed(0)).toBe('0:00');
    expect(formatElapsed(7_400)).toBe('0:07');
    expect(formatElapsed(65_000)).toBe('1:05');
    expect(formatElapsed(3_723_000)).toBe('1:02:03');
  });

  it('gives ages', () => {
    const now = new Date('2026-12-03T12:00:00Z');
    expect(formatAge('2026-12-03T11:59:50Z', now)).toBe('just now');
    expect(formatAge('2026-12-03T11:45:00Z', now)).toBe('15 min ago');
    expect(formatAge('2026-12-03T09:00:00Z', now)).toBe('3 h ago');
    expect(formatAge('2026-12-02T10:00:00Z', now)).toBe('yesterday');
    expect(formatAge(null, now)).toBe('');
  });

  it('takes the first non-empty line, cut with an ellipsis', () => {
    expect(oneLine('\n  add retries  \nmore')).toBe('add retries');
    expect(oneLine('x'.repeat(100), 10)).toBe(`${'x'.repeat(9)}…`);
  });
});

describe('log lines', () => {
  it('writes time, kind and text like `promptrail log`', () => {
    expect(formatLogEntry({ seq: 4, ts: '2026-12-03T18:47:03.642Z', kind: 'tool_use', text: 'Read weather/fetch.py' }))
      .toBe('18:47:03.642 tool_use    Read weather/fetch.py');
  });

  it('indents the further lines of a multi-line entry under the first', () => {
    const line = formatLogEntry({ seq: 6, ts: '2026-12-03T18:47:03.643Z', kind: 'tool_result', text: 'one\ntwo\n' });
    expect(line.split('\n')).toEqual([
      '18:47:03.643 tool_result one',
      '                         two',
    ]);
  });

  it('prefixes a short run id when asked (several runs at once)', () => {
    expect(formatLogEntry({ seq: 1, ts: '2026-12-03T18:47:03.642Z', kind: 'text', text: 'hi' }, 'ccabca12'))
      .toBe('[ccabca12] 18:47:03.642 text        hi');
  });

  it('opens and closes a run with header and footer lines', () => {
    expect(runHeader({ runId: 'ccabca1287c8', prompt: 'add retries\nplease', agent: 'replay', mode: 'isolated' }))
      .toBe('━━━ promptrail run ccabca1287c8 · add retries · replay · isolated mode ━━━');
    expect(runFooter({
      runId: 'ccabca1287c8', status: 'succeeded', final: true, commit: '7c88eaf024abc11c9f66a1e51d4aeb1bc84c55e4',
      costUsd: 0.0325, tokens: { input: 4800, output: 340 }, gate: { status: 'pending' },
    })).toBe('━━━ run ccabca1287c8 succeeded · commit 7c88eaf024ab · $0.033 · 5.1k tok · gate: pending ━━━');
    expect(runFooter({ runId: 'ab12', status: 'incomplete', final: true, error: 'no result\nfrom the agent' }))
      .toBe('━━━ run ab12 incomplete · cost unknown · no result ━━━');
  });
});
