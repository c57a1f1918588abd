"""Checking text and changes against rules: exact positions for each kind (CJK, emoji, CRLF),
the fast paths agreeing with a plain line-by-line reference on arbitrary text, a regex that
backtracks catastrophically stopped at the time limit, and the run-level rules (protected,
requires_tests) and policy-change detection."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from promptrail.standards import (check_changes, check_text, parse_claude_md, policy_files, rule_set_from_texts,
                                  severity_counts)
from promptrail.standards import check as check_module
from promptrail.standards.check import MatchBudget
from promptrail.standards.rules import compile_pattern


def rules_of(body: str, path: str = "CLAUDE.md"):
    parsed = parse_claude_md(f"# rules\n```promptrail\n{body.strip()}\n```\n", path)
    assert parsed.problems == (), parsed.problems
    return list(parsed.rules)


def found(rules, text: str, path: str = "a.py", budget: MatchBudget | None = None) -> list[tuple]:
    return [(v.rule_id, v.line, v.start_col, v.end_col, v.severity, v.message)
            for v in check_text(rules, path, text, budget)]


# -- each kind, exact positions --------------------------------------------------------------------
def test_forbid_positions_are_code_point_indices_after_cjk_and_emoji():
    rules = rules_of(r'''
[[rule]]
id = "no-print"
forbid = '\bprint\('
message = "Use logging."
severity = "error"
''')
    text = "x = 1\n温度 🙂 = print(t)  # print(again)\nnot_print(x)\n🙂🙂print("
    assert found(rules, text) == [
        ("no-print", 2, 7, 13, "error", "Use logging."),
        ("no-print", 2, 19, 25, "error", "Use logging."),
        ("no-print", 4, 2, 8, "error", "Use logging."),
    ]
    line = text.split("\n")[1]
    assert line[7:13] == "print(" and line[19:25] == "print("


def test_crlf_and_lone_cr_line_ends_count_as_markdown_and_lsp_count_them():
    rules = rules_of(r'''
[[rule]]
id = "trailing"
forbid = '[ \t]+$'
''')
    assert found(rules, "a  \r\nb\r\nc\t\rd \n") == [
        ("trailing", 1, 1, 3, "warning", "matches the forbidden pattern [ \\t]+$"),
        ("trailing", 3, 1, 2, "warning", "matches the forbidden pattern [ \\t]+$"),
        ("trailing", 4, 1, 2, "warning", "matches the forbidden pattern [ \\t]+$"),
    ]


def test_forbid_is_per_line_even_when_the_regex_could_span_lines():
    rules = rules_of(r'''
[[rule]]
id = "ab"
forbid = 'a\s+b'

[[rule]]
id = "start"
forbid = '\Ax'
''')
    # "a\nb" would match over the whole text; per line it must not. \A is each line's start.
    assert found(rules, "a\nb a  b\nx x\n") == [
        ("ab", 2, 2, 6, "warning", "matches the forbidden pattern a\\s+b"),
        ("start", 3, 0, 1, "warning", "matches the forbidden pattern \\Ax"),
    ]


def test_require_max_line_length_max_lines():
    rules = rules_of(r'''
[[rule]]
id = "docstring"
require = '^"""'
message = "Start with a docstring."

[[rule]]
id = "width"
max_line_length = 5

[[rule]]
id = "length"
max_lines = 2
severity = "info"
message = "Split the file."
''')
    text = "import os\r\nx = 1\r\n温度温度温度\r\n"
    assert found(rules, text) == [
        ("docstring", 1, 0, 9, "warning", "Start with a docstring."),
        ("width", 1, 5, 9, "warning", "line too long (9 > 5 characters)"),
        ("length", 3, 0, 6, "info", "Split the file. (3 > 2 lines)"),
        ("width", 3, 5, 6, "warning", "line too long (6 > 5 characters)"),
    ]
    assert found(rules, '"""D\n"""\n') == []
    assert found(rules, "") == [("docstring", 1, 0, 0, "warning", "Start with a docstring.")]
    assert found(rules_of('[[rule]]\nid = "n"\nmax_lines = 1'), "one\n") == []  # a final newline ends line 1


def test_a_one_megabyte_line_without_newlines():
    rules = rules_of(r'''
