"""Serve an ASGI 3 app over HTTP/1.1 on trio sockets, with h11 doing the framing.

The local server's hot path is many small JSON requests over keep-alive connections. A general
server spends most of its time per request in its protocol layer (a task per request, stream
and event objects, wrappers per send); this one keeps the work proportional to the bytes:

* one task per connection, never one per request: the app runs inline in the connection task,
  so requests on a connection are answered one after another (pipelined ones in order);
* the response head waits for the first body message, so a complete small response leaves in
  one ``send_all`` (and gets a ``Content-Length`` when the app gave none);
* reads are ``receive_some(65536)`` fed to ``h11.Connection(h11.SERVER)``.

What the app sees follows the ASGI ``http`` scope (spec 2.3). ``receive()`` yields the body as it
arrives (sending ``100 Continue`` first when the client asked for it), then blocks until the
client disconnects or the response is complete and answers ``http.disconnect``. A client that
goes away never cancels the app: its writes are dropped and it runs to completion.

Failures: an app that raises (or returns) before its response head was written gets a ``500``
and the connection closes; after the head it is aborted. Malformed requests get the status h11
suggests (``400``, or ``431`` for an oversized head) and the connection closes. HTTP/1.1 only;
no TLS, no HTTP/2, no lifespan events.

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve_asgi, app, port=0))   # ["http://127.0.0.1:..."]
"""

from __future__ import annotations

import logging
import math
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final, final
from urllib.parse import unquote

import h11
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Message = MutableMapping[str, Any]
    ASGIApp = Callable[
        [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
        Awaitable[None],
    ]

__all__ = ["LISTEN_BACKLOG", "serve_asgi"]

#: Pending connections the listening socket queues (the official SDK opens one connection per
#: concurrent request, so a burst of samples connects by the thousand; the kernel caps this at
#: net.core.somaxconn). A small backlog drops SYNs and the client retransmits after 1 s, 3 s...
LISTEN_BACKLOG: Final = 4096

logger = logging.getLogger("tinker_actors.local.http")

_READ_SIZE: Final = 65536
#: An unread request body up to this size is read and discarded to keep the connection.
_MAX_DRAIN: Final = 1 << 20
#: Pipelined bytes read while an app waits for a disconnect before the reader stops.
_MAX_PIPELINED: Final = 1 << 16
#: Head and body are joined into one write up to this size (above it the copy costs more).
_COALESCE: Final = 1 << 18
#: After an error response, how long and how much input to discard before closing, so the
#: client reads the response rather than a reset caused by its unread request bytes.
_LINGER_SECONDS: Final = 1.0
_LINGER_BYTES: Final = 1 << 20

_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_DISCONNECT: Final = {"type": "http.disconnect"}
_REASONS: Final = {int(s): s.phrase.encode() for s in HTTPStatus}
_FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})
_ERROR_BODY: Final = b'{"detail": "internal server error"}'
_END: Final = h11.EndOfMessage()  # h11 events are immutable: one instance serves every request
_CONTINUE: Final = h11.InformationalResponse(status_code=100, headers=[])


