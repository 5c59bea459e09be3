"""Our HTTP/1.1 ASGI server (``serve_asgi``) on 127.0.0.1 sockets.

Raw-byte tests drive the wire through an h11 client (or bytes by hand for pipelining and
malformed input); httpx, Starlette and our SDK transport check it against real peers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import h11
import httpx
import pytest
import trio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from tinker_actors.config import resolve_config
from tinker_actors.local._http_server import LISTEN_BACKLOG, serve_asgi
from tinker_actors.local._server import LISTEN_BACKLOG as SERVER_BACKLOG
from tinker_actors.transport import RequestOptions, open_transport

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
LOGGER = "tinker_actors.local.http"


class Served:
    """A running server: its URL and port; raw clients it opened are closed with it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.clients: list[RawClient] = []

    async def connect(self) -> RawClient:
        client = RawClient(await trio.open_tcp_stream("127.0.0.1", self.port))
        self.clients.append(client)
        return client


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[Served]:
    """Serve ``app`` on 127.0.0.1 and yield it; cancel the server on exit."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            urls: list[str] = await nursery.start(partial(serve_asgi, app, **options))
            assert len(urls) == 1
            assert urls[0].startswith("http://127.0.0.1:")
            served = Served(urls[0])
            try:
                yield served
            finally:
                for client in served.clients:
                    await client.stream.aclose()
                nursery.cancel_scope.cancel()


async def read_body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        assert message["type"] == "http.request", message
        body += bytes(message["body"])
        if not message["more_body"]:
            return body


async def respond(send: Send, status: int, body: bytes, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})


async def echo(scope: Message, receive: Receive, send: Send) -> None:
    """Answer with the request body and describe the request in headers."""
    body = await read_body(receive)
    headers = [
        (b"x-path", scope["path"].encode()),
        (b"x-query", scope["query_string"]),
        (b"x-method", scope["method"].encode()),
        (b"x-client-port", str(scope["client"][1]).encode()),
    ]
    await respond(send, 200, body, headers)


class RawClient:
    """An h11 client on one socket; it also parses responses to bytes written by hand."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    async def read_response(self, method: bytes = b"GET") -> tuple[h11.Response, bytes]:
        """Parse the next response (to a ``method`` request) from the socket."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("host", "t")]))
        conn.send(h11.EndOfMessage())
        if self.buffer:  # (receive_data(b"") would mean EOF)
            conn.receive_data(self.buffer)
        head: h11.Response | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self.stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                self.buffer = conn.trailing_data[0]
                return head, body

    async def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> tuple[h11.Response, bytes]:
        all_headers = [("host", "t"), ("content-length", str(len(body))), *(headers or [])]
        data = h11.Connection(h11.CLIENT).send(
            h11.Request(method=method, target=target, headers=all_headers)
        )
        await self.stream.send_all(data + body)
        return await self.read_response(method.encode())

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes the connection."""
        data = self.buffer
        while chunk := await self.stream.receive_some(65536):
            data += chunk
        return data


def header(response: h11.Response, name: bytes) -> bytes | None:
    return next((v for n, v in response.headers if n == name), None)


async def test_keep_alive_reuses_one_connection_for_several_requests() -> None:
    async with serving(echo) as server:
        client = await server.connect()
        ports = set()
        for i in range(4):
            response, body = await client.request("POST", f"/n/{i}?q={i}", b"body %d" % i)
            assert response.status_code == 200
            assert body == b"body %d" % i
            assert header(response, b"x-path") == f"/n/{i}".encode()
            assert header(response, b"x-query") == f"q={i}".encode()
            ports.add(header(response, b"x-client-port"))
        assert ports == {str(client.stream.socket.getsockname()[1]).encode()}


