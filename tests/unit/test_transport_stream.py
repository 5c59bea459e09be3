"""``Transport.stream`` hands the body over as it arrives, after retries and error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import trio
from test_transport_support import Server, ok, opened, status

from tinker_actors.errors import InternalServerError, NotFoundError


class GatedStream(httpx.AsyncByteStream):
    """A body whose second half is only produced once the test opens the gate."""

    def __init__(self) -> None:
        self.gate = trio.Event()
        self.produced: list[bytes] = []
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in (b"first-chunk;", b"second-chunk;"):
            if self.produced:
                await self.gate.wait()
            self.produced.append(chunk)
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_chunks_arrive_before_the_whole_body(autojump_clock: trio.testing.MockClock) -> None:
    body = GatedStream()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body, headers={"content-type": "application/x-protobuf"})

    async with opened(handler) as transport:
        async with transport.stream("POST", "/api/v1/retrieve_future", json={}) as response:
            assert response.status == 200
            assert response.headers["content-type"] == "application/x-protobuf"
            chunks = response.aiter_bytes()
            first = await chunks.__anext__()
            # the first chunk is in our hands while the server has not produced the second
            assert first == b"first-chunk;"
            assert body.produced == [b"first-chunk;"]
            assert not body.gate.is_set()
            body.gate.set()
            rest = [chunk async for chunk in chunks]
            assert rest == [b"second-chunk;"]
        assert body.closed


async def test_leaving_the_block_closes_an_unread_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = GatedStream()

    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    async with opened(handler) as transport:
        async with transport.stream("GET", "/x") as response:
            assert response.retries_taken == 0
        assert body.closed
        assert body.produced == []


async def test_stream_retries_and_maps_errors_before_yielding(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([status(503, {"e": 1}), ok({"done": True})])
    async with opened(server) as transport:
        async with transport.stream("POST", "/x", json={}) as response:
            assert response.retries_taken == 1
            assert await response.aread() == b'{"done":true}'
            assert response.idempotency_key == server.seen[0].headers["x-idempotency-key"]
        assert len({s.headers["x-idempotency-key"] for s in server.seen}) == 1

        server.script, server.seen = [status(404, {"detail": "gone"}, **{"x-request-id": "q"})], []
        with pytest.raises(NotFoundError) as info:
            async with transport.stream("GET", "/x"):
                pytest.fail("the block must not run for an error status")
        assert info.value.body == {"detail": "gone"}
        assert info.value.request_id == "q"

        server.script, server.seen = [status(500)], []
        with pytest.raises(InternalServerError):
            async with transport.stream("GET", "/x", options=None):
                pytest.fail("the block must not run for an error status")
        assert len(server.seen) == 11
