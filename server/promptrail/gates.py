"""Quality gates: no AI change reaches the target branch without a human's sign-off on exactly
that change.

Owns the gate policy (``[gate]`` of ``.promptrail.toml``, read from the *target branch's
committed* file, so a run cannot loosen the policy that judges it), the gate state of a run
(approvals bound to a commit SHA, checks on that SHA, blocking violations), and the operations
simulate / approve / reject / merge / rollback. Every operation is an event in the feed.

The SHA under review is the tip of the run's branch: a new commit there makes earlier
approvals and checks stale, and the tip's CLAUDE.md violations (against the base commit's rules)
replace the run's own. ``current_label`` keeps the stored label honest where it is shown. Merging
and rolling back never touch the user's uncommitted work: new commits are made in temporary
worktrees, and a checked-out target is advanced with ``git merge --ff-only``, which refuses rather
than overwrite local changes. A rollback reverts everything its merge brought to the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import json
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from promptrail.audit.store import utc_now
from promptrail.config import KNOWN_SECTIONS, REPO_CONFIG_NAME, line_of, parse_toml
from promptrail.errors import PromptrailError
from promptrail.events import EventSink, FanOut, RunStatus
from promptrail.gitops import commit as gitcommit
from promptrail.gitops import worktree
from promptrail.gitops.repo import Identity, Repo
from promptrail.processes import end_group
from promptrail.redact import redact
from promptrail.workspace import Workspace

SEVERITIES = ("error", "warning", "info", "hint")
_GATE_KEYS = {"target", "required_approvals", "approvers", "allow_self_approval", "check", "block_on"}
_CHECK_KEYS = {"name", "run", "timeout_s"}
REVERTS_TRAILER = "Promptrail-Reverts"
#: A check's output kept in the run's log: enough for any test report, not a runaway's 50 MB.
CHECK_LOG_LINES = 20_000
#: More sign-offs than any team gathers: a larger number is a typo that would block every merge.
MAX_APPROVALS = 100
#: A budget-capped run's partial work may be merged once approved; a failed run's may not.
MERGEABLE_STATES = ("succeeded", "needs_attention", "budget_exceeded")


@dataclass(frozen=True)
class CheckSpec:
    name: str
    run: str
    timeout_s: float = 600.0


@dataclass
class GatePolicy:
    target: str | None = None
    required_approvals: int = 1
    approvers: list[str] = field(default_factory=list)
    allow_self_approval: bool = False
    checks: list[CheckSpec] = field(default_factory=list)
    block_on: list[str] = field(default_factory=lambda: ["error"])
    source: str = "the defaults"

    def may_approve(self, email: str) -> bool:
        if email.count("@") != 1:  # `*@leads.example.com` must not match `x@evil.com?@leads.example.com`
            return False
        return not self.approvers or any(fnmatch.fnmatchcase(email.lower(), p.lower()) for p in self.approvers)


def parse_policy(text: str, origin: str) -> GatePolicy:
    """``[gate]`` of a ``.promptrail.toml`` text; any mistake (an unknown section too: ``[gaet]``
    must not silently mean "no policy") is one error naming the line."""
    data = parse_toml(text, origin)

    def fail(keys: tuple[str | int, ...], message: str) -> PromptrailError:
        # The line of the value at fault inside [gate], not an equally named key of another section.
        line = line_of(text, keys)
        section = "[gate] " if len(keys) > 1 else ""
        return PromptrailError(f"{origin}{f':{line}' if line else ''}: {section}{message}; fix the policy "
                               "(every gate operation refuses until it is valid)")

    unknown = sorted(set(data) - KNOWN_SECTIONS)
    if unknown:
        raise fail((unknown[0],), f"unknown section [{unknown[0]}] (known: {', '.join(sorted(KNOWN_SECTIONS))})")
    gate = data.get("gate", {})
    if not isinstance(gate, dict):
        raise fail(("gate",), "'gate' must be a table ([gate])")
    for key in gate:
        if key not in _GATE_KEYS:
            raise fail(("gate", key), f"unknown key '{key}' (known: {', '.join(sorted(_GATE_KEYS))})")
    policy = GatePolicy(source=origin)
    if "target" in gate:
        if not isinstance(gate["target"], str) or not gate["target"]:
            raise fail(("gate", "target"), "target must be a branch name")
        policy.target = gate["target"]
    if "required_approvals" in gate:
        value = gate["required_approvals"]
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_APPROVALS:
            raise fail(("gate", "required_approvals"),
                       f"required_approvals must be a whole number from 0 to {MAX_APPROVALS}")
        policy.required_approvals = value
    if "approvers" in gate:
        value = gate["approvers"]
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise fail(("gate", "approvers"), "approvers must be a list of emails or globs")
        policy.approvers = value
    if "allow_self_approval" in gate:
        if not isinstance(gate["allow_self_approval"], bool):
            raise fail(("gate", "allow_self_approval"), "allow_self_approval must be true or false")
        policy.allow_self_approval = gate["allow_self_approval"]
    if "block_on" in gate:
        value = gate["block_on"]
        if not isinstance(value, list) or any(v not in SEVERITIES for v in value):
            raise fail(("gate", "block_on"), f"block_on must be a list of {', '.join(SEVERITIES)}")
        policy.block_on = value
    checks = gate.get("check", [])
    if not isinstance(checks, list) or not all(isinstance(check, dict) for check in checks):
        raise fail(("gate", "check"), "check must be written as [[gate.check]] tables")
    for number, check in enumerate(checks):
        unknown = sorted(set(check) - _CHECK_KEYS)
        if unknown:
            raise fail(("gate", "check", number, unknown[0]), f"unknown key '{unknown[0]}' in [[gate.check]]")
        name, command, timeout = check.get("name"), check.get("run"), check.get("timeout_s", 600)
        if not isinstance(name, str) or not name or not isinstance(command, str) or not command:
            raise fail(("gate", "check", number), "each [[gate.check]] needs a name and a run command")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise fail(("gate", "check", number, "timeout_s"), "timeout_s must be a positive number of seconds")
        policy.checks.append(CheckSpec(name, command, float(timeout)))
    return policy


def load_policy(repo: Repo, branch: str) -> GatePolicy:
    """The policy as committed on ``branch`` (defaults when the branch has no policy file)."""
    shown = repo.run("show", f"{branch}:{REPO_CONFIG_NAME}")
    if not shown.ok:
        if not repo.run("rev-parse", "-q", "--verify", f"refs/heads/{branch}").ok:
            raise PromptrailError(f"the gate's target branch '{branch}' does not exist (a repository without "
                                  "commits has none yet); create it with a first commit, or set [gate] target "
                                  "in .promptrail.toml to an existing branch")
        return GatePolicy(source=f"the defaults ({branch} has no {REPO_CONFIG_NAME})")
    return parse_policy(shown.stdout, f"{branch}:{REPO_CONFIG_NAME}")


# -- state --------------------------------------------------------------------------------------
@dataclass
class GateState:
    """Where a run stands. ``label`` is what lenses and status bars show after ``gate:``."""

    status: str  # not_applicable | pending | approved | rejected | checks_failed | stale | merged | rolled_back
    label: str
    target: str | None
    sha: str | None
    approvals: list[dict[str, Any]]
    rejections: list[dict[str, Any]]
    checks: list[dict[str, Any]]
    blocking: list[dict[str, Any]]
    required_approvals: int
    stale_signoffs: int
    merge_blockers: list[str]
    #: The run's commit is already on the target (direct mode, or merged without promptrail).
    on_target: bool = False

    @property
    def can_merge(self) -> bool:
        return not self.merge_blockers

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["can_merge"] = self.can_merge
        return data


def resolve_reviewed_sha(repo: Repo, sha: str) -> str:
    """The full SHA of the commit a reviewer names (``--sha``): at least 7 hex digits, one commit."""
    sha = sha.strip()
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", sha):
        raise PromptrailError(f"--sha '{sha}' is not a commit SHA; give at least 7 hex digits of the commit "
                              "you reviewed")
    result = repo.run("rev-parse", "-q", "--verify", f"{sha}^{{commit}}")
    if not result.ok:
        raise PromptrailError(f"--sha {sha} names no single commit in this repository; give more of its digits")
    return result.stdout.strip()


def reviewed_tip(repo: Repo, run: dict[str, Any]) -> str:
    """The commit a run's gate judges: the tip of an isolated run's own branch (a fix committed
    there is part of what is reviewed); a direct-mode run's own commit (its branch is the user's,
    and what was committed there later is not the run's)."""
    if run.get("mode") != "isolated":
        return run["commit_sha"]
    return repo.branch_sha(run.get("branch")) or run["commit_sha"]


