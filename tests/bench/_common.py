"""Shared by the benchmark scripts: a small raw JSON-RPC/LSP client over stdio, statistics and the
result table, an isolated environment, and the fixture repositories (built once, cached under /tmp).

The client is deliberately not pygls': it frames and parses messages with ``json`` only, so the
client's own cost is small and the same for every server it drives, and a timing is taken when a
response arrives (in the reader), not when the awaiting coroutine happens to resume.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `tests.support` when run as a plain script
    sys.path.insert(0, str(ROOT))

PY = sys.executable
SERVER_COMMAND = [PY, "-m", "promptrail", "serve"]
MINIMAL_SERVER = [PY, str(Path(__file__).resolve().parent / "minimal_server.py")]
BENCH_DIR = Path(os.environ.get("PROMPTRAIL_BENCH_DIR", "/tmp/promptrail-bench"))
# Made on import: scripts create their temporary folders straight inside it, and on a fresh
# machine nothing else may have made it yet.
BENCH_DIR.mkdir(parents=True, exist_ok=True)
IDENTITY = ("Bench Dev", "bench@example.com")


# -- environment ------------------------------------------------------------------------------------
def bench_env() -> dict[str, str]:
    """The environment for git, the CLI and the servers: a private HOME (no user config, worktrees
    in a private cache), no system git config, and no inherited git variables."""
    home = BENCH_DIR / "home"
    (home / ".config").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"), XDG_CACHE_HOME=str(home / ".cache"),
               GIT_CONFIG_NOSYSTEM="1")
    # As on a user's machine, modules are loaded from cached bytecode: with this variable set
    # (some sandboxes set it) every server start would compile promptrail's sources again.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def use_bench_env() -> None:
    """Apply ``bench_env`` to this process (for the in-process core API used to build fixtures)."""
    for key in [k for k in os.environ if k.startswith("GIT_")] + ["PYTHONDONTWRITEBYTECODE"]:
        os.environ.pop(key, None)
    os.environ.update(bench_env())


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, input=stdin, capture_output=True, text=True, env=bench_env())
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}: {result.stderr.strip()}")
    return result.stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.name", IDENTITY[0])
    git(path, "config", "user.email", IDENTITY[1])
    return path


# -- statistics and reporting -----------------------------------------------------------------------
def median(values: list[float]) -> float:
    return statistics.median(values)


def p95(values: list[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


@dataclass
class Table:
    title: str
    rows: list[tuple[str, ...]] = field(default_factory=list)
    verdicts: list[bool] = field(default_factory=list)

    HEADER = ("measure", "n", "median", "p95", "baseline", "ratio", "target", "result")

    def add(self, measure: str, n: int | str, med: str, p: str = "", baseline: str = "", ratio: str = "",
            target: str = "", ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "MISS")
        if ok is not None:
            self.verdicts.append(ok)
        self.rows.append((measure, str(n), med, p, baseline, ratio, target, verdict))

    def print(self) -> None:
        widths = [max(len(row[i]) for row in [self.HEADER, *self.rows]) for i in range(len(self.HEADER))]
        line = "  ".join("-" * w for w in widths)
        print(f"\n{self.title}")
        print(line)
        print("  ".join(h.ljust(w) for h, w in zip(self.HEADER, widths)))
        print(line)
        for row in self.rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        print(line)
        passed = sum(self.verdicts)
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"{passed}/{len(self.verdicts)} targets met · {os.cpu_count()} cores · load average {load} "
              "(other work on the machine skews absolute times; ratios less so)", flush=True)


def note(message: str) -> None:
    print(f"  · {message}", flush=True)


# -- a raw LSP client ---------------------------------------------------------------------------------
class RpcError(Exception):
    pass


class LspClient:
    """Speaks LSP over a child's stdio. Server→client requests (progress tokens, lens refresh) are
    answered with ``null`` at once, as an editor would; notifications go to ``on(method, fn)``."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[tuple[Any, float]]] = {}
        self._handlers: dict[str, Callable[[Any], None]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self.stderr_path: Path | None = None
        self.server_requests: list[str] = []
        #: Why the connection is unusable (the server exited, or sent a garbled message).
        self.dead: str | None = None
        #: Keep the server's stderr file after stop (set when something went wrong).
        self.keep_stderr = False

    async def start(self, command: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
        """Start the server; returns the monotonic time just before the process was spawned."""
        fd, name = tempfile.mkstemp(prefix="lsp-stderr-", suffix=".log", dir=_scratch())
        self.stderr_path = Path(name)
        t0 = time.perf_counter()
        self.proc = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=fd,
            env=env if env is not None else bench_env(), cwd=cwd, limit=1 << 24)
        os.close(fd)
        self._reader_task = asyncio.create_task(self._read_loop())
        return t0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def on(self, method: str, handler: Callable[[Any], None]) -> None:
        self._handlers[method] = handler

    def _write(self, message: dict[str, Any]) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        body = json.dumps(message, separators=(",", ":")).encode("utf-8")
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)

    def send_request(self, method: str, params: Any = None) -> tuple[asyncio.Future[tuple[Any, float]], float]:
        """Send now; returns (future of (result, arrival time), send time)."""
        if self.dead is not None:
            raise RpcError(self.dead)
        self._next_id += 1
        future: asyncio.Future[tuple[Any, float]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = future
        sent = time.perf_counter()
        self._write({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        return future, sent

    async def request(self, method: str, params: Any = None, timeout: float = 120.0) -> Any:
        result, _ = await self.timed_request(method, params, timeout)
        return result

    async def timed_request(self, method: str, params: Any = None, timeout: float = 120.0) -> tuple[Any, float]:
        """(result, seconds from write to the response's arrival)."""
        future, sent = self.send_request(method, params)
        assert self.proc is not None and self.proc.stdin is not None
        await self.proc.stdin.drain()
        result, arrived = await asyncio.wait_for(future, timeout)
        return result, arrived - sent

    def notify(self, method: str, params: Any = None) -> None:
        self._write({"jsonrpc": "2.0", "method": method, "params": params})

    async def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        reader = self.proc.stdout
        try:
            while True:
                header = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in header.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                arrived = time.perf_counter()
                try:
                    message = json.loads(body)
                except ValueError:
                    dump = _scratch() / f"bad-message-{os.getpid()}-{self._next_id}.bin"
                    dump.write_bytes(header + body)
                    self.keep_stderr = True
                    raise RpcError(f"unparsable message ({length} bytes) kept in {dump}") from None
                self._dispatch(message, arrived)
        except (asyncio.IncompleteReadError, ConnectionError):
            reason = "server exited"
        except Exception as exc:  # noqa: BLE001 - a garbled stream fails the waiting requests, loudly
            reason = f"bad message from the server: {exc!r}"
        self.dead = f"{reason}; its stderr: {self.stderr_path}"
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RpcError(self.dead))

    def _dispatch(self, message: dict[str, Any], arrived: float) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RpcError(json.dumps(message["error"])))
                else:
                    future.set_result((message.get("result"), arrived))
            return
        if "id" in message:  # a request from the server: answer as an editor would
            self.server_requests.append(method)
            self._write({"jsonrpc": "2.0", "id": message["id"], "result": None})
        handler = self._handlers.get(method)
        if handler is not None:
            handler(message.get("params"))

    # -- LSP conveniences --------------------------------------------------------------------------------
    async def initialize(self, folder: Path | None) -> Any:
        params = {
            "processId": os.getpid(),
            "rootUri": folder.as_uri() if folder else None,
            "workspaceFolders": [{"uri": folder.as_uri(), "name": folder.name}] if folder else None,
            "capabilities": {
                "window": {"workDoneProgress": True},
                "workspace": {"workspaceFolders": True, "codeLens": {"refreshSupport": True}},
                "textDocument": {"codeLens": {}, "synchronization": {"didSave": True}},
                "general": {"positionEncodings": ["utf-16"]},
            },
        }
        result = await self.request("initialize", params)
        self.notify("initialized", {})
        return result

    def did_open(self, path: Path, text: str | None = None, language: str = "python") -> str:
        uri = path.as_uri()
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language, "version": 1, "text": path.read_text() if text is None else text}})
        return uri

    async def code_lens(self, uri: str) -> tuple[list[Any], float]:
        result, seconds = await self.timed_request("textDocument/codeLens", {"textDocument": {"uri": uri}})
        return list(result or []), seconds

    async def stop(self) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.returncode is None:
                await self.request("shutdown", None, timeout=15)
                self.notify("exit")
                await self.proc.stdin.drain()  # type: ignore[union-attr]
                await asyncio.wait_for(self.proc.wait(), 10)
        except (RpcError, TimeoutError, ConnectionError, asyncio.TimeoutError):
            pass
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()
            if self._reader_task is not None:
                self._reader_task.cancel()
            if self.stderr_path is not None and not self.keep_stderr and self.proc.returncode in (0, -9):
                self.stderr_path.unlink(missing_ok=True)


