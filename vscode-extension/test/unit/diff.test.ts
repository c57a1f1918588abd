import { describe, expect, it } from 'vitest';

import { decodeGitQuery, encodeGitQuery, fileDiff, gitObjectName, NoDiffError } from '../../src/logic/diff';
import type { RunJson } from '../../src/logic/types';

const run: RunJson = { id: 'ccabca1287c8', status: 'succeeded', base_sha: 'b'.repeat(40), commit_sha: 'c'.repeat(40) };

describe('Show Diff sides', () => {
  it('compares base and commit for a modified file', () => {
    expect(fileDiff(run, { path: 'weather/fetch.py', status: 'modified' })).toEqual({
      path: 'weather/fetch.py', title: 'fetch.py (bbbbbbbb ↔ run ccabca12)',
      left: { sha: 'b'.repeat(40), path: 'weather/fetch.py' }, right: { sha: 'c'.repeat(40), path: 'weather/fetch.py' },
    });
  });

  it('leaves the missing side empty for added and deleted files, and uses the old path of a rename', () => {
    expect(fileDiff(run, { path: 'n.py', status: 'added' }).left.sha).toBe('');
    expect(fileDiff(run, { path: 'gone.py', status: 'deleted' }).right.sha).toBe('');
    expect(fileDiff(run, { path: 'new.py', old_path: 'old.py', status: 'renamed' }).left)
      .toEqual({ sha: 'b'.repeat(40), path: 'old.py' });
  });

  it('refuses a run without a commit', () => {
    expect(() => fileDiff({ id: 'x', status: 'failed' }, { path: 'a' })).toThrow(NoDiffError);
  });

  it('round-trips the URI query and names git objects', () => {
    const query = encodeGitQuery({ sha: 'abc', path: 'dir/a b.py' }, '/repo with space');
    expect(decodeGitQuery(query)).toEqual({ sha: 'abc', path: 'dir/a b.py', repo: '/repo with space' });
    expect(gitObjectName('abc', '/dir\\x.py')).toBe('abc:dir/x.py');
  });
});