def target_of(run: dict[str, Any], policy: GatePolicy | None = None) -> str:
    target = (policy.target if policy else None) or run.get("target_branch")
    if not target:
        raise PromptrailError(f"run {run['id']} started on a detached HEAD, so it has no target branch; "
                              "set [gate] target in .promptrail.toml")
    return target


def policy_for(workspace: Workspace, run: dict[str, Any]) -> tuple[GatePolicy, str]:
    """The policy that judges ``run`` and its target branch. The default target's committed policy
    may name another target; that branch's own committed policy then applies."""
    default_target = target_of(run)
    policy = load_policy(workspace.repo, default_target)
    target = policy.target or default_target
    if target != default_target:
        policy = load_policy(workspace.repo, target)
    return policy, target


def gate_state(workspace: Workspace, run: dict[str, Any]) -> GateState:
    """The gate as of now (reads refs live, so a new commit on the run's branch shows as stale)."""
    store, repo = workspace.store, workspace.repo
    if not run.get("commit_sha"):
        return GateState("not_applicable", run.get("status") or "", run.get("target_branch"), None,
                         [], [], [], [], 0, 0, ["the run has no commit"])
    policy, target = policy_for(workspace, run)
    tip = reviewed_tip(repo, run)
    signoffs = store.signoffs(run["id"])
    # One voice per person: their latest sign-off on this SHA counts.
    latest_by_actor = {s["actor_email"].lower(): s for s in signoffs if s["commit_sha"] == tip}
    fresh = list(latest_by_actor.values())
    approvals = [s for s in fresh if s["decision"] == "approve"]
    rejections = [s for s in fresh if s["decision"] == "reject"]
    stale = len({s["actor_email"].lower() for s in signoffs if s["commit_sha"] != tip})
    wanted = {spec.name for spec in policy.checks}  # a check the policy dropped no longer counts
    checks = [c for c in store.checks(run["id"]) if c["commit_sha"] == tip and c["name"] in wanted]
    latest = {c["name"]: c for c in checks}  # the newest result per check name
    blocking = [v for v in violations_at(workspace, run, tip) if v["severity"] in policy.block_on]
    blockers: list[str] = []
    done = run.get("gate_status")
    target_sha = repo.branch_sha(target) if done not in ("merged", "rolled back") else None
    on_target = bool(target_sha) and repo.run("merge-base", "--is-ancestor", tip, target_sha).ok
    if done in ("merged", "rolled back"):
        blockers.append(f"already merged into {target}" if done == "merged" else "rolled back")
    elif on_target:
        how = " (direct mode commits to your branch)" if run.get("mode") == "direct" else ""
        blockers.append(f"its commit {tip[:12]} is already on {target}{how}: there is nothing to merge")
    if run.get("status") not in MERGEABLE_STATES:
        blockers.append(f"the run ended {run.get('status')}; only a finished run's work can be merged")
    if len(approvals) < policy.required_approvals:
        blockers.append(f"{len(approvals)}/{policy.required_approvals} approvals on {tip[:12]}")
    if rejections:
        blockers.append(f"rejected by {', '.join(r['actor_email'] for r in rejections)}")
    for spec in policy.checks:
        result = latest.get(spec.name)
        if result is None:
            blockers.append(f"check '{spec.name}' has not run on {tip[:12]} (run `promptrail gate simulate`)")
        elif result["status"] != "passed":
            blockers.append(f"check '{spec.name}' {result['status'].replace('_', ' ')}")
    if blocking:
        blockers.append(f"{len(blocking)} blocking CLAUDE.md violation(s) ({', '.join(policy.block_on)})")

    if run.get("gate_status") in ("merged", "rolled back"):
        status, label = run["gate_status"].replace(" ", "_"), run["gate_status"]
    elif rejections:
        status, label = "rejected", f"rejected by {rejections[-1]['actor_email']}"
    elif any(c["status"] != "passed" for c in latest.values()):
        status, label = "checks_failed", "checks failed"
    elif policy.required_approvals == 0 and not approvals:
        status, label = "approved", "no approval needed"
    elif stale and not fresh:
        status, label = "stale", "stale"
    elif len(approvals) >= policy.required_approvals:
        status, label = "approved", "approved by " + ", ".join(a["actor_email"] for a in approvals)
    elif approvals:
        status, label = "pending", f"{len(approvals)}/{policy.required_approvals} approvals"
    else:
        status, label = "pending", "pending"
    return GateState(status, label, target, tip, approvals, rejections, list(latest.values()), blocking,
                     policy.required_approvals, stale, blockers, on_target)


