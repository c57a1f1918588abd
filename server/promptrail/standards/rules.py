"""What a CLAUDE.md rule is: the ``Rule`` dataclass, its validation from one ``[[rule]]`` TOML
table, and the matching helpers the checker needs (compiled once, when the rule is built).

A rule has an ``id``, optional ``paths``/``exclude`` (gitignore-style globs, relative to the
folder of the CLAUDE.md that defines it: a nested CLAUDE.md only reaches its own subtree; without
``paths`` a rule checks every file there but the CLAUDE.md files themselves), a
``severity`` (error | warning | info | hint, default warning), an optional ``message`` and exactly
one kind: ``forbid`` (regex, per line), ``require`` (regex, somewhere in the file),
``max_line_length``, ``max_lines`` (file-level kinds), ``protected`` (paths a run must not change)
or ``requires_tests = {changed = [...], needs = [...]}`` (run-level kinds).

A table with any problem (unknown key, bad value, bad regex, no kind) builds no rule, so a typo
never silently widens or disables what a rule checks; the problem is reported instead.

Patterns are Python ``re`` syntax (``re`` validates them and gives the error messages; the speed
analysis below reads ``re``'s parse tree) but are matched by the ``regex`` module in its
re-compatible VERSION0: ``re`` cannot be stopped (nor does it release the GIL), so one pattern
with catastrophic backtracking would hang the checker, while ``regex`` takes a timeout (see
check.py). The two agree on syntax and on ASCII text but for ``\\B``, which also matches an empty
line (as in Python 3.14's ``re``); they differ in a few Unicode class tables (``\\w`` also matches
combining marks and the joiners, but not ``²`` or ``½``; ``\\s`` not U+001C–U+001F) and in POSIX
classes: ``[[:alpha:]]`` is a class to ``regex`` but plain characters to ``re``, so such a pattern
is refused.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    import regex as regex_module

SEVERITIES = ("error", "warning", "info", "hint")
FILE_KINDS = ("forbid", "require", "max_line_length", "max_lines")
RUN_KINDS = ("protected", "requires_tests")
KINDS = FILE_KINDS + RUN_KINDS
COMMON_KEYS = ("id", "paths", "exclude", "severity", "message")
KEYS = COMMON_KEYS + KINDS
REQUIRES_TESTS_KEYS = ("changed", "needs")


@dataclass(frozen=True)
class RuleProblem:
    """A diagnostic on a CLAUDE.md file: a rule block that is malformed. ``line`` is 1-based;
    ``start_col``/``end_col`` are Python str indices (code points) into that line."""

    path: str
    line: int
    start_col: int
    end_col: int
    #: toml-syntax | unknown-key | missing-id | missing-kind | multiple-kinds | bad-value | bad-regex | duplicate-id
    #: | regex-timeout (found while checking: the pattern ran out of time on a file)
    code: str
    message: str
    rule_id: str | None = None
    severity: str = "error"
    source: str = "CLAUDE.md"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line, "start_col": self.start_col, "end_col": self.end_col,
                "severity": self.severity, "code": self.code, "message": self.message,
                "rule_id": self.rule_id, "source": self.source}


class _Spec:
    """A gitignore-style glob list, compiled once."""

    __slots__ = ("patterns", "_spec")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        import pathspec  # lazily: only a file with rules needs it

        self.patterns = patterns
        self._spec = pathspec.GitIgnoreSpec.from_lines(patterns)

    def match(self, relpath: str) -> bool:
        return self._spec.match_file(relpath)


@dataclass(frozen=True, eq=False)
class Rule:
    """One validated rule. Exactly one of the kind fields is set (see ``kind``)."""

    id: str
    kind: str
    severity: str = "warning"
    message: str | None = None
    paths: tuple[str, ...] | None = None
    exclude: tuple[str, ...] = ()
    forbid: str | None = None
    require: str | None = None
    max_line_length: int | None = None
    max_lines: int | None = None
    protected: tuple[str, ...] | None = None
    #: ``(changed globs, needs globs)``
    requires_tests: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    #: Folder of the defining CLAUDE.md relative to the repository root, "" or ending in "/".
    base: str = ""
    rule_file: str = "CLAUDE.md"
    #: 1-based line of the rule's ``[[rule]]`` header in ``rule_file``.
    rule_line: int = 1
    #: (line, start_col, end_col) of the ``id = ...`` line (where a duplicate id is reported).
    id_position: tuple[int, int, int] = (1, 0, 0)
    #: (line, start_col, end_col) of the ``forbid``/``require`` line (where a slow pattern is reported).
    pattern_position: tuple[int, int, int] = (1, 0, 0)
    # Compiled once, here, so checking never compiles anything.
    regex: regex_module.Pattern[str] | None = field(default=None, repr=False)
    #: Every match contains one of these strings (a fast prefilter), if that could be proven.
    literals: tuple[str, ...] | None = field(default=None, repr=False)
    #: Every matching line ends with one of these (patterns anchored with ``$``), if proven.
    last_chars: frozenset[str] | None = field(default=None, repr=False)
    #: True when the regex may be run over the whole text (see check.py).
    line_safe: bool = field(default=False, repr=False)
    _paths: _Spec | None = field(default=None, repr=False)
    _exclude: _Spec | None = field(default=None, repr=False)
    _protected: _Spec | None = field(default=None, repr=False)
    _changed: _Spec | None = field(default=None, repr=False)
    _needs: _Spec | None = field(default=None, repr=False)

    @property
    def is_run_level(self) -> bool:
        return self.kind in RUN_KINDS

    def local(self, relpath: str) -> str | None:
        """``relpath`` (from the repository root) relative to this rule's folder, or None when the
        path is outside the subtree this rule's CLAUDE.md governs."""
        if not self.base:
            return relpath
        return relpath[len(self.base):] if relpath.startswith(self.base) else None

    def _excluded(self, local: str) -> bool:
        return self._exclude is not None and self._exclude.match(local)

    def applies_to(self, relpath: str) -> bool:
        """Does this (file-level) rule check the file at ``relpath``? A rule without ``paths``
        checks every file of its subtree except the CLAUDE.md files themselves (the rule book
        quotes its own patterns); name them in ``paths`` to check them too."""
        local = self.local(relpath)
        if local is None or self._excluded(local):
            return False
        if self._paths is None:
            return not (local == "CLAUDE.md" or local.endswith("/CLAUDE.md"))
        return self._paths.match(local)

    def protects(self, relpath: str) -> bool:
        local = self.local(relpath)
        return (self._protected is not None and local is not None and not self._excluded(local)
                and self._protected.match(local))

    def in_changed(self, relpath: str) -> bool:
        local = self.local(relpath)
        return (self._changed is not None and local is not None and not self._excluded(local)
                and self._changed.match(local))

    def in_needs(self, relpath: str) -> bool:
        local = self.local(relpath)
        return self._needs is not None and local is not None and self._needs.match(local)


