"""A lean HTTP/1.1 transport for httpx over trio streams (the SDK's default backend, "h11").

httpx's default transport goes through httpcore, whose pool re-scans every connection and
every queued request whenever a request starts or ends and wraps each exchange in several
layers of async context managers and trace hooks. This transport keeps only what one
HTTP/1.1 exchange needs:

* one pool per origin ``(scheme, host, port)``: idle keep-alive connections in a LIFO list
  (the most recently used, hence warmest, connection is reused first; the oldest sit at the
  bottom, so expired ones are trimmed from there), a bound on open connections, and waiters
  queued first come first served in front of it. A returned connection (or, when it was
  dropped, the right to open a new one) is handed straight to the oldest waiter, so no request
  ever rescans anything and none can overtake a waiter;
* the wire format is :mod:`._http1`'s (it was ``h11``'s state machine, whence the backend's
  name; see that module for why), one exchange per connection at a time
  (:mod:`._connection`); a connection goes back to the pool only when the body ended where
  its framing said, both sides keep it alive and nothing unasked-for was read; any protocol
  error, cancellation or early close of the body drops it;
* response bodies stream: the :class:`httpx.Response` holds an :class:`httpx.AsyncByteStream`
  that reads from the socket as it is iterated and returns the connection when the body has
  been read to its end, or drops it when closed early;
* a caller that wants the whole body (:func:`read_whole`) gets a ``Content-Length`` body in
  one piece: taken as it is when it came with its head, else read in big pieces and joined
  once, without httpx's per-piece iteration (about 10 µs even for a one-piece body);
* timeouts come from ``request.extensions["timeout"]`` (``connect``/``read``/``write``/
  ``pool``) as trio cancel scopes, and every failure is raised as the matching httpx exception
  with the request attached, so retry policies written against httpx keep working.

No HTTP/2, no proxies, no ``Expect: 100-continue``.
"""

from __future__ import annotations

import collections
import ssl
from typing import TYPE_CHECKING, final

import httpx
import trio

from tinker_actors.transport import _http1, _prebuilt, _socket
from tinker_actors.transport._connection import Connection, ResponseStream, describe

if TYPE_CHECKING:
    import socket as stdsocket
    from collections.abc import Mapping

__all__ = ["TrioH11Transport", "read_whole"]

_Origin = tuple[bytes, bytes, int]


def _forget(tcp: trio.SocketStream | None, sock: stdsocket.socket | None) -> None:
    """Close a connection that failed to open, whoever holds its socket by now."""
    if sock is not None:
        _socket.close(sock)
    elif tcp is not None:
        tcp.socket.close()


def _timeout(timeouts: Mapping[str, float | None], key: str) -> float | None:
    value = timeouts.get(key)
    return None if value is None else float(value)


async def read_whole(response: httpx.Response) -> bytes | None:
    """Read ``response``'s body whole if it came from this transport and is framed by a length
    with no content coding (:meth:`ResponseStream.read_whole`); None, nothing read, otherwise."""
    stream = response.stream
    if type(stream) is not ResponseStream:
        return None
    return await stream.read_whole()