#: (repository, base, tip) → the CLAUDE.md violations of a run's branch at ``tip``; commits never
#: change, so neither does the answer.
_violations_at_tip: dict[tuple[str, str | None, str], list[dict[str, Any]]] = {}
_violations_lock = threading.Lock()


def violations_at(workspace: Workspace, run: dict[str, Any], tip: str) -> list[dict[str, Any]]:
    """The run's violations as of ``tip``. At the run's commit, the stored ones (its check after the
    commit). A later commit on its branch may fix a violation or add one, so then the branch as a
    whole (base..tip) is checked against the same base commit's rules, and that replaces the
    stored rule check; other sources' findings (a model review) stay."""
    from promptrail.standards.check import SOURCE, check_commit

    stored = workspace.store.violations(run["id"])
    if tip == run["commit_sha"]:
        return stored
    base = run.get("base_sha")
    key = (str(workspace.repo.common_dir), base, tip)
    with _violations_lock:
        found = _violations_at_tip.get(key)
    if found is None:
        changes = [c.as_dict() for c in gitcommit._diff(workspace.repo, [base or gitcommit.EMPTY_TREE, tip])]
        result = check_commit(workspace.repo, base, tip, changes)
        found = [{**v.as_dict(), "message": redact(v.message)} for v in result.violations]
        with _violations_lock:
            if len(_violations_at_tip) >= 256:
                _violations_at_tip.clear()
            _violations_at_tip[key] = found
    return [v for v in stored if v.get("source") != SOURCE] + found


