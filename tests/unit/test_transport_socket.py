"""The transport's own sockets (``transport/_socket.py``): the stream TLS rides on.

``SocketStream`` must behave as trio's streams do where ``trio.SSLStream`` and the connection
rely on it: bytes in order whatever the socket buffers hold, a checkpoint per call, a closed
socket as ``ClosedResourceError`` (also for a task already waiting on it), a broken peer as
``BrokenResourceError``.
"""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
import trio
import trio.testing

from tinker_actors.transport import _socket

GUARD = 20.0


def _pair() -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def test_bytes_arrive_in_order_through_full_buffers() -> None:
    a, b = _pair()
    left, right = _socket.SocketStream(a), _socket.SocketStream(b)
    payload = bytes(range(256)) * 40_000  # 10 MB: far beyond a socketpair's buffers
    got = bytearray()

    async def read_all() -> None:
        while len(got) < len(payload):
            got.extend(await right.receive_some(100_000))

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_all)
            await left.send_all(payload)
    assert bytes(got) == payload
    await left.aclose()
    assert await right.receive_some() == b""  # the peer's close: end of stream
    await right.aclose()


async def test_every_call_is_a_checkpoint() -> None:
    a, b = _pair()
    left, right = _socket.SocketStream(a), _socket.SocketStream(b)
    with trio.testing.assert_checkpoints():
        await left.send_all(b"x")  # went out at once: still a checkpoint
    with trio.testing.assert_checkpoints():
        assert await right.receive_some(10) == b"x"  # was there at once: still one
    with trio.CancelScope() as scope:
        scope.cancel()
        await left.send_all(b"never")
    assert scope.cancelled_caught
    with trio.move_on_after(0.05):
        assert await right.receive_some(10) == b"never-sent"  # nothing was sent
        pytest.fail("a cancelled send_all wrote its bytes")
    await left.aclose()
    await right.aclose()


async def test_closing_wakes_a_waiting_reader_and_refuses_later_calls() -> None:
    a, b = _pair()
    left, right = _socket.SocketStream(a), _socket.SocketStream(b)
    seen: list[BaseException] = []

    async def waits() -> None:
        try:
            await right.receive_some()
        except trio.ClosedResourceError as exc:
            seen.append(exc)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waits)
            await trio.testing.wait_all_tasks_blocked()
            await right.aclose()
    assert len(seen) == 1
    with pytest.raises(trio.ClosedResourceError):
        await right.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await right.receive_some()
    await left.aclose()


async def test_a_peer_gone_is_a_broken_resource() -> None:
    a, b = _pair()
    left = _socket.SocketStream(a)
    b.close()

    async def flood() -> None:
        for _ in range(100):
            await left.send_all(b"x" * 65536)

    with trio.fail_after(GUARD), pytest.raises(trio.BrokenResourceError):
        await flood()
    await left.aclose()


_SIGPIPE_HOST = """
import signal, socket, ssl, sys, threading
import httpx, trio, trustme
from tinker_actors.transport._h11 import TrioH11Transport

tls = sys.argv[1] == "https"
signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a host that restored the default action
ca = trustme.CA()
server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ca.issue_cert("127.0.0.1").configure_cert(server_context)
client_context = ssl.create_default_context()
ca.configure_trust(client_context)
listener = socket.create_server(("127.0.0.1", 0))

def hang_up():
    conn, _ = listener.accept()
    if tls:
        conn = server_context.wrap_socket(conn, server_side=True)
    conn.recv(16384)
    conn.close()  # a plain close: later writes from the client meet a reset, then EPIPE

threading.Thread(target=hang_up, daemon=True).start()

async def main():
    url = f"{sys.argv[1]}://127.0.0.1:{listener.getsockname()[1]}/upload"
    transport = TrioH11Transport(ssl_context=client_context)
    request = httpx.Request("POST", url, content=b"x" * 64_000_000,
                            extensions={"timeout": {"connect": 10, "read": 10, "write": 10, "pool": 10}})
    try:
        await transport.handle_async_request(request)
    except httpx.TransportError as exc:
        print("raised", type(exc).__name__)

trio.run(main)
"""


@pytest.mark.skipif(not hasattr(socket, "MSG_NOSIGNAL"), reason="MSG_NOSIGNAL is Linux's")
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_an_upload_to_a_peer_that_hung_up_does_not_kill_the_host(scheme: str) -> None:
    # without MSG_NOSIGNAL the host dies of SIGPIPE here, plain or TLS (checked: 3 runs of 3)
    done = subprocess.run(
        [sys.executable, "-c", _SIGPIPE_HOST, scheme], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.strip() in ("raised WriteError", "raised ReadError"), done.stdout
