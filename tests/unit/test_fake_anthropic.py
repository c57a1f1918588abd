"""Tests of the fake Messages API server itself, driven by the real ``anthropic`` SDK.

These pin down the protocol details the agents rely on (SSE framing, tool_use input deltas, error
bodies and retry headers, dropped connections) without needing the claude CLI.
"""

from __future__ import annotations

import json
import urllib.request

import anthropic
import pytest

from tests.support.fake_anthropic import (
    DONE_TEXT,
    Disconnect,
    FakeAnthropic,
    HttpError,
    ToolCall,
    Turn,
    is_agent_turn,
)

try:  # anthropic >= 2 ships its HTTP client as ``httpx2``; older releases use ``httpx``.
    import httpx2 as httpx
except ImportError:  # pragma: no cover - depends on the installed SDK
    import httpx  # type: ignore[no-redef]

MODEL = "claude-sonnet-4-5"
HELLO = [{"role": "user", "content": "hello"}]


def client(api: FakeAnthropic, max_retries: int = 0) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=api.url, api_key="sk-ant-test-dummy", max_retries=max_retries)


def test_streamed_text_turn() -> None:
    script = [
        Turn(
            "Hello there, world!",
            input_tokens=3100,
            output_tokens=42,
            cache_read_input_tokens=2048,
            cache_creation_input_tokens=512,
        )
    ]
    with FakeAnthropic(script) as api:
        with client(api).messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            pieces = list(stream.text_stream)
            message = stream.get_final_message()

    assert len(pieces) > 1  # the text really arrives as several deltas
    assert "".join(pieces) == "Hello there, world!"
    assert [b.type for b in message.content] == ["text"]
    assert message.stop_reason == "end_turn"
    assert message.model == MODEL
    assert (message.usage.input_tokens, message.usage.output_tokens) == (3100, 42)
    assert message.usage.cache_read_input_tokens == 2048
    assert message.usage.cache_creation_input_tokens == 512

    [request] = api.requests
    assert (request.method, request.path, request.agent_turn, request.reply) == (
        "POST",
        "/v1/messages",
        True,
        "turn",
    )
    assert request.body["stream"] is True
    assert request.body["messages"] == HELLO


