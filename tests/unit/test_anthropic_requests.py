"""Anthropic Messages requests read into turns, and their settings (local/_anthropic_text.py).

What a request means must survive the reading: tool results are tool turns in the order they
were given, before the user's text that follows them; an assistant's calls and reasoning stay
with its turn; an assistant message last is continued; a forced tool choice starts the answer.
What cannot be read is refused with a message that names the field, before anything is sampled.
"""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from tinker_actors.local._anthropic_text import (
    MessagesBody,
    conversation,
    decode_messages,
    sampling_params,
)
from tinker_actors.local._chat import Call, forced_call
from tinker_actors.local._oai_text import OaiError

TOOL = {"name": "get_weather", "input_schema": {"type": "object"}}


def body(**fields: Any) -> MessagesBody:
    raw = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return decode_messages(msgspec.json.encode({**raw, **fields}), answer=True)


def test_tool_results_are_tool_turns_in_place_before_the_text_after_them() -> None:
    chat = conversation(
        body(
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            messages=[
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "call it", "signature": "x"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"c": 1}},
                        {"type": "tool_use", "id": "t2", "name": "get_weather", "input": {}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "sunny"},
                        {
                            "type": "tool_result",
                            "tool_use_id": "t2",
                            "content": [{"type": "text", "text": "no such city"}],
                            "is_error": True,
                        },
                        {"type": "text", "text": "Thanks."},
                    ],
                },
            ],
            tools=[TOOL],
        )
    )
    shapes = [(t.role, t.parts) for t in chat.turns]
    assert shapes == [
        ("system", ["Be brief.\nBe kind."]),
        ("user", ["Weather?"]),
        ("assistant", ["Checking."]),
        ("tool", ["sunny"]),
        ("tool", ["Error: ", "no such city"]),
        ("user", ["Thanks."]),
    ]
    assistant = chat.turns[2]
    assert assistant.calls == [Call("get_weather", {"c": 1}, "t1"), Call("get_weather", {}, "t2")]
    assert assistant.thinking == "call it"
    assert (chat.reads_calls, chat.forced, chat.continued) == (True, "", False)


def test_an_assistant_message_last_is_continued_and_choices_force_calls() -> None:
    prefill = [{"role": "user", "content": "Count"}, {"role": "assistant", "content": "One,"}]
    assert conversation(body(messages=prefill)).continued
    forced = conversation(body(tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"}))
    assert forced.forced == forced_call("get_weather")
    anyone = conversation(
        body(tools=[TOOL, {**TOOL, "name": "other"}], tool_choice={"type": "any"})
    )
    assert anyone.forced == forced_call(None)
    none = conversation(body(tools=[TOOL], tool_choice={"type": "none"}))
    assert (none.tools, none.reads_calls) == ([], False)
    single = conversation(
        body(tools=[TOOL], tool_choice={"type": "auto", "disable_parallel_tool_use": True})
    )
    answer = (
        '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n'
        '<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>'
    )
    assert [c.name for c in single.read(answer).calls] == ["a"]


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_k": 0}, "top_k"),
        ({"mcp_servers": [{"url": "x"}]}, "mcp_servers"),
        ({"output_config": {"format": {"type": "json_schema"}}}, "output_config.format"),
        ({"messages": []}, "at least one message"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role"),
        ({"messages": [{"role": "user", "content": 3}]}, "content"),
        ({"messages": [{"role": "assistant", "content": [{"type": "tool_result"}]}]}, "not 'tool_result'"),
        ({"messages": [{"role": "user", "content": [{"type": "tool_use", "name": "f"}]}]}, "not 'tool_use'"),
        ({"system": [{"type": "image"}]}, r"system\[0\]"),
        (  # not ASCII: base64 cannot hold it (a 500 once, found by the fuzz)
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {
                "type": "base64", "media_type": "image/png", "data": "¡no!"}}]}]},
            "not a base64 PNG",
        ),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "client tools"),
        ({"tools": [{"name": "f"}]}, "input_schema"),
        ({"tools": [TOOL], "tool_choice": {"type": "tool", "name": "nope"}}, "tool_choice"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),  # nothing to call
        (
            {
                "tools": [TOOL],
                "tool_choice": {"type": "any"},
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}],
            },
            "prefill",
        ),
    ],
)  # fmt: skip
def test_what_cannot_be_read_is_refused_naming_it(fields: dict[str, Any], needle: str) -> None:
    with pytest.raises(OaiError, match=needle) as caught:
        conversation(body(**fields))
    assert caught.value.status == 400


def test_a_count_needs_no_max_tokens_and_bodies_must_be_json() -> None:
    raw = msgspec.json.encode({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert decode_messages(raw, answer=False).max_tokens is None
    with pytest.raises(OaiError, match="max_tokens"):
        decode_messages(raw, answer=True)
    with pytest.raises(OaiError, match="not JSON"):
        decode_messages(b"{", answer=True)


def test_max_tokens_is_what_the_context_leaves_at_most() -> None:
    asked = body(max_tokens=32000, stop_sequences=["", "END"], top_k=5)
    params = sampling_params(asked, prompt=100, context=8192)
    assert (params.max_tokens, params.stop, params.top_k) == (8092, ["END"], 5)
    assert sampling_params(body(max_tokens=10), prompt=100, context=8192).max_tokens == 10
    with pytest.raises(OaiError, match="leaves no room"):
        sampling_params(asked, prompt=8192, context=8192)