# -- building a rule from a TOML table -------------------------------------------------------------
#: ``locate(*keys)``: (line, start_col, end_col) of the first of ``keys`` found in the rule's
#: table, or of the rule's ``[[rule]]`` header when none is (or no key is given).
Locate = Callable[..., tuple[int, int, int]]


def build_rule(table: Any, *, number: int, rule_file: str, base: str, locate: Locate
               ) -> tuple[Rule | None, list[RuleProblem]]:
    """Validate one ``[[rule]]`` table. Returns the rule (None if it has any problem) and the
    problems, each placed at the line of the offending key."""
    problems: list[RuleProblem] = []

    def problem(key: str | tuple[str, ...] | None, code: str, message: str, rule_id: str | None = None) -> None:
        keys = () if key is None else (key,) if isinstance(key, str) else key
        line, start, end = locate(*keys)
        problems.append(RuleProblem(rule_file, line, start, end, code, message, rule_id))

    if not isinstance(table, dict):
        problem(None, "bad-value", f"rule #{number} must be a table; write it as [[rule]] with key = value lines")
        return None, problems
    raw_id = table.get("id")
    rule_id = raw_id if isinstance(raw_id, str) and raw_id.strip() else None
    name = f"'{rule_id}'" if rule_id else f"#{number}"
    if "id" not in table:
        problem(None, "missing-id",
                f"rule #{number} has no id; add id = \"some-name\" (unique across all CLAUDE.md files)")
    elif rule_id is None or re.search(r"\s", rule_id):
        problem("id", "bad-value", f"rule #{number}: id must be a non-empty string without spaces")
        rule_id = None
    for key in table:
        if key not in KEYS:
            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(KEYS)}"
            problem(key, "unknown-key", f"unknown key '{key}' in rule {name}{hint}", rule_id)
    kinds = [key for key in KINDS if key in table]
    if not kinds:
        problem(None, "missing-kind", f"rule {name} has no kind; give it one of {', '.join(KINDS)}", rule_id)
    elif len(kinds) > 1:
        problem(kinds[1], "multiple-kinds", f"rule {name} has more than one kind ({', '.join(kinds)}); "
                                            "split it into one rule per kind", rule_id)

    def bad(key: str, expected: str) -> None:
        problem(key, "bad-value", f"rule {name}: {key} must be {expected}", rule_id)

    def globs(key: str) -> tuple[str, ...] | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            bad(key, "a list of glob strings")
            return None
        return tuple(value)

    def spec(key: str, patterns: tuple[str, ...] | None) -> _Spec | None:
        if patterns is None:
            return None
        try:
            return _Spec(patterns)
        except Exception as exc:  # noqa: BLE001 - pathspec raises assorted types for bad globs
            problem(key, "bad-value", f"rule {name}: bad glob in {key}: {exc}", rule_id)
            return None

    severity = table.get("severity", "warning")
    if severity not in SEVERITIES:
        problem("severity", "bad-value", f"rule {name}: severity must be one of {', '.join(SEVERITIES)}, "
                                         f"not {severity!r}", rule_id)
    message = table.get("message")
    if message is not None and not isinstance(message, str):
        bad("message", "a string")
    paths, exclude = globs("paths"), globs("exclude")
    fields: dict[str, Any] = {"_paths": spec("paths", paths), "_exclude": spec("exclude", exclude)}
    for key in ("forbid", "require"):
        if key in table:
            pattern = table[key]
            if not isinstance(pattern, str):
                bad(key, "a regular expression in a string (single quotes keep backslashes: '\\bx\\(')")
                continue
            try:
                compiled = compile_pattern(pattern)
            except (re.error, OverflowError, RecursionError, ValueError) as exc:
                where = f" at position {exc.pos}" if getattr(exc, "pos", None) is not None else ""
                detail = getattr(exc, "msg", None) or str(exc)
                problem(key, "bad-regex", f"rule {name}: bad regex in {key}: {detail}{where}", rule_id)
                continue
            fields.update(regex=compiled, literals=required_literals(pattern), last_chars=required_last_chars(pattern),
                          line_safe=is_line_safe(pattern), pattern_position=locate(key))
    for key in ("max_line_length", "max_lines"):
        if key in table:
            value = table[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                bad(key, "a whole number of at least 1")
    if kinds and kinds[0] in RUN_KINDS and "paths" in table:
        problem("paths", "bad-value", f"rule {name}: paths does not apply to a {kinds[0]} rule; "
                + ("list the globs in protected" if kinds[0] == "protected" else "use requires_tests.changed"),
                rule_id)
    protected = globs("protected")
    if "protected" in table and protected is not None:
        fields["_protected"] = spec("protected", protected)
    requires = None
    if "requires_tests" in table:
        value = table["requires_tests"]
        if not isinstance(value, dict):
            bad("requires_tests", "a table: requires_tests = { changed = [\"src/**\"], needs = [\"tests/**\"] }")
        else:
            for key in value:
                if key not in REQUIRES_TESTS_KEYS:
                    problem((key, "requires_tests"), "unknown-key",
                            f"unknown key '{key}' in requires_tests of rule {name}; use changed and needs", rule_id)
            parts = []
            for key in REQUIRES_TESTS_KEYS:
                items = value.get(key)
                if isinstance(items, str):
                    items = [items]
                if not isinstance(items, list) or not items or not all(isinstance(v, str) for v in items):
                    problem((key, "requires_tests"), "bad-value",
                            f"rule {name}: requires_tests.{key} must be a non-empty list of glob strings", rule_id)
                    items = []
                parts.append(tuple(items))
            requires = (parts[0], parts[1])
            fields["_changed"] = spec("requires_tests", parts[0]) if parts[0] else None
            fields["_needs"] = spec("requires_tests", parts[1]) if parts[1] else None
    if problems or rule_id is None:
        return None, problems
    line, _, _ = locate()
    rule = Rule(id=rule_id, kind=kinds[0], severity=severity, message=message, paths=paths,
                exclude=exclude or (), forbid=table.get("forbid"), require=table.get("require"),
                max_line_length=table.get("max_line_length"), max_lines=table.get("max_lines"),
                protected=protected if "protected" in table else None, requires_tests=requires,
                base=base, rule_file=rule_file, rule_line=line, id_position=locate("id"), **fields)
    return rule, problems


# -- compiling a pattern ---------------------------------------------------------------------------
_POSIX_CLASS = re.compile(r"\[:\^?\w+:\]")


def compile_pattern(pattern: str) -> regex_module.Pattern[str]:
    """``pattern`` (Python ``re`` syntax, MULTILINE) compiled by the ``regex`` module, whose matches
    can be given a timeout. Raises ``re.error`` (or ``OverflowError``, ``RecursionError``,
    ``ValueError``) for a pattern either module refuses."""
    import regex  # lazily: 25 ms of start-up, and only a file with forbid/require rules needs it

    at = _posix_class_position(pattern)
    if at is not None:  # before re.compile, which would warn about a nested set
        raise re.error("POSIX classes such as [:alpha:] are read as plain characters by Python's re; "
                       "write the class out (e.g. [a-zA-Z])", pattern, at)
    re.compile(pattern, re.MULTILINE)  # re's syntax is the contract, and its messages the ones we show
    try:
        return regex.compile(pattern, regex.MULTILINE | regex.VERSION0)
    except regex.error as exc:  # rare: a pattern re accepts and regex does not
        raise re.error(exc.msg, pattern, exc.pos) from exc


def _posix_class_position(pattern: str) -> int | None:
    """Where a POSIX class (``[:name:]`` or ``[:^name:]``) stands inside a set, or None."""
    position, in_set, size = 0, False, len(pattern)
    while position < size:
        char = pattern[position]
        if char == "\\":
            position += 2
            continue
        if not in_set and char == "[":
            in_set = True
            position += 1
            position += pattern.startswith("^", position)
            position += pattern.startswith("]", position)  # a leading ] is a member, not the end
            continue
        if in_set and char == "]":
            in_set = False
        elif in_set and char == "[" and _POSIX_CLASS.match(pattern, position):
            return position
        position += 1
    return None


# -- regex analysis (for speed; every answer here errs on the safe side) ---------------------------
try:  # A private module: without it rules stay correct, only slower.
    import re._constants as _sre_constants
    import re._parser as _sre_parser
except ImportError:  # pragma: no cover
    _sre_parser = None  # type: ignore[assignment]
    _sre_constants = None  # type: ignore[assignment]


def _parse(pattern: str):
    if _sre_parser is None:
        return None
    try:
        return _sre_parser.parse(pattern, re.MULTILINE)
    except Exception:  # noqa: BLE001 - compile() already accepted it; never fail here
        return None


def required_literals(pattern: str) -> tuple[str, ...] | None:
    """Strings of which every match of ``pattern`` contains at least one (often just one string),
    or None. A line without any of them cannot match, so the checker only runs the regex on
    lines that have one (found with ``str.find``, much faster than the regex engine)."""
    parsed = _parse(pattern)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    best = _best_literals(list(parsed), _sre_constants)
    if not best or any(not literal or "\n" in literal for literal in best):
        return None
    return best


def _score(candidate: tuple[str, ...] | None) -> int:
    return min(map(len, candidate)) if candidate else 0


def _best_literals(items: list, c) -> tuple[str, ...] | None:
    """The most selective required-literal alternatives of a sequence of parsed items."""
    best: tuple[str, ...] | None = None
    run: list[str] = []

    def offer(candidate: tuple[str, ...] | None) -> None:
        nonlocal best
        if _score(candidate) > _score(best):
            best = candidate

    def close() -> None:
        nonlocal run
        if run:
            offer(("".join(run),))
        run = []

    for op, av in _flatten(items, c):
        if op is c.LITERAL:
            run.append(chr(av))
        elif op is c.IN and len(av) == 1 and av[0][0] is c.LITERAL:
            run.append(chr(av[0][1]))
        elif op is c.AT:
            continue  # zero-width (^ $ \b): the literals around it are still adjacent in a match
        else:
            close()
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and av[0] >= 1:
                offer(_best_literals(list(av[2]), c))
            elif op is c.BRANCH:
                branches = [_best_literals(list(branch), c) for branch in av[1]]
                if all(branches):
                    offer(tuple(dict.fromkeys(literal for branch in branches for literal in branch)))
    close()
    return best


_WHITESPACE = frozenset("\t\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
                        "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000")  # \s of a str regex, minus \n


def required_last_chars(pattern: str) -> frozenset[str] | None:
    """For a pattern that must end at the end of a line (``...$``) with a non-empty last item:
    the characters a matching line can end with, or None. ``[ \\t]+$`` (trailing whitespace)
    can only match a line ending in a space or a tab, so the checker looks at no other line."""
    parsed = _parse(pattern)
    if parsed is None or parsed.state.flags & re.IGNORECASE:
        return None
    c = _sre_constants
    items = list(parsed)
    anchored = False
    while items and items[-1][0] is c.AT:
        anchored = anchored or items[-1][1] in (c.AT_END, c.AT_END_LINE)
        items.pop()
    if not anchored or not items:
        return None
    chars = _last_chars(items[-1], c)
    return frozenset(chars) if chars else None


def _last_chars(item, c) -> set[str] | None:
    op, av = item
    if op is c.LITERAL:
        return {chr(av)}
    if op is c.IN:
        chars: set[str] = set()
        for kind, value in av:
            if kind is c.LITERAL:
                chars.add(chr(value))
            elif kind is c.RANGE and value[1] - value[0] <= 256:
                chars.update(map(chr, range(value[0], value[1] + 1)))
            elif kind is c.CATEGORY and value is c.CATEGORY_SPACE:
                chars.update(_WHITESPACE)
            else:
                return None
        return chars
    if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and av[0] >= 1 and av[2]:
        return _last_chars(list(av[2])[-1], c)
    if op is c.SUBPATTERN and not av[1] and not av[2] and av[3]:
        return _last_chars(list(av[3])[-1], c)
    if op is c.BRANCH:
        union: set[str] = set()
        for branch in av[1]:
            branch = [entry for entry in branch if entry[0] is not c.AT]
            found = _last_chars(branch[-1], c) if branch else None
            if not found:
                return None
            union |= found
        return union
    return None


def _flatten(items: list, c):
    """Inline plain groups (no flag changes), whose content is as required as their neighbours."""
    for op, av in items:
        if op is c.SUBPATTERN and not av[1] and not av[2]:
            yield from _flatten(list(av[3]), c)
        elif op is c.SUBPATTERN:
            yield (c.ANY, None)  # flag changes (e.g. (?i:...)): not a literal
        elif op is getattr(c, "ATOMIC_GROUP", None):
            yield from _flatten(list(av), c)
        else:
            yield op, av


def is_line_safe(pattern: str) -> bool:
    """True when finding the pattern in the whole text (MULTILINE) gives exactly the per-line
    matches, except for matches that run over a line break (which the checker detects and
    redoes line by line). Lookarounds, \\A and \\Z behave differently, so they are not safe."""
    parsed = _parse(pattern)
    if parsed is None:
        return False
    c = _sre_constants
    # \A \Z see the text's ends, not the line's. (\B is safe with the regex module, which finds it
    # in an empty line on its own as in one of a longer text; Python's re before 3.14 did not.)
    unsafe_at = {c.AT_BEGINNING_STRING, c.AT_END_STRING}

    def walk(items) -> bool:
        for op, av in items:
            if op in (c.ASSERT, c.ASSERT_NOT) or (op is c.AT and av in unsafe_at):
                return False
            if op is c.SUBPATTERN and not walk(av[3]):
                return False
            if op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)) and not walk(av[2]):
                return False
            if op is c.BRANCH and not all(walk(branch) for branch in av[1]):
                return False
            if op is getattr(c, "ATOMIC_GROUP", None) and not walk(av):
                return False
            if op is c.GROUPREF_EXISTS and not all(walk(b) for b in av[1:] if b is not None):
                return False
        return True

    return walk(parsed)
