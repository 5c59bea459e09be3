"""Whole-body reads (``transport/_h11.read_whole``), against a raw loopback server.

A ``Content-Length`` answer read by the SDK (``send_direct`` without streaming) is taken
straight from what the connection holds and from the socket, not piece by piece through httpx. These tests pin down that
the body is the same bytes whatever pieces it arrives in, that the connection is reused exactly
when HTTP/1.1 allows it, and that every way a body can go wrong fails as it did before
(same httpx errors, connection dropped). The server writes raw bytes, so each answer's framing
and pacing is exactly what the test says.
"""

from __future__ import annotations

import functools
import gzip
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx
import pytest
import trio

from tinker_actors.transport import _dispatch
from tinker_actors.transport._connection import WHOLE_CHUNK, ResponseStream
from tinker_actors.transport._dispatch import send_direct
from tinker_actors.transport._h11 import TrioH11Transport

GUARD = 20.0  # seconds: a hang fails the test instead of stalling the run
BIG = 3 * WHOLE_CHUNK + 12345  # several reads; not a multiple of any read size

#: One answer: the raw pieces to write (a float pauses that long, None hangs up, "hang"
#: waits forever).
Piece = bytes | float | str | None
Answer = Callable[[str], list[Piece]]


def _head(status: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} OK"] + [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _body(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def _read_head(stream: trio.SocketStream, buf: bytearray) -> str | None:
    """Read one request (head and Content-Length body) off ``buf``/``stream``; its method."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            return None
        buf += data
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode()
    del buf[:end]
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(buf) < length:
        buf += await stream.receive_some(65536)
    del buf[:length]
    return head.split(" ", 1)[0]


class RawServer:
    """Answers each request with ``answer(method)``; counts connections."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        buf = bytearray()
        try:
            while (method := await _read_head(stream, buf)) is not None:
                for piece in self.answer(method):
                    if piece is None:
                        return
                    if piece == "hang":
                        await trio.sleep_forever()
                    if isinstance(piece, float):
                        await trio.sleep(piece)
                    elif isinstance(piece, bytes):
                        await stream.send_all(piece)
        except trio.BrokenResourceError:
            return
        finally:
            await trio.aclose_forcefully(stream)


@asynccontextmanager
async def serving(answer: Answer) -> AsyncIterator[tuple[str, RawServer, TrioH11Transport]]:
    server = RawServer(answer)
    transport = TrioH11Transport()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
        )
        port = listeners[0].socket.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", server, transport
        finally:
            await transport.aclose()
            nursery.cancel_scope.cancel()


async def fetch(
    transport: TrioH11Transport, url: str, method: str = "GET", read: float = 10.0
) -> httpx.Response:
    timeouts = {"connect": 10.0, "read": read, "write": 10.0, "pool": 10.0}
    request = httpx.Request(method, url, extensions={"timeout": timeouts})
    return await send_direct(transport, httpx.Cookies(), request, stream=False)


def _split(data: bytes, cuts: list[int]) -> list[Piece]:
    """``data`` in pieces at ``cuts``, with a scheduling pause between them."""
    pieces: list[Piece] = []
    start = 0
    for cut in [*sorted(cuts), len(data)]:
        pieces += [data[start:cut], 0.001]
        start = cut
    return pieces