[[rule]]
id = "x"
forbid = 'needle'

[[rule]]
id = "w"
max_line_length = 100
''')
    text = "a" * 1_000_000 + "needle"
    assert found(rules, text) == [("w", 1, 100, 1_000_006, "warning", "line too long (1000006 > 100 characters)"),
                                  ("x", 1, 1_000_000, 1_000_006, "warning", "matches the forbidden pattern needle")]


# -- the fast paths agree with a plain line-by-line reference ---------------------------------------
PATTERNS = [
    r"\bprint\(", r"a+", r"[ \t]+$", r"\s+$", r"\s{2,}$", r"^\s*$", r"^", r"$", r"x*", r"(?<=a)b", r"\Ab", r"b\Z",
    r"a\s+b", r"(?s)a.b", r"TODO|a b", r"[^\x00-\x7f]", r"(a|b)\b$", r"b(?=\n)", r"a\nb", r"\bb", r"^\s+", r"\s",
    r"(?i)A", r"a(?!b)", r"(ab)+", r"a.*?b", r"[ab]{2,}$", r"東+", r"🙂", r"(?:x|y)\(", r"a\b", r"\B", r"^a|b$",
    r"(?<!a)b", r"a[\s\S]b", r"(a)\1", r"\W+$", r"\b", r"^$", r"$^", r"\B$", r"(?m)^b$", r"\s*", r"[^a]*$",
    r"\Z", r"(?=a)", r"a|$",
]
ALPHABET = st.sampled_from(["a", "b", "x", "y", " ", "\t", "\n", "\r", "\r\n", "(", "東", "🙂", "print(", "TODO",
                            "a b", "\u3000", "\x0c"])


def reference(pattern: str, text: str) -> list[tuple[int, int, int]]:
    # The engine rules are matched with (the regex module), plainly, one line at a time.
    regex = compile_pattern(pattern)
    return [(number, m.start(), m.end()) for number, line in enumerate(re.split(r"\r\n|\r|\n", text), 1)
            for m in regex.finditer(line)]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATTERNS), st.lists(ALPHABET, max_size=60))
def test_forbid_matches_a_line_by_line_reference(pattern, pieces):
    text = "".join(pieces)
    body = f"[[rule]]\nid = \"r\"\nforbid = '''{pattern}'''"
    rules = rules_of(body)
    assert [(line, start, end) for _, line, start, end, _, _ in found(rules, text)] == reference(pattern, text)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PATTERNS), st.lists(ALPHABET, max_size=60))
def test_require_matches_a_search_of_the_whole_text(pattern, pieces):
    text = "".join(pieces)
    rules = rules_of(f"[[rule]]\nid = \"r\"\nrequire = '''{pattern}'''")
    normalized = text.replace("\r\n", "\n").replace("\r", "\n")
    assert (found(rules, text) == []) == (compile_pattern(pattern).search(normalized) is not None)


# -- the time limit --------------------------------------------------------------------------------
SLOW = r'''
[[rule]]
id = "slow"
forbid = '^(a|a)*$'
severity = "info"

