"""``diagnostics.carry_over``: what an outdated result may still publish. Whatever two texts it is
given, every diagnostic it keeps points at a line that reads exactly as the line it was found on
(line breaks as LSP counts them: ``\\n``, ``\\r\\n``, ``\\r``)."""

from __future__ import annotations

import re

from hypothesis import given, settings, strategies as st
from lsprotocol import types

from promptrail.lsp.diagnostics import carry_over

LINE_BREAK = re.compile(r"\r\n|\r|\n")


def line_diagnostics(text: str) -> list[types.Diagnostic]:
    """One diagnostic per line, spanning it, its message the line's text."""
    return [types.Diagnostic(range=types.Range(start=types.Position(line=n, character=0),
                                               end=types.Position(line=n, character=len(line))), message=line)
            for n, line in enumerate(LINE_BREAK.split(text))]


def kept_lines(old: str, new: str) -> list[tuple[int, str]]:
    return [(d.range.start.line, d.message) for d in carry_over(line_diagnostics(old), old, new)]


texts = st.text(alphabet="ab\r\n😀漢", max_size=40)


@settings(max_examples=2000)
@given(texts, st.integers(0, 40), st.integers(0, 40), texts)
def test_every_kept_range_points_at_the_same_text(old: str, start: int, length: int, inserted: str):
    start = min(start, len(old))
    new = old[:start] + inserted + old[start + length:]
    lines = LINE_BREAK.split(new)
    for number, text in kept_lines(old, new):
        assert lines[number] == text


def test_lines_before_and_after_an_edit_are_kept_and_moved():
    old = "one\ntwo\r\nthree\rfour\nfive"
    # "two" becomes two lines: "one" stays line 0, the lines after "two" move down by one.
    new = "one\ntw\nXo\r\nthree\rfour\nfive"
    assert kept_lines(old, new) == [(0, "one"), (3, "three"), (4, "four"), (5, "five")]
    # A line removed: the lines after it move up.
    assert kept_lines(old, "one\nthree\rfour\nfive") == [(0, "one"), (1, "three"), (2, "four"), (3, "five")]
    # The same text under a newer version: everything holds.
    assert kept_lines(old, old) == [(0, "one"), (1, "two"), (2, "three"), (3, "four"), (4, "five")]
    # A CR becoming CRLF changes no line's text; the lines it touches are simply not vouched for.
    assert kept_lines("a\rb\nc", "a\r\nb\nc") == [(0, "a"), (2, "c")]
    # Everything replaced: nothing holds.
    assert kept_lines(old, "something else") == []
