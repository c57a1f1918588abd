"""CLAUDE.md rule checking speed.

1. One ~1 MB Python-like file (CJK and emoji lines, CRLF variant too) against 50 rules of every
   file-level kind (forbid with and without a literal, require, max_line_length, max_lines).
   Target: ≤ 50 ms median. Baseline, measured in the same run: one plain ``re.finditer`` pass of
   one regex (``\\bprint\\(``) over the same text.
2. ``promptrail check`` on the whole project tree (a fresh process, as in CI or a pre-commit hook).
   Target: ≤ 2 s median. Baseline: ``git ls-files`` plus a bare interpreter start.

    .venv/bin/python tests/bench/bench_rules.py [--samples N]

No timed asserts anywhere in the test suite: this script prints numbers and ratios, and exits 1
only when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable

TARGET_FILE_MS = 50.0
TARGET_TREE_S = 2.0

#: Forbidden calls, markers and secrets: the bulk of a real CLAUDE.md's rules.
FORBID = [
    r"\bprint\(", r"TODO|FIXME|XXX", r"\bbreakpoint\(\)", r"^\s*import pdb", r"console\.log\(", r"\beval\(",
    r"\bexec\(", r"os\.system\(", r"subprocess\.call\(.*shell=True", r"pickle\.loads?\(",
    r"yaml\.load\((?!.*Loader)", r"except\s*:", r"from \S+ import \*", r"assert\s+\w+\s*,\s*$", r"time\.sleep\(",
    r"requests\.(get|post)\((?!.*timeout)", r"\bglobal\s+\w+", r"datetime\.now\(\)", r"logging\.basicConfig",
    r"sk-ant-[A-Za-z0-9]{8,}", r"AKIA[0-9A-Z]{16}", r'password\s*=\s*"[^"]+"', r"# type: ignore(?!\[)",
    r"\bnoqa\b(?!:)", r"self\.assertEquals\(", r"\bmock\.patch\(", r"open\([^)]*\)\.read\(\)", r"\.format\(",
    r"lambda\s*:\s*None", r"== None|!= None", r"\bsetattr\(", r"\b__import__\(", r"threading\.Thread\(",
    r"asyncio\.get_event_loop\(\)", r"\bos\.environ\[", r"tempfile\.mktemp\(", r"shell=True",
    r"verify=False",
]
#: Rules without any literal to pre-filter on: the regex engine must read every character.
NO_LITERAL = [r"[ \t]+$", r"[^\x00-\x7f]", r"^\s+$", r"\s{2,}$"]
REQUIRE = [r'^"""', r"from __future__ import annotations", r"Copyright \d{4}", r"^import \w+",
           r"SPDX-License-Identifier"]


def rule_block(forbid: list[str], require: list[str], line_lengths: list[int], max_lines: list[int]) -> str:
    tables = [f"[[rule]]\nid = \"forbid-{n}\"\nforbid = '{p}'" for n, p in enumerate(forbid, 1)]
    tables += [f"[[rule]]\nid = \"require-{n}\"\nrequire = '{p}'" for n, p in enumerate(require, 1)]
    tables += [f"[[rule]]\nid = \"width-{n}\"\nmax_line_length = {v}" for n, v in enumerate(line_lengths, 1)]
    tables += [f"[[rule]]\nid = \"lines-{n}\"\nmax_lines = {v}" for n, v in enumerate(max_lines, 1)]
    return "# rules\n\n```promptrail\n" + "\n\n".join(tables) + "\n```\n"


#: The target case: 50 rules as a real CLAUDE.md has them (40 forbid, one of them without a
#: literal, 4 require, 3 line widths, 3 file lengths) on a 1 MB source file with a realistic
#: number of hits (a few hundred).
TYPICAL = rule_block(FORBID + NO_LITERAL[:1] + [r"\t"], REQUIRE[:3] + REQUIRE[4:], [100, 120, 200],
                     [5000, 20000, 100000])
#: Stress: every no-literal rule, on a text where a quarter of the lines are CJK and every
#: match is a violation (~35,000 of them). Reported, not a target.
STRESS = rule_block(FORBID[:36] + NO_LITERAL, REQUIRE[:4], [80, 120, 200, 300, 1000], [1000])


