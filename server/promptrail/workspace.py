"""A workspace is one git repository with its audit store and configuration.

Both faces open a ``Workspace`` for a path and then call the core through it: ``runs`` to start
runs, ``queries`` to ask about them. Opening one also settles runs that a dead process left
``running`` (they become ``interrupted``), so a crash always leaves evidence, never a lie.
"""

from __future__ import annotations

import os
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
                self.store.update_run(run["id"], status="interrupted", ended_at=utc_now(),
                                      error="the promptrail process running it stopped unexpectedly")
                self.store.record_event("run.interrupted", run_id=run["id"], actor=None,
                                        data={"pid": run["pid"]})
                settled.append(run["id"])
        return settled

    def close(self) -> None:
        self.store.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
