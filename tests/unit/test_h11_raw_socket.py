"""The h11 transport's plain TCP path: its own non-blocking socket, waits only when it must.

A plain connection sends and receives on the socket directly and waits for it (with the
phase's timeout) only when an operation would block (``transport/_connection.py``). These tests
drive the cases where it does block, against raw loopback servers that pace themselves: a
body larger than the socket buffers going to a slow reader, a reader that never reads (write
timeout), a peer that hangs up mid-upload (write error), and cancellation before anything is
written (every exchange is a cancel point).
"""

from __future__ import annotations

import functools
import hashlib
import os
import resource
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from tinker_actors.transport import _prebuilt
from tinker_actors.transport._h11 import TrioH11Transport

GUARD = 30.0  # seconds: a hang fails the test instead of stalling the run
BIG = 24 * 1024 * 1024 + 7  # far beyond loopback socket buffers: sends must wait


async def _read_request(stream: trio.SocketStream, pace: float) -> tuple[bytes, int] | None:
    """Read one request; return the digest of its body and its length (None at EOF)."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    length = 0
    for line in bytes(buf[:end]).decode().split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    digest = hashlib.sha256(buf[end:])
    have = len(buf) - end
    while have < length:
        if pace:
            await trio.sleep(pace)  # a slow reader: the client's socket buffer fills up
        data = await stream.receive_some(min(65536, length - have))
        if not data:
            return None
        digest.update(data)
        have += len(data)
    return digest.digest(), have


def _answer(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


@asynccontextmanager
async def server(
    handler: Callable[[trio.SocketStream], Awaitable[None]],
) -> AsyncIterator[str]:
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, handler, 0, host="127.0.0.1")
        )
        yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        nursery.cancel_scope.cancel()


def _request(url: str, body: bytes, write: float | None = 10.0) -> httpx.Request:
    timeouts = {"connect": 10.0, "read": 10.0, "write": write, "pool": 10.0}
    return httpx.Request("POST", url + "/upload", content=body, extensions={"timeout": timeouts})


async def test_a_body_larger_than_the_socket_buffers_reaches_a_slow_reader_whole() -> None:
    seen: list[tuple[bytes, int]] = []

    async def slow(stream: trio.SocketStream) -> None:
        while (got := await _read_request(stream, pace=0.0005)) is not None:
            seen.append(got)
            await stream.send_all(_answer(b"%d" % got[1]))

    body = bytes(range(251)) * (BIG // 251) + b"tail"
    with trio.fail_after(GUARD):
        async with server(slow) as url:
            transport = TrioH11Transport()
            for _ in range(2):  # the second goes over the same, reused connection
                response = await transport.handle_async_request(_request(url, body))
                assert await response.aread() == str(len(body)).encode()
            assert transport.connections_opened == 1
            await transport.aclose()
    assert seen == [(hashlib.sha256(body).digest(), len(body))] * 2


async def test_a_reader_that_never_reads_is_a_write_timeout_and_drops_the_connection() -> None:
    stalled = trio.Event()

    async def never_reads(stream: trio.SocketStream) -> None:
        stalled.set()
        await trio.sleep_forever()

    with trio.fail_after(GUARD):
        async with server(never_reads) as url:
            transport = TrioH11Transport()
            with pytest.raises(httpx.WriteTimeout) as caught:
                await transport.handle_async_request(_request(url, b"x" * BIG, write=0.2))
            assert caught.value.request.url.path == "/upload"
            assert stalled.is_set()
            assert transport.connections_open == 0


async def test_a_peer_that_hangs_up_mid_upload_is_a_write_error() -> None:
    async def hangs_up(stream: trio.SocketStream) -> None:
        await stream.receive_some(65536)
        stream.socket.setsockopt(
            trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )  # linger on, 0 s: the close resets the connection, whatever is unread
        await stream.aclose()

    with trio.fail_after(GUARD):
        async with server(hangs_up) as url:
            transport = TrioH11Transport()
            with pytest.raises(httpx.WriteError) as caught:
                await transport.handle_async_request(_request(url, b"x" * BIG))
            assert caught.value.request.url.path == "/upload"
            assert transport.connections_open == 0


async def test_an_exchange_is_a_cancel_point_even_on_a_reused_connection() -> None:
    requests = 0

    async def answers(stream: trio.SocketStream) -> None:
        nonlocal requests
        while await _read_request(stream, pace=0) is not None:
            requests += 1
            await stream.send_all(_answer(b"ok"))

    with trio.fail_after(GUARD):
        async with server(answers) as url:
            transport = TrioH11Transport()
            response = await transport.handle_async_request(_request(url, b"first"))
            assert await response.aread() == b"ok"
            assert transport.connections_idle == 1
            with trio.CancelScope() as scope:
                scope.cancel()
                await transport.handle_async_request(_request(url, b"second"))
            assert scope.cancelled_caught
            await trio.sleep(0.05)
            assert requests == 1  # nothing of the cancelled request was written
            response = await transport.handle_async_request(_request(url, b"third"))
            assert await response.aread() == b"ok"
            assert requests == 2
            await transport.aclose()


@pytest.mark.parametrize("prebuilt", [True, False])
async def test_answer_headers_read_the_same_either_way(
    prebuilt: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # handed to httpx as built (this httpx) or as pairs the public way (any other)
    monkeypatch.setattr(_prebuilt, "PREBUILT", prebuilt)
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Mixed-Case: A b\r\n"
        b"set-cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
    )

    async def answers(stream: trio.SocketStream) -> None:
        while await _read_request(stream, pace=0) is not None:
            await stream.send_all(head)

    with trio.fail_after(GUARD):
        async with server(answers) as url:
            transport = TrioH11Transport()
            response = await transport.handle_async_request(_request(url, b"x"))
            assert await response.aread() == b"ok"
            await transport.aclose()
    assert response.headers.raw == [
        (b"Content-Type", b"application/json"),
        (b"X-Mixed-Case", b"A b"),
        (b"set-cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
        (b"Content-Length", b"2"),
    ]
    assert response.headers["x-mixed-case"] == "A b"
    assert response.headers.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert response.headers["content-type"] == "application/json"


async def test_connections_past_descriptor_1023_are_reused() -> None:
    # a busy process (data loaders, thousands of sockets) hands out descriptors past 1,023;
    # the idle-connection check once used select(), which refuses them with ValueError
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"cannot open 1,200 descriptors here (hard limit {hard})")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]

    async def answers(stream: trio.SocketStream) -> None:
        while await _read_request(stream, pace=0) is not None:
            await stream.send_all(_answer(b"ok"))

    try:
        with trio.fail_after(GUARD):
            async with server(answers) as url:
                transport = TrioH11Transport()
                for _ in range(3):
                    response = await transport.handle_async_request(_request(url, b"x"))
                    assert await response.aread() == b"ok"
                assert transport.connections_opened == 1  # reused, past descriptor 1,023
                conn = transport._pools[next(iter(transport._pools))].idle[0]
                assert conn.socket.fileno() > 1023
                await transport.aclose()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