def big_text(size: int = 1_000_000, seed: int = 7, hit_rate: float = 1.0) -> str:
    """Python-like source of ``size`` characters. ``hit_rate`` scales how often lines that break
    rules (print, TODO, trailing spaces, long comments, CJK) appear."""
    rng = random.Random(seed)
    words = ["value", "result", "config", "request", "payload", "items", "index", "count", "retry", "client"]
    clean = [
        "    {a} = compute_{b}({c}, {d}={n})",
        "    if {a} is not None and {b} > {n}:",
        "        return {a}.{b}({c})",
        "def {a}_{b}({c}: int, {d}: str = \"{a}\") -> dict[str, int]:",
        "    logger.info(\"%s %s\", {a}, {b})",
        "",
        "class {A}{B}:",
        "    \"\"\"{a} {b} {c} {d}: the {a} of each {b}.\"\"\"",
    ]
    breaking = [
        "    # {a} the {b} before {c}: 温度を取得する 🙂",
        "    {a}.append(({b}, {c}, {d}))  # TODO: batch {n}",
        "    print({a})",
        "    \"\"\"{a} {b} {c} {d} — 한국어 설명 {n}.\"\"\"",
        "    {a} = [{b} for {b} in range({n}) if {b} % 3 == 0]  ",
    ]
    lines = ['"""A generated module for the rules benchmark."""', "from __future__ import annotations", ""]
    total = sum(len(line) + 1 for line in lines)
    while total < size:
        shape = rng.choice(breaking if rng.random() < 0.4 * hit_rate else clean)
        a, b, c, d = (rng.choice(words) for _ in range(4))
        line = shape.format(a=a, b=b, c=c, d=d, A=a.title(), B=b.title(), n=rng.randrange(1000))
        if rng.random() < 0.02 * hit_rate:
            line += "  # " + " ".join(rng.choice(words) for _ in range(25))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n"


def timed(func, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        gc.disable()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
        gc.enable()
    return times


def run_process(args: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start


def stats(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values), values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "server"))
    from promptrail.standards import check_text, parse_claude_md

    typical = list(parse_claude_md(TYPICAL).rules)
    stress = list(parse_claude_md(STRESS).rules)
    assert len(typical) == len(stress) == 50, (len(typical), len(stress))
    text = big_text(hit_rate=0.02)
    stress_text = big_text()
    crlf = text.replace("\n", "\r\n")
    baseline_regex = re.compile(r"\bprint\(")
    for name, rules, sample in (("typical", typical, text), ("stress", stress, stress_text)):
        print(f"{name}: {len(sample.encode()) / 1e6:.2f} MB, {sample.count(chr(10))} lines, {len(rules)} rules, "
              f"{len(check_text(rules, 'big.py', sample))} violations")

    rows = [
        ("re.finditer(\\bprint\\() over the file", timed(lambda: list(baseline_regex.finditer(text)), args.samples)),
        ("check 1 MB × 50 rules (typical)", timed(lambda: check_text(typical, "big.py", text), args.samples)),
        ("  same, CRLF line ends", timed(lambda: check_text(typical, "big.py", crlf), args.samples)),
        ("check 1 MB × 50 rules (stress)", timed(lambda: check_text(stress, "big.py", stress_text), args.samples)),
        ("parse a CLAUDE.md of 50 rules (uncached)",
         timed(lambda: parse_claude_md(f"<!-- {time.perf_counter_ns()} -->\n" + TYPICAL), 10)),
    ]
    base = statistics.median(rows[0][1])
    print(f"\n{'measure':<44} {'median':>10} {'p95':>10} {'× baseline':>11}")
    for name, values in rows:
        middle, high = stats(values)
        print(f"{name:<44} {middle * 1e3:>8.2f}ms {high * 1e3:>8.2f}ms {middle / base:>10.1f}×")
    file_ms = statistics.median(rows[1][1]) * 1e3

    promptrail = [PY, "-m", "promptrail", "check", "--repo", str(ROOT)]
    tree_runs = 5
    tree = [run_process(promptrail, ROOT) for _ in range(tree_runs)]
    floor = [run_process(["git", "ls-files"], ROOT) + run_process([PY, "-c", "pass"], ROOT) for _ in range(tree_runs)]
    files = len(subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.splitlines())
    tree_s = statistics.median(tree)
    print(f"\n`promptrail check` on the project tree ({files} tracked files), {tree_runs} runs:")
    ratio = tree_s / statistics.median(floor)
    print(f"{'promptrail check (whole process)':<44} {tree_s * 1e3:>8.1f}ms  {ratio:>10.1f}× "
          f"(git ls-files + python -c pass: {statistics.median(floor) * 1e3:.1f}ms)")

    ok = file_ms <= TARGET_FILE_MS and tree_s <= TARGET_TREE_S
    print(f"\ntargets: 1 MB × 50 rules ≤ {TARGET_FILE_MS:.0f} ms median: {file_ms:.1f} ms "
          f"{'ok' if file_ms <= TARGET_FILE_MS else 'MISSED'}; project tree ≤ {TARGET_TREE_S:.0f} s: "
          f"{tree_s:.2f} s {'ok' if tree_s <= TARGET_TREE_S else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
