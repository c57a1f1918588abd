import { describe, expect, it } from 'vitest';

import { resolveServerCommand, SettingError, splitCommandLine } from '../../src/logic/serverCommand';

describe('promptrail.serverCommand', () => {
  it('defaults to promptrail on PATH', () => {
    for (const value of [undefined, null, '', '   ', []]) {
      expect(resolveServerCommand(value)).toMatchObject({ command: 'promptrail', args: ['serve'], program: ['promptrail'] });
    }
  });

  it('takes a command line, quotes included', () => {
    expect(resolveServerCommand('"/my venv/bin/python" -m promptrail')).toEqual({
      command: '/my venv/bin/python', args: ['-m', 'promptrail', 'serve'],
      program: ['/my venv/bin/python', '-m', 'promptrail'],
      display: "'/my venv/bin/python' -m promptrail serve",
    });
  });

  it('takes an argv array and does not add serve twice', () => {
    expect(resolveServerCommand(['/venv/bin/python', '-m', 'promptrail', 'serve', '--tcp', '127.0.0.1:9000']))
      .toMatchObject({ command: '/venv/bin/python', args: ['-m', 'promptrail', 'serve', '--tcp', '127.0.0.1:9000'],
        program: ['/venv/bin/python', '-m', 'promptrail'] });
  });

  it('refuses what it cannot use', () => {
    expect(() => resolveServerCommand(42)).toThrow(SettingError);
    expect(() => resolveServerCommand(['', 'serve'])).toThrow('the first item (the program) is empty');
    expect(() => resolveServerCommand('"unclosed')).toThrow('unbalanced " quote');
  });

  it('splits like a shell', () => {
    expect(splitCommandLine(`a 'b c' "d \\"e\\"" f\\ g ''`)).toEqual(['a', 'b c', 'd "e"', 'f g', '']);
  });
});
