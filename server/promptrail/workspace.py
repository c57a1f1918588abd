"""A workspace is one git repository with its audit store and configuration.

Both faces open a ``Workspace`` for a path and then call the core through it: ``runs`` to start
runs, ``queries`` to ask about them. Opening one also settles runs that a dead process left
``running`` (they become ``interrupted``), so a crash always leaves evidence, never a lie.
"""

from __future__ import annotations

import os
import signal
import socket
from functools import cached_property
from pathlib import Path

from promptrail.audit.store import AuditStore, utc_now
from promptrail.config import Config, load_config
from promptrail.gitops.attribution import RunResolver
from promptrail.gitops.repo import Repo


class Workspace:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.repo = Repo(path)
        self.store = AuditStore(self.repo.state_dir / "audit.db")
        self.resolver = RunResolver(self.repo, self.store)
        self.settle_interrupted_runs()

    @property
    def root(self) -> Path:
        return self.repo.root

    @cached_property
    def config(self) -> Config:
        return load_config(self.repo.root)

    def reload_config(self) -> Config:
        self.__dict__.pop("config", None)
        return self.config

    def settle_interrupted_runs(self) -> list[str]:
        """Mark runs whose owning process on this host is gone as ``interrupted``."""
        settled = []
        host = socket.gethostname()
        for run in self.store.runs_left_running():
            if run.get("host") == host and run.get("pid") and not _alive(run["pid"]):
                ended = _end_orphaned_agent(run)
                error = "the promptrail process running it stopped unexpectedly"
                if ended:
                    error += f"; its agent's {ended} leftover process(es) were ended"
                self.store.update_run(run["id"], status="interrupted", ended_at=utc_now(), error=error)
                # Its final event, as for any run that ended: it seals the run's fields and rows.
                self.store.record_event("run.interrupted", run_id=run["id"], actor=None,
                                        data={"pid": run["pid"]}, seal="run")
                settled.append(run["id"])
        return settled

    def close(self) -> None:
        self.store.close()


def _end_orphaned_agent(run: dict) -> int:
    """End what is left of a dead run's agent: processes still in its process group *and* working
    in the run's folder (both, so a reused group id can never hit an unrelated process)."""
    pgid, folder = run.get("agent_pgid"), run.get("worktree") or run.get("repo_root")
    if not pgid or not folder:
        return 0
    folder = os.path.realpath(folder)
    leftovers = 0
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if not entry.isdigit():
            continue
        try:
            if os.getpgid(int(entry)) != pgid:
                continue
            cwd = os.path.realpath(os.readlink(f"/proc/{entry}/cwd"))
        except OSError:
            continue
        if cwd == folder or cwd.startswith(folder + os.sep):
            leftovers += 1
    if leftovers:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return 0
    return leftovers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
