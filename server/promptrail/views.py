"""Terminal rendering of the core's answers (rich tables and lines). Presentation only: every
value shown here comes from ``queries``; nothing is computed that a JSON reader would miss."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from promptrail.queries import format_cost

console = Console(highlight=False)
if not console.is_terminal:
    # Piped output (CI logs, `| less`): don't squeeze tables into 80 columns.
    console.width = max(console.width, 160)

_STATUS_STYLE = {"succeeded": "green", "no_changes": "yellow", "failed": "red", "hook_failed": "red",
                 "cancelled": "yellow", "incomplete": "red", "needs_attention": "yellow",
                 "interrupted": "red", "running": "cyan"}


def _status(status: str | None) -> Text:
    return Text(status or "?", style=_STATUS_STYLE.get(status or "", ""))


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
    rows = [
        ("run", run["id"]), ("prompt", run["prompt"]), ("status", _status(run["status"])),
        ("actor", f"{run['actor']['name']} <{run['actor']['email']}>"),
        ("agent", agent + (f" · model {run['model']}" if run.get("model") else "")),
        ("mode", run["mode"]), ("base", (run.get("base_sha") or "(empty repository)")[:12]),
        ("commit", (run.get("commit_sha") or "none") + (f" on {run['branch']}" if run.get("branch") else "")),
        ("tokens", _tokens(run["tokens"])),
        ("cost", format_cost(run.get("cost_usd")) + (f" ({run['cost_source']})" if run.get("cost_source") else "")),
        ("gate", (run["gate"].get("status") or "-")
         + (f" · cannot merge: {'; '.join(run['gate']['merge_blockers'])}" if run["gate"].get("merge_blockers")
            and run["gate"].get("status") not in ("merged", "rolled back") else "")),
        ("started", run.get("started_at") or "-"), ("ended", run.get("ended_at") or "-"),
    ]
    if run.get("error"):
        rows.append(("error", Text(run["error"], style="red")))
    if run.get("policy_change"):
        rows.append(("policy", Text("changes CLAUDE.md or .promptrail.toml (checked against the base commit's rules)",
                                    style="yellow")))
    if "violations" in run and (run.get("commit_sha") or run["violations"]):
        rows.append(("CLAUDE.md", _violation_counts(run["violations"])))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    files = run.get("files") or []
    if files:
        file_table = Table(title="files", title_justify="left", show_edge=False)
        for column in ("path", "change", "+", "−"):
            file_table.add_column(column, justify="right" if column in "+−" else "left")
        for f in files:
            path = f["path"] if not f.get("old_path") else f"{f['old_path']} → {f['path']}"
            file_table.add_row(path, f["status"], Text(f"+{f['additions']}" if f["additions"] is not None else "bin",
                                                        style="green"),
                               Text(f"−{f['deletions']}" if f["deletions"] is not None else "bin", style="red"))
        console.print(file_table)
    if run.get("violations"):
        console.print(Text("violations", style="italic"))
        run_violations(run["violations"])


def history_table(runs: list[dict[str, Any]]) -> None:
    if not runs:
        console.print("no runs yet; start one with `promptrail run \"PROMPT\"` or try `promptrail demo`")
        return
    table = Table(show_edge=False)
    for column in ("run", "started", "status", "actor", "agent", "cost", "commit"):
        table.add_column(column, no_wrap=True)
    table.add_column("prompt", overflow="fold")
    for run in runs:
        table.add_row(run["id"], (run.get("started_at") or "")[:19].replace("T", " "), _status(run["status"]),
                      run["actor"]["email"] or "", run["agent"], format_cost(run.get("cost_usd")),
                      (run.get("commit_sha") or "")[:10], run.get("summary") or run["prompt"])
    console.print(table)


def log_lines(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        prefix = f"{entry['seq']:>5} {entry['ts'][11:23]} {entry['kind']:<11} "
        lines = entry["text"].splitlines() or [""]
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
        details = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, "", []))
        table.add_row(str(event["seq"]), event["ts"][:19].replace("T", " "), event["kind"],
                      event.get("run_id") or "", event.get("actor") or "", details[:120])
    console.print(table)


def blame_lines(lines: list[dict[str, Any]]) -> None:
    previous = object()
    width = len(str(len(lines)))
    for line in lines:
        if line["run_id"] != previous and line["run_id"]:
            console.print(Text(f"{'':>{width}}   {line['label']}   [run {line['run_id']}]", style="magenta"))
        previous = line["run_id"]
        marker = "✦" if line["run_id"] else " "
        console.print(Text(f"{line['line']:>{width}} {marker} {line['text']}"))


def gate_state(state: Any) -> None:
    console.print(Text(f"gate: {state.label}", style="bold"))
    if state.target:
        console.print(f"target {state.target} · reviewing {(state.sha or '')[:12]} · "
                      f"{len(state.approvals)}/{state.required_approvals} approvals"
                      + (f" · {state.stale_signoffs} stale sign-off(s)" if state.stale_signoffs else ""))
    for check in state.checks:
        style = "green" if check["status"] == "passed" else "red"
        console.print(Text(f"  check {check['name']}: {check['status']} (exit {check['exit_code']}, "
                           f"{check['duration_ms']} ms)", style=style))
    if state.merge_blockers and state.status not in ("merged", "rolled_back"):
        console.print("cannot merge yet: " + "; ".join(state.merge_blockers))
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
        console.print(Text(f"  {v['path']}:{v['line']}:{v['start_col'] + 1}: ") +
                      Text(v["severity"], style=_SEVERITY_STYLE.get(v["severity"], "")) +
                      Text(_violation_text(v)))


def _violation_text(v: dict[str, Any]) -> str:
    if v.get("source") == "CLAUDE.md (review)":  # a review's "rule" is a quote of CLAUDE.md prose
        return f" \"{' '.join(str(v['rule_id']).split())}\" {v['message']} (review)"
    return f" [{v['rule_id']}] {v['message']}"


def check_report(report: Any) -> list[str]:
    """``promptrail check`` as plain lines: CLAUDE.md problems, violations, then a summary.
    Columns are 1-based for people and editors (``path:line:col``)."""
    lines = [f"{p.path}:{p.line}:{p.start_col + 1}: {p.severity} [{p.code}] {p.message}" for p in report.problems]
    lines += [f"{v.path}:{v.line}:{v.start_col + 1}: {v.severity} [{v.rule_id}] {v.message}"
              for v in report.violations]
    counts: dict[str, int] = {}
    for v in report.violations:
        counts[v.severity] = counts.get(v.severity, 0) + 1
    found = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info", "hint") if counts.get(s))
    problems = f" · {len(report.problems)} CLAUDE.md problem(s)" if report.problems else ""
    lines.append(f"{found or 'no violations'} · {report.files_checked} file(s), {report.rules} rule(s){problems}")
    return lines


def review_report(review: Any) -> list[str]:
    """``promptrail review`` as plain lines: one per finding (``path:line: severity "quote" why``),
    then a summary naming the model, the commit and the CLAUDE.md files it was judged against."""
    lines = [f"{f.file}:{f.line}: {f.severity} \"{' '.join(f.rule.split())}\" {f.why}" for f in review.findings]
    counts = review.counts()
    found = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info", "hint") if counts[s])
    cut = " (diff cut short: too long)" if review.diff_truncated else ""
    lines.append(f"{found or 'no findings'} · run {review.run_id} · commit {review.commit[:12]}{cut} · "
                 f"judged by {review.model} against {', '.join(review.claude_md)}")
    return lines


_ANNOTATION_LEVEL = {"error": "error", "warning": "warning", "info": "notice", "hint": "notice"}


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _annotation(severity: str, path: str, line: int, col: int, title: str, message: str) -> str:
    return (f"::{_ANNOTATION_LEVEL.get(severity, 'notice')} file={_escape_property(path)},line={line},col={col},"
            f"title={_escape_property(title)}::{_escape_data(message)}")


def check_annotations(report: Any) -> list[str]:
    """``promptrail check --format github``: one GitHub Actions workflow command per finding."""
    return ([_annotation(p.severity, p.path, p.line, p.start_col + 1, f"CLAUDE.md {p.code}", p.message)
             for p in report.problems]
            + [_annotation(v.severity, v.path, v.line, v.start_col + 1, f"CLAUDE.md rule {v.rule_id}", v.message)
               for v in report.violations])


def costs_table(report: dict[str, Any]) -> None:
    if not report["groups"]:
        console.print("no runs" + (f" since {report['since']}" if report["since"] else ""))
        return
    table = Table(show_edge=False)
    columns = (report["by"], "runs", "cost", "unknown cost", "input tok", "output tok", "cache read", "cache write")
    for column in columns:
        table.add_column(column, justify="left" if column == report["by"] else "right")
    for group in report["groups"]:
        tokens = group["tokens"]
        table.add_row(str(group["key"]), str(group["runs"]), format_cost(group["cost_usd"]),
                      str(group["unknown_cost_runs"] or ""), f"{tokens['input']:,}", f"{tokens['output']:,}",
                      f"{tokens['cache_read']:,}", f"{tokens['cache_write']:,}")
    total = report["total"]
    table.add_row(Text("total", style="bold"), str(total["runs"]), Text(format_cost(total["cost_usd"]), style="bold"),
                  str(total["unknown_cost_runs"] or ""), "", "", "", "")
    console.print(table)
