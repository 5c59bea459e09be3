"""The transport's own TCP sockets: taken over from trio after connecting, sent on without SIGPIPE.

A connection is opened with ``trio.open_tcp_stream`` (happy eyeballs, name resolution) and its
socket then taken over (:func:`own`) as a plain non-blocking ``socket.socket`` that the
transport drives itself (:mod:`._connection`). Every send passes ``MSG_NOSIGNAL``: a peer that
went away is an ``EPIPE`` error, never a SIGPIPE, which would kill a host program that restored
the default SIGPIPE action (CPython ignores the signal, but a host may not keep it so; trio's
own sockets do not pass the flag).

TLS rides on :class:`SocketStream`, a minimal ``trio.abc.Stream`` over such a socket with
trio's checkpoint rules (each call is a cancel point and a schedule point), for
``trio.SSLStream`` to send its records through.
"""

from __future__ import annotations

import socket as stdsocket
from typing import Final, final

import trio

__all__ = ["SEND_FLAGS", "SocketStream", "close", "own"]

#: Linux's flag; elsewhere (0) CPython's own ignoring of SIGPIPE is what protects.
SEND_FLAGS: Final = getattr(stdsocket, "MSG_NOSIGNAL", 0)
_RECEIVE_DEFAULT: Final = 65536


def own(tcp: trio.SocketStream) -> stdsocket.socket:
    """Take ``tcp``'s socket over (the stream must not be used afterwards)."""
    trio_socket = tcp.socket
    family, kind, proto = trio_socket.family, trio_socket.type, trio_socket.proto
    sock = stdsocket.socket(family, kind, proto, fileno=trio_socket.detach())
    sock.setblocking(False)
    return sock


def close(sock: stdsocket.socket) -> None:
    """Close ``sock`` at once; a task waiting on it gets ``trio.ClosedResourceError``."""
    if sock.fileno() >= 0:
        trio.lowlevel.notify_closing(sock)
        sock.close()


@final
class SocketStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` over a socket taken with :func:`own` (what TLS is layered on).

    OS errors surface as ``trio.BrokenResourceError`` and a closed socket as
    ``trio.ClosedResourceError``, as from trio's own streams.
    """

    def __init__(self, sock: stdsocket.socket) -> None:
        self._sock = sock

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = self._sock
        rest = memoryview(data)
        waited = False
        try:
            while rest:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("the socket was closed")
                try:
                    sent = sock.send(rest, SEND_FLAGS)
                except BlockingIOError:
                    waited = True
                    await trio.lowlevel.wait_writable(sock)
                    continue
                rest = rest[sent:]
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc) or repr(exc)) from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self._sock)

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        sock = self._sock
        most = _RECEIVE_DEFAULT if max_bytes is None else max_bytes
        waited = False
        try:
            while True:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("the socket was closed")
                try:
                    data = sock.recv(most)
                except BlockingIOError:
                    waited = True
                    await trio.lowlevel.wait_readable(sock)
                    continue
                break
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc) or repr(exc)) from exc
        if not waited:
            await trio.lowlevel.cancel_shielded_checkpoint()
        return data

    async def aclose(self) -> None:
        close(self._sock)
        await trio.lowlevel.checkpoint()
