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

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
transformers = pytest.importorskip("transformers", reason="transformers comes with tinker")

from tinker_cookbook import renderers  # noqa: E402

from tinker_actors.local._anthropic_text import MessagesBody, conversation  # noqa: E402
from tinker_actors.local._catalogue import lookup_model  # noqa: E402
from tinker_actors.local._oai_chat import chat_prompt, chat_tools  # noqa: E402
from tinker_actors.local._oai_text import ChatBody  # noqa: E402
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir, load_tokenizer  # noqa: E402

pytestmark = pytest.mark.interop

TOOL_CALL_XML = (
    "<tool_call>\n<function=read_page>\n<parameter=page>\n3\n</parameter>\n</function>\n"
    "</tool_call><|im_end|>"
)
TOOL_CALL_JSON = (
    '<tool_call>\n{"name": "read_page", "arguments": {"page": 3}}\n</tool_call><|im_end|>'
)


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model_tokenizer_dir(tmp_path_factory.mktemp("tok"), lookup_model("local/tiny"))


@pytest.fixture(scope="module")
def tokenizer(directory: Path) -> Any:
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


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize("name", ["qwen3", "qwen3_instruct"])
@pytest.mark.parametrize("said", ["Checking.", "", "Let me look.\n"])
def test_the_compatible_apis_render_a_tool_conversation_as_the_renderer_does(
    tokenizer: Any, directory: Path, name: str, said: str
) -> None:
    # what the server's OpenAI- and Anthropic-compatible routes make of one conversation with
    # a tool, a call and its result must be the prompt a model trained through the Tinker API
    # with the cookbook's renderer saw, token for token
    renderer = renderers.get_renderer(name, tokenizer)
    call = renderers.ToolCall(
        function=renderers.ToolCall.FunctionBody(
            name="get_weather", arguments=json.dumps({"city": "Paris"})
        ),
        id="call_1",
    )
    expected = renderer.build_generation_prompt(
        [
            *renderer.create_conversation_prefix_with_tools([WEATHER], "Be brief."),
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": said, "tool_calls": [call]},
            {"role": "tool", "content": "sunny", "tool_call_id": "call_1"},
        ]
    ).to_ints()
    ours = load_tokenizer(directory)
    openai_body = ChatBody(
        model="m",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": said,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        tools=[{"type": "function", "function": WEATHER}],
    )
    tools, reading = chat_tools(openai_body)
    prompt = chat_prompt(openai_body.messages, ours, tools, reading.prefill)
    assert prompt.to_ints() == expected
    anthropic_body = MessagesBody(
        model="m",
        max_tokens=8,
        system="Be brief.",
        tools=[
            {
                "name": "get_weather",
                "description": WEATHER["description"],
                "input_schema": WEATHER["parameters"],
            }
        ],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": said},
                    {
                        "type": "tool_use",
                        "id": "t1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "sunny"}],
            },
        ],
    )
    assert conversation(anthropic_body).render(ours).to_ints() == expected
