/**
 * A small stand-in for the `vscode` module (aliased in vitest.config.mts), with just what the
 * extension's glue touches. Calls are `vi.fn()`s so tests can inspect them; `__config` holds the
 * settings `workspace.getConfiguration()` answers, and `__reset()` clears both between tests.
 */

import { vi } from 'vitest';

export class Disposable {
  constructor(private readonly onDispose: () => void = () => undefined) {}
  static from(...items: Array<{ dispose(): unknown }>): Disposable {
    return new Disposable(() => items.forEach((item) => item.dispose()));
  }
  dispose(): void {
    this.onDispose();
  }
}

export class EventEmitter<T> {
  private listeners: Array<(value: T) => void> = [];
  readonly event = (listener: (value: T) => void) => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(value: T): void {
    for (const listener of [...this.listeners]) listener(value);
  }
  dispose(): void {
    this.listeners = [];
  }
}

export enum TreeItemCollapsibleState { None = 0, Collapsed = 1, Expanded = 2 }
export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }
export enum ViewColumn { Active = -1, Beside = -2, One = 1 }

export class ThemeIcon {
  constructor(readonly id: string, readonly color?: ThemeColor) {}
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class MarkdownString {
  constructor(public value = '') {}
}

export class TreeItem {
  id?: string;
  description?: string;
  tooltip?: string | MarkdownString;
  iconPath?: ThemeIcon;
  contextValue?: string;
  command?: unknown;
  constructor(public label: string, public collapsibleState: TreeItemCollapsibleState = TreeItemCollapsibleState.None) {}
}

export class Uri {
  private constructor(readonly scheme: string, readonly path: string, readonly query = '') {}
  static from(parts: { scheme: string; path?: string; query?: string }): Uri {
    return new Uri(parts.scheme, parts.path ?? '', parts.query ?? '');
  }
  static file(path: string): Uri {
    return new Uri('file', path);
  }
  static parse(value: string): Uri {
    const match = /^([a-z][\w+.-]*):(?:\/\/[^/]*)?([^?#]*)(?:\?([^#]*))?/i.exec(value);
    return match ? new Uri(match[1], decodeURIComponent(match[2]), match[3] ?? '') : new Uri('file', value);
  }
  with(change: { scheme?: string; path?: string; query?: string }): Uri {
    return new Uri(change.scheme ?? this.scheme, change.path ?? this.path, change.query ?? this.query);
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    const path = this.path.split('/').map(encodeURIComponent).join('/');
    return `${this.scheme}://${path}${this.query ? `?${this.query}` : ''}`;
  }
}

export const __config: Record<string, unknown> = {};

function fakeChannel(name: string) {
  const lines: string[] = [];
  return {
    name, lines,
    append: vi.fn((value: string) => lines.push(value)),
    appendLine: vi.fn((value: string) => lines.push(value)),
    replace: vi.fn(), clear: vi.fn(), show: vi.fn(), hide: vi.fn(), dispose: vi.fn(),
    trace: vi.fn(), debug: vi.fn(), info: vi.fn(), warn: vi.fn(), error: vi.fn(),
    logLevel: LogLevel.Info, onDidChangeLogLevel: new EventEmitter<LogLevel>().event,
  };
}

export const window = {
  showErrorMessage: vi.fn(async (..._args: unknown[]): Promise<string | undefined> => undefined),
  showWarningMessage: vi.fn(async (..._args: unknown[]): Promise<string | undefined> => undefined),
  showInformationMessage: vi.fn(async (..._args: unknown[]): Promise<string | undefined> => undefined),
  showQuickPick: vi.fn(async () => undefined),
  showInputBox: vi.fn(async () => undefined),
  createOutputChannel: vi.fn((name: string) => fakeChannel(name)),
  createStatusBarItem: vi.fn(() => ({
    text: '', tooltip: '', command: undefined, name: '', backgroundColor: undefined,
    show: vi.fn(), hide: vi.fn(), dispose: vi.fn(),
  })),
  createTreeView: vi.fn((id: string, _options: unknown) => ({ id, dispose: vi.fn(), reveal: vi.fn() })),
  showTextDocument: vi.fn(async () => undefined),
  showWorkspaceFolderPick: vi.fn(async () => undefined),
  activeTextEditor: undefined,
  visibleTextEditors: [],
  onDidChangeActiveTextEditor: new EventEmitter<unknown>().event,
  onDidChangeVisibleTextEditors: new EventEmitter<unknown>().event,
};

export const commands = {
  executeCommand: vi.fn(async (..._args: unknown[]): Promise<unknown> => undefined),
  registerCommand: vi.fn((_id: string, _handler: unknown) => new Disposable()),
};

const configurationChanged = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();

export const workspace = {
  workspaceFolders: undefined as unknown,
  getConfiguration: vi.fn((section?: string) => ({
    get: <T>(key: string, fallback?: T): T | undefined => {
      const full = section ? `${section}.${key}` : key;
      return (full in __config ? __config[full] : fallback) as T | undefined;
    },
  })),
  onDidChangeConfiguration: configurationChanged.event,
  registerTextDocumentContentProvider: vi.fn((_scheme: string, _provider: unknown) => new Disposable()),
  openTextDocument: vi.fn(async (uri: Uri) => ({ uri })),
  textDocuments: [],
  onDidOpenTextDocument: new EventEmitter<unknown>().event,
  onDidCloseTextDocument: new EventEmitter<unknown>().event,
  onDidChangeTextDocument: new EventEmitter<unknown>().event,
  onDidSaveTextDocument: new EventEmitter<unknown>().event,
  onWillSaveTextDocument: new EventEmitter<unknown>().event,
  onDidChangeWorkspaceFolders: new EventEmitter<unknown>().event,
  getWorkspaceFolder: vi.fn(() => undefined),
};

export const languages = {
  setTextDocumentLanguage: vi.fn(async (document: unknown) => document),
};

export const env = { appName: 'Visual Studio Code (mock)', language: 'en', machineId: 'mock' };

export function __reset(): void {
  for (const key of Object.keys(__config)) delete __config[key];
  vi.clearAllMocks();
}

export const version = '1.91.0';
