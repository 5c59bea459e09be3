"""Streams abandoned in numbers leave the server as it was.

Twelve clients stream long completions from the OpenAI-compatible API at once; half close
their streams after the first piece. Their samples are cancelled (the batch they decode in
goes on for the others), the streams read to the end join to whole texts, and the server then
answers as usual, with nothing left in flight. An Anthropic-compatible stream left after its
first event is cancelled the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tinker_actors.testing import LocalServerThread

pytest.importorskip("torch", reason="the torch extra is not installed")
pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

CLIENTS = 12


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch") as running:
        yield running


def _stream(server: LocalServerThread, index: int, leave: bool) -> str | None:
    body = {
        "model": "local/tiny",
        "prompt": f"Story number {index}:",
        "max_tokens": 4000 if leave else 40,
        "temperature": 0,
        "stream": True,
    }
    headers = {"Authorization": f"Bearer {server.api_key}"}
    url = f"{server.openai_base_url}/completions"
    text = []
    with (
        httpx.Client(timeout=60) as http,
        http.stream("POST", url, json=body, headers=headers) as answer,
    ):
        assert answer.status_code == 200
        for line in answer.iter_lines():
            if not line.startswith("data: "):
                continue
            if leave:
                return None  # the first piece, then gone
            data = line.removeprefix("data: ")
            if data == "[DONE]":
                return "".join(text)
            text.append(json.loads(data)["choices"][0]["text"])
    raise AssertionError("the stream ended without [DONE]")


def test_half_the_streams_leave_and_the_rest_finish(server: LocalServerThread) -> None:
    before = server.counters().totals.get("cancelled", 0)
    with ThreadPoolExecutor(CLIENTS) as pool:
        outcomes = list(pool.map(lambda i: _stream(server, i, leave=i % 2 == 0), range(CLIENTS)))
    finished = [text for text in outcomes if text is not None]
    assert len(finished) == CLIENTS // 2
    deadline = time.monotonic() + 30
    while server.counters().totals.get("cancelled", 0) - before < CLIENTS // 2:
        assert time.monotonic() < deadline, "the abandoned streams' samples were not cancelled"
        time.sleep(0.05)
    # the server answers as usual: a whole answer equals the streamed one for the same prompt
    headers = {"Authorization": f"Bearer {server.api_key}"}
    body = {"model": "local/tiny", "prompt": "Story number 1:", "max_tokens": 40}
    with httpx.Client(timeout=60) as http:
        whole = http.post(
            f"{server.openai_base_url}/completions",
            json={**body, "temperature": 0},
            headers=headers,
        )
        assert whole.status_code == 200, whole.text
        assert whole.json()["choices"][0]["text"] == finished[0]
        assert http.get(f"{server.url}/api/v1/healthz").status_code == 200


def test_an_anthropic_stream_left_after_its_first_event_cancels_its_sample(
    server: LocalServerThread,
) -> None:
    # the same goes for the Anthropic-compatible route's named events (Claude Code's ctrl-c)
    before = server.counters().totals.get("cancelled", 0)
    body = {
        "model": "local/tiny",
        "max_tokens": 4000,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": "Tell a long story."}],
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST",
            f"{server.anthropic_base_url}/v1/messages",
            json=body,
            headers={"x-api-key": server.api_key},
        ) as answer,
    ):
        assert answer.status_code == 200
        first = next(line for line in answer.iter_lines() if line.startswith("event: "))
        assert first == "event: message_start"
    deadline = time.monotonic() + 30
    while server.counters().totals.get("cancelled", 0) - before < 1:
        assert time.monotonic() < deadline, "the abandoned stream's sample was not cancelled"
        time.sleep(0.05)
    assert httpx.get(f"{server.url}/api/v1/healthz", timeout=30).status_code == 200
