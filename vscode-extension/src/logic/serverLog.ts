/**
 * The server's own `window/logMessage` lines, as they go into the one `promptrail` output channel.
 * promptrail sends a `run X started` / `run X: status` line per run for generic clients; this
 * extension writes its own header and footer from `promptrail/log` and `promptrail/runStatus`, so
 * those lines are dropped here instead of appearing twice.
 */

const RUN_LINE = /^promptrail: run [0-9A-Za-z_-]{6,}(?: started |: )/;

export type ServerLogLevel = 'error' | 'warn' | 'info' | 'debug' | 'trace';

export function serverLogLine(level: ServerLogLevel, message: string): string | null {
  if (level !== 'error' && RUN_LINE.test(message)) {
    return null;
  }
  const tag = level === 'error' ? 'server error' : level === 'warn' ? 'server warning' : 'server';
  return `[${tag}] ${message}`;
}
