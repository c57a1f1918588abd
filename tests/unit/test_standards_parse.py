"""Reading rules out of CLAUDE.md: rule blocks found as Markdown says, every kind parsed, every
problem placed at its exact line, and no text at all that makes the parser raise."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from promptrail.standards import find_rule_blocks, parse_claude_md, rule_set_from_texts
from promptrail.standards.rules import required_last_chars, required_literals

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_md"


def fence(body: str, info: str = "promptrail") -> str:
    return f"```{info}\n{body.strip()}\n```\n"


def problems(text: str, path: str = "CLAUDE.md") -> list[tuple[int, str, str]]:
    return [(p.line, p.code, p.message) for p in parse_claude_md(text, path).problems]


# -- real-world files without rules ----------------------------------------------------------------
def test_real_world_claude_md_without_rule_blocks_yields_nothing():
    text = (FIXTURES / "realworld.md").read_text(encoding="utf-8")
    assert "promptrail" in text and "[[rule]]" in text and "```promptrail" in text  # only as examples
    for variant in (text, text.replace("\n", "\r\n"), "\ufeff" + text.replace("\n", "\r")):
        parsed = parse_claude_md(variant)
        assert parsed.rules == () and parsed.problems == () and parsed.blocks == 0


def test_file_without_the_word_is_not_parsed_as_markdown_at_all():
    assert find_rule_blocks("# hi\n```toml\n[[rule]]\nid = 1\n```\n") == []


# -- where blocks are ------------------------------------------------------------------------------
def test_fences_in_lists_quotes_and_tildes_count_indented_code_does_not():
    text = (
        "# Rules\n"                              # 1
        "\n"                                     # 2
        "- In a list item:\n"                    # 3
        "\n"                                     # 4
        "  ```promptrail\n"                      # 5
        "  [[rule]]\n"                           # 6
        "  id = \"in-list\"\n"                   # 7
        "  forbid = 'a'\n"                       # 8
        "  ```\n"                                # 9
        "\n"                                     # 10
        "> ~~~promptrail extra words\n"          # 11
        "> [[rule]]\n"                           # 12
        "> id = \"in-quote\"\n"                  # 13
        "> forbid = 'b'\n"                       # 14
        "> ~~~\n"                                # 15
        "\n"                                     # 16
        "    ```promptrail\n"                    # 17 indented code: not a fence
        "    [[rule]]\n"
        "    id = \"indented\"\n"
        "    forbid = 'c'\n"
        "    ```\n"
        "\n"
        "```Promptrail\n[[rule]]\nid = \"wrong-case\"\nforbid = 'd'\n```\n"
        "```python promptrail\n[[rule]]\nid = \"second-word\"\nforbid = 'e'\n```\n"
    )
    parsed = parse_claude_md(text)
    assert [(r.id, r.rule_line) for r in parsed.rules] == [("in-list", 6), ("in-quote", 12)]
    assert parsed.problems == ()


def test_unclosed_fence_runs_to_the_end_of_the_document():
    parsed = parse_claude_md("intro\n```promptrail\n[[rule]]\nid = \"open\"\nmax_lines = 3\n")
    assert [(r.id, r.kind, r.max_lines, r.rule_line) for r in parsed.rules] == [("open", "max_lines", 3, 3)]


# -- each kind -------------------------------------------------------------------------------------
def test_every_kind_and_common_field_is_parsed():
    text = fence(r'''
[[rule]]
id = "no-print"
paths = ["src/**/*.py"]
exclude = ["src/scripts/**"]
forbid = '\bprint\('
message = "Use logging."
severity = "error"

[[rule]]
id = "license"
require = 'SPDX-License-Identifier'
severity = "info"

[[rule]]
id = "width"
max_line_length = 100

[[rule]]
id = "short"
max_lines = 500
severity = "hint"

[[rule]]
id = "lockfiles"
protected = ["*.lock", "deploy/prod/**"]

[[rule]]
id = "tests"
requires_tests = { changed = ["src/**"], needs = ["tests/**"] }
''')
    parsed = parse_claude_md("# x\n" + text)
    assert parsed.problems == ()
    rules = {r.id: r for r in parsed.rules}
    assert [(r.id, r.kind, r.severity) for r in parsed.rules] == [
        ("no-print", "forbid", "error"), ("license", "require", "info"), ("width", "max_line_length", "warning"),
        ("short", "max_lines", "hint"), ("lockfiles", "protected", "warning"), ("tests", "requires_tests", "warning")]
    assert rules["no-print"].paths == ("src/**/*.py",) and rules["no-print"].exclude == ("src/scripts/**",)
    assert rules["no-print"].message == "Use logging." and rules["no-print"].forbid == r"\bprint\("
    assert rules["width"].max_line_length == 100 and rules["short"].max_lines == 500
    assert rules["lockfiles"].protected == ("*.lock", "deploy/prod/**")
    assert rules["tests"].requires_tests == (("src/**",), ("tests/**",))
    assert [r.rule_line for r in parsed.rules] == [3, 11, 16, 20, 25, 29]
    # Run-level rules never check a file's text.
    assert [r.id for r in rule_set_from_texts({"CLAUDE.md": "# x\n" + text}).rules_for("src/a.py")] == [
        "no-print", "license", "width", "short"]


# -- problems at the exact line --------------------------------------------------------------------
def test_bad_toml_is_reported_at_its_file_line_and_the_other_rules_still_apply():
    text = (
        "# Title\n"                    # 1
        "Prose.\n"                     # 2
        "\n"                           # 3
        "```promptrail\n"              # 4
        "[[rule]]\n"                   # 5
        "id = \"good-1\"\n"            # 6
        "forbid = 'x'\n"               # 7
        "\n"                           # 8
        "[[rule]]\n"                   # 9
        "id = \"broken\"\n"            # 10
        "severity = \n"                # 11  <- bad TOML
        "forbid = 'y'\n"               # 12
        "\n"                           # 13
        "[[rule]]\n"                   # 14
        "id = \"good-2\"\n"            # 15
        "max_lines = 9\n"              # 16
        "```\n"
    )
    parsed = parse_claude_md(text)
    assert problems(text) == [(11, "toml-syntax", "invalid TOML in the promptrail block: Invalid value")]
    assert (parsed.problems[0].start_col, parsed.problems[0].end_col) == (0, 10)
    assert [r.id for r in parsed.rules] == ["good-1", "good-2"]


def test_bad_toml_line_inside_a_list_item_with_crlf():
    text = "intro\r\n\r\n1. step\r\n\r\n   ```promptrail\r\n   [[rule]]\r\n   id = 'q\r\n   ```\r\n"
    parsed = parse_claude_md(text)
    assert [(p.line, p.code) for p in parsed.problems] == [(7, "toml-syntax")]
    assert parsed.problems[0].start_col == 3  # the list indentation is part of the file's line


def test_unknown_key_unknown_kind_bad_regex_missing_fields_at_their_lines():
    text = (
        "# Rules\n"                        # 1
        "```promptrail\n"                  # 2
        "[[rule]]\n"                       # 3
        "id = \"typo\"\n"                  # 4
        "pahts = [\"*.py\"]\n"             # 5
        "forbid = 'x'\n"                   # 6
        "\n"                               # 7
        "[[rule]]\n"                       # 8
        "id = \"bad-kind\"\n"              # 9
        "forbidden = 'x'\n"                # 10
        "\n"                               # 11
        "[[rule]]\n"                       # 12
        "id = \"bad-regex\"\n"             # 13
        "paths = [\"*.py\"]\n"             # 14
        "forbid = 'print('\n"              # 15
        "\n"                               # 16
        "[[rule]]\n"                       # 17
        "forbid = 'no id'\n"               # 18
        "\n"                               # 19
        "[[rule]]\n"                       # 20
        "id = \"two-kinds\"\n"             # 21
        "forbid = 'a'\n"                   # 22
        "max_lines = 3\n"                  # 23
        "\n"                               # 24
        "[[rule]]\n"                       # 25
        "id = \"bad-severity\"\n"          # 26
        "require = 'a'\n"                  # 27
        "severity = \"fatal\"\n"           # 28
        "\n"                               # 29
        "[[rule]]\n"                       # 30
        "id = \"ok\"\n"                    # 31
        "max_line_length = 80\n"           # 32
        "```\n"
    )
    assert problems(text) == [
        (5, "unknown-key", "unknown key 'pahts' in rule 'typo' (did you mean 'paths'?)"),
        (10, "unknown-key", "unknown key 'forbidden' in rule 'bad-kind' (did you mean 'forbid'?)"),
        (8, "missing-kind", "rule 'bad-kind' has no kind; give it one of forbid, require, max_line_length, "
                            "max_lines, protected, requires_tests"),
        (15, "bad-regex", "rule 'bad-regex': bad regex in forbid: missing ), unterminated subpattern at position 5"),
        (17, "missing-id", "rule #4 has no id; add id = \"some-name\" (unique across all CLAUDE.md files)"),
        (23, "multiple-kinds", "rule 'two-kinds' has more than one kind (forbid, max_lines); "
                               "split it into one rule per kind"),
        (28, "bad-value", "rule 'bad-severity': severity must be one of error, warning, info, hint, not 'fatal'"),
    ]
    assert [r.id for r in parse_claude_md(text).rules] == ["ok"]


def test_posix_classes_are_refused_not_read_two_ways():
    # Python's re reads [[:alpha:]] as the characters [:alph then ], the regex module as a class.
    parsed = parse_claude_md(fence("[[rule]]\nid = \"p\"\nforbid = '[[:alpha:]]+|[x[:^digit:]]'"))
    assert [(p.line, p.code, p.message) for p in parsed.problems] == [
        (4, "bad-regex", "rule 'p': bad regex in forbid: POSIX classes such as [:alpha:] are read as plain characters "
                         "by Python's re; write the class out (e.g. [a-zA-Z]) at position 1")]
    # Escaped, or a set's first member, [: is an ordinary character.
    assert len(parse_claude_md(fence("[[rule]]\nid = \"q\"\nforbid = '\\[[:alpha:]]|[]:x:]'")).rules) == 1


def test_bad_values_and_unknown_top_level_keys():
    text = "x\n" + fence('''
version = 2

[[rule]]
id = "n"
max_line_length = "80"

[[rule]]
id = "t"
requires_tests = { changed = ["src/**"], need = ["tests/**"] }
''')
    assert problems(text) == [
        (3, "unknown-key", "unknown key 'version' in the promptrail block; write each rule as a [[rule]] table"),
        (7, "bad-value", "rule 'n': max_line_length must be a whole number of at least 1"),
        (11, "unknown-key", "unknown key 'need' in requires_tests of rule 't'; use changed and needs"),
        (11, "bad-value", "rule 't': requires_tests.needs must be a non-empty list of glob strings"),
    ]


def test_duplicate_ids_across_root_and_nested_claude_md():
    root = "# root\n" + fence('[[rule]]\nid = "no-todo"\nforbid = "TODO"')
    nested = "# pkg\n\nsome prose\n" + fence('[[rule]]\nid = "other"\nmax_lines = 5\n\n[[rule]]\nid = "no-todo"\n'
                                            'forbid = "FIXME"')
    rules = rule_set_from_texts({"pkg/CLAUDE.md": nested, "CLAUDE.md": root})
    assert [(p.path, p.line, p.start_col, p.end_col, p.code, p.message) for p in rules.problems] == [
        ("pkg/CLAUDE.md", 10, 0, 14, "duplicate-id",
         "duplicate rule id 'no-todo' (already defined at CLAUDE.md:3); ids are unique across all CLAUDE.md files")]
    assert [(r.id, r.rule_file) for r in rules.rules] == [("no-todo", "CLAUDE.md"), ("other", "pkg/CLAUDE.md")]
    assert rules.problems_in("CLAUDE.md") == []


def test_nested_globs_are_relative_to_their_folder():
    nested = fence('[[rule]]\nid = "py"\npaths = ["src/*.py", "*.toml"]\nexclude = ["src/gen_*.py"]\nmax_lines = 1')
    everywhere = fence('[[rule]]\nid = "all"\nmax_lines = 1')
    rules = rule_set_from_texts({"pkg/CLAUDE.md": nested + "\n", "pkg/sub/CLAUDE.md": everywhere.replace("all", "sub")})

    def ids(path: str) -> list[str]:
        return [r.id for r in rules.rules_for(path)]

    assert ids("pkg/src/a.py") == ["py"]
    assert ids("pkg/src/gen_a.py") == []                   # excluded
    assert ids("pkg/src/deeper/a.py") == []                # src/*.py is anchored to pkg/
    assert ids("src/a.py") == []                           # outside pkg/: not its subtree
    assert ids("pkg/a/b/c.toml") == ["py"]                 # *.toml has no slash: any depth below pkg/
    assert ids("pkg/sub/x.txt") == ["sub"]
    assert ids("pkg/subway/x.txt") == []                   # a prefix of the folder name is not the folder


# -- never raises ----------------------------------------------------------------------------------
_PIECES = st.sampled_from([
    "```promptrail\n", "~~~promptrail\n", "```\n", "~~~\n", "[[rule]]\n", "[[ rule ]]\n", "[rule]\n", "id = \"a\"\n",
    "id = 'a'\n", "id = 3\n", "forbid = '(\n", "forbid = 'x'\n", "require = \"\\\\d\"\n", "max_lines = -1\n",
    "max_line_length = 1e9\n", "protected = [1]\n", "requires_tests = {}\n", "paths = ['!']\n", "exclude = '['\n",
    "severity = \"fatal\"\n", "'''\n", "\"\"\"\n", "a = [[[[[[\n", "> ", "- ", "    ", "\t", "\r\n", "\r", "\n",
    "# heading\n", "| a | b |\n", "東京🙂", "\x00", "\ufeff", "rule = [{id='x', forbid='y'}]\n", "[rule.x]\n",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=20)), max_size=40))
def test_the_parser_never_raises_on_rule_like_text(pieces):
    text = "".join(pieces)
    parsed = parse_claude_md(text, "dir/CLAUDE.md")
    lines = len(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    for problem in parsed.problems:
        assert 1 <= problem.line <= lines and 0 <= problem.start_col <= problem.end_col
    rule_set_from_texts({"CLAUDE.md": text, "dir/CLAUDE.md": text})


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_the_parser_never_raises_on_any_text(text):
    parse_claude_md("```promptrail\n" + text, "CLAUDE.md")
    parse_claude_md(text, "CLAUDE.md")


# -- regex analysis used by the checker ------------------------------------------------------------
def test_required_literals_and_last_chars():
    assert required_literals(r"\bprint\(") == ("print(",)
    assert required_literals(r"TODO|FIXME") == ("TODO", "FIXME")
    assert required_literals(r"pickle\.loads?\(") == ("pickle.load",)
    assert required_literals(r"(?i)todo") is None
    assert required_literals(r"[ \t]+$") is None
    assert required_literals(r"a(?!timeout)") == ("a",)  # never the literal of a negative lookahead
    assert required_last_chars(r"[ \t]+$") == frozenset(" \t")
    assert required_last_chars(r"x*$") is None and required_last_chars(r"a|b$") is None


def test_triple_quotes_inside_one_line_strings_do_not_hide_later_rules():
    text = fence("""
[[rule]]
id = "docstring"
require = '^\"\"\"'

[[rule]]
id = "multi"
message = '''a [[rule]]
typo = 1'''
forbid = "x"

[[rule]]
id = "after"
forbidd = 'y'
""")
    assert [(r.id, r.rule_line) for r in parse_claude_md(text).rules] == [("docstring", 2), ("multi", 6)]
    assert problems(text) == [(14, "unknown-key", "unknown key 'forbidd' in rule 'after' (did you mean 'forbid'?)"),
                              (12, "missing-kind", "rule 'after' has no kind; give it one of forbid, require, "
                                                   "max_line_length, max_lines, protected, requires_tests")]
