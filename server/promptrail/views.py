"""Terminal rendering of the core's answers (rich tables and lines). Presentation only: every
value shown here comes from ``queries``; nothing is computed that a JSON reader would miss.

Text from data (prompts, agent output, paths, file lines, names) is never trusted with the terminal:
``printable`` escapes its control characters, and it reaches rich only as ``Text`` objects (or
through a console with markup off), so ``[bold]`` or ``:smile:`` in a prompt prints as typed. The
store keeps the exact bytes, and ``--json`` prints them exactly (json.dumps escapes them itself).
"""

from __future__ import annotations

import re
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from promptrail.costs import TOKEN_KINDS
from promptrail.gitops.commit import one_line, without_controls
from promptrail.queries import format_cost

console = Console(highlight=False, markup=False, emoji=False)
if not console.is_terminal:
    # Piped output (CI logs, `| less`): don't squeeze tables into 80 columns.
    console.width = max(console.width, 160)

_STATUS_STYLE = {"succeeded": "green", "no_changes": "yellow", "failed": "red", "hook_failed": "red",
                 "cancelled": "yellow", "incomplete": "red", "needs_attention": "yellow",
                 "interrupted": "red", "running": "cyan"}


# C0 controls but newline and tab, DEL, C1 controls: ESC alone can clear the screen, retitle the
# window (OSC) or rewrite earlier lines; CR overwrites the line it ends. And the bidi overrides and
# isolates, which make a line display in another order than it reads.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters other than newline and tab are shown as
    escapes (ESC as ``\\x1b``, CR as ``\\r``, any other C0/C1 control or DEL as ``\\xNN``, a bidi
    override or isolate as ``\\u202e``)."""
    return without_controls(text) if _CONTROL.search(text) else text


def _text(value: Any, style: str = "") -> Text:
    """A value from data as a rich ``Text``: escaped, never read as markup."""
    return Text(printable("" if value is None else str(value)), style=style)


def one_line_path(path: str) -> str:
    """A file name on one terminal line: ``printable`` and ``one_line``."""
    return printable(one_line(path))


def _lines(text: str) -> list[str]:
    return printable(text).splitlines() or [""]


def _status(status: str | None) -> Text:
    return _text(status or "?", style=_STATUS_STYLE.get(status or "", ""))


def _tokens(tokens: dict[str, Any]) -> str:
    if all(v is None for v in tokens.values()):
        return "unknown"
    return (f"{tokens.get('input') or 0:,} in · {tokens.get('output') or 0:,} out · "
            f"{tokens.get('cache_read') or 0:,} cache read · {tokens.get('cache_write') or 0:,} cache write")


def run_summary(run: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    agent = run["agent"] + (f" ({run['agent_label']})" if run.get("agent_label") else "")
    rows: list[tuple[str, Any]] = [
        ("run", run["id"]), ("prompt", run["prompt"]), ("status", _status(run["status"])),
        ("actor", f"{run['actor']['name']} <{run['actor']['email']}>"),
        ("agent", agent + (f" · model {run['model']}" if run.get("model") else "")),
        ("mode", run["mode"]), ("base", run["base_sha"][:12] if run.get("base_sha") else "(empty repository)"),
        ("commit", (run.get("commit_sha") or "none") + (f" on {run['branch']}" if run.get("branch") else "")),
        ("tokens", _tokens(run["tokens"])),
        ("cost", format_cost(run.get("cost_usd")) + (f" ({run['cost_source']})" if run.get("cost_source") else "")),
        ("gate", (run["gate"].get("status") or "-")
         + (f" · cannot merge: {'; '.join(run['gate']['merge_blockers'])}" if run["gate"].get("merge_blockers")
            and run["gate"].get("status") not in ("merged", "rolled back") else "")),
        ("started", run.get("started_at") or "-"), ("ended", run.get("ended_at") or "-"),
    ]
    if run.get("error"):
        rows.append(("error", _text(run["error"], style="red")))
    if run.get("policy_change"):
        rows.append(("policy", Text("changes CLAUDE.md or .promptrail.toml (checked against the base commit's rules)",
                                    style="yellow")))
    if "violations" in run and (run.get("commit_sha") or run["violations"]):
        rows.append(("CLAUDE.md", _violation_counts(run["violations"])))
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else _text(value))
    console.print(table)
    files = run.get("files") or []
    if files:
        file_table = Table(title="files", title_justify="left", show_edge=False)
        for column in ("path", "change", "+", "−"):
            file_table.add_column(column, justify="right" if column in "+−" else "left")
        for f in files:
            path = one_line_path(f["path"])
            if f.get("old_path"):
                path = f"{one_line_path(f['old_path'])} → {path}"
            file_table.add_row(Text(path), _text(f["status"]),
                               Text(f"+{f['additions']}" if f["additions"] is not None else "bin", style="green"),
                               Text(f"−{f['deletions']}" if f["deletions"] is not None else "bin", style="red"))
        console.print(file_table)
    if run.get("violations"):
        console.print(Text("violations", style="italic"))
        run_violations(run["violations"])


def history_table(runs: list[dict[str, Any]], search: str | None = None) -> None:
    if not runs:
        if search:
            console.print(Text(printable(f"no run's prompt matches '{search}'")))
        else:
            console.print("no runs yet; start one with `promptrail run \"PROMPT\"` or try `promptrail demo`")
        return
    table = Table(show_edge=False)
    for column in ("run", "started", "status", "actor", "agent", "cost", "commit"):
        table.add_column(column, no_wrap=True)
    table.add_column("prompt", overflow="fold")
    for run in runs:
        table.add_row(_text(run["id"]), _text((run.get("started_at") or "")[:19].replace("T", " ")),
                      _status(run["status"]), _text(run["actor"]["email"] or ""), _text(run["agent"]),
                      _text(format_cost(run.get("cost_usd"))), _text((run.get("commit_sha") or "")[:10]),
                      _text(run.get("summary") or run["prompt"]))
    console.print(table)


def log_lines(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        prefix = printable(f"{entry['seq']:>5} {entry['ts'][11:23]} {entry['kind']:<11} ")
        lines = _lines(entry["text"])
        console.print(Text(prefix + lines[0]))
        for line in lines[1:]:
            console.print(Text(" " * len(prefix) + line))


def feed_table(events: list[dict[str, Any]]) -> None:
    if not events:
        console.print("the activity feed is empty")
        return
    table = Table(show_edge=False)
    for column in ("#", "when", "event", "run", "who", "details"):
        table.add_column(column, overflow="fold")
    for event in events:
        data = event["data"]
        # The seal (digests verify recomputes) is for machines; `feed --json` shows it.
        details = ", ".join(f"{k}={_feed_value(v)}" for k, v in data.items() if v not in (None, "", []) and k != "seal")
        table.add_row(_text(event["seq"]), _text(event["ts"][:19].replace("T", " ")), _text(event["kind"]),
                      _text(event.get("run_id") or ""), _text(event.get("actor") or ""), _text(details))
    console.print(table)


def _feed_value(value: Any, limit: int = 60) -> str:
    """One value of a feed event, short enough for a table cell (``feed --json`` has it whole):
    a commit SHA as 12 digits, a list as its items, a long text cut with an ellipsis."""
    if isinstance(value, list):
        text = " ".join(_feed_value(item, limit) for item in value)
    elif isinstance(value, str) and len(value) == 40 and all(c in "0123456789abcdef" for c in value):
        return value[:12]
    else:
        text = one_line(str(value))  # a newline in a prompt or file name would start a false row
    return text if len(text) <= limit else text[:limit - 1] + "…"


def blame_lines(lines: list[dict[str, Any]]) -> None:
    previous = object()
    width = len(str(len(lines)))
    for line in lines:
        if line["run_id"] != previous and line["run_id"]:
            console.print(_text(f"{'':>{width}}   {line['label']}   [run {line['run_id']}]", style="magenta"))
        previous = line["run_id"]
        marker = "✦" if line["run_id"] else " "
        console.print(_text(f"{line['line']:>{width}} {marker} {line['text']}"))


def gate_state(state: Any) -> None:
    console.print(_text(f"gate: {state.label}", style="bold"))
    if state.target:
        console.print(_text(f"target {state.target} · reviewing {(state.sha or '')[:12]} · "
                            f"{len(state.approvals)} approval(s), {state.required_approvals} required"
                            + (f" · {state.stale_signoffs} stale sign-off(s)" if state.stale_signoffs else "")))
    for check in state.checks:
        style = "green" if check["status"] == "passed" else "red"
        console.print(_text(f"  check {check['name']}: {check['status']} (exit {check['exit_code']}, "
                            f"{check['duration_ms']} ms)", style=style))
    if state.merge_blockers and state.status not in ("merged", "rolled_back"):
        console.print(_text(("cannot merge: " if state.on_target else "cannot merge yet: ")
                            + "; ".join(state.merge_blockers)))
    elif state.status not in ("merged", "rolled_back"):
        console.print(Text("ready to merge", style="green"))


# -- CLAUDE.md rules ----------------------------------------------------------------------------------
_SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "cyan", "hint": "dim"}


def _violation_counts(violations: list[dict[str, Any]]) -> Text:
    if not violations:
        return Text("no violations", style="green")
    counts: dict[str, int] = {}
    for violation in violations:
        counts[violation["severity"]] = counts.get(violation["severity"], 0) + 1
    text = Text()
    for severity in ("error", "warning", "info", "hint"):
        if counts.get(severity):
            text.append(f"{counts[severity]} {severity}  ", style=_SEVERITY_STYLE[severity])
    return text


def run_violations(violations: list[dict[str, Any]]) -> None:
    """A run's violations, one line each (``path:line:col: severity [rule] message``)."""
    for v in violations:
        # Read from the store: a row with a missing field (a damaged or edited store) still prints.
        column = v["start_col"] + 1 if isinstance(v.get("start_col"), int) else "?"
        console.print(Text(f"  {one_line_path(v.get('path') or '?')}:{v.get('line') or '?'}:{column}: ") +
                      _text(v["severity"], style=_SEVERITY_STYLE.get(v["severity"], "")) +
                      _text(_violation_text(v)))