async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    backlog: int = LISTEN_BACKLOG,
    keep_alive_timeout: float = 75.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; report the bound URLs when listening.

    Args:
        app: an ASGI 3 application (only ``http`` scopes are sent).
        host: the address to bind (``127.0.0.1`` by default).
        port: the port to bind; ``0`` picks a free one (the reported URL says which).
        backlog: pending connections the kernel queues per listener.
        keep_alive_timeout: seconds an idle connection waits for its next request.

    Raises:
        ValueError: ``keep_alive_timeout`` or ``backlog`` is not positive.
        OSError: the address cannot be bound.
    """
    if not keep_alive_timeout > 0:
        raise ValueError(f"keep_alive_timeout must be > 0 seconds, got {keep_alive_timeout!r}")
    if backlog < 1:
        raise ValueError(f"backlog must be >= 1, got {backlog!r}")
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    urls = [_url(listener.socket.getsockname()) for listener in listeners]

    async def handle(stream: trio.SocketStream) -> None:
        try:
            await _Connection(app, stream, keep_alive_timeout).run()
        except Exception:  # a bug here must end this connection only, never the server
            logger.exception("HTTP connection handler failed")
        finally:
            await stream.aclose()  # closes the socket even when cancelled

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(urls)


def _url(sockname: tuple[Any, ...]) -> str:
    host = str(sockname[0])
    return f"http://[{host}]:{sockname[1]}" if ":" in host else f"http://{host}:{sockname[1]}"


def _address(name: Callable[[], Any]) -> tuple[str, int] | None:
    """``(host, port)`` from ``getpeername``/``getsockname``; None when unknown."""
    try:
        address = name()
    except OSError:  # e.g. the peer reset the connection before we looked
        return None
    return (str(address[0]), int(address[1])) if isinstance(address, tuple) else None


@final
class _Connection:
    """One client connection: read a request, run the app, settle, repeat."""

    def __init__(self, app: ASGIApp, stream: trio.SocketStream, keep_alive_timeout: float) -> None:
        self.app = app
        self.stream = stream
        self.timeout = keep_alive_timeout
        self.h11 = h11.Connection(h11.SERVER)
        self.client = _address(stream.socket.getpeername)
        self.server = _address(stream.socket.getsockname)
        self.broken = False  # a write failed: the client is gone, later writes are dropped
        self.linger = False  # an error response went out: discard input briefly before closing
        self.idle = trio.CancelScope()  # the idle timer; replaced in run()
        self._reset(b"GET")

    def _reset(self, method: bytes) -> None:
        """Clear the per-request state."""
        self.head = method == b"HEAD"
        self.body_done = False  # the request body's end was read
        self.disconnected = False  # receive() saw the client go (or the request break)
        self.started = False  # http.response.start received
        self.written = False  # the response head went out
        self.complete = False  # the last body message went out
        self.continue_pending = False  # the client waits for 100 Continue, not yet sent
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.reading = False  # a receive() is reading the socket for a disconnect
        self.reader: trio.CancelScope | None = None
        self.gone: trio.Event | None = None  # set on disconnect or completion, made on demand
        self.pipelined = 0

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
                self.h11.start_next_cycle()
        if self.linger:
            await self._linger()

    async def _recv(self) -> bytes:
        try:
            return await self.stream.receive_some(_READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _write(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.broken = True

    async def _next_request(self) -> h11.Request | None:
        """Read the next request head, or None when the connection should close."""
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._error_response(exc.error_status_hint, b"")
                return None
            if event is h11.NEED_DATA:
                conn.receive_data(await self._recv())
                continue
            return event if isinstance(event, h11.Request) else None

    def _scope(self, request: h11.Request) -> Message:
        raw_path, _, query = request.target.partition(b"?")
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = unquote(path)
        return {
            "type": "http",
            "asgi": _ASGI,
            "http_version": request.http_version.decode("ascii"),
            "method": request.method.decode("ascii"),
            "scheme": "http",
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
            "client": self.client,
            "server": self.server,
        }

    async def _respond(self, request: h11.Request) -> bool:
        """Run the app for one request; True when the connection can take the next one."""
        self._reset(request.method)
        self.continue_pending = self.h11.they_are_waiting_for_100_continue
        scope = self._scope(request)
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:
            logger.exception("ASGI app failed on %s %s", scope["method"], scope["path"])
            if not self.written:
                await self._error_response(500, _ERROR_BODY)
                return False
            if not self.complete:
                return False  # abort: the client sees a truncated response
        else:
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
        conn = self.h11
        if self.broken or conn.our_state is not h11.DONE:
            return False
        if conn.their_state is h11.SEND_BODY:
            if self.continue_pending:
                return False  # never asked for its body: the client may or may not send it
            drained = 0
            self.idle.deadline = trio.current_time() + self.timeout
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    return False
                if event is h11.NEED_DATA:
                    conn.receive_data(await self._recv())
                elif isinstance(event, h11.Data):
                    drained += len(event.data)
                    if drained > _MAX_DRAIN:
                        self.linger = True
                        return False
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:
                    return False
        return conn.their_state is h11.DONE

    async def _error_response(self, status: int, body: bytes) -> None:
        """Send a final error response with ``Connection: close`` when the state allows one."""
        conn = self.h11
        if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        headers = [(b"content-length", b"%d" % len(body)), (b"connection", b"close")]
        if body:
            headers.insert(0, (b"content-type", b"application/json"))
        try:
            data = conn.send(h11.Response(status_code=status, headers=headers))
            if body and not self.head:
                data += conn.send(h11.Data(data=body))
            data += conn.send(_END)
        except h11.LocalProtocolError:
            return
        self.written = True
        self.linger = True
        await self._write(data)

    async def _linger(self) -> None:
        """Half-close, then discard input for a moment so the peer can read our answer."""
        with trio.move_on_after(_LINGER_SECONDS):
            try:
                await self.stream.send_eof()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            discarded = 0
            while discarded < _LINGER_BYTES:
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
        if not self.body_done:
            return await self._receive_body()
        await self._wait_gone()
        return _DISCONNECT

    async def _receive_body(self) -> Message:
        conn = self.h11
        if self.continue_pending:
            self.continue_pending = False
            await self._write(conn.send(_CONTINUE))
        chunks: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:  # a broken body or EOF mid-body: the request is lost
                if chunks:
                    break  # hand over what arrived; the next call reports the disconnect
                self.disconnected = True
                return _DISCONNECT
            if event is h11.NEED_DATA:
                if chunks:
                    break
                conn.receive_data(await self._recv())
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self.body_done = True
                return {
                    "type": "http.request",
                    "body": chunks[0] if len(chunks) == 1 else b"".join(chunks),
                    "more_body": False,
                }
            else:  # h11 yields nothing else between a request and its end
                raise RuntimeError(f"unexpected h11 event in a request body: {event!r}")
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return {"type": "http.request", "body": body, "more_body": True}

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
                    # bytes after a complete request belong to the next one (pipelining): h11
                    # keeps them until start_next_cycle; b"" records the EOF for later too
                    self.h11.receive_data(data)
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
        kind = message["type"]
        if kind == "http.response.body":
            if not self.started or self.complete:
                raise RuntimeError("http.response.body outside an open response")
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            conn = self.h11
            data = b""
            if not self.written:
                headers = self.headers
                if not more and not any(name.lower() in _FRAMING for name, _ in headers):
                    headers.append((b"content-length", b"%d" % len(body)))
                data = conn.send(
                    h11.Response(
                        status_code=self.status,
                        headers=headers,
                        reason=_REASONS.get(self.status, b""),
                    )
                )
                self.written = True
            if body and not self.head:
                framed = conn.send_with_data_passthrough(h11.Data(data=body))
                if framed is not None:
                    if len(data) + len(body) > _COALESCE:
                        await self._write(data)
                        data = b""
                    data += b"".join(framed)
            if not more:
                data += conn.send(_END)
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
