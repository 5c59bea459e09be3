"""One HTTP/1.1 connection of the trio transport, and the response body read from it.

A :class:`Connection` carries one exchange at a time: :meth:`Connection.send` writes the request
(head and body, framed as its headers say), :meth:`Connection.receive_head` reads up to the
final response head, and the :class:`ResponseStream` then reads the body as the head frames
it, either piece by piece (httpx's iteration, streaming) or whole (:meth:`ResponseStream.
read_whole`, what the SDK's own reads use). Bytes read past what was parsed wait in the
connection's buffer; the connection goes back to its pool only if the body ended where its
framing said, both sides keep the connection alive, and nothing is left over.

Framing and parsing are :mod:`._http1`'s; every failure leaves here as the matching httpx
exception with the request attached.
"""

from __future__ import annotations

import math
import socket as stdsocket
from typing import TYPE_CHECKING, Final, Protocol, final

import httpx
import trio

from tinker_actors.transport import _http1
from tinker_actors.transport._http1 import CHUNKED, UNTIL_CLOSE, ChunkedBody, Framing, take
from tinker_actors.transport._socket import SEND_FLAGS, close

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["Connection", "ResponseStream"]

#: Bytes asked of the socket per receive.
READ_CHUNK: Final = 65536
#: Request body bytes gathered before a write (small bodies go out with the head in one write).
WRITE_BUFFER: Final = 65536
#: Most bytes asked of the stream per receive when reading a body whole.
WHOLE_CHUNK: Final = 262144


class Pool(Protocol):
    """Where a connection goes when its exchange is over."""

    def release(self, conn: Connection | None, *, reusable: bool) -> None: ...


def describe(exc: BaseException) -> str:
    return str(exc) or repr(exc.__cause__ or exc)


def _limit(within: float | None) -> trio.CancelScope:
    """A scope that gives up after ``within`` seconds (never, for None)."""
    return trio.move_on_after(math.inf if within is None else within)


async def _send_rest(sock: stdsocket.socket, rest: memoryview) -> None:
    """Send all of ``rest``, waiting for the socket to take more whenever it is full."""
    while rest:
        await trio.lowlevel.wait_writable(sock)
        try:
            sent = sock.send(rest, SEND_FLAGS)
        except BlockingIOError:
            continue
        rest = rest[sent:]


@final
class _Outgoing:
    """A request being written: the pieces gathered for the next write, and bytes framed."""

    __slots__ = ("length", "parts", "request", "sent", "size")

    def __init__(self, head: bytes, length: int | None, request: httpx.Request) -> None:
        self.parts: list[bytes | memoryview] = [head]
        self.size = len(head)
        self.sent = 0
        self.length = length
        self.request = request