def _violation_text(v: dict[str, Any]) -> str:
    if v.get("source") == "CLAUDE.md (review)":  # a review's "rule" is a quote of CLAUDE.md prose
        return f" \"{' '.join(str(v['rule_id']).split())}\" {v['message']} (review)"
    return f" [{v['rule_id']}] {v['message']}"


def check_report(report: Any) -> list[str]:
    """``promptrail check`` as plain lines: CLAUDE.md problems, violations, then a summary.
    Columns are 1-based for people and editors (``path:line:col``)."""
    lines = [f"{one_line(p.path)}:{p.line}:{p.start_col + 1}: {p.severity} [{p.code}] {p.message}"
             for p in report.problems]
    lines += [f"{one_line(v.path)}:{v.line}:{v.start_col + 1}: {v.severity} [{v.rule_id}] {v.message}"
              for v in report.violations]
    counts: dict[str, int] = {}
    for v in report.violations:
        counts[v.severity] = counts.get(v.severity, 0) + 1
    found = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info", "hint") if counts.get(s))
    problems = f" · {len(report.problems)} CLAUDE.md problem(s)" if report.problems else ""
    lines.append(f"{found or 'no violations'} · {report.files_checked} file(s), {report.rules} rule(s){problems}")
    return [printable(line) for line in lines]


