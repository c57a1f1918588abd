/**
 * The shipped bundle (out/extension.js, built by `npm run build`) against the mocked `vscode`:
 * it loads, activates, registers exactly the UI commands and views package.json contributes —
 * never the server's own command ids — creates the one `promptrail` output channel, and reports a
 * server that cannot start with one error that offers the setting.
 */

import { existsSync, readFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';

import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';

import { OPEN_SETTINGS, SHOW_OUTPUT } from '../../src/logic/errors';
import * as mock from '../mocks/vscode';

const root = new URL('../../', import.meta.url);
const bundlePath = new URL('out/extension.js', root);
const manifest = JSON.parse(readFileSync(new URL('package.json', root), 'utf8'));

type Loader = (request: string, ...rest: unknown[]) => unknown;
const moduleWithLoad = Module as unknown as { _load: Loader };
const originalLoad = moduleWithLoad._load;

// Anything the mock does not define is a harmless class (vscode-languageclient subclasses a few
// vscode types when it loads).
class Anything {}
const vscodeForBundle = new Proxy({ ...mock }, {
  get: (target: Record<string | symbol, unknown>, name) => (name in target ? target[name] : Anything),
});

let extension: { activate(context: unknown): Promise<void>; deactivate(): Promise<void> };
const context = { subscriptions: [] as Array<{ dispose(): unknown }>, extensionPath: '/x', extensionUri: mock.Uri.file('/x') };

beforeAll(async () => {
  if (!existsSync(bundlePath)) {
    throw new Error('out/extension.js is missing: run `npm run build` (npm test does)');
  }
  mock.__reset();
  mock.__config['promptrail.serverCommand'] = '/nonexistent/promptrail';
  vi.mocked(mock.window.showErrorMessage).mockResolvedValue(undefined);
  moduleWithLoad._load = function load(this: unknown, request: string, ...rest: unknown[]) {
    return request === 'vscode' ? vscodeForBundle : originalLoad.call(this, request, ...rest);
  };
  extension = createRequire(import.meta.url)(bundlePath.pathname);
  await extension.activate(context);
  await vi.waitFor(() => expect(mock.window.showErrorMessage).toHaveBeenCalled(), { timeout: 5000 });
});

afterAll(async () => {
  await extension?.deactivate();
  moduleWithLoad._load = originalLoad;
});

describe('the bundled extension', () => {
  it('registers exactly the contributed UI commands, none of the server ids', () => {
    const registered = vi.mocked(mock.commands.registerCommand).mock.calls.map(([id]) => id).sort();
    const contributed = (manifest.contributes.commands as Array<{ command: string }>).map((c) => c.command).sort();
    expect(registered).toEqual(contributed);
    expect(registered.every((id) => id.startsWith('promptrail.ui.'))).toBe(true);
  });

  it('every command in a menu is contributed', () => {
    const contributed = new Set((manifest.contributes.commands as Array<{ command: string }>).map((c) => c.command));
    const inMenus = Object.values(manifest.contributes.menus as Record<string, Array<{ command: string }>>)
      .flat().map((entry) => entry.command);
    expect(inMenus.filter((id) => !contributed.has(id))).toEqual([]);
  });

  it('creates the views it contributes and one output channel', () => {
    const views = vi.mocked(mock.window.createTreeView).mock.calls.map(([id]) => id);
    expect(views).toEqual((manifest.contributes.views.promptrail as Array<{ id: string }>).map((v) => v.id));
    expect(vi.mocked(mock.window.createOutputChannel).mock.calls.map(([name]) => name)).toEqual(['promptrail']);
  });

  it('reports the server that cannot start once, offering the setting', () => {
    expect(mock.window.showErrorMessage).toHaveBeenCalledTimes(1);
    expect(vi.mocked(mock.window.showErrorMessage).mock.calls[0]).toEqual([
      'promptrail: cannot start the language server: "/nonexistent/promptrail serve" was not found. ' +
      'Install promptrail (pip install promptrail) or set "promptrail.serverCommand" to its path.',
      OPEN_SETTINGS, SHOW_OUTPUT,
    ]);
    expect(mock.commands.executeCommand).toHaveBeenCalledWith('setContext', 'promptrail.serverState', 'failed');
  });

  it('declares every setting it reads', () => {
    const declared = Object.keys(manifest.contributes.configuration.properties);
    const source = readFileSync(new URL('out/extension.js', root), 'utf8');
    for (const key of ['serverCommand', 'agent', 'model', 'mode', 'replayTranscript', 'sendEditorContext',
      'history.limit', 'feed.limit', 'trace.server']) {
      expect(declared).toContain(`promptrail.${key}`);
      expect(source).toContain(key);
    }
  });
});
