"""TrioH11Transport over TLS: a loopback h11 server behind trio's SSLStream, certified by trustme.

The server's certificate is issued by a throwaway CA for ``127.0.0.1`` and ``localhost``; the
client trusts that CA through ``ssl_context``. The cases check what TLS adds to the plain-TCP
tests of ``test_h11_transport.py``: the handshake and certificate checks (a wrong CA or a wrong
name is an ``httpx.ConnectError``), keep-alive reuse of one TLS session, bodies larger than a
TLS record, and the liveness check of an idle TLS connection the server has closed.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import httpx
import pytest
import trio
import trustme

from tinker_actors.transport._h11 import TrioH11Transport

GUARD = 20.0  # seconds: a hang fails the test instead of stalling the run


@dataclass
class ServerState:
    """What the TLS server saw."""

    connections: int = 0
    requests: int = 0
    handshakes_failed: int = 0
    alpn: list[str | None] = field(default_factory=list)
    hung_up: trio.Event = field(default_factory=trio.Event)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[str, bytes] | None:
    """Return the next request's target and body, or None when the client hung up."""
    target = ""
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif type(event) is h11.Request:
            target = event.target.decode()
        elif type(event) is h11.Data:
            body += event.data
        elif type(event) is h11.EndOfMessage:
            return target, body
        elif type(event) is h11.ConnectionClosed:
            return None
        else:
            raise AssertionError(f"unexpected {event!r}")


async def _handle(state: ServerState, stream: trio.SSLStream[trio.SocketStream]) -> None:
    """Answer requests on one TLS connection; the body says which connection served it.

    ``/echo`` answers the request body; ``/hangup`` answers, then closes the connection
    without ``Connection: close`` (like a server whose keep-alive timer ran out); anything else
    answers ``<connection number> <target>``.
    """
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        state.handshakes_failed += 1
        return
    state.connections += 1
    state.alpn.append(stream.selected_alpn_protocol())
    number = state.connections
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, stream)
            if request is None:
                return
            target, body = request
            state.requests += 1
            payload = body if target == "/echo" else f"{number} {target}".encode()
            head = h11.Response(status_code=200, headers=[("content-length", str(len(payload)))])
            await stream.send_all(
                b"".join(
                    conn.send(event) or b""
                    for event in (head, h11.Data(data=payload), h11.EndOfMessage())
                )
            )
            if target == "/hangup":
                return
            conn.start_next_cycle()
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)
        state.hung_up.set()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@asynccontextmanager
async def tls_server(
    ca: trustme.CA, alpn: list[str] | None = None
) -> AsyncIterator[tuple[int, ServerState]]:
    """Serve HTTP/1.1 over TLS on 127.0.0.1 with a certificate for 127.0.0.1 and localhost."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if alpn is not None:
        server_context.set_alpn_protocols(alpn)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)
    state = ServerState()
    async with trio.open_nursery() as nursery:
        tcp_listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = tcp_listeners[0].socket.getsockname()[1]
        listeners = [
            trio.SSLListener(listener, server_context, https_compatible=True)
            for listener in tcp_listeners
        ]
        await nursery.start(
            functools.partial(trio.serve_listeners, functools.partial(_handle, state), listeners)
        )
        yield port, state
        nursery.cancel_scope.cancel()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@asynccontextmanager
async def client(transport: TrioH11Transport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, timeout=10.0) as c:
        yield c


async def test_request_over_tls_succeeds(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport(ssl_context=trusting(ca))
            async with client(transport) as c:
                response = await c.get(f"https://127.0.0.1:{port}/hello")
            assert (response.status_code, response.text) == (200, "1 /hello")
            assert response.http_version == "HTTP/1.1"
            assert (state.connections, state.requests) == (1, 1)


async def test_keep_alive_reuses_the_tls_connection(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport(ssl_context=trusting(ca))
            async with client(transport) as c:
                texts = [(await c.get(f"https://127.0.0.1:{port}/r{i}")).text for i in range(5)]
                assert transport.connections_opened == 1
                assert transport.connections_idle == 1
            assert texts == [f"1 /r{i}" for i in range(5)]
            assert (state.connections, state.requests) == (1, 5)


async def test_hostname_in_the_certificate_is_checked_by_name(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport(ssl_context=trusting(ca))
            async with client(transport) as c:
                response = await c.get(f"https://localhost:{port}/named")
            assert response.text == "1 /named"
            assert state.connections == 1


async def test_large_bodies_cross_many_tls_records(ca: trustme.CA) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: many 16 KiB records, several buffered writes
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, _):
            transport = TrioH11Transport(ssl_context=trusting(ca))
            async with client(transport) as c:
                for _ in range(2):
                    response = await c.post(f"https://127.0.0.1:{port}/echo", content=body)
                    assert response.content == body
                assert transport.connections_opened == 1


async def test_an_idle_tls_connection_the_server_closed_is_not_reused(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport(ssl_context=trusting(ca))
            async with client(transport) as c:
                assert (await c.get(f"https://127.0.0.1:{port}/hangup")).text == "1 /hangup"
                await state.hung_up.wait()  # the close_notify and FIN are on their way
                # the idle connection now reads as closed: a new one is opened, no error
                assert (await c.get(f"https://127.0.0.1:{port}/next")).text == "2 /next"
                assert transport.connections_opened == 2


async def test_a_certificate_from_another_ca_is_a_connect_error(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport(ssl_context=trusting(trustme.CA()))
            async with client(transport) as c:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(f"https://127.0.0.1:{port}/x")
                assert transport.connections_open == 0  # the failed grant was given back
            assert state.requests == 0


async def test_the_default_context_rejects_an_unknown_ca(ca: trustme.CA) -> None:
    with trio.fail_after(GUARD):
        async with tls_server(ca) as (port, state):
            transport = TrioH11Transport()  # certifi's roots, as httpx uses: trustme is unknown
            async with client(transport) as c:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await c.get(f"https://127.0.0.1:{port}/x")
            assert state.requests == 0


async def test_a_name_the_certificate_does_not_cover_is_a_connect_error(ca: trustme.CA) -> None:
    other = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.issue_cert("elsewhere.test").configure_cert(server_context)
    state = ServerState()
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            port = listeners[0].socket.getsockname()[1]
            ssl_listeners = [trio.SSLListener(lis, server_context) for lis in listeners]
            await nursery.start(
                functools.partial(
                    trio.serve_listeners, functools.partial(_handle, state), ssl_listeners
                )
            )
            transport = TrioH11Transport(ssl_context=trusting(other))
            async with client(transport) as c:
                with pytest.raises(httpx.ConnectError, match="mismatch"):
                    await c.get(f"https://127.0.0.1:{port}/x")
            nursery.cancel_scope.cancel()
    assert state.requests == 0


async def test_the_default_context_honours_ssl_cert_file_and_offers_http11(
    ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ca.cert_pem.tempfile() as ca_file:
        monkeypatch.setenv("SSL_CERT_FILE", ca_file)  # as httpx's default context does
        transport = TrioH11Transport()
        with trio.fail_after(GUARD):
            async with (
                tls_server(ca, alpn=["h2", "http/1.1"]) as (port, state),
                client(transport) as c,
            ):
                assert (await c.get(f"https://localhost:{port}/a")).text == "1 /a"
    assert state.alpn == ["http/1.1"]  # the server would have picked h2 had it been offered
