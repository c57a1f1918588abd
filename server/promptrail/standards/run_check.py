"""The CLAUDE.md check of one run, after its commit: the single call the orchestrator makes.

The run's changed files (as committed) and the run-level rules are checked against the rules of
the run's **base** commit, so an agent that edits CLAUDE.md cannot loosen its own check; a run
that changes any CLAUDE.md or .promptrail.toml is flagged ``policy_change``. The outcome is stored
(``violations`` rows, the run's ``policy_change`` column), logged (one line per violation), and
recorded as a ``run.checked`` feed event; the summary returned goes into the final ``RunStatus``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Mapping, Sequence

from promptrail.gitops.commit import one_line
from promptrail.redact import redact
from promptrail.standards.check import SOURCE, RunCheck, Violation, check_commit

logger = logging.getLogger(__name__)

#: ``log(kind, text)``: the run's log book (``LogBook.add``); called on the event loop only.
LogFunction = Callable[[str, str], None]


def _store(workspace: Any, run_id: str, actor: str | None, base_sha: str | None, commit_sha: str,
           result: RunCheck) -> None:
    store = workspace.store
    rows = [{**v.as_dict(), "message": redact(v.message)} for v in result.violations]
    store.update_run(run_id, policy_change=int(result.policy_change))
    # The violations and the run.checked event that seals them land in one transaction, or neither.
    store.add_violations(run_id, rows, replacing_source=SOURCE, event=("run.checked", actor, {
        **result.summary(), "policy_files": result.policy_files, "commit": commit_sha, "base": base_sha,
        "rules": result.rules, "files_checked": result.files_checked, "rule_problems": len(result.problems)}))


def describe(violation: Violation | Mapping[str, Any]) -> str:
    """``path:line:col: severity [rule-id] message`` (col 1-based), as ``promptrail check`` prints."""
    data = violation if isinstance(violation, Mapping) else violation.as_dict()
    return (f"{one_line(data['path'])}:{data['line']}:{data['start_col'] + 1}: {data['severity']} "
            f"[{data['rule_id']}] {data['message']}")


async def check_run(workspace: Any, run_id: str, *, base_sha: str | None, commit_sha: str,
                    files: Sequence[Mapping[str, Any]], actor: str | None, log: LogFunction) -> dict[str, Any] | None:
    """Check a committed run, store and log the outcome; returns the ``RunStatus.violations``
    summary, or None when the check itself failed (logged; the run's commit stands)."""
    try:
        result = await asyncio.to_thread(check_commit, workspace.repo, base_sha, commit_sha, files)
        await asyncio.to_thread(_store, workspace, run_id, actor, base_sha, commit_sha, result)
    except Exception as exc:  # a bug or a broken repository must not undo a landed commit
        logger.exception("CLAUDE.md check of run %s failed", run_id)
        log("error", f"CLAUDE.md check failed: {exc}")
        return None
    for problem in result.problems:
        log("check", f"{problem.path}:{problem.line}: base CLAUDE.md rule not applied: {problem.message}")
    for violation in result.violations:
        log("check", describe(violation))
    summary = result.summary()
    counts = ", ".join(f"{summary[s]} {s}" for s in ("error", "warning", "info", "hint") if summary[s])
    base = (base_sha or "none")[:12]
    log("check", f"CLAUDE.md check (rules of base {base}): " + (counts or "no violations")
        + f" · {result.files_checked} file(s), {result.rules} rule(s)")
    if result.policy_change:
        log("check", f"policy change: this run changes {', '.join(result.policy_files)} "
                     "(checked against the base commit's rules, not its own)")
    return summary