[[rule]]
id = "todo"
forbid = 'TODO'
'''
#: (a|a)* has 2^40 ways to fail on this line: years without a time limit.
CATASTROPHIC = "a" * 40 + "b\nTODO\n"
STOPPED = ("rule 'slow': the forbid pattern took more than 0.05 s on {}, so this check stopped it there and skipped it "
           "on later files; simplify the pattern (nested repeats such as (a|a)* can take exponential time)")


def test_a_regex_that_backtracks_catastrophically_is_stopped_and_reported_at_its_line():
    rules = rules_of(SLOW)
    budget = MatchBudget(0.05)
    todo = ("todo", 2, 0, 4, "warning", "matches the forbidden pattern TODO")
    assert found(rules, CATASTROPHIC, "a.txt", budget) == [todo]  # the other rules still apply
    assert [p.as_dict() for p in budget.problems] == [
        {"path": "CLAUDE.md", "line": 5, "start_col": 0, "end_col": 19, "severity": "error", "code": "regex-timeout",
         "message": STOPPED.format("a.txt"), "rule_id": "slow", "source": "CLAUDE.md"}]
    # Later files of the same check skip the rule: each could cost the limit again.
    assert found(rules, "aaaa\nTODO\n", "b.txt", budget) == [todo]
    assert len(budget.problems) == 1


def test_without_a_budget_a_stopped_rule_is_an_error_on_the_file(monkeypatch):
    monkeypatch.setattr(check_module, "MATCH_TIME_LIMIT_S", 0.05)
    assert found(rules_of(SLOW), CATASTROPHIC) == [
        ("slow", 1, 0, 41, "error", STOPPED.format("a.py")),
        ("todo", 2, 0, 4, "warning", "matches the forbidden pattern TODO"),
    ]


def test_nested_repeats_the_regex_module_guards_finish_with_their_meaning():
    # ^(a+)+$ hung Python's re on this line; the regex module fails it at once, as it should.
    rules = rules_of("[[rule]]\nid = \"nested\"\nforbid = '^(a+)+$'")
    budget = MatchBudget()
    assert found(rules, "a" * 40 + "b\n" + "a" * 40, budget=budget) == [
        ("nested", 2, 0, 40, "warning", "matches the forbidden pattern ^(a+)+$")]
    assert budget.problems == []


# -- run-level rules -------------------------------------------------------------------------------
RUN_RULES = r'''
[[rule]]
id = "lockfiles"
protected = ["*.lock", "deploy/prod/**"]
exclude = ["deploy/prod/README.md"]
severity = "error"

[[rule]]
id = "tests"
requires_tests = { changed = ["src/**"], needs = ["tests/**"] }
message = "Change the tests too."
'''


def run_rules(nested: str | None = None):
    files = {"CLAUDE.md": f"# r\n```promptrail\n{RUN_RULES}```\n"}
    if nested:
        files["svc/CLAUDE.md"] = nested
    return rule_set_from_texts(files)


def change(path: str, status: str = "modified", old_path: str | None = None) -> dict:
    return {"path": path, "old_path": old_path, "status": status}


def test_protected_paths_and_requires_tests():
    rules = run_rules()
    found_ = [(v.rule_id, v.path, v.line, v.severity, v.message) for v in check_changes(rules, [
        change("uv.lock"), change("deploy/prod/main.tf", "deleted"), change("deploy/prod/README.md"),
        change("src/app.py"), change("src/util.py", "added")])]
    assert found_ == [
        ("lockfiles", "uv.lock", 1, "error", "uv.lock is protected; an agent run must not change it"),
        ("lockfiles", "deploy/prod/main.tf", 1, "error",
         "deploy/prod/main.tf is protected; an agent run must not change it"),
        ("tests", "src/app.py", 1, "warning",
         "Change the tests too. (2 changed file(s) match src/** but no changed file matches tests/**)"),
    ]
    assert check_changes(rules, [change("src/app.py"), change("tests/test_app.py")]) == []
    # A rename out of a protected path changes the protected path too.
    assert [v.path for v in check_changes(rules, [change("x.txt", "renamed", old_path="poetry.lock")])] == \
        ["poetry.lock"]


def test_nested_run_rules_only_reach_their_subtree():
    nested = "```promptrail\n[[rule]]\nid = \"svc-protected\"\nprotected = [\"schema.sql\"]\n```\n"
    rules = run_rules(nested)
    assert [v.path for v in check_changes(rules, [change("schema.sql"), change("svc/schema.sql"),
                                                   change("svc/db/schema.sql")])] == ["svc/schema.sql",
                                                                                      "svc/db/schema.sql"]


def test_policy_files_and_counts():
    assert policy_files([change("CLAUDE.md"), change("a/CLAUDE.md", "deleted"), change(".promptrail.toml"),
                         change("sub/.promptrail.toml"), change("NOTCLAUDE.md"),
                         change("b.md", "renamed", old_path="b/CLAUDE.md")]) == \
        ["CLAUDE.md", "a/CLAUDE.md", ".promptrail.toml", "b/CLAUDE.md"]
    rules = rules_of('[[rule]]\nid = "e"\nforbid = "e"\nseverity = "error"\n\n[[rule]]\nid = "h"\nforbid = "h"\n'
                     'severity = "hint"')
    assert severity_counts(check_text(rules, "a", "eh\ne")) == {"error": 2, "warning": 0, "info": 0, "hint": 1}
