"""Checking text and changes against CLAUDE.md rules, and finding the rules of a tree.

* ``check_text``: one file's text against file-level rules → ``Violation``s, with positions exact
  to the match (1-based line; start/end columns as Python str indices, i.e. code points, which a
  face converts to its position encoding). Lines end at ``\\n``, ``\\r\\n`` or ``\\r``, as in
  Markdown and LSP; a line's text never includes its line break.
* ``check_changes``: a run's changed paths against run-level rules (``protected``,
  ``requires_tests``).
* Rules come from every CLAUDE.md of the working tree (``worktree_rule_set``) or of a commit
  (``commit_rule_set``: a run is judged by its base commit's rules, so an agent that edits
  CLAUDE.md cannot loosen its own check).
* Faces: ``check_paths`` (``promptrail check``), ``diagnose_document`` and ``diagnose_claude_md``
  (the language server's diagnostics), ``check_commit`` (a run, via ``run_check``).

Time limit: a rule's regex gets ``MATCH_TIME_LIMIT_S`` per file (the ``regex`` module's timeout;
Python's ``re`` can be neither stopped nor left by another thread, so one pattern with
catastrophic backtracking hung ``check``, the language server and a run's check). A rule that runs
out is stopped and skipped for the rest of that check (``MatchBudget``) and reported at its
pattern's line of CLAUDE.md, an error as a malformed rule is.

Speed: regexes are compiled when a rule is built; a forbid rule with a required literal only runs
on the lines containing that literal (found with ``str.find``), one anchored with ``$`` only on
lines ending in a character its last item can match; a line-safe regex runs once over those lines
joined (or the whole text), the rest line by line. Each path gives exactly the per-line matches
(a hypothesis test compares them with a plain line-by-line reference). Parsed CLAUDE.md files are
cached by content hash, commit rule sets by sha.
"""

from __future__ import annotations

import codecs
import posixpath
import subprocess
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import accumulate
from operator import attrgetter
from pathlib import Path
from time import monotonic
from typing import Any, Iterable, Mapping, Protocol, Sequence

from promptrail.errors import PromptrailError
from promptrail.gitops.repo import Repo
from promptrail.standards.parse import RuleSet, content_key, parse_claude_md, rule_set
from promptrail.standards.rules import SEVERITIES, Rule, RuleProblem

SOURCE = "CLAUDE.md"
CLAUDE_MD = "CLAUDE.md"
POLICY_CONFIG = ".promptrail.toml"
#: git's own heuristic: a NUL byte in the first 8000 bytes means binary (never checked).
BINARY_SNIFF = 8000
#: Seconds one rule's regex may take on one file, all its matches together. A sound rule takes
#: milliseconds on a 1 MB file; one with catastrophic backtracking would take years.
MATCH_TIME_LIMIT_S = 1.0


@dataclass(slots=True)
class Violation:
    """A place where a file or a run breaks a rule. ``line`` is 1-based; ``start_col``/``end_col``
    are Python str indices (code points) of the match within the line's text (both 0 for a
    run-level rule). Treat it as immutable (not frozen only because a 1 MB file may yield
    thousands and frozen construction costs three times as much)."""

    rule_id: str
    path: str
    line: int
    start_col: int
    end_col: int
    severity: str
    message: str
    source: str = SOURCE
    rule_file: str = CLAUDE_MD
    rule_line: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "path": self.path, "line": self.line, "start_col": self.start_col,
                "end_col": self.end_col, "severity": self.severity, "message": self.message,
                "source": self.source, "rule_file": self.rule_file, "rule_line": self.rule_line}


def _violation(rule: Rule, path: str, line: int, start: int, end: int, message: str,
               severity: str | None = None) -> Violation:
    return Violation(rule.id, path, line, start, end, severity or rule.severity, message, SOURCE, rule.rule_file,
                     rule.rule_line)


def severity_counts(items: Iterable[Violation | RuleProblem]) -> dict[str, int]:
    counts = dict.fromkeys(SEVERITIES, 0)
    for item in items:
        counts[item.severity] = counts.get(item.severity, 0) + 1
    return counts