def review_report(review: Any) -> list[str]:
    """``promptrail review`` as plain lines: one per finding (``path:line: severity "quote" why``),
    then a summary naming the model, the commit and the CLAUDE.md files it was judged against."""
    lines = [f"{f.file}:{f.line}: {f.severity} \"{' '.join(f.rule.split())}\" {f.why}" for f in review.findings]
    counts = review.counts()
    found = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info", "hint") if counts[s])
    cut = " (diff cut short: too long)" if review.diff_truncated else ""
    lines.append(f"{found or 'no findings'} · run {review.run_id} · commit {review.commit[:12]}{cut} · "
                 f"judged by {review.model} against {', '.join(review.claude_md)}")
    return [printable(line) for line in lines]


_ANNOTATION_LEVEL = {"error": "error", "warning": "warning", "info": "notice", "hint": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(severity: str, path: str, line: int, col: int, title: str, message: str) -> str:
    # CR and LF are %-escaped as GitHub expects; the other controls as everywhere else.
    return printable(f"::{_ANNOTATION_LEVEL.get(severity, 'notice')} file={_escape_property(path)},line={line},"
                     f"col={col},title={_escape_property(title)}::{_escape_data(message)}")


def check_annotations(report: Any) -> list[str]:
    """``promptrail check --format github``: one GitHub Actions workflow command per finding."""
    return ([_annotation(p.severity, p.path, p.line, p.start_col + 1, f"CLAUDE.md {p.code}", p.message)
             for p in report.problems]
            + [_annotation(v.severity, v.path, v.line, v.start_col + 1, f"CLAUDE.md rule {v.rule_id}", v.message)
               for v in report.violations])


def costs_table(report: dict[str, Any]) -> None:
    if not report["groups"]:
        console.print(_text("no runs" + (f" since {report['since']}" if report["since"] else "")))
        return
    table = Table(show_edge=False)
    columns = (report["by"], "runs", "cost", "unknown cost", "input tok", "output tok", "cache read", "cache write")
    for column in columns:
        table.add_column(column, justify="left" if column == report["by"] else "right")
    rows = [(group, "") for group in report["groups"]] + [({"key": "total", **report["total"]}, "bold")]
    for group, style in rows:
        tokens = group["tokens"]
        table.add_row(_text(group["key"], style=style), _text(group["runs"]),
                      _text(format_cost(group["cost_usd"]), style=style), _text(group["unknown_cost_runs"] or ""),
                      *(_text(f"{tokens[kind]:,}") for kind in TOKEN_KINDS))
    console.print(table)