#: (repository, run, tip) → the stored label last known to hold at that tip.
_label_at_tip: dict[tuple[str, str, str], str] = {}


def current_label(workspace: Workspace, row: dict[str, Any]) -> str | None:
    """The gate label to show for ``row`` now (lens titles, ``history``, ``blame``).

    The stored label is what the last gate operation computed, for the run's commit; it only goes
    out of date when the run's branch moves (a new commit: stale, another violation). So the gate
    is recomputed, and the new label stored, only when the branch tip is neither the run's commit
    nor a tip this label was already confirmed for: the usual case reads one ref file."""
    stored = row.get("gate_status")
    # A direct-mode run's "branch" is the user's own: later commits there are not the run's.
    if not row.get("commit_sha") or stored in ("merged", "rolled back") or row.get("mode") != "isolated":
        return stored
    tip = workspace.repo.branch_sha_fast(row.get("branch")) or row["commit_sha"]
    key = (str(workspace.repo.common_dir), row["id"], tip)
    if tip == row["commit_sha"] or _label_at_tip.get(key) == stored:
        return stored
    try:
        label = gate_state(workspace, row).label
    except PromptrailError:  # a malformed policy: every operation names it; a label cannot
        return "policy error"
    if label != stored:
        with contextlib.suppress(PromptrailError):  # a read-only store still shows the live label
            workspace.store.update_run(row["id"], gate_status=label)
    _remember_label(key, label)
    return label


def _remember_label(key: tuple[str, str, str], label: str) -> None:
    if len(_label_at_tip) >= 4096:
        _label_at_tip.clear()
    _label_at_tip[key] = label


def _refresh(workspace: Workspace, run_id: str, sink: EventSink | None = None) -> GateState:
    run = workspace.store.get_run(run_id)
    assert run is not None
    state = gate_state(workspace, run)
    if state.status not in ("merged", "rolled_back"):
        workspace.store.update_run(run_id, gate_status=state.label)
        assert state.sha is not None
        _remember_label((str(workspace.repo.common_dir), run_id, state.sha), state.label)
    if sink:
        sink.emit(RunStatus(run_id, run["status"], commit=run.get("commit_sha"), cost_usd=run.get("cost_usd"),
                            gate={"status": state.label, "canMerge": state.can_merge}))
    return state


def _run(workspace: Workspace, run_ref: str) -> dict[str, Any]:
    run = workspace.store.get_run(workspace.store.resolve_run_id(run_ref))
    assert run is not None
    if not run.get("commit_sha"):
        raise PromptrailError(f"run {run['id']} has no commit (status: {run['status']}); there is nothing to gate")
    return run


