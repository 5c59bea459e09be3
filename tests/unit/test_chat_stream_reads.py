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
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

from tinker_actors.local._anthropic_text import Conversation, blocks
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._chat import Turn, forced_call
from tinker_actors.local._oai_chat import CallReading
from tinker_actors.local._oai_stream import ChoiceText
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
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder: Path = tmp_path_factory.mktemp("tokenizer")
    return load_tokenizer(ensure_model_tokenizer_dir(folder, lookup_model("local/tiny")))


def streamed(tokenizer: Any, text: str, cuts: list[int], markers: list[str], start: str) -> Any:
    tokens = tokenizer.encode(text, add_special_tokens=False).ids
    choice = ChoiceText(TokenizerText(tokenizer), [], frozenset({END}), markers, start)
    shown, at = "", 0
    for size in [*cuts, len(tokens)]:
        shown += choice.add(tokens[at : at + size])
        at += size
        assert shown == choice.sent
    final = trim(tokens, [0.0] * len(tokens), True, tokenizer, [], frozenset({END})).text
    return shown, choice, final


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=6),
    cuts=st.lists(st.integers(1, 5), max_size=20),
    tools=st.booleans(),
    forced=st.booleans(),
)
def test_what_an_openai_stream_shows_is_the_start_of_the_content(
    tokenizer: Any, pieces: list[str], cuts: list[int], tools: bool, forced: bool
) -> None:
    prefill = forced_call("get_weather") if tools and forced else ""
    reading = CallReading(prefill, tools)
    shown, choice, final = streamed(tokenizer, "".join(pieces), cuts, reading.markers, prefill)
    answer = reading.read(final, "stop")
    content = answer.content or ""
    assert content.startswith(shown)
    assert shown + choice.rest(content) == content
    if prefill:
        assert shown == ""


@settings(max_examples=300, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=6),
    cuts=st.lists(st.integers(1, 5), max_size=20),
    tools=st.booleans(),
)
def test_what_an_anthropic_stream_shows_is_the_start_of_its_first_text_block(
    tokenizer: Any, pieces: list[str], cuts: list[int], tools: bool
) -> None:
    chat = Conversation(
        turns=[Turn("user", ["hi"])],
        tools=[],
        forced="",
        reads_calls=tools,
        parallel=True,
        continued=False,
    )
    shown, choice, final = streamed(tokenizer, "".join(pieces), cuts, chat.markers, "")
    content = blocks(chat.read(final))
    if shown:
        assert content[0]["type"] == "text"
        assert content[0]["text"].startswith(shown)
        assert shown + choice.rest(content[0]["text"]) == content[0]["text"]
