"""The local models' tokenizers render chats as the local server does.

``tokenizer.apply_chat_template(...)`` on the tokenizer ``get_tokenizer()`` returns is how much
user code (the official quickstart among it) builds prompts; the local server's chat APIs
render with ``_chat.render``. The two must give the same token ids, so a prompt built either
way is the same prompt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._chat import Tool, render
from tinker_actors.local._oai_chat import chat_turns
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir, load_tokenizer

transformers = pytest.importorskip("transformers")

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CHATS: dict[str, list[dict[str, Any]]] = {
    "one user turn": [{"role": "user", "content": "What is 2 + 3?"}],
    "system and turns": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Name a river."},
        {"role": "assistant", "content": "The Nile."},
        {"role": "user", "content": "Another, please.\nA long one."},
    ],
    "developer is system": [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": "hi"},
    ],
    "content parts": [
        {"role": "user", "content": [{"type": "text", "text": "two "}, {"type": "text", "text": "parts"}]}
    ],
    "a call and its answer": [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "c2", "type": "function",
                 "function": {"name": "get_weather", "arguments": {"city": "Lyon"}}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "sunny, 21 C"},
        {"role": "tool", "tool_call_id": "c2", "content": "rain"},
    ],
    "text before a call": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": "Let me look.",
         "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_model_tokenizer_dir(tmp_path_factory.mktemp("tok"), lookup_model("local/tiny"))


def _server_ids(directory: Path, messages: list[dict[str, Any]], tools: list[Any]) -> list[int]:
    declared = [
        Tool(t["function"]["name"], t["function"]["parameters"], t["function"].get("description"))
        for t in tools
    ]
    return render(chat_turns(messages), load_tokenizer(directory), declared).to_ints()


@pytest.mark.parametrize("tools", [[], [WEATHER]], ids=["no tools", "tools"])
@pytest.mark.parametrize("name", list(CHATS))
def test_apply_chat_template_matches_the_servers_rendering(
    tokenizer_dir: Path, name: str, tools: list[Any]
) -> None:
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    messages = CHATS[name]
    ids = hf.apply_chat_template(
        messages,
        tools=tools or None,
        add_generation_prompt=True,
        enable_thinking=False,  # as Qwen users pass it; the local models do not reason
        tokenize=True,
        return_dict=False,
    )
    assert list(ids) == _server_ids(tokenizer_dir, messages, tools)


def test_the_generation_prompt_is_left_out_on_request(tokenizer_dir: Path) -> None:
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    text = hf.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n"


def test_an_unknown_role_is_refused_with_the_roles_named(tokenizer_dir: Path) -> None:
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    with pytest.raises(Exception, match="roles are system, user, assistant and tool"):
        hf.apply_chat_template([{"role": "narrator", "content": "x"}], tokenize=False)


def test_a_continued_final_message_is_left_open_as_the_servers_prefill(
    tokenizer_dir: Path,
) -> None:
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    messages = [{"role": "user", "content": "Count:"}, {"role": "assistant", "content": "1, 2,"}]
    ids = hf.apply_chat_template(
        messages, continue_final_message=True, tokenize=True, return_dict=False
    )
    server = render(chat_turns(messages), load_tokenizer(tokenizer_dir), continue_last=True)
    assert list(ids) == server.to_ints()