# -- sign-off -----------------------------------------------------------------------------------
def why_not_sign_off(workspace: Workspace, run: dict[str, Any], actor: Identity,
                     policy: GatePolicy | None = None) -> str | None:
    """Why ``actor`` may not approve or reject ``run`` now, or None when they may."""
    policy = policy or policy_for(workspace, run)[0]
    if run.get("gate_status") in ("merged", "rolled back"):
        return f"run {run['id']} is already {run['gate_status']}"
    if not policy.may_approve(actor.email):
        return (f"{actor.email} is not an approver for this run "
                f"(approvers: {', '.join(policy.approvers)} in {policy.source})")
    if actor.email.lower() == (run.get("actor_email") or "").lower() and not policy.allow_self_approval:
        return (f"{actor.email} prompted run {run['id']}; the four-eyes rule needs someone else "
                "to sign off (allow_self_approval = false)")
    return None


def reviewable_by_me(workspace: Workspace, rows: list[dict[str, Any]]) -> set[str]:
    """The ids of ``rows`` whose gate is open and which this user (git identity) may sign off.
    For the editor's Approve · Reject · Simulate lenses; a broken policy or no identity → none."""
    open_rows = [r for r in rows if r.get("commit_sha") and r.get("gate_status") not in ("merged", "rolled back")]
    if not open_rows:
        return set()
    try:
        actor = workspace.repo.identity()
        policies: dict[str | None, GatePolicy] = {}  # one policy read per target branch, not per run
        allowed = set()
        for row in open_rows:
            if row.get("target_branch") not in policies:
                policies[row.get("target_branch")] = policy_for(workspace, row)[0]
            if why_not_sign_off(workspace, row, actor, policies[row.get("target_branch")]) is None:
                allowed.add(row["id"])
        return allowed
    except PromptrailError:
        return set()


def sign_off(workspace: Workspace, run_ref: str, decision: str, *, comment: str | None = None,
             reviewed_sha: str | None = None, sink: EventSink | None = None) -> GateState:
    """Approve or reject the run's current commit as the git identity of this user."""
    assert decision in ("approve", "reject")
    run = _run(workspace, run_ref)
    actor = workspace.repo.identity()
    refusal = why_not_sign_off(workspace, run, actor)
    if refusal:
        raise PromptrailError(refusal)
    expected = resolve_reviewed_sha(workspace.repo, reviewed_sha) if reviewed_sha else run["commit_sha"]
    tip = reviewed_tip(workspace.repo, run)
    if tip != expected and run.get("mode") != "isolated":
        raise PromptrailError(f"{expected[:12]} is not run {run['id']}'s commit; a direct-mode run is reviewed at "
                              f"its own commit {tip[:12]} (sign off with --sha {tip[:12]}, or without --sha)")
    if tip != expected:
        raise PromptrailError(f"the run's branch {run['branch']} moved since it was opened for review "
                              f"(now at {tip[:12]}); review that commit and sign off with --sha {tip[:12]}")
    workspace.store.add_signoff({"run_id": run["id"], "commit_sha": tip, "actor_name": actor.name,
                                 "actor_email": actor.email, "decision": decision, "comment": comment,
                                 "ts": utc_now()},
                                event_kind="gate.approved" if decision == "approve" else "gate.rejected",
                                actor=str(actor), data={"sha": tip, "comment": comment})
    return _refresh(workspace, run["id"], sink)


# -- simulate -----------------------------------------------------------------------------------
@contextlib.contextmanager
def _one_at_a_time(repo: Repo, name: str, busy: str) -> Iterator[None]:
    """Hold the repository's lock file ``name`` for the block, or fail at once with ``busy``."""
    handle = repo.try_lock(name)
    if handle is None:
        raise PromptrailError(busy)
    with handle:
        yield


