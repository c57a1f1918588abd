import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { groupSpend } from '../../src/logic/costs';
import { fence, renderCosts, renderRun, renderServerCosts } from '../../src/logic/render';
import type { RunJson } from '../../src/logic/types';

const run = JSON.parse(readFileSync(new URL('../fixtures/demo-run.json', import.meta.url), 'utf8')) as RunJson;

describe('Show Run document', () => {
  it('has prompt, status, files, tokens, cost, gate and the log', () => {
    const text = renderRun(run, { source: 'live', entries: [
      { seq: 1, ts: '2026-12-03T18:47:03.638Z', kind: 'system', text: 'replayed session' },
      { seq: 2, ts: '2026-12-03T18:47:03.642Z', kind: 'tool_use', text: 'Read weather/fetch.py' },
    ] });
    expect(text).toContain('# ✦ add retries with exponential backoff to fetch() (replay)');
    expect(text).toContain('| Status | succeeded |');
    expect(text).toContain('| Prompted by | Promptrail Demo <demo@promptrail.invalid> |');
    expect(text).toContain('| Commit | `61b1ecd9f447` on `promptrail/ff03a33ef976` |');
    expect(text).toContain('| Tokens | 29.0k tok — 16,159 input · 880 output · 8,798 cache read · 3,193 cache write |');
    expect(text).toContain('| Cost | $0.127 (reported) |');
    expect(text).toContain('| Gate | pending |');
    expect(text).toContain('## Prompt\n\n```text\nadd retries with exponential backoff to fetch()\n```');
    expect(text).toContain('| modified | weather/fetch.py | 3 | 0 |');
    expect(text).toContain('| added | weather/retry.py | 30 | 0 |');
    expect(text).toContain('## Log (2 entries)');
    expect(text).toContain('    2 18:47:03.642 tool_use    Read weather/fetch.py');
    expect(text).toContain('## CLAUDE.md violations (0)\n\n_None._');
    expect(text).toContain('## Gate\n\n**pending** · target `main` · on `61b1ecd9f447` · 1 approval(s) required');
    expect(text).toContain('Merge is blocked:\n\n- 0/1 approvals on 61b1ecd9f447');
  });

  it('has no violations section when the server sends no violations', () => {
    expect(renderRun({ ...run, violations: undefined })).not.toContain('violations');
  });

  it('shows violations when the run has them, and an unknown cost as unknown', () => {
    const text = renderRun({ ...run, cost_usd: null, violations: [
      { rule_id: 'no-print', path: 'a.py', line: 3, severity: 'error', message: 'Use logging, not print.' },
    ] }, null, 'Run `promptrail log x` in a terminal for the full log.');
    expect(text).toContain('| Cost | cost unknown |');
    expect(text).toContain('## CLAUDE.md violations (1)\n\n- **error** `a.py:3` [no-print] Use logging, not print.');
    expect(text).toContain('## Log\n\n_Run `promptrail log x` in a terminal for the full log._');
  });

  it('fences a prompt containing backticks safely', () => {
    expect(fence('a ``` b')).toBe('````text\na ``` b\n````');
  });
});

describe('Show Costs document', () => {
  it('sums the history by model, with unknown costs counted apart', () => {
    const groups = groupSpend([
      { id: 'a', model: 'opus', cost_usd: 0.5 }, { id: 'b', model: 'opus', cost_usd: null },
      { id: 'c', model: 'sonnet', cost_usd: 0.1 },
    ], 'model');
    expect(renderCosts(groups, 'model', 'note')).toBe([
      '# promptrail · AI spend by model', '', '_note_', '',
      '| model | runs | spend |', '|---|--:|--:|',
      '| opus | 2 | $0.500 + 1 unknown |', '| sonnet | 1 | $0.100 |', '',
    ].join('\n'));
  });

  it('renders what promptrail/costs answers as a table', () => {
    expect(renderServerCosts([{ day: '2026-12-03', runs: 2, cost_usd: 0.0325 }, { day: '2026-12-02', runs: 1, cost_usd: null }], 'day'))
      .toContain('| 2026-12-03 | 2 | $0.033 |\n| 2026-12-02 | 1 | cost unknown |');
  });
});
