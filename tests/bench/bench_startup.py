"""``promptrail serve`` start-up: process spawn → ``initialize`` result, against a pygls 2 server that
registers nothing (``minimal_server.py``), both spawned as ``[sys.executable, …]`` and driven the
same way over stdio, in alternating order. Target: promptrail ≤ 1.5× the minimal server (medians).

    .venv/bin/python tests/bench/bench_startup.py [--samples N]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import time
from pathlib import Path

from _common import (BENCH_DIR, MINIMAL_SERVER, PY, SERVER_COMMAND, LspClient, Table, bench_env, git,
                     make_repo, median, ms, note, p95)

TARGET_RATIO = 1.5


async def one_start(command: list[str], folder: Path) -> float:
    client = LspClient()
    t0 = await client.start(command)
    try:
        result, _ = await client.timed_request("initialize", {
            "processId": None, "rootUri": folder.as_uri(),
            "workspaceFolders": [{"uri": folder.as_uri(), "name": folder.name}],
            "capabilities": {"window": {"workDoneProgress": True},
                             "workspace": {"workspaceFolders": True, "codeLens": {"refreshSupport": True}},
                             "textDocument": {"codeLens": {}}}})
        elapsed = time.perf_counter() - t0
        # The arrival time is taken in the reader; perf_counter here is at most one loop turn later.
        assert result and "capabilities" in result, result
        client.notify("initialized", {})
        return elapsed
    finally:
        await client.stop()


def interpreter_start() -> float:
    t0 = time.perf_counter()
    subprocess.run([PY, "-c", "pass"], check=True, env=bench_env())
    return time.perf_counter() - t0


async def main(samples: int) -> None:
    folder = BENCH_DIR / "startup-repo"
    if not (folder / ".git").exists():
        make_repo(folder)
        (folder / "README.md").write_text("# startup\n")
        git(folder, "add", "-A")
        git(folder, "commit", "-q", "-m", "initial")
    # One discarded start each: byte-compiles anything stale and warms the page cache.
    await one_start(SERVER_COMMAND, folder)
    await one_start(MINIMAL_SERVER, folder)
    minimal: list[float] = []
    promptrail: list[float] = []
    for index in range(samples):
        order = [(MINIMAL_SERVER, minimal), (SERVER_COMMAND, promptrail)]
        if index % 2:
            order.reverse()
        for command, into in order:
            into.append(await one_start(command, folder))
    bare = [interpreter_start() for _ in range(samples)]

    ratio = median(promptrail) / median(minimal)
    table = Table("bench_startup: process start → initialize result (stdio)")
    table.add("python -c pass (context only)", len(bare), ms(median(bare)), ms(p95(bare)))
    table.add("minimal pygls server (baseline)", len(minimal), ms(median(minimal)), ms(p95(minimal)))
    table.add("promptrail serve", len(promptrail), ms(median(promptrail)), ms(p95(promptrail)),
              ms(median(minimal)), f"{ratio:.2f}x", f"<= {TARGET_RATIO}x", ratio <= TARGET_RATIO)
    table.print()
    note(f"server command: {' '.join(SERVER_COMMAND[1:])}; baseline: {Path(MINIMAL_SERVER[1]).name}; "
         f"{samples} alternating samples each")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=20)
    asyncio.run(main(parser.parse_args().samples))