async def test_pipelined_requests_are_answered_in_order() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await read_body(receive)
        if scope["path"] == "/first":
            for _ in range(20):  # let the later requests' bytes arrive before answering
                await trio.lowlevel.checkpoint()
        await respond(send, 200, scope["path"].encode())

    async with serving(app) as server:
        client = await server.connect()
        raw = b"".join(
            b"POST /%s HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc" % name
            for name in (b"first", b"second", b"third")
        )
        await client.stream.send_all(raw)
        bodies = [(await client.read_response(b"POST"))[1] for _ in range(3)]
        assert bodies == [b"/first", b"/second", b"/third"]


async def test_a_crlf_after_a_body_does_not_break_the_next_request() -> None:
    # old clients end a POST body with an extra CRLF; RFC 9112 2.2 asks a server to skip
    # blank lines before a request line (h11 answered them 400 and closed)
    async with serving(echo) as server:
        client = await server.connect()
        await client.stream.send_all(
            b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nabc\r\n"
            b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n"
        )
        first, body = await client.read_response(b"POST")
        second, _ = await client.read_response()
    assert (first.status_code, body, second.status_code) == (200, b"abc", 200)
    assert header(second, b"x-path") == b"/b"


async def test_chunked_request_body_arrives_in_pieces() -> None:
    messages: list[Message] = []
    got_first = trio.Event()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            messages.append(message)
            got_first.set()
            if not message["more_body"]:
                break
        await respond(send, 200, b"".join(m["body"] for m in messages))

    async with serving(app) as server:
        client = await server.connect()
        head = b"POST /c HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        await client.stream.send_all(head + b"5\r\nhello\r\n")
        await got_first.wait()  # the first piece reached the app before the rest was sent
        await client.stream.send_all(b"6\r\n world\r\n0\r\n\r\n")
        response, body = await client.read_response(b"POST")
    assert (response.status_code, body) == (200, b"hello world")
    assert messages[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert messages[-1]["more_body"] is False
    assert len(messages) >= 2


async def test_single_body_gets_content_length_and_streamed_body_is_chunked() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": []})
        if scope["path"] == "/whole":
            await send({"type": "http.response.body", "body": b"x" * 1000})
        else:
            for part in (b"ab", b"", b"cd"):
                await send({"type": "http.response.body", "body": part, "more_body": True})
            await send({"type": "http.response.body", "body": b"ef", "more_body": False})

    async with serving(app) as server:
        client = await server.connect()
        whole, whole_body = await client.request("GET", "/whole")
        streamed, streamed_body = await client.request("GET", "/streamed")
    assert (whole.status_code, whole.reason) == (201, b"Created")
    assert header(whole, b"content-length") == b"1000"
    assert header(whole, b"transfer-encoding") is None
    assert whole_body == b"x" * 1000
    assert header(streamed, b"content-length") is None
    assert header(streamed, b"transfer-encoding") == b"chunked"
    assert streamed_body == b"abcdef"


async def test_app_content_length_is_kept() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"Content-Length", b"4")]}
        )
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"cd"})

    async with serving(app) as server:
        client = await server.connect()
        response, body = await client.request("GET", "/")
    assert header(response, b"content-length") == b"4"
    assert body == b"abcd"


async def test_expect_100_continue_is_answered_when_the_app_reads_the_body() -> None:
    async with serving(echo) as server:
        client = await server.connect()
        head = b"PUT /up HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        await client.stream.send_all(head)
        interim = b""
        while b"\r\n\r\n" not in interim:  # nothing of the body was sent yet
            interim += await client.stream.receive_some(65536)
        assert interim.startswith(b"HTTP/1.1 100 ")
        client.buffer = interim[interim.index(b"\r\n\r\n") + 4 :]
        await client.stream.send_all(b"data")
        response, body = await client.read_response(b"PUT")
        assert (response.status_code, body) == (200, b"data")
        again, _ = await client.request("GET", "/after")  # the connection is still good
        assert header(again, b"x-path") == b"/after"


async def test_expect_100_continue_without_reading_answers_and_closes() -> None:
    async with serving(partial(_fixed, 413, b"too big")) as server:
        client = await server.connect()
        head = b"PUT /up HTTP/1.1\r\nhost: t\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n"
        await client.stream.send_all(head)
        data = await client.read_to_eof()
    assert data.startswith(b"HTTP/1.1 413 ")
    assert b"HTTP/1.1 100" not in data
    assert data.endswith(b"too big")


