/**
 * The prompt that Run Prompt sends: what the user typed, then — clearly delimited, so the agent
 * and anyone reading the audit trail can tell them apart — the file the user was in and the code
 * they had selected. The first line stays the user's own words: it becomes the run's summary,
 * the commit subject and the lens title.
 */

import { fence } from './render';

export interface EditorContext {
  /** Path relative to the workspace folder (or absolute when outside one). */
  path: string;
  languageId?: string;
  /** 1-based line numbers. */
  selection?: { startLine: number; endLine: number; text: string };
  cursorLine?: number;
}

export const MAX_SELECTION_CHARS = 20_000;

export const CONTEXT_BEGIN = '--- editor context (added by the promptrail VS Code extension) ---';
export const CONTEXT_END = '--- end of editor context ---';

export function buildPrompt(userPrompt: string, context?: EditorContext | null): string {
  const prompt = userPrompt.trim();
  if (!context) {
    return prompt;
  }
  const lines = [prompt, '', CONTEXT_BEGIN];
  const selection = context.selection && context.selection.text.trim() ? context.selection : undefined;
  if (selection) {
    const range = selection.startLine === selection.endLine ? `line ${selection.startLine}`
      : `lines ${selection.startLine}-${selection.endLine}`;
    lines.push(`Current file: ${context.path} (selected: ${range})`);
    let text = selection.text;
    let cut = '';
    if (text.length > MAX_SELECTION_CHARS) {
      text = text.slice(0, MAX_SELECTION_CHARS);
      cut = `(selection cut to its first ${MAX_SELECTION_CHARS} characters)`;
    }
    lines.push(fence(text, fenceLanguage(context.languageId)));
    if (cut) lines.push(cut);
  } else {
    lines.push(`Current file: ${context.path}${context.cursorLine ? ` (cursor at line ${context.cursorLine})` : ''}`);
  }
  lines.push(CONTEXT_END);
  return lines.join('\n');
}

function fenceLanguage(languageId: string | undefined): string {
  return languageId && /^[\w+#-]+$/.test(languageId) && languageId !== 'plaintext' ? languageId : '';
}