@contextlib.contextmanager
def _scratch_worktree(repo: Repo, name: str, sha: str) -> Iterator[Path]:
    """A detached worktree at ``sha`` that disappears afterwards."""
    path = worktree.worktree_path(repo, name)
    if path.exists():
        worktree.remove(repo, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with repo.write_lock():
        result = repo.run("worktree", "add", "-q", "--detach", str(path), sha)
    if not result.ok:
        raise PromptrailError(f"could not check out {sha[:12]} to work on it: {result.output}")
    try:
        yield path
    finally:
        worktree.remove(repo, path)


async def simulate(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> GateState:
    """Run the policy's checks on exactly the run's current commit, streaming their output into
    the run's log, and store exit code, duration and output of each."""
    from promptrail.logbook import LogBook

    run = _run(workspace, run_ref)
    actor = await asyncio.to_thread(workspace.repo.identity)
    policy, _ = await asyncio.to_thread(policy_for, workspace, run)
    tip = reviewed_tip(workspace.repo, run)
    fan = sink if isinstance(sink, FanOut) else FanOut(sink) if sink else FanOut()
    # One simulation of a run at a time: each continues the run's log numbering and checks out
    # the same scratch worktree, so a second one at once would collide with the first on both.
    with _one_at_a_time(workspace.repo, f"simulate-{run['id']}",
                        f"a gate simulation of run {run['id']} is already running; wait for it to end"):
        last = workspace.store.log(run["id"])
        log = LogBook(workspace.store, run["id"], fan, start_seq=last[-1]["seq"] if last else 0)
        try:
            if not policy.checks:
                log.add("gate", f"no [[gate.check]] in {policy.source}; nothing to simulate")
            with _scratch_worktree(workspace.repo, f"{run['id']}-checks", tip) as folder:
                for spec in policy.checks:
                    log.add("gate", f"check '{spec.name}' on {tip[:12]}: $ {spec.run}")
                    result = await run_check(spec, folder, log)
                    workspace.store.add_check({"run_id": run["id"], "commit_sha": tip, **result})
                    log.add("gate", f"check '{spec.name}' {result['status']} (exit {result['exit_code']}, "
                                    f"{result['duration_ms']} ms)")
        finally:
            await log.close()
    checks = {c["name"]: c["status"] for c in workspace.store.checks(run["id"]) if c["commit_sha"] == tip}
    # Seals the log as it now is: the checks' output appended to the finished run's is covered too.
    workspace.store.record_event("gate.simulated", run_id=run["id"], actor=str(actor), seal="log",
                                 data={"sha": tip, "checks": checks})
    return _refresh(workspace, run["id"], fan)


async def run_check(spec: CheckSpec, folder: Path, log: Any) -> dict[str, Any]:
    """Run one check command in its own process group; stream its output lines to ``log``."""
    from promptrail.agents.stream_json import decode_line, read_lines

    started = time.monotonic()
    process = await asyncio.create_subprocess_shell(
        spec.run, cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
    output: list[str] = []

    async def pump() -> None:
        assert process.stdout is not None
        lines = 0
        async for line in read_lines(process.stdout):
            lines += 1
            if lines <= CHECK_LOG_LINES:
                text = decode_line(line)
                output.append(text)
                log.add("check", text)
            elif lines == CHECK_LOG_LINES + 1:
                output.append(f"[promptrail] the check printed more than {CHECK_LOG_LINES:,} lines; the rest is "
                              "not kept (the check goes on, and its exit code decides)")
                log.add("warning", output[-1])

    status = "passed"
    both = asyncio.gather(pump(), process.wait())
    # Read when cancelled: a gather cancelled from outside keeps a CancelledError nobody awaits.
    both.add_done_callback(lambda future: future.cancelled() or future.exception())
    try:
        await asyncio.wait_for(both, timeout=spec.timeout_s)
    except asyncio.TimeoutError:
        status = "timed_out"
        output.append(f"[promptrail] timed out after {spec.timeout_s:g} s; the check was stopped")
        log.add("error", output[-1])
        # Also drops the pipes a process that escaped the group may hold, and reaps the shell.
        await end_group(process, grace=2.0)
    except asyncio.CancelledError:  # Ctrl-C, or the server shutting down: no check is left running
        await asyncio.shield(end_group(process, grace=2.0))
        raise
    exit_code = process.returncode
    if status == "passed" and exit_code != 0:
        status = "failed"
    return {"name": spec.name, "command": spec.run, "exit_code": exit_code, "status": status,
            "duration_ms": int((time.monotonic() - started) * 1000), "output": redact("\n".join(output)),
            "ts": utc_now()}


# -- merge and rollback -------------------------------------------------------------------------
def _checked_out_in(repo: Repo, branch: str) -> Path | None:
    """The worktree that has ``branch`` checked out, if any."""
    listing = repo.run("worktree", "list", "--porcelain").stdout
    current: Path | None = None
    for line in listing.splitlines():
        if line.startswith("worktree "):
            current = Path(line[len("worktree "):])
        elif line == f"branch refs/heads/{branch}":
            return current
    return None


def _advance(repo: Repo, target: str, old: str, new: str, identity: Identity) -> None:
    """Move ``target`` from ``old`` to ``new`` (a descendant), never touching uncommitted work."""
    folder = _checked_out_in(repo, target)
    if folder is None:
        result = repo.run("update-ref", f"refs/heads/{target}", new, old)
    else:
        # The target is someone's checked-out branch: let git advance it; it refuses rather than
        # overwrite local changes, and then the target stays where it was.
        result = repo.run("merge", "--ff-only", "-q", new, cwd=folder, env=identity.as_env())
    if not result.ok:
        raise PromptrailError(f"could not advance {target} to {new[:12]}: "
                              f"{(result.output.splitlines() or ['git refused'])[0]}; nothing was changed")


def merge(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> GateState:
    """Deploy the run: fast-forward the target when possible, else a merge commit with the trailer."""
    repo = workspace.repo
    run = _run(workspace, run_ref)
    actor = repo.identity()
    state = gate_state(workspace, run)
    if state.status == "merged":
        raise PromptrailError(f"run {run['id']} is already merged into {state.target}")
    if state.merge_blockers and not state.on_target:  # on the target, missing approvals are not the point
        raise PromptrailError(f"run {run['id']} cannot be merged: {'; '.join(state.merge_blockers)}")
    target, tip = state.target, state.sha
    assert target and tip
    with repo.write_lock():
        # Checked again under the lock: of two merges at once, the second finds the first's record.
        _refuse_if_done(workspace, run["id"], target)
        if state.on_target:  # seen under the lock: a merge that just landed it was refused above
            raise PromptrailError(f"run {run['id']}: {state.merge_blockers[0]} (an approval still records the "
                                  "review)")
        old = repo.branch_sha(target)
        if old is None:
            raise PromptrailError(f"the target branch '{target}' does not exist")
        if repo.run("merge-base", "--is-ancestor", old, tip).ok:
            new, how = tip, "fast-forward"
        else:
            new, how = _merge_commit(workspace, run, old, tip, actor), "merge commit"
        _advance(repo, target, old, new, actor)
        workspace.store.update_run(run["id"], gate_status="merged")
        workspace.store.record_event("deployed", run_id=run["id"], actor=str(actor),
                                     data={"sha": tip, "target": target, "from": old, "to": new, "how": how})
    return _refresh(workspace, run["id"], sink)


def _refuse_if_done(workspace: Workspace, run_id: str, target: str, *, merged_too: bool = True) -> None:
    """Refuse a run that is already rolled back, or merged (``merged_too``), as the store says now:
    called under the repository lock, it sees what a merge or rollback that just ran recorded."""
    status = (workspace.store.get_run(run_id) or {}).get("gate_status")
    if status == "merged" and merged_too:
        raise PromptrailError(f"run {run_id} is already merged into {target}")
    if status == "rolled back":
        raise PromptrailError(f"run {run_id} is already rolled back")


def _merge_commit(workspace: Workspace, run: dict[str, Any], old: str, tip: str, actor: Identity) -> str:
    repo = workspace.repo
    message = (f"Merge run {run['id']}: {gitcommit.without_controls(run.get('summary') or run['prompt'])}\n\n"
               f"{gitcommit.TRAILER}: {run['id']}\n")
    with _scratch_worktree(repo, f"{run['id']}-merge", old) as folder:
        result = repo.run("merge", "--no-ff", "-q", "-m", message, tip, cwd=folder, env=actor.as_env())
        if not result.ok:
            repo.run("merge", "--abort", cwd=folder)
            conflicted = "conflict" in result.output.lower()
            raise PromptrailError(
                f"run {run['id']} {'conflicts with' if conflicted else 'cannot be merged into'} the target "
                f"(now at {old[:12]}); the target is untouched: rebase the run's branch {run['branch']} and "
                "ask for a new review")
        return repo.run("rev-parse", "HEAD", cwd=folder).stdout.strip()


def _merged_range(workspace: Workspace, run: dict[str, Any]) -> tuple[str, str]:
    """``(before, after)``: the target's commits around what ``run`` brought to it. The ``deployed``
    event records both (a fast-forward may bring several commits of the run's branch, a merge commit
    all of them); a run that reached the target otherwise (direct mode) brought just its commit."""
    rows = workspace.store.query("SELECT data FROM events WHERE run_id = ? AND kind = 'deployed' "
                                 "ORDER BY seq DESC LIMIT 1", [run["id"]])
    if rows:
        deployed = json.loads(rows[0]["data"])
        return deployed["from"], deployed["to"]
    parent = workspace.repo.run("rev-parse", "-q", "--verify", f"{run['commit_sha']}^1")
    return (parent.stdout.strip() if parent.ok else gitcommit.EMPTY_TREE), run["commit_sha"]


def rollback(workspace: Workspace, run_ref: str, sink: EventSink | None = None) -> dict[str, Any]:
    """Revert everything the run's merge brought to the target, as a new attributed run (trailer
    Promptrail-Reverts)."""
    from promptrail.queries import run_json
    from promptrail.runs import new_run_id

    repo, store = workspace.repo, workspace.store
    run = _run(workspace, run_ref)
    if run.get("gate_status") == "rolled back":
        raise PromptrailError(f"run {run['id']} is already rolled back")
    actor = repo.identity()
    _, target = policy_for(workspace, run)
    before, after = _merged_range(workspace, run)
    with repo.write_lock():
        _refuse_if_done(workspace, run["id"], target, merged_too=False)  # another rollback got here first
        old = repo.branch_sha(target)
        if old is None or not repo.run("merge-base", "--is-ancestor", after, old).ok:
            raise PromptrailError(f"run {run['id']} is not on {target}; only a merged run can be rolled back")
        rollback_id = new_run_id()
        summary = f"Roll back run {run['id']}: {gitcommit.without_controls(run.get('summary') or run['prompt'])}"
        single = repo.run("rev-list", "--parents", "-n1", after).stdout.split()[1:] in ([before], [])
        reverted_what = f"commit {after}" if single else f"{before}..{after}, all that the run brought to {target}"
        message = (f"{summary}\n\nThis reverts {reverted_what}.\n\n"
                   f"{gitcommit.TRAILER}: {rollback_id}\n{REVERTS_TRAILER}: {run['id']}\n")
        started = utc_now()
        with _scratch_worktree(repo, f"{rollback_id}-revert", old) as folder:
            # One reverse patch of the whole merge, applied three-way like `git revert` (which
            # cannot undo a fast-forward over several commits, or a merge, in one step). Plumbing
            # diff-tree: the user's diff settings (colour, prefixes, external tools) stay out of it.
            patch = repo.run("diff-tree", "-p", "--binary", "--full-index", after, before).stdout
            reverted = repo.run("apply", "--3way", "--index", "--whitespace=nowarn", cwd=folder, stdin=patch)
            if not reverted.ok:
                raise PromptrailError(f"reverting run {run['id']} conflicts with later changes on {target}; "
                                      "the target is untouched: revert it by hand")
            committed = repo.run("commit", "-q", "-F", "-", cwd=folder, env=actor.as_env(), stdin=message)
            if not committed.ok:
                raise PromptrailError(f"the revert commit was refused: {committed.output}")
            new = repo.run("rev-parse", "HEAD", cwd=folder).stdout.strip()
        _advance(repo, target, old, new, actor)
        files = [f.as_dict() for f in gitcommit.changes_in_commit(repo, new)]
        store.insert_run({"id": rollback_id, "prompt": summary, "summary": summary, "actor_name": actor.name,
                          "actor_email": actor.email, "agent": "rollback", "agent_label": "git revert",
                          "model": None, "mode": "direct", "status": "succeeded", "base_sha": old,
                          "commit_sha": new, "branch": target, "target_branch": target,
                          "repo_root": str(repo.root), "started_at": started, "ended_at": utc_now(),
                          "gate_status": "merged",
                          # No model was involved: a revert's cost is known to be nothing.
                          "cost_usd": 0.0, "cost_source": "no agent",
                          "reverts_run_id": run["id"]}, event_actor=str(actor))
        store.set_run_files(rollback_id, files)
        # As for any run's commit: the event seals the files just stored (``verify`` compares them).
        store.record_event("run.committed", run_id=rollback_id, actor=str(actor),
                           data={"commit": new, "branch": target, "files": [f["path"] for f in files]})
        gitcommit.add_note(repo, new, {"run_id": rollback_id, "reverts": run["id"], "tool": "promptrail",
                                       "actor": {"name": actor.name, "email": actor.email}})
        store.update_run(run["id"], gate_status="rolled back")
        store.record_event("rolled_back", run_id=run["id"], actor=str(actor),
                           data={"target": target, "reverted": f"{before}..{after}", "revert_commit": new,
                                 "rollback_run": rollback_id})
    if sink:
        sink.emit(RunStatus(run["id"], run["status"], commit=run["commit_sha"], gate={"status": "rolled back"}))
    return run_json(workspace, rollback_id)