async def _fixed(status: int, body: bytes, scope: Message, receive: Receive, send: Send) -> None:
    await respond(send, status, body)


async def test_head_sends_no_body_and_keeps_the_connection() -> None:
    async with serving(partial(_fixed, 200, b"hello")) as server:
        client = await server.connect()
        await client.stream.send_all(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n")
        response, body = await client.read_response(b"HEAD")
        assert header(response, b"content-length") == b"5"
        assert body == b""
        response, body = await client.request("GET", "/g")  # no stray body bytes in between
        assert (response.status_code, body) == (200, b"hello")


async def test_http_1_0_request_is_answered_then_closed() -> None:
    versions: list[str] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        versions.append(scope["http_version"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"old", "more_body": True})
        await send({"type": "http.response.body", "body": b" client"})

    async with serving(app) as server:
        client = await server.connect()
        await client.stream.send_all(b"GET /old HTTP/1.0\r\n\r\n")
        data = await client.read_to_eof()
    assert versions == ["1.0"]
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"transfer-encoding" not in data.lower()  # 1.0 peers get a close-delimited body
    assert data.endswith(b"\r\n\r\nold client")


async def test_eight_megabyte_body_round_trips_byte_exact() -> None:
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
    async with serving(echo) as server, httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post("/big", content=payload)
        chunked = await client.post("/big", content=_pieces(payload))
    assert response.status_code == 200
    assert response.content == payload
    assert chunked.content == payload


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 1 << 20):
        yield data[start : start + (1 << 20)]


async def test_malformed_request_gets_400_and_close() -> None:
    async with serving(echo) as server:
        client = await server.connect()
        await client.stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
        data = await client.read_to_eof()
        assert data.startswith(b"HTTP/1.1 400 ")
        assert b"connection: close" in data.lower()


async def test_oversized_head_gets_431_and_close() -> None:
    async with serving(echo) as server:
        client = await server.connect()
        await client.stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\nx-big: " + b"a" * 70_000)
        data = await client.read_to_eof()
    assert data.startswith(b"HTTP/1.1 431 ")


async def test_broken_chunked_body_reports_disconnect_to_the_app() -> None:
    seen: list[Message] = []
    done = trio.Event()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        seen.append(await receive())
        seen.append(await receive())
        await respond(send, 200, b"late")
        done.set()

    async with serving(app) as server:
        client = await server.connect()
        head = b"POST / HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
        await client.stream.send_all(head + b"zz\r\n")
        await done.wait()
        await client.read_to_eof()  # the connection is not reused
    assert seen == [{"type": "http.disconnect"}, {"type": "http.disconnect"}]