@final
class Connection:
    """One TCP (or TLS) stream, and what was read from it but not yet parsed.

    A plain TCP connection is driven through its socket directly (``raw``): each send or
    receive is tried at once, and only one that would block waits for the socket in trio, with
    its timeout. trio's stream does the same per call but adds a schedule point after every
    successful operation and a cancel scope around each, about 10 µs per request that a
    request which waits for its answer anyway does not need (see :meth:`receive_head` for the
    one checkpoint every exchange still makes). A TLS connection goes through ``tls`` (trio's
    ``SSLStream`` over :class:`._socket.SocketStream` on the same socket).

    Args:
        socket: the connection's socket, owned from now on (see :func:`._socket.own`).
        tls: the TLS layer over it, or None for plain TCP.
    """

    __slots__ = ("buffer", "expires", "raw", "socket", "stream", "waits")

    def __init__(self, socket: stdsocket.socket, tls: trio.abc.Stream | None = None) -> None:
        self.socket = socket
        self.stream = tls
        #: the socket itself when there is no TLS layer
        self.raw = socket if tls is None else None
        self.buffer = bytearray()
        self.expires = 0.0
        #: times a raw operation waited for the socket (a wait is a checkpoint)
        self.waits = 0

    def close(self) -> None:
        """Close the socket at once (no checkpoint; a task blocked on it is woken)."""
        close(self.socket)

    def looks_alive(self) -> bool:
        """Say whether an idle connection can be reused: open, and nothing unread on it.

        An idle HTTP/1.1 connection that is readable holds either EOF (the server closed it)
        or bytes nobody asked for; neither is safe to send a request on. A one-byte peek at the
        non-blocking socket tells which (``select`` would refuse descriptors past 1,023, which a
        busy process reaches).
        """
        sock = self.socket
        if self.buffer or sock.fileno() < 0:
            return False
        try:
            sock.recv(1, stdsocket.MSG_PEEK)
        except BlockingIOError:
            return True  # nothing to read: open and idle
        except OSError:
            return False  # reset, or otherwise broken
        return False  # end of stream, or bytes nobody asked for

    async def send(self, request: httpx.Request, within: float | None) -> bool:
        """Send the request head and body, with ``within`` on each write; return whether the
        request asked to close the connection after it.

        Small pieces are gathered into one write; a piece of at least ``WRITE_BUFFER`` bytes
        (a forward_backward body is megabytes) goes to the socket as it is, never copied into
        a joined buffer.
        """
        if self.raw is not None:
            await trio.lowlevel.checkpoint_if_cancelled()
        prebuilt: tuple[bytes, int | None, bool] | None = request.extensions.get(
            _http1.PREBUILT_HEAD
        )
        if prebuilt is not None:
            head, length, close = prebuilt
        else:
            method = request.method.encode("ascii")
            target = request.url.raw_path
            headers = request.headers.raw
            try:
                _http1.check_request(method, target, headers)
                length, close = _http1.request_framing(headers)
            except _http1.LocalProtocolError as exc:
                raise httpx.LocalProtocolError(str(exc), request=request) from exc
            head = _http1.request_head(method, target, headers)
        out = _Outgoing(head, length, request)
        try:
            whole = request.content  # a read request (every SDK request): its body at hand
        except httpx.RequestNotRead:
            iterator = aiter(request.stream)  # type: ignore[arg-type]
            try:
                async for data in iterator:
                    await self._feed(out, data, within)
            finally:
                # an async generator left at a failed write must not be finalised by the GC
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            await self._feed(out, whole, within)
        if length is None:
            out.parts.append(_http1.LAST_CHUNK)
        elif out.sent < length:
            raise httpx.LocalProtocolError(
                "Too little data for declared Content-Length", request=request
            )
        await self._write(b"".join(out.parts), within, request)
        return close

    async def _feed(self, out: _Outgoing, data: bytes, within: float | None) -> None:
        """Frame ``data`` into ``out``, writing whenever enough is gathered."""
        if not data:
            return
        request, length = out.request, out.length
        out.sent += len(data)
        if length is not None and out.sent > length:
            raise httpx.LocalProtocolError(
                "Too much data for declared Content-Length", request=request
            )
        parts = out.parts
        for piece in (data,) if length is not None else _http1.chunk(data):
            if len(piece) >= WRITE_BUFFER:
                await self._write(b"".join(parts), within, request)
                await self._write(piece, within, request)
                parts.clear()
                out.size = 0
                continue
            parts.append(piece)
            out.size += len(piece)
            if out.size >= WRITE_BUFFER:
                await self._write(b"".join(parts), within, request)
                parts.clear()
                out.size = 0

    async def _write(
        self, data: bytes | memoryview, within: float | None, request: httpx.Request
    ) -> None:
        if not data:
            return
        raw = self.raw
        try:
            if raw is not None:
                try:
                    sent = raw.send(data, SEND_FLAGS)
                except BlockingIOError:
                    sent = 0
                if sent == len(data):
                    return
                self.waits += 1
                with _limit(within) as scope:
                    await _send_rest(raw, memoryview(data)[sent:])
            else:
                assert self.stream is not None
                with _limit(within) as scope:
                    await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.WriteError(describe(exc), request=request) from exc
        if scope.cancelled_caught:
            raise httpx.WriteTimeout("timed out writing the request", request=request)

    async def receive(self, most: int, within: float | None, request: httpx.Request) -> bytes:
        """Return the next bytes from the server (``b""`` at its end of stream)."""
        raw = self.raw
        try:
            if raw is not None:
                try:
                    return raw.recv(most)
                except BlockingIOError:
                    pass
                self.waits += 1
                with _limit(within):
                    while True:
                        await trio.lowlevel.wait_readable(raw)
                        try:
                            return raw.recv(most)
                        except BlockingIOError:
                            continue
            else:
                assert self.stream is not None
                with _limit(within):
                    return bytes(await self.stream.receive_some(most))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpx.ReadError(describe(exc), request=request) from exc
        raise httpx.ReadTimeout("timed out reading the response", request=request)

    async def receive_head(self, within: float | None, request: httpx.Request) -> _http1.Head:
        """Read up to the final response head (informational 1xx heads are skipped).

        Every exchange on a raw socket checkpoints: :meth:`send` is a cancel point, and this is
        a schedule point even when the answer was there without waiting.
        """
        buffer = self.buffer
        waits = self.waits
        while True:
            try:
                parsed = _http1.parse_head(buffer) if buffer else None
            except _http1.RemoteProtocolError as exc:
                raise httpx.RemoteProtocolError(str(exc), request=request) from exc
            if parsed is None:
                data = await self.receive(READ_CHUNK, within, request)
                if not data:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a response", request=request
                    )
                buffer += data
                continue
            head, used = parsed
            del buffer[:used]
            if head.status >= 200:
                if self.waits == waits and self.raw is not None:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return head
            if head.status == 101:
                raise httpx.RemoteProtocolError(
                    "the server switched protocols (101), which this transport does not do",
                    request=request,
                )