@final
class _Waiter:
    __slots__ = ("connection", "event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False
        self.connection: Connection | None = None


@final
class _OriginPool:
    """Connections to one origin: at most ``limit`` open, idle ones LIFO, waiters FIFO.

    Invariant: ``open`` counts live connections plus granted rights to open one; a grant
    (with or without a connection) is never lost: it goes back through :meth:`release`.
    """

    __slots__ = ("closed", "expiry", "idle", "limit", "max_idle", "open", "opened", "waiters")

    def __init__(self, limit: int, max_idle: int, expiry: float) -> None:
        self.closed = False  # the transport closed: connections that come back are dropped
        self.limit = limit
        self.max_idle = max_idle
        self.expiry = expiry
        self.idle: list[Connection] = []
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.open = 0
        self.opened = 0

    async def acquire(self, within: float | None, request: httpx.Request) -> Connection | None:
        """Return an idle connection, or None as the right to open a new one."""
        if not self.waiters:
            idle = self.idle
            if idle:
                now = trio.current_time()
                # the oldest idle connections are at the bottom: trim the expired ones there
                while idle and idle[0].expires <= now:
                    self._drop(idle.pop(0))
                while idle:
                    conn = idle.pop()
                    if conn.looks_alive():
                        return conn
                    self._drop(conn)
            if self.open < self.limit:
                self.open += 1
                return None
        waiter = _Waiter()
        self.waiters.append(waiter)
        try:
            if within is None:
                await waiter.event.wait()
            else:
                with trio.move_on_after(within):
                    await waiter.event.wait()
        except BaseException:
            self._abandon(waiter)
            raise
        if not waiter.granted:
            self._abandon(waiter)
            raise httpx.PoolTimeout("timed out waiting for a connection", request=request)
        handed = waiter.connection
        if handed is not None and not handed.looks_alive():
            self._drop_keep_grant(handed)
            return None
        return handed

    def _abandon(self, waiter: _Waiter) -> None:
        if waiter.granted:  # handed a grant as we gave up: pass it on
            self.release(waiter.connection, reusable=waiter.connection is not None)
        else:
            self.waiters.remove(waiter)

    def release(self, conn: Connection | None, *, reusable: bool) -> None:
        """Give back a grant: a reusable connection, or a dropped one (or an unused grant)."""
        if conn is not None and (not reusable or self.closed):
            self._drop_keep_grant(conn)
            conn = None
        if self.waiters:
            waiter = self.waiters.popleft()
            waiter.granted = True
            waiter.connection = conn  # the grant changes hands; ``open`` is unchanged
            waiter.event.set()
            return
        if conn is None:
            self.open -= 1
        elif len(self.idle) >= self.max_idle:
            self._drop(conn)
        else:
            conn.expires = trio.current_time() + self.expiry
            self.idle.append(conn)

    def _drop(self, conn: Connection) -> None:
        conn.close()
        self.open -= 1

    @staticmethod
    def _drop_keep_grant(conn: Connection) -> None:
        conn.close()

    def close(self) -> None:
        self.closed = True
        idle, self.idle = self.idle, []
        for conn in idle:
            self._drop(conn)


@final
class TrioH11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 over trio TCP (and TLS) streams with a lean per-origin connection pool.

    Args:
        max_connections: most connections open at once to one origin; further requests wait
            in arrival order (bounded by the request's ``pool`` timeout).
        max_keepalive_connections: most idle connections kept per origin.
        keepalive_expiry: seconds an idle connection may be reused.
        ssl_context: for ``https``; when omitted, httpx's default context (certifi's roots,
            or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set; certificate and host name
            checks on) offering only ``http/1.1`` by ALPN.

    Raises:
        ValueError: a limit below 1 or a negative expiry.
    """

    def __init__(
        self,
        *,
        max_connections: int = 100,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float = 5.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        max_idle = (
            max_connections if max_keepalive_connections is None else max_keepalive_connections
        )
        if max_idle < 0:
            raise ValueError(f"max_keepalive_connections must be >= 0, got {max_idle}")
        if keepalive_expiry < 0:
            raise ValueError(f"keepalive_expiry must be >= 0, got {keepalive_expiry}")
        self._limit = max_connections
        self._max_idle = max_idle
        self._expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._pools: dict[_Origin, _OriginPool] = {}
        self.closed = False

    @property
    def connections_opened(self) -> int:
        """Connections opened so far, over all origins."""
        return sum(pool.opened for pool in self._pools.values())

    @property
    def connections_open(self) -> int:
        """Connections open (or being opened) now, over all origins."""
        return sum(pool.open for pool in self._pools.values())

    @property
    def connections_idle(self) -> int:
        """Idle keep-alive connections now, over all origins."""
        return sum(len(pool.idle) for pool in self._pools.values())

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # the same trust as httpx's own transport, so switching backends trusts alike
            context = httpx.create_ssl_context()
            context.set_alpn_protocols(["http/1.1"])
            self._ssl_context = context
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` on a pooled connection; return the response with a live body."""
        if self.closed:
            raise RuntimeError("the TrioH11Transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(
                f"TrioH11Transport speaks http and https, not {scheme.decode(errors='replace')!r}",
                request=request,
            )
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool(self._limit, self._max_idle, self._expiry)
        timeouts: Mapping[str, float | None] = request.extensions.get("timeout", {})
        conn = await pool.acquire(_timeout(timeouts, "pool"), request)
        try:
            if conn is None:
                conn = await self._connect(origin, _timeout(timeouts, "connect"), request)
                pool.opened += 1
            closing = await conn.send(request, _timeout(timeouts, "write"))
            read_timeout = _timeout(timeouts, "read")
            head = await conn.receive_head(read_timeout, request)
            framing = _http1.response_framing(request.method.encode("ascii"), head)
        except _http1.RemoteProtocolError as exc:
            pool.release(conn, reusable=False)
            raise httpx.RemoteProtocolError(str(exc), request=request) from exc
        except BaseException:
            pool.release(conn, reusable=False)
            raise
        raw = head.headers
        return httpx.Response(
            status_code=head.status,
            headers=(
                _prebuilt.headers_from([(name, name.lower(), value) for name, value in raw])
                if _prebuilt.PREBUILT
                else raw
            ),
            stream=ResponseStream(pool, conn, request, read_timeout, framing, closing=closing),
            extensions={"http_version": b"HTTP/" + head.version, "reason_phrase": head.reason},
        )

    async def _connect(
        self, origin: _Origin, within: float | None, request: httpx.Request
    ) -> Connection:
        scheme, host, port = origin
        hostname = host.decode("ascii")
        tcp: trio.SocketStream | None = None
        sock: stdsocket.socket | None = None
        try:
            with trio.move_on_after(float("inf") if within is None else within) as scope:
                tcp = await trio.open_tcp_stream(hostname, port)
                sock = _socket.own(tcp)  # from here on the socket is ours (see _socket.py)
                if scheme == b"https":
                    tls = trio.SSLStream(
                        _socket.SocketStream(sock),
                        self._context(),
                        server_hostname=hostname,
                        https_compatible=True,
                    )
                    await tls.do_handshake()
                    return Connection(sock, tls)
                return Connection(sock)
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            _forget(tcp, sock)
            raise httpx.ConnectError(describe(exc), request=request) from exc
        except BaseException:
            _forget(tcp, sock)
            raise
        assert scope.cancelled_caught
        _forget(tcp, sock)
        raise httpx.ConnectTimeout(f"timed out connecting to {hostname}:{port}", request=request)

    async def aclose(self) -> None:
        """Close idle connections; connections in use are closed when their responses end.

        Safe to call more than once (every httpx client sharing this transport calls it).
        """
        self.closed = True
        for pool in self._pools.values():
            pool.close()
