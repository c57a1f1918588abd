import { describe, expect, it } from 'vitest';

import { buildPrompt, CONTEXT_BEGIN, CONTEXT_END, MAX_SELECTION_CHARS } from '../../src/logic/context';

describe('the prompt Run Prompt sends', () => {
  it('is the user words alone without an editor', () => {
    expect(buildPrompt('  add retries  ', null)).toBe('add retries');
  });

  it('keeps the user words first and fences the selection in a marked block', () => {
    const prompt = buildPrompt('add retries to fetch()', {
      path: 'weather/fetch.py', languageId: 'python',
      selection: { startLine: 6, endLine: 9, text: 'def fetch(city):\n    ...' },
    });
    expect(prompt).toBe([
      'add retries to fetch()', '', CONTEXT_BEGIN,
      'Current file: weather/fetch.py (selected: lines 6-9)',
      '```python', 'def fetch(city):', '    ...', '```',
      CONTEXT_END,
    ].join('\n'));
  });

  it('names the file and cursor when nothing is selected', () => {
    expect(buildPrompt('explain this', { path: 'a.ts', cursorLine: 12, selection: { startLine: 1, endLine: 1, text: '  ' } }))
      .toBe(`explain this\n\n${CONTEXT_BEGIN}\nCurrent file: a.ts (cursor at line 12)\n${CONTEXT_END}`);
  });

  it('cannot be broken out of by backticks in the selection, and cuts huge selections', () => {
    const prompt = buildPrompt('fix', { path: 'README.md', languageId: 'markdown',
      selection: { startLine: 1, endLine: 3, text: '```js\nx\n```' } });
    expect(prompt).toContain('````markdown\n```js\nx\n```\n````');
    const big = buildPrompt('fix', { path: 'a', selection: { startLine: 1, endLine: 1, text: 'x'.repeat(MAX_SELECTION_CHARS + 5) } });
    expect(big).toContain(`(selection cut to its first ${MAX_SELECTION_CHARS} characters)`);
  });
});
