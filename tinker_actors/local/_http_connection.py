"""One HTTP/1.1 connection of :func:`~._http_server.serve_asgi`: read, run the app, repeat.

What the app sees follows the ASGI ``http`` scope (spec 2.3). ``receive()`` yields the body as it
arrives (sending ``100 Continue`` first when the client asked for it), then blocks until the
client disconnects or the response is complete and answers ``http.disconnect``. A client that
goes away never cancels the app: its writes are dropped and it runs to completion.

Failures: an app that raises (or returns) before its response head was written gets a ``500``
and the connection closes; after the head it is aborted. Malformed requests get ``400`` (``431``
for an oversized head, ``501`` for a transfer coding other than chunked) and the connection
closes. The framing is :mod:`._http1_server`'s (plain functions over one receive buffer).

Limits, so no client can hold the server's memory or tasks: a body over ``max_body_bytes`` is
answered ``413`` (at once when its ``Content-Length`` says so, otherwise when the excess
arrives) and a body that has not fully arrived ``body_timeout`` seconds after its head is
answered ``408``; the connection then closes. The app sees ``http.disconnect`` for a refused
body and its response is dropped. A client that leaves mid-body is logged as one line, never a
traceback.
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import unquote

import msgspec
import trio

from tinker_actors.local._http1_server import (
    CONTINUE,
    FRAMING,
    BadRequest,
    BodyReader,
    BodyWriter,
    Request,
    error_head,
    parse_request,
    response_head,
)
from tinker_actors.local._limits import limit_message
from tinker_actors.transport._http1 import RemoteProtocolError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Message = MutableMapping[str, Any]
    ASGIApp = Callable[
        [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
        Awaitable[None],
    ]

__all__ = [
    "LINGER_BYTES",
    "LINGER_SECONDS",
    "READ_SIZE",
    "Connection",
    "ConnectionLimits",
    "logger",
    "peer_name",
]

logger = logging.getLogger("tinker_actors.local.http")

READ_SIZE: Final = 65536
#: Read size while a request body longer than READ_SIZE is arriving.
_BODY_READ_SIZE: Final = 1 << 18
#: An unread request body up to this size is read and discarded to keep the connection.
_MAX_DRAIN: Final = 1 << 20
#: Pipelined bytes read while an app waits for a disconnect before the reader stops.
_MAX_PIPELINED: Final = 1 << 16
#: Head and body are joined into one write up to this size (above it the copy costs more).
_COALESCE: Final = 1 << 18
#: After an error response, how long and how much input to discard before closing, so the
#: client reads the response rather than a reset caused by its unread request bytes.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 1 << 20

_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Final = {"type": "http.disconnect"}
_REASONS: Final = {int(s): s.phrase.encode() for s in HTTPStatus}
_ERROR_BODY: Final = b'{"detail": "internal server error"}'


def peer_name(stream: trio.SocketStream) -> str:
    """``host:port`` of the stream's peer, for log lines."""
    address = _address(stream.socket.getpeername)
    return f"{address[0]}:{address[1]}" if address is not None else "an unknown peer"


def _address(name: Callable[[], Any]) -> tuple[str, int] | None:
    """``(host, port)`` from ``getpeername``/``getsockname``; None when unknown."""
    try:
        address = name()
    except OSError:  # e.g. the peer reset the connection before we looked
        return None
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else None


@final
class ConnectionLimits:
    """The limits every connection of one server applies."""

    __slots__ = ("body_timeout", "keep_alive", "max_body")

    def __init__(self, *, keep_alive: float, max_body: int, body_timeout: float) -> None:
        self.keep_alive = keep_alive
        self.max_body = max_body
        self.body_timeout = body_timeout