@pytest.mark.parametrize(
    ("size", "cuts"),
    [
        (BIG, []),  # head and body in one write: the buffer holds the first part of the body
        (BIG, [0]),  # the head alone, then the body
        (BIG, [100, 70_000, 300_000]),
        (BIG, [5, 6, 7, BIG - 1]),  # tiny pieces, the last byte alone
        (17, []),  # a poll's answer: all of it arrives with the head
        (17, [16]),
        (0, []),
    ],
)
async def test_body_is_the_same_bytes_in_any_pieces_and_the_connection_is_reused(
    size: int, cuts: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    def iterated(_self: object) -> None:
        raise AssertionError("a Content-Length body went through httpx's iteration")

    monkeypatch.setattr(ResponseStream, "__aiter__", iterated)
    body = _body(size)
    head = _head(200, [("content-length", str(size))])
    # the cuts are positions in the body; the head always precedes it
    wire = head + body
    with trio.fail_after(GUARD):
        async with serving(lambda _m: _split(wire, [len(head) + c for c in cuts])) as (
            url,
            server,
            transport,
        ):
            for _ in range(3):
                response = await fetch(transport, url)
                assert response.content == body
                assert response.headers["content-length"] == str(size)
                assert transport.connections_idle == 1
            assert server.connections == 1


async def test_connection_close_answer_is_read_whole_and_the_connection_dropped() -> None:
    body = _body(BIG, 1)
    head = _head(200, [("content-length", str(BIG)), ("connection", "close")])
    with trio.fail_after(GUARD):
        async with serving(lambda _m: [head, body, None]) as (url, server, transport):
            assert (await fetch(transport, url)).content == body
            assert transport.connections_open == 0
            assert (await fetch(transport, url)).content == body
            assert server.connections == 2


@pytest.mark.parametrize("size", [BIG, 5])
async def test_bytes_past_the_body_are_not_taken_and_the_connection_is_dropped(size: int) -> None:
    body = _body(size, 2)
    head = _head(200, [("content-length", str(size))])
    # sent in one write: the stray bytes arrive with the body, in the buffer or after it
    with trio.fail_after(GUARD):
        async with serving(lambda _m: [head + body + b"HTTP/1.1 200 OK\r\n", 0.01]) as (
            url,
            server,
            transport,
        ):
            assert (await fetch(transport, url)).content == body
            assert (await fetch(transport, url)).content == body
            # the second request did not land on the connection holding the stray bytes
            assert server.connections == 2


async def test_truncated_body_is_remote_protocol_error_and_drops_the_connection() -> None:
    head = _head(200, [("content-length", str(BIG))])
    with trio.fail_after(GUARD):
        async with serving(lambda _m: [head, _body(BIG // 2), 0.001, None]) as (
            url,
            _server,
            transport,
        ):
            with pytest.raises(httpx.RemoteProtocolError, match="middle of the response body"):
                await fetch(transport, url)
            assert transport.connections_open == 0


@pytest.mark.parametrize("how", ["read timeout", "cancelled"])
async def test_a_body_that_stalls_midway_drops_the_connection(how: str) -> None:
    head = _head(200, [("content-length", str(BIG))])
    with trio.fail_after(GUARD):
        async with serving(lambda _m: [head, _body(WHOLE_CHUNK // 2), "hang"]) as (
            url,
            _server,
            transport,
        ):
            if how == "read timeout":
                with pytest.raises(httpx.ReadTimeout):
                    await fetch(transport, url, read=0.05)
            else:
                with trio.move_on_after(0.05) as scope:
                    await fetch(transport, url)
                assert scope.cancelled_caught
            assert transport.connections_open == 0


async def test_encoded_chunked_and_head_answers_take_httpx_path_unchanged() -> None:
    """Bodies not read whole come out exactly as httpx reads them."""
    body = _body(BIG, 3)
    packed = gzip.compress(body)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:70_000], body[70_000:]))
    answers: dict[str, list[Piece]] = {
        "/gzip": [_head(200, [("content-length", str(len(packed))), ("content-encoding", "gzip")]),
                  packed],
        "/chunked": [_head(200, [("transfer-encoding", "chunked")]), chunked, b"0\r\n\r\n"],
        "/head": [_head(200, [("content-length", str(BIG))])],
    }  # fmt: skip
    order = iter(["/gzip", "/chunked", "/head"])
    with trio.fail_after(GUARD):
        async with serving(lambda _m: answers[next(order)]) as (url, server, transport):
            assert (await fetch(transport, f"{url}/gzip")).content == body
            assert (await fetch(transport, f"{url}/chunked")).content == body
            response = await fetch(transport, f"{url}/head", method="HEAD")
            assert response.content == b""
            assert response.headers["content-length"] == str(BIG)
            assert server.connections == 1  # every one of them kept the connection


async def test_the_installed_httpx_takes_the_body_as_read() -> None:
    """The body is handed to httpx's response as read, not through a new Response."""
    assert _dispatch._SETS_CONTENT  # on a false: httpx changed; the public fallback runs


@pytest.mark.parametrize("sets_content", [True, False])
async def test_response_reads_the_same_either_way(
    sets_content: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_dispatch, "_SETS_CONTENT", sets_content)
    body = _body(1000, 4)
    head = _head(201, [("content-length", "1000"), ("x-extra", "yes")])
    with trio.fail_after(GUARD):
        async with serving(lambda _m: [head + body]) as (url, server, transport):
            for _ in range(2):
                response = await fetch(transport, url)
                assert response.status_code == 201
                assert response.headers["x-extra"] == "yes"
                assert response.content == body
                assert await response.aread() == body
                assert response.is_closed
                assert response.request.url == httpx.URL(url)
                await response.aclose()  # nothing left to close; the connection stays pooled
                assert transport.connections_idle == 1
            assert server.connections == 1


async def test_a_bad_header_is_refused_before_anything_is_written() -> None:
    seen: list[str] = []

    def answer(method: str) -> list[Piece]:
        seen.append(method)
        return [_head(200, [("content-length", "0")])]

    with trio.fail_after(GUARD):
        async with serving(answer) as (url, _server, transport):
            timeouts = {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}
            request = httpx.Request(
                "GET", url, headers={"x-bad": "a\r\nInjected: 1"}, extensions={"timeout": timeouts}
            )
            with pytest.raises(httpx.LocalProtocolError, match="Illegal header value"):
                await send_direct(transport, httpx.Cookies(), request, stream=False)
            assert transport.connections_open == 0
            assert (await fetch(transport, url)).status_code == 200
            assert seen == ["GET"]  # only the good request reached the server