def _scratch() -> Path:
    path = BENCH_DIR / "scratch"
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- watching the server's children ------------------------------------------------------------------
def child_commands(pid: int) -> list[str]:
    """Command lines of ``pid``'s direct children (from /proc; any thread may have spawned them)."""
    found = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                found.append(Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
            except OSError:
                continue
    return found


class ChildWatcher:
    """Polls a process's children from a thread while requests run; ``seen`` keeps every distinct
    command line observed (a `git blame` on the lens file lasts far longer than the poll period)."""

    def __init__(self, pid: int, period: float = 0.002) -> None:
        import threading

        self.pid, self.period = pid, period
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "ChildWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for command in child_commands(self.pid):
                self.seen[command] = self.seen.get(command, 0) + 1
            time.sleep(self.period)

    def git_commands(self, word: str = "") -> list[str]:
        return [c for c in self.seen if c.startswith("git ") and word in c]


# -- fixture repositories --------------------------------------------------------------------------------
def _fixture_version(name: str, layout: str) -> str:
    from promptrail import __version__
    from promptrail.audit.store import SCHEMA_VERSION

    return f"{name}-{layout}-pr{__version__}-schema{SCHEMA_VERSION}"


def cached_fixture(name: str, layout: str, build: Callable[[Path], None]) -> Path:
    """``BENCH_DIR/<name>-<version>/repo``, built by ``build(repo_path)`` the first time only.
    The key names the fixture's layout and the promptrail and schema versions that built it."""
    key = _fixture_version(name, layout)
    home = BENCH_DIR / key
    repo = home / "repo"
    if (home / "COMPLETE").exists():
        return repo
    for stale in BENCH_DIR.glob(f"{name}-*"):  # older versions of this fixture, and a half-built one
        shutil.rmtree(stale, ignore_errors=True)
    home.mkdir(parents=True)
    started = time.perf_counter()
    print(f"  · building fixture {key} (once; cached in {home}) …", flush=True)
    use_bench_env()
    build(repo)
    (home / "COMPLETE").write_text(f"built in {time.perf_counter() - started:.1f}s\n")
    print(f"  · built in {time.perf_counter() - started:.1f}s", flush=True)
    return repo


def _source_line(tag: str, number: int, rng: random.Random) -> str:
    """A plausible, unique Python line (unique so each recorded Edit matches exactly once)."""
    kind = rng.randrange(4)
    if kind == 0:
        return f"    value_{tag}_{number} = compute({number}, scale={rng.randrange(100)})"
    if kind == 1:
        return f"    if value_{tag}_{number - 1} > {rng.randrange(1000)}:  # {tag}{number}"
    if kind == 2:
        return f"        log.debug('step {tag}{number}: %s', value_{tag}_{number - 2})"
    return f"    result.append(transform_{tag}(item_{number}, {rng.random():.6f}))"


def python_file(tag: str, lines: int, rng: random.Random) -> list[str]:
    out: list[str] = []
    number = 0
    while len(out) < lines:
        out.append(f"def func_{tag}_{number}(item_{number}, result):")
        for _ in range(min(14, lines - len(out))):
            number += 1
            out.append(_source_line(tag, number, rng))
        number += 1
    return out[:lines]


LENS_LAYOUT = "500c-50ai-3000l-v1"
LENS_FILE = "app/big.py"          # 3,000 lines, 500 commits, 50 of them AI runs
UNTOUCHED_FILE = "app/other.py"   # 3,000 lines with human history only
TOTAL_COMMITS = 500
AI_RUNS = 50


@dataclass
class LensFixture:
    repo: Path
    ai_file: Path
    untouched_file: Path


def lens_fixture() -> LensFixture:
    repo = cached_fixture("lens", LENS_LAYOUT, _build_lens_repo)
    return LensFixture(repo, repo / LENS_FILE, repo / UNTOUCHED_FILE)


def _build_lens_repo(repo: Path) -> None:
    """500 commits touching ``LENS_FILE``; every tenth is an AI run made by the real pipeline
    (``runs.start_run`` with the replay agent, isolated worktree, hooks, note) and brought onto
    main — half by fast-forward, half by cherry-pick after main moved on (so those commits map
    to their run through the ``Promptrail-Run`` trailer, not the SHA the store recorded)."""
    rng = random.Random(20240601)
    make_repo(repo)
    big = python_file("a", 3000, rng)
    other = python_file("b", 3000, rng)
    (repo / "app").mkdir()
    _write_lines(repo / LENS_FILE, big)
    _write_lines(repo / UNTOUCHED_FILE, other)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial import")
    made = 1
    ai_done = 0
    transcripts = repo.parent / "transcripts"
    transcripts.mkdir()
    serial = 0

    def human_commit(avoid: range | None = None) -> None:
        nonlocal big, other, serial
        serial += 1
        big = _human_edit(big, rng, f"h{serial}", avoid)
        _write_lines(repo / LENS_FILE, big)
        if rng.random() < 0.3:
            other = _human_edit(other, rng, f"o{serial}", None)
            _write_lines(repo / UNTOUCHED_FILE, other)
        git(repo, "commit", "-q", "-am", f"human change {serial}")

    while made < TOTAL_COMMITS:
        if made % 10 == 5 and ai_done < AI_RUNS:
            cherry = ai_done % 2 == 1
            start = rng.randrange(0, len(big) - 40)
            size = rng.randrange(5, 30)
            new_block = [f"    ai_{ai_done}_{k} = generated({k}, run={ai_done})  # AI run {ai_done}"
                         for k in range(size)]
            from tests.support.transcripts import Edit, Say, write_transcript

            transcript = write_transcript(transcripts / f"run{ai_done}.jsonl", [
                Say(f"I'll rework lines {start}..{start + size} of {LENS_FILE}."),
                Edit(LENS_FILE, "\n".join(big[start:start + size]) + "\n", "\n".join(new_block) + "\n"),
                Say("Done."),
            ], cost=0.01 + ai_done / 1000)
            commit = _ai_run(repo, f"AI change {ai_done}: rework block at line {start}", transcript)
            if cherry:
                human_commit(avoid=range(start - 4, start + size + 4))  # main moves on first
                made += 1
                git(repo, "cherry-pick", commit)
            else:
                git(repo, "merge", "-q", "--ff-only", commit)
            big = (repo / LENS_FILE).read_text().split("\n")[:-1]
            ai_done += 1
        else:
            human_commit()
        made += 1
    count = int(git(repo, "rev-list", "--count", "HEAD").strip())
    touching = int(git(repo, "rev-list", "--count", "HEAD", "--", LENS_FILE).strip())
    if ai_done != AI_RUNS or count != TOTAL_COMMITS or touching != TOTAL_COMMITS:
        raise RuntimeError(f"fixture came out wrong: {count} commits, {touching} touching, {ai_done} AI runs")


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("\n".join(lines) + "\n")


def _human_edit(lines: list[str], rng: random.Random, tag: str, avoid: range | None) -> list[str]:
    """Rewrite a few lines, sometimes insert or delete some (the line count stays about 3,000)."""
    lines = list(lines)

    def pick() -> int:
        while True:
            index = rng.randrange(1, len(lines) - 1)
            if avoid is None or index not in avoid:
                return index

    for k in range(rng.randrange(1, 6)):
        index = pick()
        lines[index] = f"    edited_{tag}_{k} = revise(value, {rng.randrange(10_000)})"
    roll = rng.random()
    if roll < 0.15:
        index = pick()
        lines[index:index] = [f"    added_{tag}_{k} = extra({k})" for k in range(rng.randrange(1, 4))]
    elif roll < 0.3 and len(lines) > 2990:
        index = pick()
        if avoid is None or all(i not in avoid for i in range(index, index + 3)):
            del lines[index:index + rng.randrange(1, 3)]
    return lines


def _ai_run(repo: Path, prompt: str, transcript: Path) -> str:
    """One run through the real orchestrator; returns its commit."""
    from promptrail.runs import RunRequest, start_run
    from promptrail.workspace import Workspace

    async def go() -> dict[str, Any]:
        workspace = Workspace(repo)
        try:
            run = await start_run(workspace, RunRequest(prompt=prompt, agent="replay", transcript=str(transcript)))
            return await run.wait()
        finally:
            workspace.close()

    result = asyncio.run(go())
    if result["status"] != "succeeded" or not result.get("commit_sha"):
        raise RuntimeError(f"fixture run failed: {result['status']} {result.get('error')}")
    return result["commit_sha"]


STREAM_LAYOUT = "100k-v1"
STREAM_LINES = 100_000
STREAM_AI_FILE = "app/service.py"


@dataclass
class StreamFixture:
    repo: Path
    ai_file: str
    transcript: Path


def stream_fixture() -> StreamFixture:
    """A small repository whose ``STREAM_AI_FILE`` has lines from one AI run (merged into main),
    and a transcript of ``STREAM_LINES`` assistant text blocks that ends by writing one file."""
    repo = cached_fixture("stream", STREAM_LAYOUT, _build_stream_repo)
    return StreamFixture(repo, STREAM_AI_FILE, repo.parent / "transcript-100k.jsonl")


def _build_stream_repo(repo: Path) -> None:
    from tests.support.transcripts import Edit, Say, Write, write_transcript

    rng = random.Random(7)
    make_repo(repo)
    lines = python_file("s", 400, rng)
    (repo / "app").mkdir()
    _write_lines(repo / STREAM_AI_FILE, lines)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial import")
    for serial in range(20):
        lines = _human_edit(lines, rng, f"h{serial}", None)
        _write_lines(repo / STREAM_AI_FILE, lines)
        git(repo, "commit", "-q", "-am", f"human change {serial}")
    block = [f"    ai_{k} = generated({k})  # AI" for k in range(12)]
    edit = write_transcript(repo.parent / "edit.jsonl", [
        Say("Reworking a block."), Edit(STREAM_AI_FILE, "\n".join(lines[100:112]) + "\n", "\n".join(block) + "\n")])
    git(repo, "merge", "-q", "--ff-only", _ai_run(repo, "rework a block of service.py", edit))
    # The long session: every step one assistant text block, as the live CLI prints them.
    words = ["checking", "the", "retry", "loop", "in", "fetch()", "and", "its", "backoff", "timer", "now"]
    steps: list[Any] = [Say(f"[{n:06d}] " + " ".join(rng.choice(words) for _ in range(rng.randrange(6, 16))))
                        for n in range(STREAM_LINES)]
    steps.append(Write("NOTES.md", "# notes\n\nwritten at the end of a long session\n"))
    write_transcript(repo.parent / "transcript-100k.jsonl", steps, cost=1.25)