# -- one text against file-level rules -------------------------------------------------------------
class MatchBudget:
    """The regex time limit of one check (``promptrail check``, a run's check, a document's
    diagnostics) and the rules that ran out of it, as ``regex-timeout`` problems.

    A rule stopped on one file is skipped on the files checked after it: each could cost the limit
    again, and a check of many files would hang after all. So a check takes at most the limit
    once per rule longer than it should. ``limit_s`` defaults to ``MATCH_TIME_LIMIT_S``."""

    def __init__(self, limit_s: float | None = None) -> None:
        self.limit_s = MATCH_TIME_LIMIT_S if limit_s is None else limit_s
        self.problems: list[RuleProblem] = []
        self._stopped: set[Rule] = set()

    def stopped(self, rule: Rule) -> bool:
        return rule in self._stopped

    def stop(self, rule: Rule, path: str) -> RuleProblem:
        self._stopped.add(rule)
        line, start, end = rule.pattern_position
        problem = RuleProblem(rule.rule_file, line, start, end, "regex-timeout",
                              f"rule '{rule.id}': the {rule.kind} pattern took more than {self.limit_s:g} s on "
                              f"{path}, so this check stopped it there and skipped it on later files; simplify "
                              "the pattern (nested repeats such as (a|a)* can take exponential time)", rule.id)
        self.problems.append(problem)
        return problem


def _left(deadline: float) -> float:
    """The seconds left until ``deadline`` (a ``monotonic()`` time), as a regex timeout."""
    left = deadline - monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class _Text:
    """A file's text with line breaks normalised to ``\\n`` (columns are unchanged: only line
    ends differ), and its lines computed on first use."""

    __slots__ = ("norm", "_lines")

    def __init__(self, text: str) -> None:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.norm = text
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.norm.split("\n")
        return self._lines

    def line_count(self) -> int:
        norm = self.norm
        return norm.count("\n") + (1 if norm and not norm.endswith("\n") else 0)

    def line_at(self, offset: int) -> str:
        end = self.norm.find("\n", offset)
        return self.norm[offset:] if end == -1 else self.norm[offset:end]


_ORDER = attrgetter("line", "start_col")


def check_text(rules: Iterable[Rule], path: str, text: str, budget: MatchBudget | None = None) -> list[Violation]:
    """Check ``text`` (the content of ``path``) against the given file-level rules, as given:
    select them with ``RuleSet.rules_for(path)``. Run-level rules are ignored here. The result
    is ordered by line and column.

    A regex rule that runs out of time on the text finds nothing there and is reported in
    ``budget.problems``; without a budget, as an error at line 1 of ``path`` (never silently)."""
    report_here = budget is None
    if budget is None:
        budget = MatchBudget()
    view = _Text(text)
    found: list[Violation] = []
    for rule in rules:
        kind = rule.kind
        if kind == "forbid" or kind == "require":
            if budget.stopped(rule):
                continue
            deadline = monotonic() + budget.limit_s
            try:
                found.extend(_forbid(rule, path, view, deadline) if kind == "forbid" else
                             _require(rule, path, view, deadline))
            except TimeoutError:
                problem = budget.stop(rule, path)
                if report_here:
                    found.append(_violation(rule, path, 1, 0, len(view.line_at(0)), problem.message, "error"))
        elif kind == "max_line_length":
            found.extend(_max_line_length(rule, path, view))
        elif kind == "max_lines":
            found.extend(_max_lines(rule, path, view))
    found.sort(key=_ORDER)
    return found


def _forbid(rule: Rule, path: str, view: _Text, deadline: float) -> list[Violation]:
    rule_id, severity, rule_file, rule_line = rule.id, rule.severity, rule.rule_file, rule.rule_line
    message = rule.message or f"matches the forbidden pattern {rule.forbid}"
    return [Violation(rule_id, path, line, start, end, severity, message, SOURCE, rule_file, rule_line)
            for line, start, end in _forbid_matches(rule, view, deadline)]


def _candidate_lines(norm: str, literals: tuple[str, ...]) -> list[int]:
    """Start offsets of the lines that contain one of ``literals``, in text order."""
    find, rfind = norm.find, norm.rfind
    starts: list[int] = []
    for literal in literals:
        at = find(literal)
        while at != -1:
            starts.append(rfind("\n", 0, at) + 1)
            line_end = find("\n", at)
            at = find(literal, line_end + 1) if line_end != -1 else -1
    if len(literals) > 1:
        starts = sorted(set(starts))
    return starts