@final
class ResponseStream(httpx.AsyncByteStream):
    """A response body read from the connection as its head frames it.

    Args:
        framing: how the head frames the body (see :class:`._http1.Framing`).
        closing: the request asked to close the connection after this exchange.
    """

    __slots__ = ("_conn", "_framing", "_keep", "_pool", "_request", "_timeout", "_whole")

    def __init__(
        self,
        pool: Pool,
        conn: Connection,
        request: httpx.Request,
        within: float | None,
        framing: Framing,
        *,
        closing: bool,
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
        self._request = request
        self._timeout = within
        #: the body's length, ``CHUNKED`` or ``UNTIL_CLOSE``
        self._framing = framing.length
        #: both sides keep the connection alive after this exchange
        self._keep = framing.keep and not closing
        #: :meth:`read_whole` may read it: a length, and no content coding for httpx to undo
        self._whole = framing.length >= 0 and not framing.coded

    def _broken(self) -> httpx.RemoteProtocolError:
        return httpx.RemoteProtocolError(
            "server disconnected in the middle of the response body", request=self._request
        )

    async def read_whole(self) -> bytes | None:
        """Read the whole body in one piece, or return None (nothing read) when it is not
        framed by a length or carries a content coding (then httpx's iteration reads it).

        A small body usually came with its head and is taken from the buffer as it is; a large
        one is read from the stream in big pieces and joined once.
        """
        conn, length = self._conn, self._framing
        if conn is None or not self._whole:
            return None
        buffer = conn.buffer
        try:
            if len(buffer) >= length:
                body = take(buffer, length)
            else:
                pieces = [take(buffer, length)]
                have = len(pieces[0])
                while have < length:
                    piece = await conn.receive(
                        min(length - have, WHOLE_CHUNK), self._timeout, self._request
                    )
                    if not piece:
                        raise self._broken()
                    pieces.append(piece)
                    have += len(piece)
                body = b"".join(pieces)
        except BaseException:
            self._finish(reusable=False)
            raise
        self._finish(reusable=True)
        return body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        if conn is None:
            raise httpx.StreamClosed()
        framing, buffer = self._framing, conn.buffer
        timeout, request = self._timeout, self._request
        try:
            if framing >= 0:
                left = framing
                if buffer and left:
                    data = take(buffer, left)
                    left -= len(data)
                    yield data
                while left:
                    data = await conn.receive(min(left, READ_CHUNK), timeout, request)
                    if not data:
                        raise self._broken()
                    left -= len(data)
                    yield data
            elif framing == CHUNKED:
                decoder = ChunkedBody()
                while True:
                    try:
                        pieces = decoder.take(buffer)
                    except _http1.RemoteProtocolError as exc:
                        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
                    for data in pieces:
                        if data:
                            yield data
                    if decoder.done:
                        break
                    data = await conn.receive(READ_CHUNK, timeout, request)
                    if not data:
                        raise self._broken()
                    buffer += data
            else:  # UNTIL_CLOSE: the server's end of stream ends the body
                if buffer:
                    yield take(buffer, len(buffer))
                while data := await conn.receive(READ_CHUNK, timeout, request):
                    yield data
        except BaseException:
            self._finish(reusable=False)
            raise
        self._finish(reusable=framing != UNTIL_CLOSE)

    def _finish(self, *, reusable: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        # bytes past the body are something nobody asked for: never reuse such a connection
        self._pool.release(conn, reusable=reusable and self._keep and not conn.buffer)

    async def aclose(self) -> None:
        """Drop the connection unless the body was read to its end."""
        self._finish(reusable=False)
