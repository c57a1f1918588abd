/**
 * The status bar item: spinner, elapsed time and cost so far while runs go on (ticking every
 * second), today's spend otherwise (from `costsToday` in runStatus when the server sends it,
 * else summed from the history). Click → the run history.
 */

import * as vscode from 'vscode';

import type { Connection } from '../connection';
import { localDay, type Spend, spendToday } from '../logic/costs';
import { statusBarView } from '../logic/statusBar';
import type { RunTracker } from '../logic/tracker';
import type { RunJson } from '../logic/types';
import { anyRepository } from './repositories';

const TODAY_REFRESH_MS = 10 * 60 * 1000;

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private ticker: ReturnType<typeof setInterval> | undefined;
  private readonly todayTimer: ReturnType<typeof setInterval>;
  private today: Spend | undefined;

  constructor(private readonly connection: Connection, private readonly tracker: RunTracker) {
    this.item = vscode.window.createStatusBarItem('promptrail.status', vscode.StatusBarAlignment.Left, 50);
    this.item.name = 'promptrail';
    this.item.command = 'promptrail.ui.showHistory';
    this.todayTimer = setInterval(() => void this.refreshToday(), TODAY_REFRESH_MS);
    this.update();
    this.item.show();
  }

  update(): void {
    const running = this.tracker.running();
    const view = statusBarView({
      running,
      now: Date.now(),
      today: this.today,
      costsToday: this.tracker.costsTodayAt !== undefined &&
        localDay(new Date(this.tracker.costsTodayAt)) === localDay(new Date()) ? this.tracker.costsToday : undefined,
      serverDown: this.connection.state === 'failed',
    });
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = this.connection.state === 'failed'
      ? new vscode.ThemeColor('statusBarItem.errorBackground') : undefined;
    if (running.length > 0 && !this.ticker) {
      this.ticker = setInterval(() => this.update(), 1000);
    } else if (running.length === 0 && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
  }

  async refreshToday(): Promise<void> {
    if (this.connection.state !== 'running' || !(await anyRepository())) {
      this.update();
      return;
    }
    try {
      const history = await this.connection.executeCommand<RunJson[]>('promptrail.history', { limit: 500 });
      this.today = spendToday(history, new Date());
    } catch {
      // No folder with a repository yet: the item says "promptrail" until there is one.
      this.today = undefined;
    }
    this.update();
  }

  dispose(): void {
    if (this.ticker) clearInterval(this.ticker);
    clearInterval(this.todayTimer);
    this.item.dispose();
  }
}