def _forbid_matches(rule: Rule, view: _Text, deadline: float) -> list[tuple[int, int, int]]:
    """(line, start col, end col) of every per-line match, in text order."""
    norm, regex, line_safe = view.norm, rule.regex, rule.line_safe
    assert regex is not None
    if rule.literals:
        # Every match contains one of the literals, so only lines containing one can match.
        find = norm.find
        starts = _candidate_lines(norm, rule.literals)
        lines = [norm[start:end] if (end := find("\n", start)) != -1 else norm[start:] for start in starts]
        return _numbered(norm, [(starts[index], start, end)
                                for index, start, end in _match_lines(regex, lines, line_safe, deadline)])
    if rule.last_chars:
        # Only lines ending in one of these characters can match.
        tail, every_line = rule.last_chars, view.lines
        numbers: Sequence[int] = [number for number, line in enumerate(every_line, 1) if line[-1:] in tail]
        lines = [every_line[number - 1] for number in numbers]
    elif line_safe:
        return _numbered(norm, _line_safe_spans(regex, norm, deadline))
    else:
        lines = view.lines
        numbers = range(1, len(lines) + 1)
    return [(numbers[index], start, end) for index, start, end in _match_lines(regex, lines, line_safe, deadline)]


def _match_lines(regex: Any, lines: list[str], line_safe: bool, deadline: float) -> list[tuple[int, int, int]]:
    """(index in ``lines``, start col, end col) of the matches in each of ``lines``."""
    if not line_safe:
        return [(index, m.start(), m.end()) for index, line in enumerate(lines)
                for m in regex.finditer(line, timeout=_left(deadline))]
    if not lines:
        return []
    # The lines joined, in one pass: a regex call with a timeout costs a microsecond or two before
    # it reads a character, too much to pay once per line.
    index = {offset: number for number, offset in
             enumerate(accumulate((len(line) + 1 for line in lines[:-1]), initial=0))}
    return [(index[line_start], start, end)
            for line_start, start, end in _line_safe_spans(regex, "\n".join(lines), deadline)]


