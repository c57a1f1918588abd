"""One git repository as promptrail sees it: its root, common dir, HEAD, the user's identity,
and a serialising lock for writes that touch shared refs.

GitPython finds the repository and reads refs; commands run as real ``git`` processes, so
hooks, config and signing behave exactly as for the user. ``run`` never raises for a non-zero exit: callers get
the status and both streams, because a failing hook is an outcome to record, not a crash.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import git

from promptrail.errors import PromptrailError

_lock_registry: dict[str, "_ReentrantFileLock"] = {}
_lock_registry_guard = threading.Lock()


@dataclass(frozen=True)
class GitResult:
    status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    @property
    def output(self) -> str:
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str

    def as_env(self) -> dict[str, str]:
        return {"GIT_AUTHOR_NAME": self.name, "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": self.name, "GIT_COMMITTER_EMAIL": self.email}

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


#: A full commit id, SHA-1 or SHA-256.
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
NO_IDENTITY = ("git has no identity (user.name / user.email); set one with "
               "`git config --global user.name \"Your Name\"` and "
               "`git config --global user.email you@example.com` (promptrail never writes your git config)")


class Repo:
    """A git repository found from any path inside it (or inside one of its worktrees)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        start = Path(path).expanduser()
        if not start.exists():
            raise PromptrailError(f"{start}: no such file or directory")
        folder = start if start.is_dir() else start.parent
        try:
            self._repo = git.Repo(folder, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise PromptrailError(f"{start.resolve()} is not inside a git repository; run `git init` there "
                                  "or pass --repo PATH") from None
        if self._repo.bare:
            raise PromptrailError(f"{start} is a bare git repository; promptrail needs a working tree")
        self.root = Path(self._repo.working_tree_dir).resolve()
        self.common_dir = Path(self._repo.common_dir).resolve()

    # -- running git ------------------------------------------------------------------------
    def run(self, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            stdin: str | bytes | None = None) -> GitResult:
        # A plain subprocess (not GitPython's runner): we need per-call cwd, env and stdin, and
        # the exit status as data. Its own session: a Ctrl-C in the terminal goes to the terminal's
        # process group, and must reach promptrail (which cancels the run) but never a `git commit`
        # and its hooks half-way, which would turn the run into a made-up hook failure.
        data = stdin.encode("utf-8", "surrogateescape") if isinstance(stdin, str) else stdin
        completed = subprocess.run(["git", *args], cwd=cwd or self.root, input=data,
                                   stdin=None if data is not None else subprocess.DEVNULL,
                                   capture_output=True, env={**os.environ, **env} if env else None,
                                   start_new_session=True)
        return GitResult(completed.returncode, completed.stdout.decode("utf-8", "surrogateescape"),
                         completed.stderr.decode("utf-8", "replace"))

    def check(self, *args: str, **kwargs) -> str:
        """Run git and return stdout; a failure here is a bug or a broken repository."""
        result = self.run(*args, **kwargs)
        if not result.ok:
            raise PromptrailError(f"git {' '.join(args[:2])} failed: {result.output.splitlines()[-1:] or ''}")
        return result.stdout

    # -- facts ------------------------------------------------------------------------------
    def head_sha(self) -> str | None:
        """HEAD's commit, or None in a repository without commits."""
        result = self.run("rev-parse", "--verify", "-q", "HEAD^{commit}")
        return result.stdout.strip() if result.ok else None

    def head_sha_fast(self) -> str | None:
        """HEAD's commit read from the ref files, without starting git (hot path of lenses)."""
        try:
            return self._repo.head.commit.hexsha
        except (ValueError, TypeError, git.GitCommandError):
            return None

    def branch_sha(self, branch: str | None) -> str | None:
        """The commit ``refs/heads/<branch>`` points at, or None when there is no such branch."""
        if not branch:
            return None
        result = self.run("rev-parse", "-q", "--verify", f"refs/heads/{branch}")
        return result.stdout.strip() if result.ok else None

    def branch_sha_fast(self, branch: str | None) -> str | None:
        """``branch_sha`` read from the loose or packed ref file, without starting git (gate labels
        are shown on the editor's hot path). Anything else (a symbolic ref, reftable) asks git."""
        if not branch:
            return None
        ref = f"refs/heads/{branch}"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            loose = self.common_dir / ref
            if loose.is_file():
                value = loose.read_text(encoding="ascii").strip()
                return value if _SHA.fullmatch(value) else self.branch_sha(branch)
            for line in (self.common_dir / "packed-refs").read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name == ref and _SHA.fullmatch(sha):
                    return sha
        return self.branch_sha(branch)

    def head_branch(self) -> str | None:
        """The checked-out branch name, or None on a detached HEAD."""
        result = self.run("symbolic-ref", "-q", "--short", "HEAD")
        return result.stdout.strip() if result.ok else None

    def identity(self) -> Identity:
        """The user's git identity, never a guessed one (``user.useConfigOnly``)."""
        result = self.run("-c", "user.useConfigOnly=true", "var", "GIT_AUTHOR_IDENT")
        if not result.ok:
            raise PromptrailError(NO_IDENTITY)
        ident = result.stdout.strip()
        name, _, rest = ident.partition(" <")
        email = rest.split(">", 1)[0]
        if not name or not email:
            raise PromptrailError(NO_IDENTITY)
        return Identity(name, email)

    def config_stamp(self) -> tuple[float, ...]:
        """Modification times of the git config files that can set the identity: a cheap key for
        caching answers that depend on who the user is."""
        home = Path.home()
        xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        stamps = []
        for path in (self.common_dir / "config", home / ".gitconfig", xdg / "git" / "config"):
            try:
                stamps.append(path.stat().st_mtime)
            except OSError:
                stamps.append(0.0)
        return tuple(stamps)

    def relpath(self, path: Path) -> str:
        """A path (absolute or relative to cwd) as git sees it, relative to the root."""
        absolute = Path(path).expanduser().resolve()
        try:
            return absolute.relative_to(self.root).as_posix()
        except ValueError:
            raise PromptrailError(f"{path} is outside the repository at {self.root}") from None

    @property
    def state_dir(self) -> Path:
        """promptrail's own folder inside the git common dir (shared by every worktree)."""
        folder = self.common_dir / "promptrail"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    # -- serialisation ------------------------------------------------------------------------
    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        """Serialise writes to shared refs (commits, notes, worktree admin) across threads and
        processes, so concurrent runs never meet an ``index.lock`` or ``cannot lock ref``.
        Re-entrant within a thread (a merge holds it while making its scratch worktree)."""
        lock_path = self.state_dir / "repo.lock"
        with _lock_registry_guard:
            entry = _lock_registry.setdefault(str(lock_path), _ReentrantFileLock(lock_path))
        with entry:
            yield


    def try_lock(self, name: str) -> IO[str] | None:
        """The repository's lock file ``name``, locked for as long as the returned file stays open;
        None when another thread or process holds it (``flock`` locks per open file, so both are
        kept out; a process that dies lets go). The file holds what the holder wrote into it."""
        folder = self.state_dir / "locks"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            handle = open(folder / f"{name}.lock", "a+")
        except OSError as exc:
            raise PromptrailError(f"cannot use the lock file {folder / f'{name}.lock'}: {exc.strerror or exc}; "
                                  f"check that {folder} is writable") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return handle

    def lock_holder(self, name: str) -> str:
        """What the holder of lock file ``name`` wrote into it ("" if nothing)."""
        try:
            return (self.state_dir / "locks" / f"{name}.lock").read_text().strip()
        except OSError:
            return ""


class _ReentrantFileLock:
    """A thread lock plus an ``flock`` on a file, taken once per outermost holder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._handle = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        if self._depth == 0:
            self._handle = open(self.path, "a+")
            fcntl.flock(self._handle, fcntl.LOCK_EX)
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth == 0 and self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
        self._thread_lock.release()
