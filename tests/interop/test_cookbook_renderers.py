"""tinker-cookbook's Qwen renderers on the local models' tokenizer.

Most cookbook recipes default to Qwen3.5/3.6 models, whose recommended renderers are
``qwen3_5`` and ``qwen3_5_disable_thinking`` (``qwen3`` for Qwen3). Pointed at ``local/tiny``
through an alias, they run on the tokenizer trained in-process, which therefore carries Qwen's
markers (``<think>``, ``</think>``, the tool tags) as single, non-special tokens. Multi-turn RL
then needs two things from the pair: a sampled answer parses (thinking, tool call, stop), and
the parsed message re-renders to the very tokens that were sampled, so the next turn's prompt
extends the previous one.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
transformers = pytest.importorskip("transformers", reason="transformers comes with tinker")

from tinker_cookbook import renderers  # noqa: E402

from tinker_actors.local._catalogue import lookup_model  # noqa: E402
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir  # noqa: E402

pytestmark = pytest.mark.interop

TOOL_CALL_XML = (
    "<tool_call>\n<function=read_page>\n<parameter=page>\n3\n</parameter>\n</function>\n"
    "</tool_call><|im_end|>"
)
TOOL_CALL_JSON = (
    '<tool_call>\n{"name": "read_page", "arguments": {"page": 3}}\n</tool_call><|im_end|>'
)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    directory = ensure_model_tokenizer_dir(
        tmp_path_factory.mktemp("tok"), lookup_model("local/tiny")
    )
    return transformers.AutoTokenizer.from_pretrained(str(directory))


@pytest.mark.parametrize(
    ("name", "sampled"),
    [
        ("qwen3_5", "counting pages\n</think>\n\n" + TOOL_CALL_XML),
        ("qwen3_5_disable_thinking", TOOL_CALL_XML),
    ],
)
def test_qwen3_5_tool_call_parses_and_re_renders_to_the_sampled_tokens(
    tokenizer: Any, name: str, sampled: str
) -> None:
    renderer = renderers.get_renderer(name, tokenizer)
    history = [{"role": "user", "content": "How many times does 'river' appear?"}]
    prompt = renderer.build_generation_prompt(history).to_ints()
    tokens = tokenizer.encode(sampled, add_special_tokens=False)
    message, termination = renderer.parse_response(tokens)
    assert str(termination) == "stop_sequence"
    calls = [(call.function.name, call.function.arguments) for call in message["tool_calls"]]
    assert calls == [("read_page", '{"page": 3}')]
    rendered, _weights = renderer.build_supervised_example([*history, message])
    # the prompt, then exactly the sampled tokens: the next turn extends this sequence
    assert rendered.to_ints() == prompt + tokens


def test_qwen3_parses_thinking_and_a_tool_call(tokenizer: Any) -> None:
    renderer = renderers.get_renderer("qwen3", tokenizer)
    tokens = tokenizer.encode(
        "<think>\nhm\n</think>\n\n" + TOOL_CALL_JSON, add_special_tokens=False
    )
    message, termination = renderer.parse_response(tokens)
    assert str(termination) == "stop_sequence"
    assert [call.function.name for call in message["tool_calls"]] == ["read_page"]
    assert message["content"][0] == {"type": "thinking", "thinking": "hm"}


def test_think_markers_are_single_tokens_that_decode_keeps(tokenizer: Any) -> None:
    # what the qwen3_5 renderer asserts before it parses anything
    (think_end,) = tokenizer.encode("</think>", add_special_tokens=False)
    ids = tokenizer.encode("<think>\nx\n</think>", add_special_tokens=False)
    assert think_end in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<think>\nx\n</think>"
