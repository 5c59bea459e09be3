"""Answers of the compatible chat routes read back: reasoning, tool calls, text (local/_chat.py).

A completion is what the model wrote; the routes read a leading ``<think>`` block as its
reasoning and ``<tool_call>`` blocks (Qwen3's JSON, Qwen3.5's XML) as calls. Whatever is not a
well-formed call stays text, so nothing the model wrote is lost; and a call read back renders to
the very text it was read from, so a conversation sent back with the call in it is the one the
model wrote.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.local._chat import (
    TOOL_CLOSE,
    TOOL_OPEN,
    Call,
    Tool,
    forced_call,
    read_reply,
)

WEATHER = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def shapes(text: str) -> list[Any]:
    reply = read_reply(text, tools=True)
    return [(b.name, b.arguments) if isinstance(b, Call) else b for b in reply.blocks]


def test_a_json_call_after_text_is_a_call_and_the_separating_newline_goes() -> None:
    assert shapes("Let me look.\n" + WEATHER) == [
        "Let me look.",
        ("get_weather", {"city": "Paris"}),
    ]
    reply = read_reply(WEATHER + "\n" + WEATHER, tools=True)
    assert [c.name for c in reply.calls] == ["get_weather", "get_weather"]
    assert reply.text() == ""
    assert len({c.id for c in reply.calls}) == 2
    assert all(c.id.startswith("call_") and len(c.id) == 29 for c in reply.calls)


def test_qwen3_5s_xml_call_is_read_with_json_values_where_they_read_as_json() -> None:
    xml = (
        "<tool_call>\n<function=read_page>\n<parameter=page>\n3\n</parameter>\n"
        "<parameter=title>\nThe river\n</parameter>\n</function>\n</tool_call>"
    )
    assert shapes(xml) == [("read_page", {"page": 3, "title": "The river"})]


def test_what_is_not_a_well_formed_call_stays_text() -> None:
    for text in (
        "<tool_call>\n{not json}\n</tool_call> and more",
        '<tool_call>\n{"arguments": {}}\n</tool_call>',  # no name
        '<tool_call>\n{"name": "f", "arguments": [1]}\n</tool_call>',  # not an object
        '<tool_call>\n{"name": "f", "arguments": {"a"',  # cut by max_tokens
    ):
        assert shapes(text) == [text]
    # a good call after a bad one is still read, the bad one kept in place
    bad = "<tool_call>\n{oops}\n</tool_call>"
    assert shapes(bad + "\n" + WEATHER) == [bad, ("get_weather", {"city": "Paris"})]


def test_arguments_written_as_a_json_string_are_read_as_the_object() -> None:
    text = '<tool_call>\n{"name": "f", "arguments": "{\\"x\\": 1}"}\n</tool_call>'
    assert shapes(text) == [("f", {"x": 1})]


def test_a_leading_think_block_is_the_reasoning_and_an_empty_one_is_none() -> None:
    reply = read_reply("<think>\nweather first\n</think>\n\n" + WEATHER, tools=True)
    assert reply.thinking == "weather first"
    assert [c.name for c in reply.calls] == ["get_weather"]
    empty = read_reply("<think>\n\n</think>\n\nParis.", tools=False)
    assert (empty.thinking, empty.blocks) == (None, ["Paris."])
    # a think block that is not first is the model's text
    assert read_reply("So <think>x</think> y", tools=False).blocks == ["So <think>x</think> y"]


def test_without_tools_a_call_is_text() -> None:
    assert read_reply(WEATHER, tools=False).blocks == [WEATHER]


def test_a_forced_call_reads_back_whole_once_the_model_finishes_it() -> None:
    started = forced_call("get_weather")
    assert shapes(started + '{"city": "Oslo"}}\n</tool_call>') == [
        ("get_weather", {"city": "Oslo"})
    ]
    assert shapes(forced_call(None) + 'f", "arguments": {}}\n</tool_call>') == [("f", {})]


def test_tools_are_declared_as_qwen_does_one_json_line_each() -> None:
    tool = Tool("f", {"type": "object", "properties": {}}, "does f")
    assert json.loads(tool.declared()) == {
        "type": "function",
        "function": {"name": "f", "description": "does f", "parameters": tool.parameters},
    }
    assert ", " in tool.declared()
    assert "\n" not in tool.declared()


_words = st.text(st.sampled_from('ab Z.,\n{}"<>/'), max_size=12)
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=6,
)
_calls = st.builds(
    Call,
    st.text(st.sampled_from("abc_"), min_size=1, max_size=6),
    st.dictionaries(st.text(max_size=4), _values, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(before=_words, calls=st.lists(_calls, min_size=1, max_size=3), after=_words)
def test_calls_rendered_in_a_turn_read_back_to_the_same_calls_and_text(
    before: str, calls: list[Call], after: str
) -> None:
    # how an assistant turn with calls is rendered (text, newline, calls a newline apart)
    text = (before + "\n" if before.strip() else "") + "\n".join(c.rendered() for c in calls)
    text += after
    reply = read_reply(text, tools=True)
    assert [(c.name, c.arguments) for c in reply.calls] == [(c.name, c.arguments) for c in calls]
    expected = [before.rstrip()] if before.strip() else []
    # the text after the last call: kept unless it is whitespace alone (or holds a marker)
    if TOOL_OPEN not in after and TOOL_CLOSE not in after and after.strip():
        assert reply.blocks[-1] == after.lstrip()
    assert reply.blocks[: len(expected)] == expected


@pytest.mark.parametrize(
    ("message", "needle"),
    [
        ({"role": "assistant", "tool_calls": 1.5}, "must be a list"),  # a 500 once (the fuzz)
        ({"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}, "name"),
        ({"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "[]"}}]},
         "JSON object"),
        ({"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,¡"}}]},
         "not a base64 PNG"),
    ],
)  # fmt: skip
def test_openai_messages_that_cannot_be_read_are_refused_naming_them(
    message: dict[str, Any], needle: str
) -> None:
    from tinker_actors.local._oai_chat import chat_turns
    from tinker_actors.local._oai_text import OaiError

    with pytest.raises(OaiError, match=needle) as caught:
        chat_turns([message])
    assert (caught.value.status, caught.value.param) == (400, "messages")
