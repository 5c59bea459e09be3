"""Heavy work never blocks the server's other requests.

Shown without timing: the heavy part of a request is held inside its worker thread (a gate the
test opens), and while it is provably still in progress another client's ``healthz`` is
answered. Had the work run on the event loop, the gate would stall the whole server and the
health check could only be answered after the heavy request finished.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
from hostile_support import KEY, PROTO, Api, datum, fb_body, sample_body, serving

import tinker_actors.local._null_backend as null_backend
import tinker_actors.local._training_ops as training_ops

#: How long a gated call waits for the test to open the gate: only a guard against hangs (the
#: test opens it as soon as healthz has answered).
GUARD = 20.0


class Gate:
    """Wraps a function: the call says it has started, then waits for the test to release it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.entered = threading.Event()
        self.release = threading.Event()
        self.in_thread: bool | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.in_thread = threading.current_thread() is not threading.main_thread()
        self.entered.set()
        if not self.release.wait(GUARD):
            raise AssertionError("the gate was never opened: the event loop was blocked")
        return self.fn(*args, **kwargs)


async def answered_while_in_progress(url: str, gate: Gate, heavy: Callable[[], Any]) -> Any:
    """Start ``heavy``; once it is inside the gate, healthz must answer; then open the gate."""
    done = trio.Event()
    result: list[Any] = []

    async def run_heavy() -> None:
        result.append(await heavy())
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_heavy)
        await trio.to_thread.run_sync(gate.entered.wait, GUARD)
        assert gate.entered.is_set()
        async with httpx.AsyncClient(base_url=url) as other:
            health = await other.get("/api/v1/healthz")
        still_running = not done.is_set() and not gate.release.is_set()
        gate.release.set()
    assert health.json() == {"status": "ok"}
    assert still_running, "healthz was only answered once the heavy request was done"
    assert gate.in_thread
    return result[0]


async def test_healthz_answers_while_a_large_forward_backward_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(training_ops.decode_forward_backward_request)
    monkeypatch.setattr(training_ops, "decode_forward_backward_request", gate)
    with trio.fail_after(60):
        async with serving() as (_, url), httpx.AsyncClient(base_url=url) as client:
            api = Api(client, KEY)
            world = await api.build_world()
            data = [datum(list(range(10, 1000)))] * 64  # 63k tokens, about 760 KB of protobuf
            body = fb_body(world.model_id, world.next_seq, data)

            async def heavy() -> httpx.Response:
                return await api.post("forward_backward", body, content_type=PROTO)

            response = await answered_while_in_progress(url, gate, heavy)
            assert response.status_code == 200, response.text
            world.next_seq += 1
            await api.still_serving(world)


async def test_healthz_answers_while_a_large_sample_is_computed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(null_backend._sample)
    monkeypatch.setattr(null_backend, "_sample", gate)
    with trio.fail_after(60):
        async with serving() as (_, url), httpx.AsyncClient(base_url=url) as client:
            api = Api(client, KEY)
            world = await api.build_world()
            body = sample_body(world, num_samples=128, sampling_params={"max_tokens": 1000})
            future = await api.ok("asample", body)

            async def heavy() -> httpx.Response:
                return await api.settle(future["request_id"])

            response = await answered_while_in_progress(url, gate, heavy)
            assert response.headers["content-type"] == PROTO, response.text
            await api.still_serving(world)
