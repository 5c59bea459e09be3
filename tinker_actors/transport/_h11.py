"""An experimental lean HTTP/1.1 transport for httpx: h11 driven directly over trio streams.

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
* ``h11`` for the wire format; a connection goes back to the pool only when both sides
  finished the exchange cleanly and the server did not ask to close; any protocol error,
  cancellation or early close of the body drops it;
* response bodies stream: the :class:`httpx.Response` holds an :class:`httpx.AsyncByteStream`
  that reads from the socket as it is iterated and returns the connection when the body has
  been read to its end, or drops it when closed early;
* a caller that wants the whole body (:func:`read_whole`) gets a ``Content-Length`` body read
  straight from the stream in big pieces and joined once: through h11 and httpx, every 64 KiB
  piece was copied into h11's buffer, out of it as an event, and once more by httpx's join,
  with both libraries' per-piece machinery around it (a forward_backward result is megabytes;
  a poll's answer is small, but paid that machinery on every request);
* timeouts come from ``request.extensions["timeout"]`` (``connect``/``read``/``write``/
  ``pool``) as trio cancel scopes, and every failure is raised as the matching httpx exception
  with the request attached, so retry policies written against httpx keep working.

No HTTP/2, no proxies, no ``Expect: 100-continue``.
"""

from __future__ import annotations

import collections
import select
import ssl
from typing import TYPE_CHECKING, Final, final

import h11
import httpx
import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

__all__ = ["TrioH11Transport", "read_whole"]

#: Bytes asked of the socket per receive.
READ_CHUNK: Final = 65536
#: Request body bytes gathered before a write (small bodies go out with the head in one write).
WRITE_BUFFER: Final = 65536
#: Most bytes asked of the stream per receive when reading a body whole.
WHOLE_CHUNK: Final = 262144

_Origin = tuple[bytes, bytes, int]


def _timeout(timeouts: Mapping[str, float | None], key: str) -> float | None:
    value = timeouts.get(key)
    return None if value is None else float(value)


#: Request header pairs, methods and targets that passed h11's checks (bounded).
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_LIMIT: Final = 4096
#: Headers whose value changes with every request: checked each time, never remembered.
_VOLATILE: Final = frozenset({b"idempotency-key", b"content-length"})

try:  # h11's own patterns (private names; without them every request takes h11's full path)
    from h11._events import method_re as _METHOD_RE
    from h11._events import request_target_re as _TARGET_RE
    from h11._headers import _field_name_re as _NAME_RE
    from h11._headers import _field_value_re as _VALUE_RE
except ImportError:  # pragma: no cover - another h11 version
    _FAST_CHECKS = False
else:
    _FAST_CHECKS = True


def _h11_request(request: httpx.Request) -> h11.Request:
    """Build the h11 request event, with h11's checks done once per distinct header pair.

    ``h11.Request`` matches every header name and value, the method and the target against its
    regular expressions (the guard against CR/LF injection): about a fifth of a small request's
    client CPU. Most of our headers repeat from request to request, so a pair that passed once
    is remembered; a new pair is matched against the same patterns here, and then h11 is told
    the event is pre-checked (``_parsed=True``: it still lowercases names and checks
    Content-Length and Host). Anything that fails goes through h11's full path, which raises
    its usual error.
    """
    method = request.method.encode("ascii")
    target = request.url.raw_path
    headers = request.headers.raw
    checked = _CHECKED
    if _FAST_CHECKS:
        ok = (method, target) in checked or (
            _METHOD_RE.fullmatch(method) is not None and _TARGET_RE.fullmatch(target) is not None
        )
        fresh: list[tuple[bytes, bytes]] = []
        if ok:
            for pair in headers:
                if pair in checked:
                    continue
                name, value = pair
                if _NAME_RE.fullmatch(name) is None or _VALUE_RE.fullmatch(value) is None:
                    ok = False
                    break
                if name.lower() not in _VOLATILE:
                    fresh.append(pair)
        if ok:
            if len(checked) < _CHECKED_LIMIT:
                checked.add((method, target))
                checked.update(fresh)
            return h11.Request(method=method, target=target, headers=headers, _parsed=True)
    return h11.Request(method=method, target=target, headers=headers)


