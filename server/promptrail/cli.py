"""The terminal face: ``promptrail <command>``. Thin by design: parse arguments, call the core
(``runs``, ``queries``, ``demo``), print. A ``PromptrailError`` becomes one line on stderr and
exit code 2; nothing a user can get wrong shows a traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import click

from promptrail.errors import PromptrailError
from promptrail.events import LogEntry, RunEvent, RunOpened, RunStatus


def _workspace(repo: str | None):
    from promptrail.workspace import Workspace

    return Workspace(repo or ".")


def _repo_option(func: Callable) -> Callable:
    return click.option("--repo", "repo", metavar="PATH", default=None,
                        help="The repository (default: the current folder).")(func)


def _json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")(func)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


class Main(click.Group):
    """Turns user mistakes into one clear line and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PromptrailError as exc:
            click.echo(f"promptrail: error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except Exception as exc:
            # SQLite failing under a query (a table dropped, a page damaged) that the store's own
            # checks did not foresee: one line, as for any damage, not a traceback.
            sqlite3 = sys.modules.get("sqlite3")
            if sqlite3 is None or not isinstance(exc, sqlite3.DatabaseError):
                raise
            click.echo(f"promptrail: error: the audit store could not be read ({exc}); `promptrail verify` says "
                       "what is damaged", err=True)
            ctx.exit(2)


@click.group(cls=Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="promptrail")
def cli() -> None:
    """promptrail: an audit trail for AI coding agents (prompt → commit → line → cost → review)."""


# -- running ---------------------------------------------------------------------------------------
class TerminalSink:
    """Prints a run's log as it happens; agent output goes through ``views.printable``, so its
    escape sequences show as text instead of driving the terminal."""

    MARK = {"text": "│ ", "tool_use": "⚙ ", "tool_result": "  ↳ ", "system": "· ", "status": "· ",
            "error": "✗ ", "warning": "⚠ ", "git": "⎇ ", "raw": "  ", "stderr": "! ", "check": "⚑ ",
            "gate": "⚖ "}

    def __init__(self, quiet: bool = False, max_result_lines: int = 4) -> None:
        self.quiet, self.max_result_lines = quiet, max_result_lines
        if not quiet:  # views imports rich: only when something is printed
            from promptrail.views import printable

            self.printable = printable

    def emit(self, event: RunEvent) -> None:
        if self.quiet:
            return
        if isinstance(event, RunOpened):
            label = f" ({event.agent_label})" if event.agent_label else ""
            click.echo(self.printable(f"▶ run {event.run_id} · {event.agent}{label} · {event.mode} mode"))
        elif isinstance(event, LogEntry):
            lines = self.printable(event.text).splitlines() or [""]
            if event.kind == "tool_result" and len(lines) > self.max_result_lines:
                lines = lines[: self.max_result_lines] + [f"… ({len(lines) - self.max_result_lines} more lines "
                                                          f"in `promptrail log {event.run_id}`)"]
            mark = self.MARK.get(event.kind, "  ")
            indent = " " * len(mark)
            click.echo("\n".join((mark if n == 0 else indent) + line for n, line in enumerate(lines)),
                       err=event.kind in ("error", "warning", "stderr"))
        elif isinstance(event, RunStatus) and event.final:
            pass


async def _run_to_end(workspace, request, sink) -> dict[str, Any]:
    from promptrail.runs import start_run

    run = await start_run(workspace, request, sink)
    loop = asyncio.get_running_loop()

    def on_interrupt() -> None:
        click.echo("\n· cancelling (Ctrl-C)…", err=True)
        asyncio.ensure_future(run.cancel())

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        loop.add_signal_handler(signal.SIGTERM, on_interrupt)
    except (NotImplementedError, RuntimeError):
        pass
    return await run.wait()


def _print_run_summary(data: dict[str, Any]) -> None:
    from promptrail.views import run_summary

    run_summary(data)


class _PromptCommand(click.Command):
    """``promptrail run``: a prompt that starts with ``-`` reads as options; the error says how to pass it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            if exc.possibilities:  # a mistyped option ("Did you mean --model?"): the hint would be noise
                raise
            raise click.UsageError(f"{exc.format_message()} A prompt that starts with '-' goes after '--': "
                                   "promptrail run [OPTIONS] -- PROMPT", ctx) from None


@cli.command(cls=_PromptCommand)
@click.argument("prompt")
@click.option("--agent", type=click.Choice(["claude-cli", "anthropic", "replay"]), default=None,
              help="Which agent runs the prompt (default from config: claude-cli).")
@click.option("--transcript", metavar="FILE", default=None, help="stream-json transcript for --agent replay.")
@click.option("--model", metavar="M", default=None, help="Model to ask the agent for.")
@click.option("--mode", type=click.Choice(["isolated", "direct"]), default=None,
              help="isolated (default): own worktree and branch; direct: edit your working tree.")
@click.option("--claude-path", metavar="PATH", default=None, help="The claude executable.")
@_repo_option
@_json_option
def run(prompt: str, agent: str | None, transcript: str | None, model: str | None, mode: str | None,
        claude_path: str | None, repo: str | None, as_json: bool) -> None:
    """Run PROMPT with an agent, commit its change, and record it all."""
    from promptrail.runs import RunRequest

    workspace = _workspace(repo)
    request = RunRequest(prompt=prompt, agent=agent, model=model, mode=mode, transcript=transcript,
                         claude_path=claude_path)
    data = asyncio.run(_run_to_end(workspace, request, TerminalSink(quiet=as_json)))
    if as_json:
        _print_json(data)
    else:
        _print_run_summary(data)
    if data["status"] not in ("succeeded", "no_changes"):
        sys.exit(1)


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@_json_option
def demo(directory: str | None, as_json: bool) -> None:
    """Offline demo: a sample repository, a replayed agent session, a real commit, the audit trail."""
    from promptrail.demo import run_demo

    run_demo(Path(directory) if directory else None, as_json=as_json)


# -- asking -----------------------------------------------------------------------------------------
@cli.command()
@click.option("--search", metavar="TEXT", default=None, help="Only runs whose prompt matches TEXT.")
@click.option("--limit", default=50, show_default=True, help="How many runs at most.")
@_repo_option
@_json_option
def history(search: str | None, limit: int, repo: str | None, as_json: bool) -> None:
    """List runs, newest first."""
    from promptrail import queries, views

    runs = queries.history(_workspace(repo), search=search, limit=limit)
    if as_json:
        _print_json(runs)
    else:
        views.history_table(runs, search)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@_repo_option
@_json_option
def show(run_ref: str, repo: str | None, as_json: bool) -> None:
    """Everything about one run (RUN may be a unique prefix of its id)."""
    from promptrail import queries

    data = queries.run_json(_workspace(repo), run_ref)
    if as_json:
        _print_json(data)
    else:
        _print_run_summary(data)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@_repo_option
@_json_option
def log(run_ref: str, repo: str | None, as_json: bool) -> None:
    """A run's full log, every line the agent printed."""
    from promptrail import queries, views

    entries = queries.run_log(_workspace(repo), run_ref)
    if as_json:
        _print_json(entries)
    else:
        views.log_lines(entries)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@_repo_option
def diff(run_ref: str, repo: str | None) -> None:
    """The commit a run made, as a patch."""
    from promptrail import queries

    click.echo(queries.run_diff(_workspace(repo), run_ref), nl=False)


@cli.command()
@click.option("--limit", default=100, show_default=True)
@_repo_option
@_json_option
def feed(limit: int, repo: str | None, as_json: bool) -> None:
    """The activity feed (append-only, hash-chained), newest first."""
    from promptrail import queries, views

    events = queries.feed(_workspace(repo), limit=limit)
    if as_json:
        _print_json(events)
    else:
        views.feed_table(events)


@cli.command()
@click.argument("file", type=click.Path())
@click.option("--rev", metavar="REV", default=None,
              help="Blame the file as of REV (e.g. a run's branch promptrail/<id>) instead of the working tree.")
@_repo_option
@_json_option
def blame(file: str, rev: str | None, repo: str | None, as_json: bool) -> None:
    """Each line of FILE with the run that wrote it, as the editor's lenses show it."""
    from promptrail import queries, views

    lines = queries.blame(_workspace(repo or (str(Path(file).parent) if rev is None else ".")), file, rev=rev)
    if as_json:
        _print_json(lines)
    else:
        views.blame_lines(lines)


@cli.command()
@_repo_option
@_json_option
def verify(repo: str | None, as_json: bool) -> None:
    """Check the activity feed's hash chain, then the runs, logs and sign-offs sealed in it; exit 1
    at the first altered, deleted or reordered row."""
    from promptrail.audit.store import AuditStore
    from promptrail.gitops.repo import Repo

    # The store alone, not a Workspace: opening a workspace settles interrupted runs, a write,
    # and verify must work (and report) on a feed that refuses writes.
    import sqlite3

    from promptrail.audit.ledger import Verdict, counted

    store = AuditStore(Repo(repo or ".").state_dir / "audit.db")
    try:
        verdict = store.verify()
    except sqlite3.DatabaseError as exc:  # e.g. a dropped table: not page damage, but the record is broken too
        verdict = Verdict(False, 0, None, f"{store.path} cannot be read: {exc}", table="store")
    finally:
        store.close()
    if as_json:
        keys = ("ok", "checked", "first_bad_seq", "reason", "table", "runs_checked", "log_entries_checked",
                "run_files_checked", "violations_checked", "signoffs_checked")
        _print_json({key: getattr(verdict, key) for key in keys})
    elif verdict.ok:
        click.echo(f"ok: {counted(verdict.checked, 'feed event')}, hash chain intact; "
                   f"{counted(verdict.runs_checked, 'finished run')}, "
                   f"{counted(verdict.log_entries_checked, 'log line')}, "
                   f"{counted(verdict.run_files_checked, 'changed file')}, "
                   f"{counted(verdict.violations_checked, 'violation')} and "
                   f"{counted(verdict.signoffs_checked, 'sign-off')} match it")
    elif verdict.table == "events" and verdict.first_bad_seq is not None:
        click.echo(f"BROKEN at event {verdict.first_bad_seq}: {verdict.reason} "
                   f"({verdict.checked} events before it are intact)")
    else:
        intact = f" (the hash chain of {counted(verdict.checked, 'feed event')} is intact)" if verdict.checked else ""
        click.echo(f"BROKEN: {verdict.reason}{intact}")
    if not verdict.ok:
        sys.exit(1)


@cli.command()
@click.argument("paths", nargs=-1, metavar="[PATHS]...")
@click.option("--format", "output_format", type=click.Choice(["text", "github"]), default="text", show_default=True,
              help="github: GitHub Actions workflow annotations (::error file=...::message).")
@_repo_option
@_json_option
def check(paths: tuple[str, ...], output_format: str, repo: str | None, as_json: bool) -> None:
    """Check files against the CLAUDE.md rules of the working tree (default: every tracked file).

    Exit 1 when a violation has severity error, 0 otherwise; bad input exits 2."""
    from promptrail import views
    from promptrail.gitops.repo import Repo
    from promptrail.standards import check_paths

    if as_json and output_format != "text":
        raise PromptrailError("choose one of --json and --format github")
    report = check_paths(Repo(repo or (paths[0] if paths else ".")), list(paths))
    if as_json:
        _print_json(report.as_dict())
    else:
        lines = views.check_annotations(report) if output_format == "github" else views.check_report(report)
        for line in lines:
            click.echo(line)
    if report.has_errors:
        sys.exit(1)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@click.option("--model", metavar="M", default=None,
              help="The model that reviews (default: [agent] model, else the anthropic agent's default).")
@_repo_option
@_json_option
def review(run_ref: str, model: str | None, repo: str | None, as_json: bool) -> None:
    """Ask the model to judge RUN's diff against the prose of CLAUDE.md; store its findings.

    The findings become the run's violations with source "CLAUDE.md (review)" (replacing an earlier
    review's) and a run.reviewed feed event. Needs ANTHROPIC_API_KEY; ANTHROPIC_BASE_URL is honoured.
    Exit 1 when a finding has severity error, 0 otherwise; a bad reply or bad input exits 2."""
    from promptrail import views
    from promptrail.standards.review import review_run

    result = review_run(_workspace(repo), run_ref, model=model)
    if as_json:
        _print_json(result.as_dict())
    else:
        for line in views.review_report(result):
            click.echo(line)
    if result.has_errors:
        sys.exit(1)


@cli.command()
@click.option("--force", is_flag=True, help="Also remove worktrees that hold uncommitted agent work.")
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@_repo_option
@_json_option
def prune(force: bool, dry_run: bool, repo: str | None, as_json: bool) -> None:
    """Remove the worktrees finished runs left behind (their branches and commits stay)."""
    from promptrail.runs import prune_worktrees

    result = prune_worktrees(_workspace(repo), force=force, dry_run=dry_run)
    if as_json:
        _print_json(result)
        return
    verb = "would remove" if dry_run else "removed"
    for entry in result["removed"]:
        click.echo(f"{verb} {entry['worktree']} (run {entry['run_id']}, {entry['status']})")
    for entry in result["kept"]:
        click.echo(f"kept {entry['worktree']} (run {entry['run_id']}, {entry['status']}): it holds uncommitted "
                   "agent work; look at it, then `promptrail prune --force`")
    if not result["removed"] and not result["kept"]:
        click.echo("no worktrees to prune")


@cli.command()
@click.option("--by", type=click.Choice(["user", "model", "day", "agent"]), default="day", show_default=True)
@click.option("--since", metavar="DATE", default=None, help="Only runs started on or after DATE (YYYY-MM-DD).")
@_repo_option
@_json_option
def costs(by: str, since: str | None, repo: str | None, as_json: bool) -> None:
    """AI spend and tokens, grouped by user, model, day or agent."""
    from promptrail import costs as costs_module

    report = costs_module.spend_report(_workspace(repo).store, by=by, since=since)
    if as_json:
        _print_json(report)
    else:
        from promptrail import views  # rich: only for the table, --json is read by scripts

        views.costs_table(report)


# -- gates --------------------------------------------------------------------------------------------
@cli.group()
def gate() -> None:
    """Sign off, check and merge runs (policy: [gate] in the target branch's .promptrail.toml)."""


def _print_gate(state, as_json: bool) -> None:
    from promptrail import views

    if as_json:
        _print_json(state.as_dict())
    else:
        views.gate_state(state)


@gate.command("simulate")
@click.argument("run_ref", metavar="RUN")
@_repo_option
@_json_option
def gate_simulate(run_ref: str, repo: str | None, as_json: bool) -> None:
    """Run the policy's checks on exactly the run's commit and store their results."""
    from promptrail import gates

    try:
        state = asyncio.run(gates.simulate(_workspace(repo), run_ref, TerminalSink(quiet=as_json)))
    except KeyboardInterrupt:
        cancelled = PromptrailError("the gate simulation was cancelled (Ctrl-C); its running check was ended, "
                                    "and the checks that had finished are recorded")
        cancelled.exit_code = 130
        raise cancelled from None
    _print_gate(state, as_json)
    if any(c["status"] != "passed" for c in state.checks):
        sys.exit(1)


def _sign(decision: str):
    @click.argument("run_ref", metavar="RUN")
    @click.option("--comment", metavar="TEXT", default=None, help="Why; stored with the sign-off.")
    @click.option("--sha", "reviewed_sha", metavar="SHA", default=None,
                  help="The commit you reviewed (default: the run's commit); refused if the branch moved.")
    @_repo_option
    @_json_option
    def command(run_ref: str, comment: str | None, reviewed_sha: str | None, repo: str | None, as_json: bool) -> None:
        from promptrail import gates

        _print_gate(gates.sign_off(_workspace(repo), run_ref, decision, comment=comment,
                                   reviewed_sha=reviewed_sha), as_json)

    command.__doc__ = f"{decision.capitalize()} the run's current commit as your git identity."
    return command


gate.command("approve")(_sign("approve"))
gate.command("reject")(_sign("reject"))


@gate.command("merge")
@click.argument("run_ref", metavar="RUN")
@_repo_option
@_json_option
def gate_merge(run_ref: str, repo: str | None, as_json: bool) -> None:
    """Merge (deploy) an approved, green run into its target branch."""
    from promptrail import gates

    _print_gate(gates.merge(_workspace(repo), run_ref), as_json)


@cli.command()
@click.argument("run_ref", metavar="RUN")
@_repo_option
@_json_option
def rollback(run_ref: str, repo: str | None, as_json: bool) -> None:
    """Revert a merged run's commit on its target, recorded as its own attributed run."""
    from promptrail import gates

    data = gates.rollback(_workspace(repo), run_ref)
    if as_json:
        _print_json(data)
    else:
        _print_run_summary(data)


@cli.command()
@click.option("--tcp", metavar="HOST:PORT", default=None, help="Serve over TCP instead of stdio.")
@click.option("--ws", metavar="HOST:PORT", default=None, help="Serve over WebSocket instead of stdio.")
def serve(tcp: str | None, ws: str | None) -> None:
    """Start the language server (stdio by default)."""
    from promptrail.lsp.server import serve as serve_lsp

    if tcp and ws:
        raise PromptrailError("choose one of --tcp and --ws")
    transport, address = ("tcp", tcp) if tcp else ("ws", ws) if ws else ("stdio", None)
    host, port = None, None
    if address:
        host, _, port_text = address.rpartition(":")
        if not host or not port_text.isdigit():
            raise PromptrailError(f"'{address}' is not HOST:PORT (for example 127.0.0.1:2087)")
        port = int(port_text)
    serve_lsp(transport, host, port)


def main() -> None:
    cli(prog_name="promptrail")


if __name__ == "__main__":
    main()