def test_sse_framing_on_the_wire() -> None:
    with FakeAnthropic([Turn("hi", [ToolCall("Read", {"file_path": "/x"})])]) as api:
        req = urllib.request.Request(
            api.url + "/v1/messages?beta=true",
            data=json.dumps({"model": MODEL, "max_tokens": 10, "stream": True, "messages": HELLO}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=5) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            raw = response.read().decode()

    frames = [f for f in raw.split("\n\n") if f]
    events = []
    for frame in frames:
        event_line, data_line = frame.split("\n")
        assert event_line.startswith("event: ") and data_line.startswith("data: ")
        data = json.loads(data_line[len("data: ") :])
        assert data["type"] == event_line[len("event: ") :]
        events.append(data)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert kinds.count("content_block_start") == kinds.count("content_block_stop") == 2
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    partial = [
        e["delta"]["partial_json"]
        for e in events
        if e["type"] == "content_block_delta" and e["delta"]["type"] == "input_json_delta"
    ]
    assert len(partial) > 1 and json.loads("".join(partial)) == {"file_path": "/x"}


def test_tool_use_turn_with_cwd_placeholder() -> None:
    content = "def f(name: str) -> str:\n    return f'{name}!'\n"  # braces that are not {cwd}
    script = [
        Turn(
            "I will write it.",
            [
                ToolCall("Write", {"file_path": "{cwd}/pkg/f.py", "content": content}),
                ToolCall("Bash", {"command": "ls {cwd}", "description": "list"}),
            ],
        )
    ]
    with FakeAnthropic(script, cwd="/work/proj") as api:
        with client(api).messages.stream(model=MODEL, max_tokens=100, messages=HELLO) as stream:
            message = stream.get_final_message()

    assert message.stop_reason == "tool_use"
    text, write, bash = message.content
    assert text.type == "text" and text.text == "I will write it."
    assert (write.type, write.name, write.id) == ("tool_use", "Write", "toolu_01")
    assert write.input == {"file_path": "/work/proj/pkg/f.py", "content": content}
    assert (bash.name, bash.id, bash.input["command"]) == ("Bash", "toolu_02", "ls /work/proj")


def test_cwd_is_taken_from_the_cli_system_prompt_when_not_given() -> None:
    prompt = "Env:\n - Primary working directory: /home/dev/w\n - Is a git repository: false"
    system = [{"type": "text", "text": prompt}]
    with FakeAnthropic([Turn(None, [ToolCall("Write", {"file_path": "{cwd}/a.txt", "content": "x"})])]) as api:
        message = client(api).messages.create(model=MODEL, max_tokens=10, system=system, messages=HELLO)
    assert message.content[0].input["file_path"] == "/home/dev/w/a.txt"
    assert api.reported_cwd == "/home/dev/w"


def test_non_streaming_request_and_exhausted_script() -> None:
    with FakeAnthropic([Turn("first")]) as api:
        c = client(api)
        first = c.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        second = c.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert first.content[0].text == "first"
    assert second.content[0].text == DONE_TEXT and second.stop_reason == "end_turn"
    assert [r.reply for r in api.requests] == ["turn", "done"]


def test_429_with_retry_after_then_success() -> None:
    script = [HttpError(429, message="slow down", retry_after=0.2), Turn("after the wait")]
    with FakeAnthropic(script) as api:
        with client(api, max_retries=2).messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            message = stream.get_final_message()

    assert message.content[0].text == "after the wait"
    first, second = api.agent_requests
    assert (first.reply, second.reply) == ("error 429", "turn")
    assert second.headers["x-stainless-retry-count"] == "1"


def test_error_body_and_headers() -> None:
    with FakeAnthropic([HttpError(429, message="slow down", retry_after=3)]) as api:
        with pytest.raises(anthropic.RateLimitError) as caught:
            client(api).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    error = caught.value
    assert error.status_code == 429
    assert error.body == {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    assert error.response.headers["retry-after"] == "3"


def test_repeated_error_is_seen_by_every_retry() -> None:
    with FakeAnthropic([HttpError(529, repeat=True)]) as api:
        c = anthropic.Anthropic(base_url=api.url, api_key="x", max_retries=2)
        with pytest.raises(anthropic.APIStatusError) as caught:
            c.with_options(timeout=5).messages.create(model=MODEL, max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 529
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert [r.reply for r in api.requests] == ["error 529"] * 3
    assert api.remaining == 1  # a repeating error never moves on


def test_error_times_then_next_reply() -> None:
    with FakeAnthropic([HttpError(500, times=2), Turn("recovered")]) as api:
        c = client(api)
        for _ in range(2):
            with pytest.raises(anthropic.InternalServerError):
                c.messages.create(model=MODEL, max_tokens=10, messages=HELLO)
        assert c.messages.create(model=MODEL, max_tokens=10, messages=HELLO).content[0].text == "recovered"


def test_disconnect_mid_stream() -> None:
    with FakeAnthropic([Disconnect(after_events=3), Turn("second try")]) as api:
        c = client(api)
        seen: list[str] = []
        with pytest.raises((httpx.RemoteProtocolError, anthropic.APIConnectionError)):
            with c.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
                for event in stream:
                    seen.append(event.type)
        # message_start and ping arrived, then the connection was cut inside the first block.
        assert seen[0] == "message_start" and "message_stop" not in seen
        # The server keeps working for the next request (a new connection).
        assert c.messages.create(model=MODEL, max_tokens=10, messages=HELLO).content[0].text == "second try"
    assert [r.reply for r in api.requests] == ["disconnect", "turn"]


def test_disconnect_of_a_non_streaming_request() -> None:
    with FakeAnthropic([Disconnect(after_events=2)]) as api:
        with pytest.raises(anthropic.APIConnectionError):
            client(api).messages.create(model=MODEL, max_tokens=10, messages=HELLO)


def test_cli_side_requests_do_not_consume_the_script() -> None:
    cli_headers = {"user-agent": "claude-cli/2.1.197 (external, sdk-cli)", "x-app": "cli"}
    tools = [{"name": "Read", "description": "read", "input_schema": {"type": "object"}}]
    with FakeAnthropic([Turn("scripted")]) as api:
        c = client(api).with_options(default_headers=cli_headers)
        side = c.messages.create(model="claude-haiku-4-5", max_tokens=50, messages=HELLO)
        turn = c.messages.create(model=MODEL, max_tokens=4096, tools=tools, messages=HELLO)
    assert side.content[0].text != "scripted"
    assert turn.content[0].text == "scripted"
    assert [(r.agent_turn, r.reply) for r in api.requests] == [(False, "aux"), (True, "turn")]


def test_is_agent_turn_rule() -> None:
    assert is_agent_turn({"tools": [{"name": "Bash"}], "messages": []})
    assert not is_agent_turn({"tools": [], "messages": []})
    assert not is_agent_turn({"messages": []})
    assert not is_agent_turn(None)


def test_other_endpoints_are_harmless() -> None:
    with FakeAnthropic([Turn("kept")]) as api:
        head = urllib.request.Request(api.url + "/", method="HEAD")
        with urllib.request.urlopen(head, timeout=5) as response:
            assert response.status == 200
        count = client(api).messages.count_tokens(model=MODEL, messages=HELLO)
        assert count.input_tokens > 0
        assert api.remaining == 1


async def test_async_client_streams() -> None:
    with FakeAnthropic([Turn("async hello", [ToolCall("Read", {"file_path": "{cwd}/x"})])], cwd="/r") as api:
        c = anthropic.AsyncAnthropic(base_url=api.url, api_key="x", max_retries=0)
        async with c.messages.stream(model=MODEL, max_tokens=10, messages=HELLO) as stream:
            message = await stream.get_final_message()
        await c.close()
    assert message.content[0].text == "async hello"
    assert message.content[1].input == {"file_path": "/r/x"}
