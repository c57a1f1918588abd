"""Checking text and changes against rules: exact positions for each kind (CJK, emoji, CRLF),
the fast paths agreeing with a plain line-by-line reference on arbitrary text, and the run-level
rules (protected, requires_tests) and policy-change detection."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from promptrail.standards import (check_changes, check_text, parse_claude_md, policy_files, rule_set_from_texts,
                                  severity_counts)


def rules_of(body: str, path: str = "CLAUDE.md"):
    parsed = parse_claude_md(f"# rules\n```promptrail\n{body.strip()}\n```\n", path)
    assert parsed.problems == (), parsed.problems
    return list(parsed.rules)


def found(rules, text: str, path: str = "a.py") -> list[tuple]:
    return [(v.rule_id, v.line, v.start_col, v.end_col, v.severity, v.message) for v in check_text(rules, path, text)]


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
    regex = re.compile(pattern)
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
    assert (found(rules, text) == []) == (re.search(pattern, normalized, re.MULTILINE) is not None)


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
