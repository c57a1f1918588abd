import { describe, expect, it } from 'vitest';

import { describeGateResult } from '../../src/logic/gate';
import { renderServerCosts } from '../../src/logic/render';

describe('gate command answers', () => {
  it('says where the gate is and what blocks a merge', () => {
    expect(describeGateResult({ status: '1/2 approvals', state: 'pending', canMerge: false, target: 'main',
      blockers: ['1/2 approvals on 61b1ecd9f447', "check 'tests' failed"], sha: '61b1ecd9f447aaaa' }))
      .toBe("gate: 1/2 approvals · target main · merge blocked: 1/2 approvals on 61b1ecd9f447; check 'tests' failed");
    expect(describeGateResult({ status: 'approved by lead@example.com', canMerge: true, blockers: [], target: 'main' }))
      .toBe('gate: approved by lead@example.com · target main · ready to merge');
  });

  it('names the rollback run', () => {
    expect(describeGateResult({ id: 'abcdef123456', commit_sha: '0123456789abcdef0123' }))
      .toBe('reverted by run abcdef12 (commit 0123456789ab)');
  });
});

describe('the promptrail/costs report', () => {
  it('is a table with unknown costs counted apart and a total', () => {
    const text = renderServerCosts({
      by: 'model', since: null,
      groups: [
        { key: 'claude-opus-4-8[1m]', runs: 2, cost_usd: 0.0325, unknown_cost_runs: 1, cost_mismatch_runs: 0,
          tokens: { input: 4800, output: 340, cache_read: 0, cache_write: 0 } },
        { key: 'claude-sonnet-4-5', runs: 1, cost_usd: null, unknown_cost_runs: 1, cost_mismatch_runs: 1, tokens: {} },
      ],
      total: { runs: 3, cost_usd: 0.0325, unknown_cost_runs: 2 },
    }, 'model');
    expect(text).toBe([
      '# promptrail · AI spend by model', '',
      '| model | runs | spend | tokens | cost mismatch |', '|---|--:|--:|--:|--:|',
      '| claude-opus-4-8[1m] | 2 | $0.033 + 1 unknown | 5.1k tok |  |',
      '| claude-sonnet-4-5 | 1 | cost unknown | 0 tok | 1 |',
      '| **total** | **3** | **$0.033 + 2 unknown** | | |', '',
    ].join('\n'));
  });
});