@final
class Connection:
    """One client connection: read a request, run the app, settle, repeat."""

    def __init__(self, app: ASGIApp, stream: trio.SocketStream, limits: ConnectionLimits) -> None:
        self.app = app
        self.stream = stream
        self.limits = limits
        self.timeout = limits.keep_alive
        self.buf = bytearray()  # received bytes not yet taken (a head, body, next request)
        self.eof = False  # the client closed its side: nothing more will arrive
        self.client = _address(stream.socket.getpeername)
        self.server = _address(stream.socket.getsockname)
        self.broken = False  # a write failed: the client is gone, later writes are dropped
        self.linger = False  # an error response went out: discard input briefly before closing
        self.idle = trio.CancelScope()  # the idle timer; replaced in run()
        self._reset(b"GET")
        self.body = BodyReader(0)  # takes the request body out of what arrives (per request)

    def _reset(self, method: bytes) -> None:
        """Clear the per-request state."""
        self.head = method == b"HEAD"
        self.disconnected = False  # receive() saw the client go (or the request break)
        self.started = False  # http.response.start received
        self.written = False  # the response head went out
        self.complete = False  # the last body message went out
        self.continue_pending = False  # the client waits for 100 Continue, not yet sent
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep = False  # the connection can take another request after this response
        self.writer: BodyWriter | None = None  # frames the response body once the head is out
        self.reading = False  # a receive() is reading the socket for a disconnect
        self.reader: trio.CancelScope | None = None
        self.gone: trio.Event | None = None  # set on disconnect or completion, made on demand
        self.pipelined = 0
        self.body_bytes = 0  # request body bytes read so far
        self.body_deadline = math.inf  # when the request body must be complete
        self.refused = False  # the server answered 408/413 itself; the app's answer is dropped
        self.body_lost = False  # the client left before its request body was complete
        self.what = ""  # "METHOD /path", for log lines
        self.request: Request | None = None

    async def run(self) -> None:
        """Answer requests until the client closes, a request fails, or the idle timeout."""
        # One scope for the connection's life, its deadline moved per request (cheaper than a
        # scope per read): it runs while waiting for a request head or draining a body, and is
        # off while the app runs. When it fires, the connection closes.
        with trio.CancelScope() as self.idle:
            while True:
                self.idle.deadline = trio.current_time() + self.timeout
                request = await self._next_request()
                if request is None:
                    break
                self.idle.deadline = math.inf
                if not await self._respond(request):
                    break
        if self.linger:
            await self._linger()

    async def _recv(self, size: int = READ_SIZE) -> bytes:
        try:
            return await self.stream.receive_some(size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken = True

    async def _next_request(self) -> Request | None:
        """Read the next request head, or None when the connection should close."""
        while True:
            try:
                parsed = parse_request(self.buf)
            except BadRequest as exc:
                self.written = False  # (the previous request's answer is complete)
                await self._error_response(exc.status, b"")
                return None
            if parsed is not None:
                request, size = parsed
                del self.buf[:size]
                return request
            if self.eof:
                if self.buf.strip():  # the client left in the middle of a head
                    self.written = False
                    await self._error_response(400, b"")
                return None
            self._feed(await self._recv())

    def _scope(self, request: Request) -> Message:
        raw_path, _, query = request.target.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": request.headers,
            "client": self.client,
            "server": self.server,
        }

    async def _respond(self, request: Request) -> bool:
        """Run the app for one request; True when the connection can take the next one."""
        self._reset(request.method)
        self.request = request
        self.continue_pending = request.expects_continue
        self.body = BodyReader(request.length)
        scope = self._scope(request)
        self.what = f"{scope['method']} {scope['path']}"
        declared = request.length
        if declared > self.limits.max_body:
            # refused before the body is read (and before any 100 Continue invites it)
            await self._refuse(413, f"a body of {declared} bytes", "max_body_bytes")
            return False
        self.body_deadline = trio.current_time() + self.limits.body_timeout
        try:
            await self.app(scope, self.receive, self.send)
        except Exception as exc:
            if self.refused or self.body_lost:
                # the usual reaction of an app to a vanished body: one line, not a traceback
                logger.info(
                    "%s: the app raised %s after the client went away",
                    self.what,
                    type(exc).__name__,
                )
                return False
            logger.exception("ASGI app failed on %s %s", scope["method"], scope["path"])
            if not self.written:
                await self._error_response(500, _ERROR_BODY)
                return False
            if not self.complete:
                return False  # abort: the client sees a truncated response
        else:
            if self.refused:
                return False
            if not self.written:
                logger.error("ASGI app sent no response to %s %s", scope["method"], scope["path"])
                await self._error_response(500, _ERROR_BODY)
                return False
            if not self.complete:
                logger.error(
                    "ASGI app returned mid-response: %s %s", scope["method"], scope["path"]
                )
                return False
        self._wake()
        return await self._settle()

    async def _settle(self) -> bool:
        """Read what is left of the request body so the connection can be reused."""
        if self.broken or self.disconnected or not self.complete or not self.keep:
            return False
        if self.body.done:
            return True
        if self.continue_pending:
            return False  # never asked for its body: the client may or may not send it
        self.idle.deadline = trio.current_time() + self.timeout
        return await self._drain()

    async def _drain(self) -> bool:
        """Read and discard the rest of the request body; True once it ended within
        ``_MAX_DRAIN`` bytes."""
        drained = 0
        data = b""
        while True:
            try:
                drained += sum(map(len, self.body.take(self.buf, data)))
            except RemoteProtocolError:
                return False
            if drained > _MAX_DRAIN:
                self.linger = True
                return False
            if self.body.done:
                return True
            if self.eof:
                return False
            data = await self._recv(_BODY_READ_SIZE)
            self.eof = not data

    def _feed(self, data: bytes) -> None:
        if data:
            self.buf += data
        else:
            self.eof = True

    async def _error_response(self, status: int, body: bytes) -> None:
        """Send a final error response with ``Connection: close`` unless a response is out."""
        if self.written:
            return
        data = error_head(status, _REASONS.get(status, b""), len(body), bool(body))
        if body and not self.head:
            data += body
        self.written = True
        self.linger = True
        await self._write(data)

    async def _refuse(self, status: int, what: str, limit: str) -> Message:
        """Answer 408/413 in the app's place, close after it, and tell the app the body is gone."""
        value: int | float = self.limits.max_body if status == 413 else self.limits.body_timeout
        detail = limit_message(what, limit, value)
        logger.info(
            "%s from %s refused (%d): %s", self.what, peer_name(self.stream), status, detail
        )
        self.refused = True
        self.disconnected = True
        if not self.written:
            await self._error_response(status, msgspec.json.encode({"detail": detail}))
        self.linger = True
        return _DISCONNECT

    async def _linger(self) -> None:
        """Half-close, then discard input for a moment so the peer can read our answer."""
        with trio.move_on_after(LINGER_SECONDS):
            try:
                await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            discarded = 0
            while discarded < LINGER_BYTES:
                data = await self._recv()
                if not data:
                    return
                discarded += len(data)

    def _wake(self) -> None:
        """The response is complete (or the client gone): release a receive() waiting on it."""
        if self.reader is not None:
            self.reader.cancel()
        if self.gone is not None:
            self.gone.set()

    async def receive(self) -> Message:
        """ASGI receive: the request body, then ``http.disconnect``."""
        if self.disconnected or self.complete:
            return _DISCONNECT
        if not self.body.done:
            return await self._receive_body()
        await self._wait_gone()
        return _DISCONNECT

    async def _receive_body(self) -> Message:
        if self.continue_pending:
            self.continue_pending = False
            await self._write(CONTINUE)
        chunks: list[bytes] = []
        data = b""
        while True:
            try:
                pieces = self.body.take(self.buf, data)
            except RemoteProtocolError:  # a broken chunked body: the request is lost
                if chunks:
                    break  # hand over what arrived; the next call reports the disconnect
                return self._body_gone()
            for piece in pieces:
                self.body_bytes += len(piece)
                if self.body_bytes > self.limits.max_body:
                    what = f"a body of at least {self.body_bytes} bytes"
                    return await self._refuse(413, what, "max_body_bytes")
                chunks.append(piece)
            if self.body.done:
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                return {"type": "http.request", "body": body, "more_body": False}
            if chunks:
                break
            if self.eof:  # the client left mid-body
                return self._body_gone()
            size = _BODY_READ_SIZE if self.body.left > READ_SIZE else READ_SIZE
            with trio.move_on_at(self.body_deadline) as deadline:
                data = await self._recv(size)
            if deadline.cancelled_caught:
                what = f"a body still incomplete after {self.body_bytes} bytes"
                return await self._refuse(408, what, "body_timeout")
            if not data:
                self.eof = True
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return {"type": "http.request", "body": body, "more_body": not self.body.done}

    def _body_gone(self) -> Message:
        self.disconnected = True
        self.body_lost = True
        logger.info(
            "%s: client %s left before its request body was complete (%d bytes in)",
            self.what,
            peer_name(self.stream),
            self.body_bytes,
        )
        return _DISCONNECT

    async def _wait_gone(self) -> None:
        """Block until the client disconnects or the response is complete."""
        if self.reading:  # another task already reads the socket; share its outcome
            if self.gone is None:
                self.gone = trio.Event()
            await self.gone.wait()
            return
        self.reading = True
        try:
            with trio.CancelScope() as self.reader:
                while not self.complete:
                    if self.pipelined > _MAX_PIPELINED:
                        await trio.sleep_forever()  # the next request is buffered; stop reading
                    data = await self._recv()
                    # bytes after a complete request belong to the next one (pipelining): the
                    # buffer keeps them; b"" records the EOF for later too
                    self._feed(data)
                    if not data:
                        self.disconnected = True
                        self._wake()
                        break
                    self.pipelined += len(data)
        finally:
            self.reading = False
            self.reader = None

    async def send(self, message: Message) -> None:
        """ASGI send: ``http.response.start``, then ``http.response.body`` messages."""
        if self.refused:
            return  # the server already answered this request (408/413)
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.complete:
                raise RuntimeError("http.response.body outside an open response")
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            data = b""
            if not self.written:
                headers = self.headers
                if not more and not any(name.lower() in FRAMING for name, _ in headers):
                    headers.append((b"content-length", b"%d" % len(body)))
                assert self.request is not None
                reason = _REASONS.get(self.status, b"")
                data, self.writer, self.keep = response_head(
                    self.status, reason, headers, self.request
                )
                self.written = True
            writer = self.writer
            assert writer is not None
            if body and not self.head:
                framed = writer.frame(body)
                if len(data) + len(body) > _COALESCE:
                    await self._write(data)
                    data = b""
                data += b"".join(framed) if len(framed) > 1 else framed[0]
            if not more:
                data += writer.end()
                self.complete = True
                self._wake()
            await self._write(data)
        elif kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = int(message["status"])
            self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
        else:
            raise RuntimeError(f"unexpected ASGI message type {kind!r} for an http scope")