@final
class _Connection:
    """One TCP (or TLS) stream and its h11 state machine."""

    __slots__ = ("expires", "h11", "socket", "stream")

    def __init__(self, stream: trio.abc.Stream, socket: trio.socket.SocketType) -> None:
        self.stream = stream
        self.socket = socket
        self.h11 = h11.Connection(h11.CLIENT)
        self.expires = 0.0

    def close(self) -> None:
        """Close the socket at once (no checkpoint; a task blocked on it is woken)."""
        self.socket.close()

    def looks_alive(self) -> bool:
        """Say whether an idle connection can be reused: open, and nothing unread on it.

        An idle HTTP/1.1 connection that is readable holds either EOF (the server closed it)
        or bytes nobody asked for; neither is safe to send a request on.
        """
        if self.socket.fileno() < 0:
            return False
        readable, _, _ = select.select([self.socket], [], [], 0)
        return not readable

    async def send(self, request: httpx.Request, within: float | None) -> None:
        """Send the request head and body, with ``timeout`` on each write.

        Small pieces are gathered into one write; a piece of at least ``WRITE_BUFFER`` bytes
        (a forward_backward body is megabytes) goes to the socket as it is, never copied into
        a joined buffer.
        """
        conn = self.h11
        try:
            head = conn.send(_h11_request(request))
            parts: list[bytes] = [head]
            size = len(head)
            async for chunk in request.stream:  # type: ignore[union-attr]
                if not chunk:
                    continue
                for piece in conn.send_with_data_passthrough(h11.Data(data=chunk)) or ():
                    if len(piece) >= WRITE_BUFFER:
                        await self._write(b"".join(parts), within, request)
                        await self._write(piece, within, request)
                        parts.clear()
                        size = 0
                        continue
                    parts.append(piece)
                    size += len(piece)
                    if size >= WRITE_BUFFER:
                        await self._write(b"".join(parts), within, request)
                        parts.clear()
                        size = 0
            parts.append(conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        await self._write(b"".join(parts), within, request)

    async def _write(self, data: bytes, within: float | None, request: httpx.Request) -> None:
        if not data:
            return
        try:
            if within is None:
                await self.stream.send_all(data)
                return
            with trio.move_on_after(within) as scope:
                await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(_describe(exc), request=request) from exc
        if scope.cancelled_caught:
            raise httpx.WriteTimeout("timed out writing the request", request=request)

    async def next_event(self, within: float | None, request: httpx.Request) -> h11.Event:
        """Return the next h11 event from the server, reading the socket as needed."""
        conn = self.h11
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            conn.receive_data(await self.receive(READ_CHUNK, within, request))

    async def receive(self, most: int, within: float | None, request: httpx.Request) -> bytes:
        """Return the next bytes from the server (``b""`` at its end of stream)."""
        try:
            if within is None:
                return await self.stream.receive_some(most)  # type: ignore[return-value]
            with trio.move_on_after(within):
                return await self.stream.receive_some(most)  # type: ignore[return-value]
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(_describe(exc), request=request) from exc
        raise httpx.ReadTimeout("timed out reading the response", request=request)

    async def receive_head(self, within: float | None, request: httpx.Request) -> h11.Response:
        """Wait for the final response head (informational 1xx heads are skipped)."""
        while True:
            event = await self.next_event(within, request)
            if type(event) is h11.Response:
                return event
            if type(event) is h11.ConnectionClosed:
                raise httpx.RemoteProtocolError(
                    "server disconnected without sending a response", request=request
                )
            if type(event) is not h11.InformationalResponse:
                raise httpx.RemoteProtocolError(
                    f"unexpected {type(event).__name__} before the response", request=request
                )


def _whole_length(request: httpx.Request, head: h11.Response, state: h11.Connection) -> int | None:
    """The body's length if it may be read whole past h11, else None.

    That is a final answer to a request other than HEAD, framed by one ``Content-Length``
    with no ``Transfer-Encoding`` and no ``Content-Encoding`` (httpx decodes those), on a
    connection both sides keep alive: the request went out whole and asked for no close (h11
    says ``DONE``, not ``MUST_CLOSE``), and the answer is HTTP/1.1 without ``Connection:
    close``. h11 has checked the head's framing headers already (one length, digits only).
    Small bodies gain as much as large ones: one usually arrives with its head, and is then
    taken as it is instead of as two h11 events and httpx's iteration of them.
    """
    if (
        state.our_state is not h11.DONE
        or state.their_state is not h11.SEND_BODY
        or head.http_version != b"1.1"
        or head.status_code in (204, 304)
        or request.method == "HEAD"
    ):
        return None
    length: int | None = None
    for name, value in head.headers:
        if name == b"content-length":
            length = int(value)
        elif name in (b"transfer-encoding", b"content-encoding") or (
            name == b"connection" and b"close" in value.lower()
        ):
            return None
    return length


async def read_whole(response: httpx.Response) -> bytes | None:
    """Read ``response``'s body whole if it came from this transport and is eligible (see
    :func:`_whole_length`); None, with nothing read, otherwise."""
    stream = response.stream
    if type(stream) is not _ResponseStream:
        return None
    return await stream.read_whole()


def _describe(exc: BaseException) -> str:
    return str(exc) or repr(exc.__cause__ or exc)


@final
class _Waiter:
    __slots__ = ("connection", "event", "granted")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.granted = False
        self.connection: _Connection | None = None


@final
class _OriginPool:
    """Connections to one origin: at most ``limit`` open, idle ones LIFO, waiters FIFO.

    Invariant: ``open`` counts live connections plus granted rights to open one; a grant
    (with or without a connection) is never lost: it goes back through :meth:`release`.
    """

    __slots__ = ("expiry", "idle", "limit", "max_idle", "open", "opened", "waiters")

    def __init__(self, limit: int, max_idle: int, expiry: float) -> None:
        self.limit = limit
        self.max_idle = max_idle
        self.expiry = expiry
        self.idle: list[_Connection] = []
        self.waiters: collections.deque[_Waiter] = collections.deque()
        self.open = 0
        self.opened = 0

    async def acquire(self, within: float | None, request: httpx.Request) -> _Connection | None:
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

    def release(self, conn: _Connection | None, *, reusable: bool) -> None:
        """Give back a grant: a reusable connection, or a dropped one (or an unused grant)."""
        if conn is not None and not reusable:
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

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self.open -= 1

    @staticmethod
    def _drop_keep_grant(conn: _Connection) -> None:
        conn.close()

    def close(self) -> None:
        idle, self.idle = self.idle, []
        for conn in idle:
            self._drop(conn)


@final
class _ResponseStream(httpx.AsyncByteStream):
    """A response body read from the connection as it is iterated."""

    __slots__ = ("_conn", "_length", "_pool", "_request", "_timeout", "_transport")

    def __init__(
        self,
        pool: _OriginPool,
        conn: _Connection,
        request: httpx.Request,
        within: float | None,
        transport: TrioH11Transport,
        length: int | None,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._request = request
        self._timeout = within
        self._transport = transport
        #: the body's length when it may be read whole past h11 (see :func:`_whole_length`)
        self._length = length

    async def read_whole(self) -> bytes | None:
        """Read the whole body in one piece, or return None (nothing read) when it is not
        eligible: see :func:`_whole_length`.

        h11 is bypassed for the body: exactly ``Content-Length`` bytes are taken from what h11
        holds past the head and from the stream, and the connection then gets a fresh h11
        state, which is what h11's own next cycle would be, since the request ended cleanly
        and both sides keep the connection alive (checked when the head arrived).
        """
        conn, length = self._conn, self._length
        if conn is None or length is None:
            return None
        try:
            held, _ = conn.h11.trailing_data
            pieces = [held] if held else []
            have = len(held)
            while have < length:
                piece = await conn.receive(min(length - have, WHOLE_CHUNK), self._timeout,
                                           self._request)  # fmt: skip
                if not piece:
                    raise httpx.RemoteProtocolError(
                        "server disconnected in the middle of the response body",
                        request=self._request,
                    )
                pieces.append(piece)
                have += len(piece)
        except BaseException:
            self._finish(reusable=False)
            raise
        # bytes past the body (held with the head) are something nobody asked for
        extra = have > length
        conn.h11 = h11.Connection(h11.CLIENT)
        self._conn = None
        self._pool.release(conn, reusable=not extra and not self._transport.closed)
        body = b"".join(pieces)  # one piece: that piece itself, not a copy
        return body[:length] if extra else body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        try:
            while True:
                event = await conn.next_event(self._timeout, self._request)
                kind = type(event)
                if kind is h11.Data:
                    yield event.data  # type: ignore[attr-defined]
                elif kind is h11.EndOfMessage:
                    break
                else:
                    raise httpx.RemoteProtocolError(
                        "server disconnected in the middle of the response body",
                        request=self._request,
                    )
        except BaseException:
            self._finish(reusable=False)
            raise
        self._finish(reusable=True)

    def _finish(self, *, reusable: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if reusable:
            state = conn.h11
            reusable = (
                state.our_state is h11.DONE
                and state.their_state is h11.DONE
                and not self._transport.closed
            )
            if reusable:
                state.start_next_cycle()
        self._pool.release(conn, reusable=reusable)

    async def aclose(self) -> None:
        """Drop the connection unless the body was read to its end."""
        self._finish(reusable=False)


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
            await conn.send(request, _timeout(timeouts, "write"))
            read_timeout = _timeout(timeouts, "read")
            head = await conn.receive_head(read_timeout, request)
        except BaseException:
            pool.release(conn, reusable=False)
            raise
        return httpx.Response(
            status_code=head.status_code,
            headers=head.headers.raw_items(),
            stream=_ResponseStream(
                pool, conn, request, read_timeout, self, _whole_length(request, head, conn.h11)
            ),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def _connect(
        self, origin: _Origin, within: float | None, request: httpx.Request
    ) -> _Connection:
        scheme, host, port = origin
        hostname = host.decode("ascii")
        tcp: trio.SocketStream | None = None
        try:
            with trio.move_on_after(float("inf") if within is None else within) as scope:
                tcp = await trio.open_tcp_stream(hostname, port)
                if scheme == b"https":
                    tls = trio.SSLStream(
                        tcp, self._context(), server_hostname=hostname, https_compatible=True
                    )
                    await tls.do_handshake()
                    return _Connection(tls, tcp.socket)
                return _Connection(tcp, tcp.socket)
        except (OSError, trio.BrokenResourceError, ssl.SSLError) as exc:
            if tcp is not None:
                tcp.socket.close()
            raise httpx.ConnectError(_describe(exc), request=request) from exc
        except BaseException:
            if tcp is not None:
                tcp.socket.close()
            raise
        assert scope.cancelled_caught
        if tcp is not None:
            tcp.socket.close()
        raise httpx.ConnectTimeout(f"timed out connecting to {hostname}:{port}", request=request)

    async def aclose(self) -> None:
        """Close idle connections; connections in use are closed when their responses end.

        Safe to call more than once (every httpx client sharing this transport calls it).
        """
        self.closed = True
        for pool in self._pools.values():
            pool.close()
