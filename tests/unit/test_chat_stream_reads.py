"""Streamed chat answers that hold reasoning or tool calls (local/_oai_stream.py, _chat.py).

A stream shows an answer's text as it is sampled and reads its reasoning and calls from the
whole answer once it is done. What it showed must be the start of the text the same request
gets without ``stream`` (OpenAI's ``content``; Anthropic's first text block, or nothing when
the answer does not begin with text), for any answer cut into any steps: so the text stops
where a ``<think>`` or ``<tool_call>`` begins, and whitespace waits until it is known not to be
the separator before a call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

from tinker_actors.local._anthropic_text import Conversation, blocks
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._chat import Turn, forced_call
from tinker_actors.local._oai_chat import CallReading
from tinker_actors.local._oai_stream import ChatText, ChoiceText
from tinker_actors.local._oai_text import trim
from tinker_actors.local._tokenizer import TokenizerText, ensure_model_tokenizer_dir, load_tokenizer

END = 3  # <|im_end|> in the local tokenizers
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
PIECES = [
    "Let me check.",
    "\n",
    " ",
    "It is sunny",
    CALL,
    "<tool_call>\n{broken}\n</tool_call>",
    '<tool_call>\n{"name": "f"',  # unterminated
    "<think>\nweigh it\n</think>\n\n",
    "<think>",
    "</think>",
    "<tool_",
    "<think>\n",
    "\n</think>\n\n",
    "hmm, sunny? ",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder: Path = tmp_path_factory.mktemp("tokenizer")
    return load_tokenizer(ensure_model_tokenizer_dir(folder, lookup_model("local/tiny")))


def streamed(
    tokenizer: Any, text: str, cuts: list[int], markers: list[str], start: str, stops: list[str]
) -> tuple[dict[str, str], ChatText, str]:
    """What a stream shows of ``text`` sampled in steps of ``cuts`` tokens, the stream's
    state, and the whole answer's text (as the backend returns it: up to a stop string)."""
    tokens = tokenizer.encode(text, add_special_tokens=False).ids
    push, decoded = TokenizerText(tokenizer).stream(), ""
    for i, token in enumerate(tokens):
        decoded += push(token)
        if any(s in decoded for s in stops):
            tokens = tokens[: i + 1]
            break
    chat = ChatText(TokenizerText(tokenizer), stops, frozenset({END}), markers, start)
    shown = {"thinking": "", "text": ""}
    at = 0
    for size in [*cuts, len(tokens)]:
        for kind, piece in chat.add(tokens[at : at + size]):
            shown[kind] += piece
        at += size
    final = trim(tokens, [0.0] * len(tokens), True, tokenizer, stops, frozenset({END})).text
    return shown, chat, final


def joined(shown: str, part: ChoiceText | None, final: str) -> str:
    return shown + (part.rest(final) if part is not None else final)


_stops = st.sampled_from([[], ["zz"], ["weigh"], ["sunny"]])


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=6),
    cuts=st.lists(st.integers(1, 5), max_size=20),
    tools=st.booleans(),
    forced=st.booleans(),
    stops=_stops,
)
def test_what_an_openai_stream_shows_is_the_start_of_the_reasoning_and_content(
    tokenizer: Any,
    pieces: list[str],
    cuts: list[int],
    tools: bool,
    forced: bool,
    stops: list[str],
) -> None:
    prefill = forced_call("get_weather") if tools and forced else ""
    reading = CallReading(prefill, tools)
    shown, chat, final = streamed(tokenizer, "".join(pieces), cuts, reading.markers, prefill, stops)
    answer = reading.read(final, "stop")
    reasoning, content = answer.reasoning or "", answer.content or ""
    assert reasoning.startswith(shown["thinking"])
    assert joined(shown["thinking"], chat.thinking, reasoning) == reasoning
    assert content.startswith(shown["text"])
    assert joined(shown["text"], chat.answer, content) == content
    if prefill:
        assert shown == {"thinking": "", "text": ""}


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=6),
    cuts=st.lists(st.integers(1, 5), max_size=20),
    tools=st.booleans(),
    stops=_stops,
)
# reasoning of only a space: the stream never shows it, so the answer has no thinking block
@example(pieces=["<think>", " ", "</think>", "Let me check."], cuts=[], tools=False, stops=[])
def test_what_an_anthropic_stream_shows_begins_its_thinking_and_first_text_block(
    tokenizer: Any, pieces: list[str], cuts: list[int], tools: bool, stops: list[str]
) -> None:
    chat = Conversation(
        turns=[Turn("user", ["hi"])],
        tools=[],
        forced="",
        reads_calls=tools,
        parallel=True,
        continued=False,
    )
    shown, _, final = streamed(tokenizer, "".join(pieces), cuts, chat.markers, "", stops)
    content = blocks(chat.read(final))
    kinds = [k for k in ("thinking", "text") if shown[k]]
    # the blocks begun live are the answer's first blocks, in order, and begin as shown
    assert [b["type"] for b in content[: len(kinds)]] == kinds
    for block, kind in zip(content, kinds, strict=False):
        assert block[kind].startswith(shown[kind])


def test_reasoning_and_text_are_shown_as_they_grow(tokenizer: Any) -> None:
    text = "<think>\nIt is about weather.\n</think>\n\nLet me check.\n" + CALL
    shown, _, final = streamed(tokenizer, text, [1] * 60, ["<tool_call>"], "", [])
    assert shown == {"thinking": "It is about weather.", "text": "Let me check."}
    answer = CallReading("", True).read(final, "stop")
    assert (answer.reasoning, answer.content) == ("It is about weather.", "Let me check.")
    assert [c["function"]["name"] for c in answer.tool_calls] == ["get_weather"]
