/**
 * The command line that starts `promptrail serve`, from the setting `promptrail.serverCommand`.
 *
 * The setting names the promptrail program: a string (`promptrail`, `/venv/bin/promptrail`,
 * `"/my venv/bin/python" -m promptrail`) or an argv array (`["/venv/bin/python", "-m", "promptrail"]`).
 * `serve` is appended unless the user wrote it. The same program without `serve` runs other CLI
 * commands (`promptrail log RUN --json`) when the server has no command for something.
 */

export const DEFAULT_PROGRAM = 'promptrail';

export interface ResolvedCommand {
  command: string;
  args: string[];
  /** The program and its own arguments, without `serve` and what follows. */
  program: string[];
  /** For messages: the command line as the user would type it. */
  display: string;
}

export class SettingError extends Error {}

/** Splits a command line like a POSIX shell would for words and quotes (no variables, no globs). */
export function splitCommandLine(line: string): string[] {
  const words: string[] = [];
  let current = '';
  let inWord = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quote) {
      if (c === quote) {
        quote = null;
      } else if (c === '\\' && quote === '"' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) {
        current += line[++i];
      } else {
        current += c;
      }
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < line.length) {
      current += line[++i];
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) {
        words.push(current);
        current = '';
        inWord = false;
      }
    } else {
      current += c;
      inWord = true;
    }
  }
  if (quote) {
    throw new SettingError(`unbalanced ${quote} quote`);
  }
  if (inWord) {
    words.push(current);
  }
  return words;
}

export function quoteArg(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

/** `setting` is the raw value of `promptrail.serverCommand` (string, array, or unset). */
export function resolveServerCommand(setting: unknown): ResolvedCommand {
  let argv: string[];
  if (setting === undefined || setting === null || setting === '' ||
      (Array.isArray(setting) && setting.length === 0)) {
    argv = [DEFAULT_PROGRAM];
  } else if (typeof setting === 'string') {
    argv = splitCommandLine(setting.trim());
    if (argv.length === 0) {
      argv = [DEFAULT_PROGRAM];
    }
  } else if (Array.isArray(setting) && setting.every((item) => typeof item === 'string')) {
    argv = setting as string[];
    if (argv[0].trim() === '') {
      throw new SettingError('the first item (the program) is empty');
    }
  } else {
    throw new SettingError('it must be a string or an array of strings');
  }
  const serveAt = argv.indexOf('serve');
  const program = serveAt >= 0 ? argv.slice(0, serveAt) : argv;
  const full = serveAt >= 0 ? argv : [...argv, 'serve'];
  return { command: full[0], args: full.slice(1), program, display: full.map(quoteArg).join(' ') };
}
