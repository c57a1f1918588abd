"""Code lenses through the real ``promptrail serve`` on a 3,000-line file with 500 commits of history,
50 of them AI runs made by the real pipeline (``_common.lens_fixture``, built once and cached).

  (a) baseline: ``git blame --porcelain -M -C -- FILE`` on its own (median of ≥ 7);
  (b) cold: a fresh server per sample, initialize + didOpen excluded, the first
      ``textDocument/codeLens`` request — target ≤ 1.3× (a);
  (c) warm: the same server, same HEAD, unchanged text, 50 requests — target ≤ 10 ms median;
  (d) a file no run touched (same size, human history only), 50 requests — target ≤ 5 ms median,
      and no ``git blame`` may run: the server's child processes are watched through /proc for
      the whole of (d) (and, as the control that the watcher works, during (b)).

Samples of (a) and (b) alternate, so load from elsewhere on the machine hits both alike.

    .venv/bin/python tests/bench/bench_lenses.py [--cold N] [--warm N]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import subprocess
import time

from _common import (LENS_FILE, SERVER_COMMAND, UNTOUCHED_FILE, ChildWatcher, LensFixture, LspClient, Table,
                     bench_env, child_commands, lens_fixture, median, ms, note, p95)

COLD_RATIO = 1.3
WARM_MS = 10.0
UNTOUCHED_MS = 5.0
DID_OPEN_SETTLE_S = 0.3
#: The server command (``--server`` swaps it, e.g. for a patched or profiled server in an experiment).
SERVER = SERVER_COMMAND


def blame_seconds(repo, relpath: str, contents: str | None = None) -> float:
    args = ["git", "blame", "--porcelain", "-M", "-C"]
    if contents is not None:
        args += ["--contents", "-"]
    t0 = time.perf_counter()
    subprocess.run([*args, "--", relpath], cwd=repo, input=contents.encode() if contents else None,
                   stdout=subprocess.DEVNULL, check=True, env=bench_env(),
                   stdin=None if contents is not None else subprocess.DEVNULL)
    return time.perf_counter() - t0


async def open_server(repo) -> LspClient:
    client = LspClient()
    await client.start(SERVER, cwd=repo)
    await client.initialize(repo)
    return client


async def open_document(client: LspClient, path, text: str) -> str:
    """didOpen, then a moment for the server to take it in (didOpen is not part of the timing)."""
    uri = client.did_open(path, text)
    await asyncio.sleep(DID_OPEN_SETTLE_S)
    return uri


async def main(fixture: LensFixture, cold_samples: int, warm_samples: int) -> None:
    repo = fixture.repo
    text = fixture.ai_file.read_text()
    other_text = fixture.untouched_file.read_text()
    note(f"fixture: {repo} · {LENS_FILE} {text.count(chr(10))} lines · "
         f"{UNTOUCHED_FILE} {other_text.count(chr(10))} lines")

    blame_seconds(repo, LENS_FILE)  # page cache
    # A discarded cold start: writes any stale bytecode (as a user's first start would), and is
    # the control that the /proc watcher sees a `git blame` when one runs.
    warmup = await open_server(repo)
    warm_uri = await open_document(warmup, fixture.ai_file, text)
    with ChildWatcher(warmup.pid) as watcher:
        await warmup.code_lens(warm_uri)
    control = watcher.git_commands("blame")
    await warmup.stop()
    baseline: list[float] = []
    cold: list[float] = []
    lens_count = 0
    client: LspClient | None = None
    for index in range(max(cold_samples, 7)):
        baseline.append(blame_seconds(repo, LENS_FILE))
        if index >= cold_samples:
            continue
        if client is not None:
            await client.stop()
        client = await open_server(repo)
        uri = await open_document(client, fixture.ai_file, text)
        lenses, seconds = await client.code_lens(uri)
        cold.append(seconds)
        lens_count = len(lenses)
    assert client is not None
    with_contents = [blame_seconds(repo, LENS_FILE, text) for _ in range(5)]

    # (c) warm: the last cold sample's server, same HEAD, same text.
    warm: list[float] = []
    for _ in range(warm_samples):
        lenses, seconds = await client.code_lens(uri)
        assert len(lenses) == lens_count
        warm.append(seconds)
    runs = {lens["data"]["runId"] for lens in lenses}
    resolved = await client.request("codeLens/resolve", lenses[0])
    title = resolved["command"]["title"]

    # (d) the file no run touched, in the same (already opened) workspace.
    other_uri = await open_document(client, fixture.untouched_file, other_text)
    untouched: list[float] = []
    for _ in range(warm_samples):
        lenses_other, seconds = await client.code_lens(other_uri)
        assert lenses_other == []
        untouched.append(seconds)
    # The same requests again under the /proc watcher (kept out of the timed ones: it costs CPU).
    already = set(child for child in child_commands(client.pid))
    with ChildWatcher(client.pid) as watcher:
        for _ in range(warm_samples):
            await client.code_lens(other_uri)
    untouched_blames = watcher.git_commands("blame")
    spawned = [c for c in watcher.git_commands() if c not in already]
    await client.stop()
    other_blame = [blame_seconds(repo, UNTOUCHED_FILE) for _ in range(5)]

    base = median(baseline)
    ratio = median(cold) / base
    table = Table("bench_lenses: textDocument/codeLens through promptrail serve (stdio)")
    table.add(f"(a) git blame --porcelain -M -C ({LENS_FILE})", len(baseline), ms(base), ms(p95(baseline)))
    table.add("    same with --contents - (context only)", len(with_contents), ms(median(with_contents)),
              ms(p95(with_contents)))
    table.add("(b) cold codeLens, fresh server", len(cold), ms(median(cold)), ms(p95(cold)), ms(base),
              f"{ratio:.2f}x", f"<= {COLD_RATIO}x", ratio <= COLD_RATIO)
    table.add("(c) warm codeLens, same HEAD + text", len(warm), ms(median(warm)), ms(p95(warm)), ms(base),
              f"{median(warm) / base:.3f}x", f"<= {WARM_MS:g} ms", median(warm) * 1000 <= WARM_MS)
    table.add(f"(d) codeLens, untouched {UNTOUCHED_FILE}", len(untouched), ms(median(untouched)),
              ms(p95(untouched)), ms(median(other_blame)), f"{median(untouched) / median(other_blame):.3f}x",
              f"<= {UNTOUCHED_MS:g} ms", median(untouched) * 1000 <= UNTOUCHED_MS and not untouched_blames)
    table.print()
    note(f"{lens_count} lenses over {LENS_FILE} from {len(runs)} distinct runs; first resolves to: {title!r}")
    note(f"watcher control (discarded cold start): `git blame` children seen: {control or 'NONE (watcher broken?)'}")
    note(f"(d) under the watcher, {warm_samples} more untouched-file requests: git blame children seen: "
         f"{untouched_blames or 'none'}; git processes started: {spawned or 'none'} "
         f"(already running before: {sorted(c for c in already if c.startswith('git ')) or 'none'})")
    note(f"(d) baseline column = git blame of {UNTOUCHED_FILE} alone ({ms(median(other_blame))}): "
         f"no blame fits in {ms(median(untouched))}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=7)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument("--server", help="another server command line (default: python -m promptrail serve)")
    options = parser.parse_args()
    if options.server:
        SERVER = shlex.split(options.server)
    asyncio.run(main(lens_fixture(), options.cold, options.warm))  # built outside the loop
