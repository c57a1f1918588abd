"""promptrail's own overhead per turn of the ``anthropic`` agent, the server's reply time excluded.

The agent runs N turns against the project's fake Messages API (``tests/support/fake_anthropic.py``);
N-1 of them call a tool (write_file, read_file, edit_file, list_files in turn, on a 2 KB file) and the
last one ends the run. The baseline, measured in the same run: the bare ``anthropic`` SDK sending
exactly the request bodies the agent sent (recorded by the fake), streamed and read to the end,
with no tool handling and no events. Both use a fresh client and a fresh fake with the same script,
so the server's work and the SDK's own work (serialising, SSE parsing, pydantic) cancel out:

    overhead per turn = (agent run time - bare SDK time) / N

1. The agent alone (``AnthropicAgent.events`` iterated to its ``Finished``). Target: ≤ 5 ms median.
2. The whole pipeline (``runs.start_run``: run row, worktree, log book, commit, CLAUDE.md check) as a
   marginal cost: (run of 2N turns - run of N turns) / N - the bare SDK's time per turn, so the per-run
   costs (worktree, commit, check) drop out. Reported, no target (the brief's target is the agent's).

The fake answers with TCP_NODELAY here (set on its handler class by this script only): with Nagle's
algorithm each streamed reply stalls ~40 ms on delayed ACKs, on both sides alike, which would bury a
difference of a few milliseconds in noise. The SDK is imported (about 2 s) before anything is timed.

    .venv/bin/python tests/bench/bench_agent_turn.py [--turns N] [--samples R]

No timed asserts anywhere in the test suite: this script prints numbers and ratios, and exits 1 only
when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Table, git, make_repo, median, ms, note, p95, use_bench_env

import tests.support.fake_anthropic as fake_anthropic
from tests.support.fake_anthropic import FakeAnthropic, ToolCall, Turn

TARGET_MS = 5.0
MODEL = "claude-sonnet-4-5"
fake_anthropic._Handler.disable_nagle_algorithm = True  # see the module docstring

BODY = "".join(f"def function_{n}(value):\n    return value * {n}  # line {n}\n" for n in range(40))


def script(turns: int) -> list[Turn]:
    cycle = [
        lambda: ToolCall("write_file", {"path": "pkg/module.py", "content": BODY + "value = 0\n"}),
        lambda: ToolCall("read_file", {"path": "pkg/module.py"}),
        lambda: ToolCall("edit_file", {"path": "pkg/module.py", "old_string": "value = 0", "new_string": "value = 1"}),
        lambda: ToolCall("list_files", {}),
    ]
    steps = [Turn(f"Step {n}: working on it.", [cycle[n % len(cycle)]()], input_tokens=1500 + n,
                  output_tokens=60, cache_read_input_tokens=3000) for n in range(turns - 1)]
    return [*steps, Turn("Done: module.py is written and edited.")]


def env_for(api: FakeAnthropic) -> None:
    os.environ["ANTHROPIC_BASE_URL"] = api.url
    os.environ["ANTHROPIC_API_KEY"] = "sk-ant-bench"


async def agent_run(turns: int, folder: Path) -> tuple[float, list[dict[str, Any]]]:
    """(seconds for the agent's whole run, the request bodies the fake received)."""
    from promptrail.agents.anthropic_api import AnthropicAgent, AnthropicSettings
    from promptrail.agents.base import Finished

    with FakeAnthropic(script(turns)) as api:
        env_for(api)
        agent = AnthropicAgent(model=MODEL, settings=AnthropicSettings(max_turns=turns))
        finished = None
        started = time.perf_counter()
        async for event in agent.events("write and edit pkg/module.py", folder):
            if isinstance(event, Finished):
                finished = event
        elapsed = time.perf_counter() - started
        bodies = [r.body for r in api.agent_requests]
    if finished is None or finished.is_error or finished.num_turns != turns or len(bodies) != turns:
        raise RuntimeError(f"the agent run went wrong: {finished}")
    return elapsed, bodies


async def bare_sdk(turns: int, bodies: list[dict[str, Any]]) -> float:
    """Seconds for the bare SDK to stream the same ``bodies`` against the same script."""
    import anthropic

    with FakeAnthropic(script(turns)) as api:
        started = time.perf_counter()
        client = anthropic.AsyncAnthropic(api_key="sk-ant-bench", base_url=api.url, max_retries=0)
        for body in bodies:
            stream = await client.messages.create(**body)
            async for _ in stream:
                pass
        await client.close()
        elapsed = time.perf_counter() - started
    return elapsed


async def pipeline_run(turns: int, repo: Path) -> float:
    from promptrail.runs import RunRequest, start_run
    from promptrail.workspace import Workspace

    with FakeAnthropic(script(turns)) as api:
        env_for(api)
        workspace = Workspace(repo)
        try:
            started = time.perf_counter()
            run = await start_run(workspace, RunRequest(prompt="write and edit pkg/module.py", agent="anthropic",
                                                        model=MODEL))
            data = await run.wait()
            elapsed = time.perf_counter() - started
        finally:
            workspace.close()
    if data["status"] != "succeeded" or data["num_turns"] != turns:
        raise RuntimeError(f"the pipeline run went wrong: {data['status']} {data.get('error')}")
    return elapsed


async def measure(turns: int, samples: int) -> Table:
    import anthropic  # noqa: F401 - imported once, before anything is timed

    scratch = Path(tempfile.mkdtemp(prefix="bench-agent-turn-"))
    table = Table(f"anthropic agent: promptrail's overhead per turn ({turns} turns per run, {samples} samples)")
    try:
        folder = scratch / "work"
        folder.mkdir()
        # Warm-up (first connections, caches); its request bodies are the baseline's, the same every run.
        _, bodies = await agent_run(turns, folder)
        per_turn_overhead, agent_per_turn, sdk_per_turn = [], [], []
        for sample in range(samples):
            shutil.rmtree(folder)
            folder.mkdir()
            gc.collect()
            # Alternate the order so drift on the machine hits both sides alike.
            if sample % 2:
                agent_s, _ = await agent_run(turns, folder)
                sdk_s = await bare_sdk(turns, bodies)
            else:
                sdk_s = await bare_sdk(turns, bodies)
                agent_s, _ = await agent_run(turns, folder)
            agent_per_turn.append(agent_s / turns)
            sdk_per_turn.append(sdk_s / turns)
            per_turn_overhead.append((agent_s - sdk_s) / turns)
        overhead = median(per_turn_overhead)
        ratio = median(agent_per_turn) / median(sdk_per_turn)
        table.add("agent turn (agent - bare SDK)", samples, ms(overhead), ms(p95(per_turn_overhead)),
                  ms(median(sdk_per_turn)), f"{ratio:.2f}×", f"≤ {TARGET_MS:g} ms", overhead * 1000 <= TARGET_MS)
        note(f"agent {ms(median(agent_per_turn))}/turn, bare SDK {ms(median(sdk_per_turn))}/turn "
             f"(spread of the overhead: stdev {statistics.pstdev(per_turn_overhead) * 1000:.2f} ms)")

        use_bench_env()
        repo = make_repo(scratch / "repo")
        (repo / "README.md").write_text("# bench\n")
        (repo / "CLAUDE.md").write_text("# Rules\nKeep it short.\n")
        (repo / ".promptrail.toml").write_text(f"[anthropic]\nmax_turns = {2 * turns}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "initial")
        await pipeline_run(turns, repo)  # warm-up
        marginal, sdk_long = [], []
        _, long_bodies = await agent_run(2 * turns, folder)
        pipeline_samples = max(3, samples // 2)
        for _ in range(pipeline_samples):
            gc.collect()
            short = await pipeline_run(turns, repo)
            long = await pipeline_run(2 * turns, repo)
            sdk_s = await bare_sdk(2 * turns, long_bodies)
            sdk_long.append(sdk_s / (2 * turns))
            marginal.append((long - short) / turns - sdk_s / (2 * turns))
        table.add("pipeline turn (marginal - bare SDK)", pipeline_samples, ms(median(marginal)), ms(p95(marginal)),
                  ms(median(sdk_long)), f"{(median(marginal) + median(sdk_long)) / median(sdk_long):.2f}×")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20, help="agent turns per run (default 20)")
    parser.add_argument("--samples", type=int, default=15, help="runs per measure (default 15)")
    args = parser.parse_args()
    table = asyncio.run(measure(args.turns, args.samples))
    table.print()
    return 0 if all(table.verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
