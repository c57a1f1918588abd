"""stream-json framing and mapping: the recorded sample, the CLI's failure shapes, and any input at all."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from promptrail.agents.base import Finished, Raw, Started, Text, ToolResult, ToolUse, Usage
from promptrail.agents.stream_json import (
    LineFramer,
    StreamJsonParser,
    flatten_content,
    read_lines,
)

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "claude-2.1.197-sample.jsonl"
SESSION = "5df05ac5-02c2-40ce-be84-54c03ed06b79"


def parse_all(lines: list[str | bytes]) -> tuple[list, StreamJsonParser]:
    parser = StreamJsonParser()
    events = [event for line in lines for event in parser.feed_line(line)]
    return events, parser


# -- the recorded sample -----------------------------------------------------------------------


def test_sample_maps_to_the_exact_event_sequence():
    events, parser = parse_all(SAMPLE.read_bytes().splitlines())

    assert events == [
        Started(session_id=SESSION, model="claude-opus-4-8[1m]", cwd="/home/dev/project"),
        Text("I will add a greeting module."),
        ToolUse(
            id="toolu_01",
            name="Write",
            input={
                "file_path": "/home/dev/project/greet.py",
                "content": "def greet(name):\n    return 'Hello ' + name\n",
            },
        ),
        ToolResult(
            tool_use_id="toolu_01",
            content="File created successfully at: /home/dev/project/greet.py "
            "(file state is current in your context \u2014 no need to Read it back)",
        ),
        Text("Now I use an f-string."),
        ToolUse(
            id="toolu_02",
            name="Edit",
            input={
                "replace_all": False,
                "file_path": "/home/dev/project/greet.py",
                "old_string": "return 'Hello ' + name",
                "new_string": "return f'Hello, {name}!'",
            },
        ),
        ToolResult(
            tool_use_id="toolu_02",
            content="The file /home/dev/project/greet.py has been updated successfully. "
            "(file state is current in your context \u2014 no need to Read it back)",
        ),
        ToolUse(
            id="toolu_03",
            name="Bash",
            input={
                "command": "python3 -c 'import greet; print(greet.greet(\"world\"))'",
                "description": "Try the function",
            },
        ),
        ToolResult(tool_use_id="toolu_03", content="Hello, world!", is_error=False),
        Text("Added greet() in greet.py; it prints Hello, world!"),
    ]
    finished = parser.finish("unused")
    assert finished.is_error is False
    assert finished.complete is True
    assert finished.error is None
    assert finished.result == "Added greet() in greet.py; it prints Hello, world!"
    assert finished.cost_usd == 0.0325
    assert finished.usage == Usage(input=4800, output=340, cache_read=0, cache_write=0)
    assert finished.num_turns == 4
    assert finished.raw["terminal_reason"] == "completed"
    assert finished.raw["modelUsage"]["claude-opus-4-8[1m]"]["costUSD"] == 0.0325


# -- the result: is_error is the verdict -------------------------------------------------------

# What the real CLI 2.1.197 printed when the API was unreachable (trimmed): subtype "success",
# is_error true, a "cost" of 0 with zero tokens: nothing was measured, so the cost is unknown (None).
API_DOWN_RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": True,
    "api_error_status": None,
    "num_turns": 1,
    "result": "API Error: Unable to connect to API (ConnectionRefused)",
    "total_cost_usd": 0,
    "usage": {"input_tokens": 0, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
              "output_tokens": 0},
}


def test_is_error_under_subtype_success_is_a_failure():
    _, parser = parse_all([json.dumps(API_DOWN_RESULT)])
    finished = parser.finish("unused")
    assert finished == Finished(
        is_error=True,
        complete=True,
        result="API Error: Unable to connect to API (ConnectionRefused)",
        error="API Error: Unable to connect to API (ConnectionRefused)",
        cost_usd=None,
        usage=Usage(),
        num_turns=1,
        raw=API_DOWN_RESULT,
    )


def test_error_result_collects_errors_and_api_status():
    result = {
        "type": "result", "subtype": "error_during_execution", "is_error": True,
        "api_error_status": 529, "errors": ["Overloaded"],
    }
    _, parser = parse_all([json.dumps(result)])
    finished = parser.finish("unused")
    assert finished.error == "Overloaded; API error status 529"
    assert finished.cost_usd is None
    assert finished.usage is None
    assert finished.num_turns is None


def test_error_result_without_any_text_names_the_subtype():
    _, parser = parse_all(['{"type": "result", "subtype": "error_max_turns", "is_error": true}'])
    assert parser.finish("unused").error == "claude reported an error (subtype 'error_max_turns')"


def test_token_counts_no_run_can_have_are_not_counted():
    result = {**API_DOWN_RESULT, "is_error": False,
              "usage": {"input_tokens": 1e300, "output_tokens": 2**60, "cache_read_input_tokens": -3,
                        "cache_creation_input_tokens": 10**6}}
    _, parser = parse_all([json.dumps(result)])
    assert parser.finish("unused").usage == Usage(input=0, output=0, cache_read=0, cache_write=10**6)


def test_result_without_is_error_false_is_not_a_success():
    _, parser = parse_all(['{"type": "result", "subtype": "success", "result": "done"}'])
    assert parser.finish("unused").is_error is True


def test_no_result_is_incomplete_with_unknown_cost():
    _, parser = parse_all(SAMPLE.read_bytes().splitlines()[:-1])
    assert parser.finish("claude exited with code 1 without a result") == Finished(
        is_error=True, complete=False, error="claude exited with code 1 without a result", cost_usd=None
    )


def test_first_result_stands_and_a_second_is_kept_as_raw():
    first = '{"type": "result", "is_error": false, "result": "one", "total_cost_usd": 0.5}'
    second = '{"type": "result", "is_error": true, "result": "two"}'
    events, parser = parse_all([first, second])
    assert events == [Raw(f"[duplicate result ignored] {second}")]
    assert parser.finish("unused").result == "one"


def test_cancelled_keeps_a_reported_cost():
    _, parser = parse_all(['{"type": "result", "is_error": false, "total_cost_usd": 0.25}'])
    finished = parser.finish_cancelled()
    assert (finished.is_error, finished.complete, finished.error, finished.cost_usd) == (
        True, False, "cancelled", 0.25)
    assert StreamJsonParser().finish_cancelled().cost_usd is None


# -- everything else is kept -------------------------------------------------------------------


def test_non_json_and_non_object_lines_are_raw():
    events, parser = parse_all(["Warning: something odd", "[1, 2]", '"text"', "42", b"\xff\xfe oops\r\n"])
    assert events == [
        Raw("Warning: something odd"), Raw("[1, 2]"), Raw('"text"'), Raw("42"), Raw("\ufffd\ufffd oops"),
    ]
    assert parser.result is None


def test_blank_lines_are_skipped():
    assert parse_all(["", "   ", b"\r\n"])[0] == []


def test_unknown_types_and_message_shapes_are_kept_verbatim():
    lines = [
        '{"type": "system", "subtype": "compact_boundary"}',
        '{"type": "stream_event", "event": {}}',
        '{"no_type": 1}',
        '{"type": "assistant", "message": {"content": {"not": "a list"}}}',
        '{"type": "user"}',
    ]
    assert parse_all(lines)[0] == [Raw(line) for line in lines]


def test_unusual_content_blocks():
    assistant = {"type": "assistant", "message": {"content": [
        {"type": "thinking", "thinking": "hmm"},
        {"type": "text", "text": ""},
        {"type": "tool_use", "id": "t1", "name": "Odd", "input": "not a dict"},
    ]}}
    user = {"type": "user", "message": {"content": [
        {"type": "tool_result", "tool_use_id": "t1", "is_error": True,
         "content": [{"type": "text", "text": "line 1"}, {"type": "image", "source": {}},
                     {"type": "text", "text": "line 2"}]},
        {"type": "text", "text": "a user note"},
    ]}}
    events, _ = parse_all([json.dumps(assistant), json.dumps(user)])
    assert events == [
        Raw('{"type":"thinking","thinking":"hmm"}'),
        ToolUse(id="t1", name="Odd", input={"input": "not a dict"}),
        ToolResult(tool_use_id="t1", content="line 1\n[image]\nline 2", is_error=True),
        Raw('{"type":"text","text":"a user note"}'),
    ]


def test_flatten_content():
    assert flatten_content(None) == ""
    assert flatten_content("plain") == "plain"
    assert flatten_content(["a", {"type": "text", "text": "b"}, {"x": 1}]) == 'a\nb\n{"x":1}'


def test_deeply_nested_json_does_not_raise():
    line = "[" * 200_000 + "]" * 200_000
    assert parse_all([line])[0] == [Raw(line)]


# -- never raises ------------------------------------------------------------------------------

_KEYS = ["type", "subtype", "message", "content", "text", "id", "name", "input", "tool_use_id",
         "is_error", "result", "usage", "total_cost_usd", "num_turns", "errors", "api_error_status",
         "session_id", "model", "cwd", "input_tokens", "output_tokens", "cache_read_input_tokens",
         "cache_creation_input_tokens"]
_TYPES = ["system", "init", "assistant", "user", "result", "text", "tool_use", "tool_result", "image"]
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | st.sampled_from(_TYPES),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5), children, max_size=6),
    max_leaves=12,
)
_loose_dicts = st.dictionaries(st.sampled_from(_KEYS), _json_values, max_size=6)
_blocks = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.sampled_from(["text", "tool_use", "tool_result", "image", "thinking"]),
    _loose_dicts,
)
# Objects shaped like the CLI's, with every field free to be of the wrong type.
_cli_objects = st.builds(
    lambda kind, subtype, content, rest: {
        **rest, "type": kind, "subtype": subtype, "message": {"content": content}
    },
    st.sampled_from(["system", "assistant", "user", "result"]),
    st.sampled_from(["init", "success", "error_during_execution"]) | _json_values,
    st.lists(_blocks | _json_values, max_size=4) | _json_values,
    _loose_dicts,
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.binary() | st.text() | (_json_values | _cli_objects).map(json.dumps), max_size=6))
def test_any_input_never_raises_and_finish_always_gives_one_verdict(lines):
    parser = StreamJsonParser()
    for line in lines:
        events = parser.feed_line(line)
        assert all(not isinstance(event, Finished) for event in events)
    assert isinstance(parser.finish("incomplete"), Finished)
    assert isinstance(parser.finish_cancelled(), Finished)


@settings(max_examples=200, deadline=None)
@given(_cli_objects | _loose_dicts)
def test_the_mapping_itself_never_raises(obj):
    # feed_line has a last-resort guard; this proves the mapping does not rely on it.
    StreamJsonParser()._map(obj, json.dumps(obj))


# -- framing -----------------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=40), max_size=12))
def test_framer_gives_the_same_lines_however_the_bytes_are_chunked(chunks):
    framer = LineFramer()
    lines = [line for chunk in chunks for line in framer.feed(chunk)]
    last = framer.flush()
    if last is not None:
        lines.append(last)
    expected = b"".join(chunks).split(b"\n")
    if expected[-1] == b"":
        expected.pop()
    assert lines == expected


async def collect(chunks: list[bytes], chunk_size: int = 65536) -> list[bytes]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    return [line async for line in read_lines(reader, chunk_size)]


async def test_read_lines_yields_the_unterminated_last_line():
    assert await collect([b'{"a":', b' 1}\n{"b"', b": 2}"]) == [b'{"a": 1}', b'{"b": 2}']
    assert await collect([b"one\n\ntwo\n"]) == [b"one", b"", b"two"]
    assert await collect([]) == []


async def test_read_lines_has_no_line_length_cap():
    big = b"x" * (8 * 1024 * 1024)
    assert await collect([big[: 3 * 1024 * 1024], big[3 * 1024 * 1024 :] + b"\nend"], chunk_size=1000) == [
        big, b"end"]