def _numbered(norm: str, spans: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """(offset of the line's start, start, end) in text order → (line, start, end)."""
    count = norm.count
    numbered, line, previous = [], 1, 0
    for line_start, start, end in spans:
        if line_start != previous:
            line += count("\n", previous, line_start)
            previous = line_start
        numbered.append((line, start, end))
    return numbered


def _line_safe_spans(regex: Any, text: str, deadline: float) -> list[tuple[int, int, int]]:
    """(offset of the line's start, start col, end col) of every per-line match of a line-safe
    regex in ``text``, in text order, in one pass. A match that runs over a line break is not a
    per-line match: that line is redone on its own and the pass resumes on the next line."""
    spans: list[tuple[int, int, int]] = []
    size, find, rfind = len(text), text.find, text.rfind
    position = 0
    while position <= size:
        for match in regex.finditer(text, position, timeout=_left(deadline)):
            start, end = match.span()
            line_start = rfind("\n", 0, start) + 1
            if find("\n", start, end) == -1:
                spans.append((line_start, start - line_start, end - line_start))
                continue
            while spans and spans[-1][0] == line_start:
                spans.pop()
            line_end = find("\n", start)
            spans.extend((line_start, m.start(), m.end())
                         for m in regex.finditer(text[line_start:line_end], timeout=_left(deadline)))
            position = line_end + 1
            break
        else:
            break
    return spans


def _require(rule: Rule, path: str, view: _Text, deadline: float) -> list[Violation]:
    assert rule.regex is not None
    norm = view.norm
    if rule.literals and not any(literal in norm for literal in rule.literals):
        present = False
    else:
        present = rule.regex.search(norm, timeout=_left(deadline)) is not None
    if present:
        return []
    message = rule.message or f"the file must contain a match of {rule.require}"
    return [_violation(rule, path, 1, 0, len(view.line_at(0)), message)]


def _max_line_length(rule: Rule, path: str, view: _Text) -> list[Violation]:
    limit = rule.max_line_length
    assert limit is not None
    if len(view.norm) <= limit:
        return []
    lines = view.lines
    if max(map(len, lines)) <= limit:
        return []
    message = rule.message or "line too long"
    return [_violation(rule, path, number, limit, len(line), f"{message} ({len(line)} > {limit} characters)")
            for number, line in enumerate(lines, 1) if len(line) > limit]


def _max_lines(rule: Rule, path: str, view: _Text) -> list[Violation]:
    limit = rule.max_lines
    assert limit is not None
    count = view.line_count()
    if count <= limit:
        return []
    message = rule.message or "file too long"
    return [_violation(rule, path, limit + 1, 0, len(view.lines[limit]), f"{message} ({count} > {limit} lines)")]


# -- a run's changes against run-level rules -------------------------------------------------------
def _changed_paths(changes: Iterable[Mapping[str, Any]]) -> list[str]:
    paths: list[str] = []
    for change in changes:
        for key in ("old_path", "path"):
            value = change.get(key)
            if value and value not in paths:
                paths.append(value)
    return paths


def check_changes(rules: RuleSet, changes: Sequence[Mapping[str, Any]]) -> list[Violation]:
    """Run-level rules against a run's changed files (``{"path", "old_path"?, "status"}`` dicts, as
    stored in ``run_files``; a rename counts as a change of both paths)."""
    paths = _changed_paths(changes)
    found: list[Violation] = []
    for rule in rules.run_rules:
        if rule.kind == "protected":
            for path in paths:
                if rule.protects(path):
                    found.append(_violation(rule, path, 1, 0, 0, rule.message or
                                            f"{path} is protected; an agent run must not change it"))
        elif rule.kind == "requires_tests" and rule.requires_tests is not None:
            touched = [path for path in paths if rule.in_changed(path)]
            if touched and not any(rule.in_needs(path) for path in paths):
                changed, needs = rule.requires_tests
                detail = (f"{len(touched)} changed file(s) match {', '.join(changed)} but no changed file "
                          f"matches {', '.join(needs)}")
                message = f"{rule.message} ({detail})" if rule.message else detail
                found.append(_violation(rule, touched[0], 1, 0, 0, message))
    return found


def policy_files(changes: Sequence[Mapping[str, Any]]) -> list[str]:
    """The changed paths that are policy: any CLAUDE.md, and the repository's .promptrail.toml."""
    return [path for path in _changed_paths(changes)
            if posixpath.basename(path) == CLAUDE_MD or path == POLICY_CONFIG]


# -- finding the rules of a tree -------------------------------------------------------------------
def decode(data: bytes) -> str | None:
    """File bytes → text (None for binary). Undecodable bytes survive as surrogates."""
    if b"\0" in data[:BINARY_SNIFF]:
        return None
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    return data.decode("utf-8", "surrogateescape")


def _read_text(path: Path) -> str | None:
    try:
        return decode(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def worktree_claude_md_paths(repo: Repo) -> list[str]:
    """Every CLAUDE.md in the working tree, tracked or untracked (but not ignored)."""
    result = repo.run("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", ":(glob)**/CLAUDE.md")
    return sorted({path for path in result.stdout.split("\0")
                   if path and posixpath.basename(path) == CLAUDE_MD and (repo.root / path).is_file()})


_set_cache: OrderedDict[tuple, RuleSet] = OrderedDict()
_set_lock = threading.Lock()


def _cached_rule_set(files: Mapping[str, str]) -> RuleSet:
    key = tuple(sorted((path, content_key(text)) for path, text in files.items()))
    with _set_lock:
        cached = _set_cache.get(key)
        if cached is not None:
            _set_cache.move_to_end(key)
            return cached
    built = rule_set(parse_claude_md(text, path) for path, text in files.items())
    with _set_lock:
        _set_cache[key] = built
        if len(_set_cache) > 64:
            _set_cache.popitem(last=False)
    return built


def worktree_rule_set(repo: Repo, overrides: Mapping[str, str] | None = None) -> RuleSet:
    """The rules of every CLAUDE.md in the working tree. ``overrides`` maps CLAUDE.md paths to
    unsaved editor text that replaces (or adds) the file on disk."""
    files: dict[str, str] = {}
    for path in worktree_claude_md_paths(repo):
        text = _read_text(repo.root / path)
        if text is not None:
            files[path] = text
    for path, text in (overrides or {}).items():
        files[path] = text
    return _cached_rule_set(files)


def _tree_entries(repo: Repo, sha: str, paths: Sequence[str] | None = None) -> dict[str, tuple[str, str, str]]:
    """path → (mode, type, object sha) of a commit's tree, for ``paths`` or everything."""
    entries: dict[str, tuple[str, str, str]] = {}
    chunks = [None] if paths is None else [list(paths[i:i + 500]) for i in range(0, len(paths), 500)]
    for chunk in chunks:
        if chunk == []:
            continue
        args = ["--literal-pathspecs", "ls-tree", "-r", "-z", "--full-tree", sha]
        out = repo.run(*args, *(["--", *chunk] if chunk else []))
        if not out.ok:
            raise PromptrailError(f"cannot read the tree of commit {sha[:12]}: {out.output}")
        for record in out.stdout.split("\0"):
            meta, _, path = record.partition("\t")
            if path:
                mode, kind, object_sha = meta.split(" ")
                entries[path] = (mode, kind, object_sha)
    return entries


def read_blobs(repo: Repo, shas: Sequence[str]) -> dict[str, bytes]:
    """Object sha → content, in one ``git cat-file --batch``."""
    if not shas:
        return {}
    unique = list(dict.fromkeys(shas))
    completed = subprocess.run(["git", "cat-file", "--batch"], cwd=repo.root, capture_output=True,
                               input=("\n".join(unique) + "\n").encode())
    data, position, blobs = completed.stdout, 0, {}
    for sha in unique:
        header_end = data.find(b"\n", position)
        if header_end == -1:
            break
        header = data[position:header_end].split(b" ")
        position = header_end + 1
        if len(header) != 3:  # "<sha> missing"
            continue
        size = int(header[2])
        blobs[sha] = data[position:position + size]
        position += size + 1
    return blobs


def commit_claude_md_texts(repo: Repo, sha: str) -> dict[str, str]:
    """``{path: text}`` of every CLAUDE.md in commit ``sha`` (symlinks and binary files skipped)."""
    entries = _tree_entries(repo, sha)
    wanted = {path: entry[2] for path, entry in entries.items()
              if posixpath.basename(path) == CLAUDE_MD and entry[1] == "blob" and entry[0] != "120000"}
    blobs = read_blobs(repo, list(wanted.values()))
    files = {}
    for path, object_sha in wanted.items():
        text = decode(blobs.get(object_sha, b""))
        if text is not None:
            files[path] = text
    return files


_commit_cache: OrderedDict[str, RuleSet] = OrderedDict()


def commit_rule_set(repo: Repo, sha: str | None) -> RuleSet:
    """The rules of every CLAUDE.md in commit ``sha`` (an empty set for None: an empty repository).
    A commit never changes, so its rule set is cached by sha."""
    if not sha:
        return RuleSet()
    with _set_lock:
        cached = _commit_cache.get(sha)
        if cached is not None:
            return cached
    built = _cached_rule_set(commit_claude_md_texts(repo, sha))
    with _set_lock:
        _commit_cache[sha] = built
        if len(_commit_cache) > 64:
            _commit_cache.popitem(last=False)
    return built


# -- a run's commit --------------------------------------------------------------------------------
@dataclass
class RunCheck:
    """The outcome of checking one run's commit against its base commit's rules."""

    violations: list[Violation] = field(default_factory=list)
    #: Problems in the base commit's CLAUDE.md files (rules that could not apply, or ran out of time).
    problems: list[RuleProblem] = field(default_factory=list)
    #: Changed CLAUDE.md / .promptrail.toml paths (non-empty → the run is a policy change).
    policy_files: list[str] = field(default_factory=list)
    rules: int = 0
    files_checked: int = 0

    @property
    def policy_change(self) -> bool:
        return bool(self.policy_files)

    def summary(self) -> dict[str, Any]:
        counts = severity_counts(self.violations)
        return {"total": len(self.violations), **counts, "policy_change": self.policy_change}


def check_commit(repo: Repo, base_sha: str | None, commit_sha: str,
                 changes: Sequence[Mapping[str, Any]]) -> RunCheck:
    """Check the files a commit changed (as committed) and the run-level rules, against the rules
    of the base commit's CLAUDE.md files."""
    rules = commit_rule_set(repo, base_sha)
    present = [c["path"] for c in changes if c.get("status") != "deleted"]
    entries = _tree_entries(repo, commit_sha, present) if present and rules.rules else {}
    checkable = {path: entry[2] for path, entry in entries.items()
                 if entry[1] == "blob" and entry[0] != "120000" and rules.rules_for(path)}
    blobs = read_blobs(repo, list(checkable.values()))
    budget = MatchBudget()
    violations: list[Violation] = []
    checked = 0
    for path in present:
        if path not in checkable:
            continue
        text = decode(blobs.get(checkable[path], b""))
        if text is None:
            continue
        checked += 1
        violations.extend(check_text(rules.rules_for(path), path, text, budget))
    violations.extend(check_changes(rules, changes))
    violations.sort(key=lambda v: (v.path, v.line, v.start_col, v.rule_id))
    return RunCheck(violations, [*rules.problems, *budget.problems], policy_files(changes), len(rules.rules),
                    checked)


# -- the working tree (promptrail check) -----------------------------------------------------------
@dataclass
class CheckReport:
    """``promptrail check``: violations of the checked files and problems of the CLAUDE.md files."""

    violations: list[Violation]
    problems: list[RuleProblem]
    files_checked: int
    rules: int

    @property
    def has_errors(self) -> bool:
        # A malformed or too slow rule is an error too: in CI, a typo in CLAUDE.md must not silently
        # turn enforcement off.
        return any(v.severity == "error" for v in self.violations) or \
            any(p.severity == "error" for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {"violations": [v.as_dict() for v in self.violations],
                "problems": [p.as_dict() for p in self.problems],
                "counts": severity_counts(self.violations), "files_checked": self.files_checked,
                "rules": self.rules}


def _tracked(repo: Repo, pathspecs: Sequence[str] = ()) -> list[str]:
    out = repo.run("--literal-pathspecs", "ls-files", "-z", "--cached", "--", *pathspecs)
    return sorted({path for path in out.stdout.split("\0") if path})


def check_paths(repo: Repo, paths: Sequence[str] | None = None, *, cwd: Path | None = None) -> CheckReport:
    """Check files of the working tree against the working tree's CLAUDE.md rules.

    ``paths`` (relative to ``cwd``, default the current folder) may be files (checked even when
    untracked) or folders (their tracked files); none means every tracked file. A path that does
    not exist is a ``PromptrailError``. Binary files and symlinks are skipped."""
    rules = worktree_rule_set(repo)
    base = Path(cwd) if cwd is not None else Path.cwd()
    if paths:
        selected: list[str] = []
        for given in paths:
            absolute = (base / given) if not Path(given).is_absolute() else Path(given)
            if not absolute.exists() and not absolute.is_symlink():
                raise PromptrailError(f"{given}: no such file or directory")
            relpath = repo.relpath(absolute)
            if absolute.is_dir():
                selected.extend(_tracked(repo, [relpath] if relpath != "." else []))
            else:
                selected.append(relpath)
        selected = list(dict.fromkeys(selected))
    else:
        selected = _tracked(repo)
    budget = MatchBudget()
    violations: list[Violation] = []
    checked = 0
    for relpath in selected:
        applicable = rules.rules_for(relpath)
        absolute = repo.root / relpath
        if absolute.is_symlink() or not absolute.is_file():
            continue
        checked += 1
        if not applicable:
            continue
        text = _read_text(absolute)
        if text is None:
            continue
        violations.extend(check_text(applicable, relpath, text, budget))
    violations.sort(key=lambda v: (v.path, v.line, v.start_col, v.rule_id))
    return CheckReport(violations, [*rules.problems, *budget.problems], checked, len(rules.rules))


# -- the language server's diagnostics ------------------------------------------------------------
class _HasRepo(Protocol):
    repo: Repo


def diagnose_document(workspace: _HasRepo, relpath: str, text: str, *,
                      claude_md: Mapping[str, str] | None = None) -> list[Violation]:
    """Violations of one document's (possibly unsaved) ``text`` against the working tree's
    CLAUDE.md rules. ``relpath`` is repository-relative (posix); ``claude_md`` maps CLAUDE.md
    paths to unsaved editor text that replaces the files on disk.

    Pure apart from reading the CLAUDE.md files (one ``git ls-files``, cached parsing); call it
    from a worker thread. Lines are 1-based, columns are code-point indices into the line. A rule
    that runs out of time on the document is an error at its line 1 (see ``check_text``)."""
    rules = worktree_rule_set(workspace.repo, claude_md)
    return check_text(rules.rules_for(relpath), relpath, text)


def diagnose_claude_md(workspace: _HasRepo, relpath: str, text: str, *,
                       claude_md: Mapping[str, str] | None = None) -> list[RuleProblem]:
    """Problems of one CLAUDE.md given its (possibly unsaved) ``text``: bad TOML, unknown keys,
    bad regexes, and ids that repeat one in any other CLAUDE.md of the working tree.
    ``claude_md`` maps other CLAUDE.md paths to unsaved editor text (as for ``diagnose_document``)."""
    rules = worktree_rule_set(workspace.repo, {**(claude_md or {}), relpath: text})
    return rules.problems_in(relpath)


def clear_caches() -> None:
    """Forget cached rule sets (tests; a long-lived process never needs it: keys are content hashes)."""
    with _set_lock:
        _set_cache.clear()
        _commit_cache.clear()


__all__ = ["Violation", "RunCheck", "CheckReport", "MatchBudget", "MATCH_TIME_LIMIT_S", "check_text", "check_changes",
           "check_commit", "check_paths", "diagnose_document", "diagnose_claude_md", "worktree_rule_set",
           "commit_rule_set", "commit_claude_md_texts", "policy_files", "severity_counts"]
