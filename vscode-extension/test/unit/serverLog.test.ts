import { describe, expect, it } from 'vitest';

import { serverLogLine } from '../../src/logic/serverLog';

describe("the server's own log lines", () => {
  it('drops the per-run lines the extension writes itself', () => {
    expect(serverLogLine('info', 'promptrail: run ccabca1287c8 started · replay · isolated mode · add')).toBeNull();
    expect(serverLogLine('info', 'promptrail: run ccabca1287c8: committing')).toBeNull();
    expect(serverLogLine('warn', 'promptrail: run ccabca1287c8: failed · boom')).toBeNull();
  });

  it('keeps everything else, tagged', () => {
    expect(serverLogLine('warn', 'folder /x is not a git repository')).toBe('[server warning] folder /x is not a git repository');
    expect(serverLogLine('error', 'promptrail: run ab12cd34: crashed')).toBe('[server error] promptrail: run ab12cd34: crashed');
  });
});
