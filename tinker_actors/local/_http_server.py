"""Serve an ASGI 3 app over HTTP/1.1 on trio sockets, with our own framing.

The local server's hot path is many small JSON requests over keep-alive connections. A general
server spends most of its time per request in its protocol layer (a task per request, stream
and event objects, wrappers per send); this one keeps the work proportional to the bytes:

* one task per connection, never one per request: the app runs inline in the connection task
  (:mod:`._http_connection` says what the app sees, and how bodies are limited and refused),
  so requests on a connection are answered one after another (pipelined ones in order);
* the response head waits for the first body message, so a complete small response leaves in
  one ``send_all`` (and gets a ``Content-Length`` when the app gave none);
* reads are ``receive_some(65536)`` (256 KiB while a large body arrives) into one buffer per
  connection, framed by :mod:`._http1_server` (plain functions that accept and refuse what h11
  did; h11's state machine cost about 90 µs per request with the SDKs' 20 headers).

At most ``max_connections`` connections are served at once (fewer when the open-file limit is
lower); one more is answered ``429`` with ``Retry-After: 1`` before its request is read, and
closed, so a flood of connections costs the server neither file descriptors nor tasks.
HTTP/1.1 only; no TLS, no HTTP/2, no lifespan events.

    async with trio.open_nursery() as nursery:
        urls = await nursery.start(partial(serve_asgi, app, port=0))   # ["http://127.0.0.1:..."]
"""

from __future__ import annotations

import resource
from typing import TYPE_CHECKING, Any, Final

import msgspec
import trio

from tinker_actors.local._http_connection import (
    LINGER_BYTES,
    LINGER_SECONDS,
    READ_SIZE,
    Connection,
    ConnectionLimits,
    logger,
    peer_name,
)
from tinker_actors.local._limits import MIB, limit_message

if TYPE_CHECKING:
    from tinker_actors.local._http_connection import ASGIApp

__all__ = ["LISTEN_BACKLOG", "connection_cap", "serve_asgi"]

#: Pending connections the listening socket queues (the official SDK opens one connection per
#: concurrent request, so a burst of samples connects by the thousand; the kernel caps this at
#: net.core.somaxconn). A small backlog drops SYNs and the client retransmits after 1 s, 3 s...
LISTEN_BACKLOG: Final = 4096

#: File descriptors kept free of client connections (listeners, data-dir files, threads).
_FD_RESERVE: Final = 64
#: Connections over the cap that may be in the middle of being refused at once; beyond it
#: they are closed without an answer, so a flood cannot pile up refusal tasks either.
_MAX_REFUSING: Final = 256


async def serve_asgi(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    backlog: int = LISTEN_BACKLOG,
    keep_alive_timeout: float = 75.0,
    max_connections: int = 4096,
    max_body_bytes: int = 64 * MIB,
    body_timeout: float = 60.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until cancelled; report the bound URLs when listening.

    Args:
        app: an ASGI 3 application (only ``http`` scopes are sent).
        host: the address to bind (``127.0.0.1`` by default).
        port: the port to bind; ``0`` picks a free one (the reported URL says which).
        backlog: pending connections the kernel queues per listener.
        keep_alive_timeout: seconds an idle connection waits for its next request.
        max_connections: connections served at once (capped below the open-file limit); one
            more is answered 429 and closed.
        max_body_bytes: the largest request body; a larger one is answered 413.
        body_timeout: seconds a request body may take to arrive; a slower one is answered 408.

    Raises:
        ValueError: a limit, ``keep_alive_timeout`` or ``backlog`` is not positive.
        OSError: the address cannot be bound.
    """
    for name, value in (
        ("keep_alive_timeout", keep_alive_timeout),
        ("body_timeout", body_timeout),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    for name, count in (
        ("backlog", backlog),
        ("max_connections", max_connections),
        ("max_body_bytes", max_body_bytes),
    ):
        if count < 1:
            raise ValueError(f"{name} must be >= 1, got {count!r}")
    listeners = await trio.open_tcp_listeners(port, host=host, backlog=backlog)
    urls = [_url(listener.socket.getsockname()) for listener in listeners]
    limits = ConnectionLimits(
        keep_alive=keep_alive_timeout, max_body=max_body_bytes, body_timeout=body_timeout
    )
    cap = connection_cap(max_connections)
    busy = refusing = 0

    async def handle(stream: trio.SocketStream) -> None:
        nonlocal busy, refusing
        try:
            if busy < cap:
                busy += 1
                try:
                    await Connection(app, stream, limits).run()
                finally:
                    busy -= 1
            elif refusing < _MAX_REFUSING:
                refusing += 1
                try:
                    await _refuse_connection(stream, cap, max_connections)
                finally:
                    refusing -= 1
        except Exception:  # a bug here must end this connection only, never the server
            logger.exception("HTTP connection handler failed")
        finally:
            await stream.aclose()  # closes the socket even when cancelled

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handle, listeners)
        task_status.started(urls)


def connection_cap(requested: int) -> int:
    """``requested``, lowered so that connections never exhaust the open-file limit."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return requested
    if soft == resource.RLIM_INFINITY:
        return requested
    return max(1, min(requested, soft - _FD_RESERVE))


async def _refuse_connection(stream: trio.SocketStream, cap: int, requested: int) -> None:
    """Answer a connection over the cap with 429 + ``Retry-After`` without reading its request.

    429, not 503: like every refusal for a limit it is a 4xx, and clients back off and retry it.

    HTTP lets a server answer before it has read the request; the half-close and the brief
    drain that follow let the client read the answer rather than a reset.
    """
    what = f"a connection beyond {cap} open ones"
    detail = limit_message(what, "max_connections", cap)
    if cap < requested:
        detail += f"; the open-file limit lowered it from {requested}"
    body = msgspec.json.encode({"detail": detail})
    head = (
        b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n"
        b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    logger.info("refused a connection from %s: %d connections open", peer_name(stream), cap)
    with trio.move_on_after(LINGER_SECONDS):
        try:
            await stream.send_all(head + body)
            await stream.send_eof()
            discarded = 0
            while discarded < LINGER_BYTES:
                data = await stream.receive_some(READ_SIZE)
                if not data:
                    return
                discarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return


def _url(sockname: tuple[Any, ...]) -> str:
    host = str(sockname[0])
    return f"http://[{host}]:{sockname[1]}" if ":" in host else f"http://{host}:{sockname[1]}"
