"""Reading rules out of CLAUDE.md files: finding the ```promptrail blocks, parsing their TOML,
and placing every problem at its exact line of the CLAUDE.md file.

Fences are found with markdown-it-py (CommonMark), so a fence inside a list item or a block
quote, a ``~~~`` fence and an indented code block (never a rule block) behave as Markdown says.
Nothing here raises on any text: bad TOML, unknown keys, bad regexes and duplicate ids become
``RuleProblem`` diagnostics, and every rule without a problem still applies. Parsed files are
cached by (path, content hash), so re-reading an unchanged CLAUDE.md costs a hash.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import threading
import tomllib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from promptrail.standards.rules import Rule, RuleProblem, build_rule

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

INFO_STRING = "promptrail"


@dataclass(frozen=True)
class RuleBlock:
    """One ```promptrail fence. Lines are 1-based lines of the CLAUDE.md file."""

    fence_line: int
    first_line: int
    content: str


@dataclass(frozen=True)
class ParsedFile:
    """The rules and problems of one CLAUDE.md (duplicate ids are found across files by ``RuleSet``)."""

    path: str
    rules: tuple[Rule, ...] = ()
    problems: tuple[RuleProblem, ...] = ()
    blocks: int = 0


@dataclass(frozen=True)
class RuleSet:
    """Every rule of a tree's CLAUDE.md files, and every problem found reading them.

    ``files`` are the CLAUDE.md paths the set was built from (repository-relative, posix)."""

    rules: tuple[Rule, ...] = ()
    problems: tuple[RuleProblem, ...] = ()
    files: tuple[str, ...] = ()
    _file_rules: tuple[Rule, ...] = field(default=(), repr=False)
    _run_rules: tuple[Rule, ...] = field(default=(), repr=False)

    def rules_for(self, relpath: str) -> list[Rule]:
        """The file-level rules (forbid, require, max_*) that check the file at ``relpath``."""
        return [rule for rule in self._file_rules if rule.applies_to(relpath)]

    @property
    def run_rules(self) -> tuple[Rule, ...]:
        """The run-level rules (protected, requires_tests)."""
        return self._run_rules

    def problems_in(self, path: str) -> list[RuleProblem]:
        return [problem for problem in self.problems if problem.path == path]


# -- finding the blocks ----------------------------------------------------------------------------
_local = threading.local()


def _markdown() -> MarkdownIt:
    # One parser per thread: MarkdownIt keeps per-parse state on the instance's rulers.
    md = getattr(_local, "md", None)
    if md is None:
        from markdown_it import MarkdownIt  # lazily: most files have no rule block at all

        md = MarkdownIt("commonmark")
        # Only block structure matters; inline parsing is most of the cost of a long file.
        md.core.ruler.disable(["inline", "text_join"], ignoreInvalid=True)
        _local.md = md
    return md


def find_rule_blocks(text: str) -> list[RuleBlock]:
    """Every fenced code block whose info string's first word is ``promptrail``."""
    if INFO_STRING not in text:
        return []
    blocks = []
    for token in _markdown().parse(text):
        if token.type != "fence" or token.map is None:
            continue
        words = token.info.split()
        if words and words[0] == INFO_STRING:
            blocks.append(RuleBlock(fence_line=token.map[0] + 1, first_line=token.map[0] + 2, content=token.content))
    return blocks


# -- parsing one CLAUDE.md -------------------------------------------------------------------------
_CACHE_SIZE = 512
_cache: OrderedDict[tuple[str, bytes], ParsedFile] = OrderedDict()
_cache_lock = threading.Lock()


def content_key(text: str) -> bytes:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).digest()


def parse_claude_md(text: str, path: str = "CLAUDE.md") -> ParsedFile:
    """All rules and problems of one CLAUDE.md (``path`` is repository-relative, posix).

    Never raises. Cached by (path, content hash); the returned object is shared, don't mutate it."""
    key = (path, content_key(text))
    with _cache_lock:
        cached = _cache.get(key)
        if cached is not None:
            _cache.move_to_end(key)
            return cached
    parsed = _parse_file(text, path)
    with _cache_lock:
        _cache[key] = parsed
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return parsed


def _parse_file(text: str, path: str) -> ParsedFile:
    blocks = find_rule_blocks(text)
    if not blocks:
        return ParsedFile(path)
    file_lines = _LINE_BREAK.split(text)
    folder = posixpath.dirname(path)
    base = f"{folder}/" if folder else ""
    rules: list[Rule] = []
    problems: list[RuleProblem] = []
    for block in blocks:
        _parse_block(block, path, base, file_lines, rules, problems)
    return ParsedFile(path, tuple(rules), tuple(problems), len(blocks))


_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the line breaks Markdown (and LSP) count
_RULE_HEADER = re.compile(r"^\s*\[\[\s*(?:rule|\"rule\"|'rule')\s*\]\]\s*(?:#.*)?$")
_TOML_WHERE = re.compile(r" \(at (?:line (\d+), column (\d+)|end of document)\)$")


class _BlockIndex:
    """Where things are in a block's lines: the ``[[rule]]`` headers and each key's line."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.in_string = _multiline_string_mask(lines)
        self.headers = [i for i, line in enumerate(lines) if not self.in_string[i] and _RULE_HEADER.match(line)]

    def segment(self, number: int) -> tuple[int, int] | None:
        """Block-line range [start, end) of the ``number``-th (0-based) ``[[rule]]`` table."""
        if number >= len(self.headers):
            return None
        end = self.headers[number + 1] if number + 1 < len(self.headers) else len(self.lines)
        return self.headers[number], end

    def key_line(self, key: str, start: int, end: int) -> int | None:
        pattern = re.compile(r"^\s*(?:\[+\s*)?(?:[A-Za-z0-9_-]+\s*\.\s*)*(?:%s|\"%s\"|'%s')\s*[.=\]]"
                             % ((re.escape(key),) * 3))
        for i in range(start, end):
            if not self.in_string[i] and pattern.match(self.lines[i]):
                return i
        return None

    def last_line(self) -> int:
        for i in range(len(self.lines) - 1, -1, -1):
            if self.lines[i].strip():
                return i
        return 0


def _multiline_string_mask(lines: list[str]) -> list[bool]:
    """For each line: does it start inside a multi-line (triple-quoted) string? So a key-like
    line inside one is never taken for a key, and a triple quote inside a one-line string (a
    ``require`` regex for a docstring, say) opens nothing."""
    mask: list[bool] = []
    state: str | None = None  # the open triple quote
    for line in lines:
        mask.append(state is not None)
        i, size = 0, len(line)
        while i < size:
            char = line[i]
            if state is not None:
                if state == '"""' and char == "\\":
                    i += 2
                elif line.startswith(state, i):
                    state, i = None, i + 3
                else:
                    i += 1
            elif char == "#":
                break
            elif line.startswith('"""', i) or line.startswith("'''", i):
                state, i = line[i:i + 3], i + 3
            elif char == '"':
                i += 1
                while i < size and line[i] != '"':
                    i += 2 if line[i] == "\\" else 1
                i += 1
            elif char == "'":
                end = line.find("'", i + 1)
                i = size if end == -1 else end + 1
            else:
                i += 1
    return mask


def _parse_block(block: RuleBlock, path: str, base: str, file_lines: list[str],
                 rules: list[Rule], problems: list[RuleProblem]) -> None:
    lines = block.content.split("\n")
    index = _BlockIndex(lines)

    def place(block_line: int, column: int | None = None) -> tuple[int, int, int]:
        """Block line (0-based) → (file line 1-based, start_col, end_col) on the file's text."""
        file_index = block.first_line - 1 + block_line
        file_line = file_lines[file_index] if 0 <= file_index < len(file_lines) else ""
        text = lines[block_line] if 0 <= block_line < len(lines) else ""
        offset = len(file_line) - len(text) if text and file_line.endswith(text) else 0
        end = len(file_line.rstrip())
        indent = min(offset + len(text) - len(text.lstrip()), end)
        if column is not None and offset + column < end:
            return file_index + 1, offset + column, end
        # No column, or one past the line's text (e.g. "key = " missing its value): the whole line.
        return file_index + 1, indent, end

    def toml_problem(exc: Exception, first: int) -> RuleProblem:
        message = str(exc)
        where = _TOML_WHERE.search(message)
        if where:
            message = message[: where.start()]
        if where and where.group(1):
            line, start, end = place(first + int(where.group(1)) - 1, int(where.group(2)) - 1)
        else:
            line, start, end = place(index.last_line())
        return RuleProblem(path, line, start, end, "toml-syntax", f"invalid TOML in the promptrail block: {message}")

    segments: list[tuple[int, dict[str, Any]]] = []  # (first block line, parsed TOML)
    try:
        segments.append((0, tomllib.loads(block.content)))
    except tomllib.TOMLDecodeError as exc:
        reported = toml_problem(exc, 0)
        problems.append(reported)
        # Parse each [[rule]] table alone, so the block's other rules still apply.
        starts = [0] + index.headers
        for number, start in enumerate(starts):
            end = starts[number + 1] if number + 1 < len(starts) else len(lines)
            try:
                segments.append((start, tomllib.loads("\n".join(lines[start:end]))))
            except tomllib.TOMLDecodeError as segment_exc:
                problem = toml_problem(segment_exc, start)
                if problem.line != reported.line:
                    problems.append(problem)
            except (RecursionError, ValueError):
                pass
    except (RecursionError, ValueError) as exc:  # absurd nesting, or text tomllib refuses outright
        line, start, end = place(0)
        problems.append(RuleProblem(path, line, start, end, "toml-syntax",
                                    f"invalid TOML in the promptrail block: {exc.__class__.__name__}"))
        return

    for first, data in segments:
        for key in data:
            if key != "rule":
                at = index.key_line(key, first, len(lines))
                line, start, end = place(at if at is not None else max(first - 1, 0))
                problems.append(RuleProblem(path, line, start, end, "unknown-key",
                                            f"unknown key '{key}' in the promptrail block; "
                                            "write each rule as a [[rule]] table"))
        tables = data.get("rule")
        if tables is None:
            continue
        if not isinstance(tables, list):
            at = index.key_line("rule", first, len(lines))
            line, start, end = place(at if at is not None else first)
            problems.append(RuleProblem(path, line, start, end, "bad-value",
                                        "'rule' must be an array of tables: write each rule as [[rule]]"))
            continue
        header_offset = sum(1 for h in index.headers if h < first)
        for number, table in enumerate(tables):
            segment = index.segment(header_offset + number)

            def locate(*keys: str, segment=segment) -> tuple[int, int, int]:
                if segment is None:  # e.g. rule = [{...}] inline: the block's first line
                    return place(first)
                for key in keys:
                    at = index.key_line(key, segment[0] + 1, segment[1])
                    if at is not None:
                        return place(at)
                return place(segment[0])

            rule, found = build_rule(table, number=header_offset + number + 1, rule_file=path, base=base,
                                     locate=locate)
            problems.extend(found)
            if rule is not None:
                rules.append(rule)


# -- many CLAUDE.md files --------------------------------------------------------------------------
def _depth_order(path: str) -> tuple[int, str]:
    return path.count("/"), path


def rule_set(parsed_files: Iterable[ParsedFile]) -> RuleSet:
    """Combine parsed CLAUDE.md files into one ``RuleSet``. Ids are unique across all files: a
    repeated id (outer folders first, then by path and line) is a problem and does not apply."""
    ordered = sorted(parsed_files, key=lambda parsed: _depth_order(parsed.path))
    seen: dict[str, Rule] = {}
    rules: list[Rule] = []
    problems: list[RuleProblem] = []
    for parsed in ordered:
        problems.extend(parsed.problems)
        for rule in parsed.rules:
            first = seen.get(rule.id)
            if first is not None:
                line, start, end = rule.id_position
                problems.append(RuleProblem(parsed.path, line, start, end, "duplicate-id",
                                            f"duplicate rule id '{rule.id}' (already defined at "
                                            f"{first.rule_file}:{first.rule_line}); ids are unique across all "
                                            "CLAUDE.md files", rule.id))
                continue
            seen[rule.id] = rule
            rules.append(rule)
    problems.sort(key=lambda p: (_depth_order(p.path), p.line, p.start_col))
    return RuleSet(tuple(rules), tuple(problems), tuple(p.path for p in ordered),
                   tuple(r for r in rules if not r.is_run_level), tuple(r for r in rules if r.is_run_level))


def rule_set_from_texts(files: Mapping[str, str]) -> RuleSet:
    """``{CLAUDE.md path: text}`` → ``RuleSet`` (each file parsed through the cache)."""
    return rule_set(parse_claude_md(text, path) for path, text in files.items())
