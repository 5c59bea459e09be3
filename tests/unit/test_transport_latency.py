"""What the transport records in its latency book: one entry per logical request, by route."""

from __future__ import annotations

import httpx
import pytest
import trio
from test_transport_support import Server, ok, opened, status

from tinker_actors.errors import NotFoundError


async def test_a_retried_request_is_one_entry_with_its_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([status(503, **{"retry-after": "2"}), ok({"done": True})])
    async with opened(server) as transport:
        await transport.request("POST", "/api/v1/training_runs/run-7/checkpoints", json={})
        row = transport.latency.summaries()["POST /api/v1/training_runs/{id}/checkpoints"]
    assert (row.count, row.failed) == (1, 0)
    assert row.max == pytest.approx(2.0, rel=1 / 64)  # Retry-After: the wait is in its time


async def test_a_request_that_raises_counts_as_failed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with opened(Server([status(404, {"detail": "no"})])) as transport:
        with pytest.raises(NotFoundError):
            await transport.request("GET", "/api/v1/sessions/s-1")
        row = transport.latency.summaries()["GET /api/v1/sessions/{id}"]
    assert (row.count, row.failed) == (1, 1)


async def test_a_cancelled_request_is_not_recorded(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await trio.sleep(60)
        return httpx.Response(200, json={})

    async with opened(slow) as transport:
        with trio.move_on_after(1):
            await transport.request("POST", "/api/v1/asample", json={})
        assert transport.latency.summaries() == {}


async def test_a_stream_is_recorded_up_to_its_head(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await trio.sleep(3)
        return httpx.Response(200, content=b"body")

    async with opened(handler) as transport:
        async with transport.stream("GET", "/api/v1/training_runs/r/checkpoints/c/archive"):
            await trio.sleep(100)  # reading the body is the caller's time, not the request's
        row = transport.latency.summaries()[
            "GET /api/v1/training_runs/{id}/checkpoints/{id}/archive"
        ]
    assert row.count == 1
    assert row.max == pytest.approx(3.0, rel=1 / 64)
