"""Fuzz the compatible APIs' conversations: any part of a request may be anything.

The OpenAI- and Anthropic-compatible routes read nested conversations by hand (content blocks,
tool calls and results, tools, choices, pictures), which is where a hostile or merely odd body
could reach a path nobody wrote for it. Each example takes a valid request with every kind of
part in it and replaces one to three nodes, at any depth, with any JSON value (or drops them);
the answer must never be a 5xx, must be the route's own error shape when it refuses, and
nothing may log a traceback. The server (null backend, on 127.0.0.1 in a thread) is healthy
after each example and still answers the valid request after each route's run. Derandomized,
150 examples a route (``FUZZ_EXAMPLES=3000`` by hand: it found a picture's non-ASCII data and
a ``tool_calls`` that was not a list, both 500s then).
"""

from __future__ import annotations

import base64
import copy
import io
import logging
import math
import os
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from hostile_support import tracebacks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinker_actors.testing import LocalServerThread

pytest.importorskip("tokenizers", reason="the compatible routes need the server extra")

SETTINGS = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _png() -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 90, 200)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


PICTURE = _png()
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}}

ANTHROPIC = {
    "model": "local/tiny",
    "max_tokens": 4,
    "stream": False,
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": SCHEMA}],
    "tool_choice": {"type": "auto", "disable_parallel_tool_use": False},
    "stop_sequences": ["END"],
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": PICTURE},
                },
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "ask the tool", "signature": ""},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {"city": "Oslo"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": "rain"}],
                    "is_error": False,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ],
}

OPENAI = {
    "model": "local/tiny",
    "max_tokens": 4,
    "stream": False,
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}],
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "stop": ["END"],
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PICTURE}"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "rain"},
    ],
}

COMPLETION = {
    "model": "local/tiny",
    "prompt": ["a b c", [11, 12, 13]],
    "max_tokens": 3,
    "n": 2,
    "seed": 1,
    "logprobs": 2,
    "echo": True,
    "stop": ["END"],
    "stream": False,
    "stream_options": {"include_usage": True},
}

ROUTES = {
    "completions": ("/oai/api/v1/completions", COMPLETION),
    "messages": ("/anthropic/api/v1/messages", ANTHROPIC),
    "count_tokens": ("/anthropic/api/v1/messages/count_tokens", ANTHROPIC),
    "chat": ("/oai/api/v1/chat/completions", OPENAI),
}

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.sampled_from([math.inf, "", "\n", "x" * 3000, "<tool_call>", "data:image/png;base64,"])
    | st.text(max_size=12)
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield at
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*at, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*at, i))


@st.composite
def mutated(draw: st.DrawFn, template: dict[str, Any]) -> Any:
    """``template`` with one to three nodes replaced by any JSON value, or dropped."""
    body: Any = copy.deepcopy(template)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(body))))
        if not path:
            return draw(_values)
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if draw(st.integers(0, 4)) == 0:
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(_values)
    return body


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="null") as running:
        yield running


def _shaped(route: str, answer: httpx.Response) -> None:
    """A refusal in the route's own error shape; a stream without a server-side failure."""
    if answer.status_code >= 400:
        error = answer.json()["error"]
        assert isinstance(error["message"], str), answer.text[:300]
        if route in ("messages", "count_tokens"):
            assert answer.json()["type"] == "error"
    elif answer.headers["content-type"].startswith("text/event-stream"):
        assert b"api_error" not in answer.content, answer.text[:500]
        assert b"server_error" not in answer.content, answer.text[:500]


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_conversation_makes_a_compatible_route_fail(
    server: LocalServerThread, route: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    path, template = ROUTES[route]
    headers = {"x-api-key": server.api_key, "authorization": f"Bearer {server.api_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        assert client.post(path, json=template).status_code == 200

        @SETTINGS
        @given(mutated(template))
        def run(body: Any) -> None:
            answer = client.post(path, content=msgspec.json.encode(body))
            assert answer.status_code < 500, answer.text[:500]
            _shaped(route, answer)
            assert client.get("/api/v1/healthz").json() == {"status": "ok"}

        run()
        assert client.post(path, json=template).status_code == 200
    assert tracebacks(caplog.records) == []


def test_a_max_tokens_past_the_context_answers_up_to_it(server: LocalServerThread) -> None:
    # agents configured for large models ask for 32,000 tokens whatever the model holds; both
    # chat routes answer up to the end of local/tiny's 8,192-token context instead of a 400
    headers = {"x-api-key": server.api_key, "authorization": f"Bearer {server.api_key}"}
    ask = [{"role": "user", "content": "hi"}]
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        chat = client.post(
            "/oai/api/v1/chat/completions",
            json={"model": "local/tiny", "messages": ask, "max_tokens": 32000},
        ).json()
        message = client.post(
            "/anthropic/api/v1/messages",
            json={"model": "local/tiny", "messages": ask, "max_tokens": 32000},
        ).json()
    assert chat["choices"][0]["finish_reason"] in ("length", "stop")
    assert chat["usage"]["prompt_tokens"] + chat["usage"]["completion_tokens"] <= 8192
    assert message["stop_reason"] in ("max_tokens", "end_turn")
    used = message["usage"]
    assert used["input_tokens"] + used["output_tokens"] <= 8192


def test_agents_request_shapes_are_read_as_they_are(server: LocalServerThread) -> None:
    # the fields coding agents send beside a conversation (as Claude Code 2.1 and OpenCode 1.18
    # sent them, in this test's own words): a query string on the path, system blocks with
    # cache_control, adaptive thinking, context management, effort, metadata, a 32,000-token
    # budget, streamed; on the OpenAI route, tools with stream_options
    headers = {"x-api-key": server.api_key, "anthropic-version": "2023-06-01"}
    claude = {
        "model": "local/tiny",
        "max_tokens": 32000,
        "stream": True,
        "metadata": {"user_id": '{"device_id": "d", "session_id": "s"}'},
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "system": [
            {"type": "text", "text": "agent: cli"},
            {"type": "text", "text": "You help.", "cache_control": {"type": "ephemeral"}},
        ],
        "tools": [{**ANTHROPIC["tools"][0], "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>today</system-reminder>"},
                    {"type": "text", "text": "Hi", "cache_control": {"type": "ephemeral"}},
                ],
            }
        ],
    }
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        answer = client.post("/anthropic/api/v1/messages?beta=true", json=claude)
        assert answer.status_code == 200, answer.text[:300]
        kinds = [line[7:] for line in answer.text.splitlines() if line.startswith("event: ")]
        assert kinds[0] == "message_start"
        assert kinds[-2:] == ["message_delta", "message_stop"]
        counted = client.post("/anthropic/api/v1/messages/count_tokens?beta=true", json=claude)
        assert counted.json()["input_tokens"] > 50
        opencode = {
            **OPENAI,
            "max_tokens": 32000,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        streamed = client.post(
            "/oai/api/v1/chat/completions",
            json=opencode,
            headers={"authorization": f"Bearer {server.api_key}"},
        )
        assert streamed.status_code == 200, streamed.text[:300]
        assert streamed.text.rstrip().endswith("data: [DONE]")
        assert '"usage"' in streamed.text
