"""The HTTP server's own limits, over real 127.0.0.1 sockets: body size, body time, connections.

The audit held connections open for ever by announcing 200 MB and sending 1 byte, and got a
traceback per client that disconnected. Now: a body over ``max_body_bytes`` is 413 (at once
when its Content-Length says so), a body that has not arrived after ``body_timeout`` is 408,
a connection beyond ``max_connections`` is 429 with Retry-After, each then closed; a client
that leaves mid-body costs one log line.
"""

from __future__ import annotations

import logging
from functools import partial

import h11
import msgspec
import pytest
import trio
from hostile_support import KEY, PROTO, Raw, eventually, fb_body, limits, serving, tracebacks

from tinker_actors.local._http_server import serve_asgi


def detail_of(body: bytes) -> str:
    return str(msgspec.json.decode(body)["detail"])


async def healthz(url: str) -> int:
    raw = await Raw.connect(url)
    try:
        await raw.send_head("GET", "/api/v1/healthz", [])
        await raw.send(raw.conn.send(h11.EndOfMessage()))
        status, _, _ = await raw.response()
        return status
    finally:
        await raw.aclose()


async def test_an_announced_200_megabyte_body_is_413_at_once() -> None:
    with trio.fail_after(20):
        async with serving() as (_, url):
            raw = await Raw.connect(url)
            await raw.send_head(
                "POST",
                "/api/v1/create_session",
                [("content-type", "application/json"), ("content-length", str(200 << 20))],
            )
            await raw.send(b"{")
            status, headers, body = await raw.response()
            assert status == 413
            assert headers["connection"] == "close"
            detail = detail_of(body)
            assert f"a body of {200 << 20} bytes" in detail
            assert f"max_body_bytes = {64 << 20}" in detail
            assert await raw.closed()
            await raw.aclose()
            assert await healthz(url) == 200


async def test_a_chunked_body_that_grows_past_the_limit_is_413() -> None:
    configured = limits(max_body_bytes=64 << 10, max_json_body_bytes=32 << 10)
    with trio.fail_after(20):
        async with serving(limits=configured) as (_, url):
            raw = await Raw.connect(url)
            await raw.send_head(
                "POST",
                "/api/v1/forward_backward",
                [("content-type", PROTO), ("transfer-encoding", "chunked")],
            )
            status = 0
            for _ in range(16):  # 16 x 8 KiB: past 64 KiB before the end
                try:
                    await raw.send(b"2000\r\n" + b"\0" * 0x2000 + b"\r\n")
                except trio.BrokenResourceError:
                    break
            status, _, body = await raw.response()
            await raw.aclose()
            assert status == 413
            assert "max_body_bytes = 65536" in detail_of(body)
            assert await healthz(url) == 200


async def test_a_body_that_does_not_arrive_in_time_is_408_and_closed() -> None:
    # the audit: 50 connections announcing 200 MB, sending 1 byte, all still open after 100 s
    configured = limits(body_timeout=0.5)
    with trio.fail_after(30):
        async with serving(limits=configured) as (server, url):
            raws = [await Raw.connect(url) for _ in range(20)]
            for raw in raws:
                await raw.send_head(
                    "POST",
                    "/api/v1/create_session",
                    [("content-type", "application/json"), ("content-length", "1000")],
                )
                await raw.send(b"{")
            for raw in raws:
                status, headers, body = await raw.response()
                assert status == 408
                assert headers["connection"] == "close"
                assert "body_timeout = 0.5" in detail_of(body)
                assert await raw.closed()
                await raw.aclose()
            assert server.engine.core.store.sessions == {}
            assert await healthz(url) == 200


async def test_a_connection_over_the_cap_is_429_with_retry_after() -> None:
    configured = limits(max_connections=2)
    with trio.fail_after(30):
        async with serving(limits=configured) as (_, url):
            held = [await Raw.connect(url) for _ in range(2)]
            # both are served: a request on each is answered
            for raw in held:
                await raw.send_head("GET", "/api/v1/healthz", [])
                await raw.send(raw.conn.send(h11.EndOfMessage()))
                assert (await raw.response())[0] == 200
            extra = await Raw.connect(url)
            await extra.send_head("GET", "/api/v1/healthz", [])
            status, headers, body = await extra.response()
            assert status == 429
            assert headers["retry-after"] == "1"
            assert "max_connections = 2" in detail_of(body)
            assert await extra.closed()
            await extra.aclose()
            # a held connection goes: the server serves a new one (once it saw it go)
            await held.pop().aclose()
            while await healthz(url) != 200:  # 429 until the server has read the close
                pass
            await held.pop().aclose()


async def test_a_client_that_leaves_mid_body_costs_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the audit: 1,100 tracebacks for 1,100 disconnects
    caplog.set_level(logging.INFO, logger="tinker_actors")
    leaving = 40
    with trio.fail_after(30):
        async with serving() as (server, url):
            for i in range(leaving):
                raw = await Raw.connect(url)
                json = i % 2 == 0
                path = "/api/v1/create_session" if json else "/api/v1/forward_backward"
                kind = "application/json" if json else PROTO
                await raw.send_head(
                    "POST", path, [("content-type", kind), ("content-length", "100")]
                )
                await raw.send(b'{"sdk' if json else fb_body("m", 1)[:5])
                await raw.aclose()
            # every departure has been noticed once the counter says so
            counters = server.engine.core.counters
            paths = ("http:/api/v1/create_session", "http:/api/v1/forward_backward")
            await eventually(lambda: sum(counters[p] for p in paths) >= leaving)
            assert await healthz(url) == 200
    assert tracebacks(caplog.records) == []
    lines = [r for r in caplog.records if "left before its request body" in r.getMessage()]
    assert len(lines) == leaving
    assert KEY not in caplog.text
    assert counters["client_disconnects"] == leaving


async def test_an_app_that_raises_on_a_vanished_body_costs_one_line_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Starlette's Request.body() raises ClientDisconnect; an app that lets it escape is the
    # common case, and must not turn every departure into a traceback either
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    app = Starlette(routes=[Route("/echo", echo, methods=["POST"])])
    caplog.set_level(logging.INFO, logger="tinker_actors")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(partial(serve_asgi, app, port=0))
            for _ in range(10):
                raw = await Raw.connect(urls[0])
                await raw.send_head("POST", "/echo", [("content-length", "100")])
                await raw.send(b"abc")
                await raw.aclose()
            await eventually(lambda: len(raised_lines(caplog)) >= 10)
            nursery.cancel_scope.cancel()
    assert tracebacks(caplog.records) == []
    assert len(raised_lines(caplog)) == 10


def raised_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "raised ClientDisconnect" in r.getMessage()]