async def test_exception_before_start_gives_500_and_close(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        raise ValueError("boom")

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        async with serving(app) as server:
            client = await server.connect()
            response, body = await client.request("POST", "/x", b"unread")
            assert response.status_code == 500
            assert body == b'{"detail": "internal server error"}'
            assert header(response, b"content-type") == b"application/json"
            assert header(response, b"connection") == b"close"
            assert await client.read_to_eof() == b""
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


async def test_exception_after_start_before_body_still_gives_500() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise ValueError("boom")

    async with serving(app) as server:
        client = await server.connect()
        response, _ = await client.request("GET", "/x")
    assert response.status_code == 500


async def test_exception_mid_response_aborts_the_connection() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise ValueError("boom")

    async with serving(app) as server:
        client = await server.connect()
        await client.stream.send_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        data = await client.read_to_eof()
    assert data.startswith(b"HTTP/1.1 200 ")
    assert b"partial" in data
    assert not data.endswith(b"0\r\n\r\n")  # no chunked terminator: the client sees a truncation


async def test_exception_after_a_complete_response_keeps_the_connection() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await respond(send, 200, b"ok")
        raise ValueError("after the fact")

    async with serving(app) as server:
        client = await server.connect()
        for _ in range(2):
            response, body = await client.request("GET", "/")
            assert (response.status_code, body) == (200, b"ok")


async def test_app_returning_without_a_response_gives_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        return

    with caplog.at_level(logging.ERROR, logger=LOGGER):
        async with serving(app) as server:
            client = await server.connect()
            response, _ = await client.request("GET", "/")
    assert response.status_code == 500
    assert any("no response" in r.getMessage() for r in caplog.records if r.name == LOGGER)


async def test_client_disconnect_is_reported_and_the_app_runs_to_completion() -> None:
    seen: list[Message] = []
    finished = trio.Event()

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await read_body(receive)
        seen.append(await receive())  # blocks until the client goes away
        await respond(send, 200, b"nobody listens")  # dropped quietly, no error
        finished.set()

    async with serving(app) as server:
        client = await server.connect()
        await client.stream.send_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi")
        await trio.testing.wait_all_tasks_blocked()
        assert seen == []
        await client.stream.aclose()
        await finished.wait()
    assert seen == [{"type": "http.disconnect"}]


async def test_receive_after_the_body_returns_disconnect_once_the_response_is_complete() -> None:
    seen: list[Message] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await read_body(receive)
        async with trio.open_nursery() as nursery:

            async def listen() -> None:
                seen.append(await receive())

            nursery.start_soon(listen)
            await trio.testing.wait_all_tasks_blocked()
            await respond(send, 200, b"done")

    async with serving(app) as server:
        client = await server.connect()
        for _ in range(2):
            response, body = await client.request("POST", "/", b"x")
            assert (response.status_code, body) == (200, b"done")
    assert seen == [{"type": "http.disconnect"}] * 2


async def test_pipelined_bytes_read_while_waiting_for_a_disconnect_are_kept() -> None:
    ready, proceed = trio.Event(), trio.Event()
    seen: list[Message] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        await read_body(receive)
        if scope["path"] != "/first":
            await respond(send, 200, scope["path"].encode())
            return
        async with trio.open_nursery() as nursery:

            async def listen() -> None:  # two tasks waiting at once share the outcome
                seen.append(await receive())

            nursery.start_soon(listen)
            nursery.start_soon(listen)
            ready.set()
            await proceed.wait()
            await respond(send, 200, b"/first")

    async with serving(app) as server:
        client = await server.connect()
        await client.stream.send_all(b"GET /first HTTP/1.1\r\nhost: t\r\n\r\n")
        await ready.wait()
        await client.stream.send_all(b"GET /second HTTP/1.1\r\nhost: t\r\n\r\n")
        await trio.testing.wait_all_tasks_blocked()  # the listener has read /second's bytes
        assert seen == []  # more bytes are not a disconnect
        proceed.set()
        bodies = [(await client.read_response())[1] for _ in range(2)]
    assert bodies == [b"/first", b"/second"]
    assert seen == [{"type": "http.disconnect"}] * 2


async def test_unread_body_is_drained_to_reuse_the_connection() -> None:
    async with serving(partial(_fixed, 200, b"ignored your body")) as server:
        client = await server.connect()
        for size in (10, 100_000):
            response, body = await client.request("POST", "/", b"b" * size)
            assert (response.status_code, body) == (200, b"ignored your body")


async def test_unread_body_sent_after_the_response_is_drained() -> None:
    async with serving(partial(_fixed, 503, b"not now")) as server:
        client = await server.connect()
        await client.stream.send_all(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n")
        response, _ = await client.read_response(b"POST")
        assert response.status_code == 503
        await client.stream.send_all(b"{}")  # the body arrives only now
        response, body = await client.request("GET", "/next")
        assert (response.status_code, body) == (503, b"not now")


async def test_large_unread_body_closes_after_the_response() -> None:
    async with serving(partial(_fixed, 413, b"no")) as server:
        client = await server.connect()
        head = b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % (4 << 20)
        await client.stream.send_all(head)
        response, body = await client.read_response(b"POST")
        assert (response.status_code, body) == (413, b"no")
        with pytest.raises(trio.BrokenResourceError):  # noqa: PT012 - the server stops reading
            for _ in range(64):
                await client.stream.send_all(b"z" * (1 << 20))


async def test_idle_connection_is_closed_after_the_keep_alive_timeout() -> None:
    async with serving(echo, keep_alive_timeout=0.05) as server:
        client = await server.connect()
        response, _ = await client.request("GET", "/")
        assert response.status_code == 200
        with trio.fail_after(10):
            assert await client.read_to_eof() == b""


async def test_cancelling_the_server_closes_listener_and_connections() -> None:
    entered = trio.Event()
    cancelled: list[bool] = []

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["path"] == "/hang":
            entered.set()
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(True)
                raise
        await respond(send, 200, b"ok")

    task = trio.lowlevel.current_task()
    before = list(task.child_nurseries)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            [url] = await nursery.start(partial(serve_asgi, app))
            port = int(url.rsplit(":", 1)[1])
            idle = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
            await idle.request("GET", "/")
            busy = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
            await busy.stream.send_all(b"GET /hang HTTP/1.1\r\nhost: t\r\n\r\n")
            await entered.wait()
            assert len(nursery.child_tasks) == 1  # serve_asgi; connections live below it
            nursery.cancel_scope.cancel()
        # the nursery exited, so every connection task and the listener are gone
        assert task.child_nurseries == before
        assert cancelled == [True]  # shutdown (not a client disconnect) cancels the app
        async with idle.stream, busy.stream:
            assert await idle.read_to_eof() == b""
            assert await busy.read_to_eof() == b""
        with pytest.raises(OSError, match="connect"):
            await trio.open_tcp_stream("127.0.0.1", port)


async def test_starlette_app_works_unchanged() -> None:
    async def echo_json(request: Request) -> JSONResponse:
        return JSONResponse({"got": await request.json(), "item": request.path_params["item"]})

    async def stream(request: Request) -> StreamingResponse:
        async def parts() -> AsyncIterator[bytes]:
            for i in range(3):
                yield b"part%d;" % i

        return StreamingResponse(parts(), media_type="text/plain")

    app = Starlette(
        routes=[
            Route("/items/{item}", echo_json, methods=["POST"]),
            Route("/stream", stream),
        ]
    )
    async with serving(app) as server, httpx.AsyncClient(base_url=server.url) as client:
        answer = await client.post("/items/a%20b", json={"n": [1, 2]})
        streamed = await client.get("/stream")
        missing = await client.get("/nope")
    assert answer.json() == {"got": {"n": [1, 2]}, "item": "a b"}
    assert answer.headers["content-type"] == "application/json"
    assert streamed.text == "part0;part1;part2;"
    assert missing.status_code == 404


async def test_sdk_transport_works_against_it() -> None:
    async def app(scope: Message, receive: Receive, send: Send) -> None:
        body = await read_body(receive)
        headers = dict(scope["headers"])
        answer = b'{"path": "%s", "key": "%s", "size": %d}' % (
            scope["path"].encode(),
            headers.get(b"x-api-key", b""),
            len(body),
        )
        await respond(send, 200, answer, [(b"content-type", b"application/json")])

    async with serving(app) as server:
        config = resolve_config(base_url=server.url, api_key="tml-x", env={}, max_retries=0)
        async with open_transport(config) as transport:
            for i in range(3):
                response = await transport.request(
                    "POST", "/api/v1/thing", json={"i": i}, options=RequestOptions(max_retries=0)
                )
                assert response.json() == {"path": "/api/v1/thing", "key": "tml-x", "size": 7}


async def test_bad_settings_are_rejected_before_binding() -> None:
    with pytest.raises(ValueError, match="keep_alive_timeout"):
        await serve_asgi(echo, keep_alive_timeout=0)
    with pytest.raises(ValueError, match="backlog"):
        await serve_asgi(echo, backlog=0)


def test_backlog_constant_is_shared_with_the_local_server() -> None:
    assert LISTEN_BACKLOG == SERVER_BACKLOG == 4096
