"""`promptrail costs` over 100,000 runs (issue 5: ≤ 200 ms).

Fills a real audit store (the product's own schema, through ``AuditStore``) with 100,000 runs over
20 users, 6 models, 4 agents and 90 days, a tenth of them with an unknown cost, then times:

- the report in process (``costs.spend_report`` for each grouping: the query and its shaping), where
  the ≤ 200 ms target applies; baseline: one bare ``SELECT SUM(cost_usd) FROM runs`` on the same
  connection;
- the whole ``promptrail costs --json`` command as a user runs it, shown as context next to what
  any command pays before its work starts (the interpreter, then ``promptrail --version``): most of
  its time is start-up and imports, which the query cannot win back.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from _common import PY, Table, bench_env, make_repo, median, ms, note, p95, use_bench_env

RUNS = 100_000
SAMPLES = 15
COMMAND_SAMPLES = 9


def fill(store) -> None:
    rng = random.Random(7)
    users = [f"dev{n}@example.com" for n in range(20)]
    models = ["claude-sonnet-4-5", "claude-opus-4-8[1m]", "claude-haiku-4-5", "claude-sonnet-4-5-20250929",
              "claude-opus-4-1", "mystery-model"]
    agents = ["claude-cli", "anthropic", "replay", "rollback"]
    start = datetime(2026, 9, 1, tzinfo=timezone.utc)
    rows = []
    for n in range(RUNS):
        when = (start + timedelta(minutes=rng.randrange(90 * 24 * 60))).isoformat().replace("+00:00", "Z")
        cost = None if rng.random() < 0.1 else round(rng.random() * 0.5, 6)
        rows.append((f"{n:012x}", f"prompt {n}", users[n % 20], rng.choice(models), rng.choice(agents), "succeeded",
                     when, cost, rng.randrange(50_000), rng.randrange(5_000), rng.randrange(20_000),
                     rng.randrange(5_000)))
    with store._write() as conn:
        conn.executemany(
            "INSERT INTO runs (id, prompt, actor_email, model, agent, status, started_at, cost_usd, tokens_input, "
            "tokens_output, tokens_cache_read, tokens_cache_write) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)


def main() -> None:
    use_bench_env()
    from promptrail import costs
    from promptrail.audit.store import AuditStore

    scratch = Path(tempfile.mkdtemp(prefix="promptrail-bench-costs-"))
    repo = make_repo(scratch / "repo")
    store = AuditStore(repo / ".git" / "promptrail" / "audit.db")
    started = time.perf_counter()
    fill(store)
    note(f"{RUNS:,} runs written in {time.perf_counter() - started:.1f} s")

    def timed(fn) -> list[float]:
        samples = []
        for _ in range(SAMPLES):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return samples

    baseline = timed(lambda: store.query("SELECT SUM(cost_usd) FROM runs", scalar=True))
    table = Table(f"bench_costs: spend over {RUNS:,} runs")
    table.add("baseline: SELECT SUM(cost_usd) FROM runs", SAMPLES, ms(median(baseline)), ms(p95(baseline)))
    for by in ("day", "user", "model", "agent"):
        samples = timed(lambda by=by: costs.spend_report(store, by=by))
        table.add(f"spend_report(by={by})", SAMPLES, ms(median(samples)), ms(p95(samples)), ms(median(baseline)),
                  f"{median(samples) / median(baseline):.1f}x", "<= 200 ms", median(samples) <= 0.200)
    since = timed(lambda: costs.spend_report(store, by="day", since="2026-11-01"))
    table.add("spend_report(by=day, since=2026-11-01)", SAMPLES, ms(median(since)), ms(p95(since)),
              ms(median(baseline)), f"{median(since) / median(baseline):.1f}x", "<= 200 ms", median(since) <= 0.200)

    def command(*args: str) -> list[float]:
        samples = []
        for _ in range(COMMAND_SAMPLES):
            t = time.perf_counter()
            subprocess.run([PY, *args], capture_output=True, check=True, env=bench_env())
            samples.append(time.perf_counter() - t)
        return samples

    interpreter = command("-c", "pass")
    for label, args in (("python -c pass (interpreter start)", ("-c", "pass")),
                        ("promptrail --version (CLI start-up)", ("-m", "promptrail", "--version")),
                        ("promptrail costs --by user --json (whole command, context)",
                         ("-m", "promptrail", "costs", "--by", "user", "--json", "--repo", str(repo)))):
        samples = interpreter if args == ("-c", "pass") else command(*args)
        table.add(label, COMMAND_SAMPLES, ms(median(samples)), ms(p95(samples)), ms(median(interpreter)),
                  f"{median(samples) / median(interpreter):.1f}x")
    table.print()
    report = costs.spend_report(store, by="model")
    note(f"total {report['total']['runs']:,} runs, ${report['total']['cost_usd']:,.2f} known, "
         f"{report['total']['unknown_cost_runs']:,} with unknown cost")
    store.close()
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
