"""TrioH11Transport against loopback servers: pooling, streaming, failures, and the SDK path.

A small scripted h11 server (below) plays each server behaviour exactly, so every failure is
produced on purpose rather than by a race: the path of the request picks the behaviour.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import h11
import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

import tinker_actors as ta
from tinker_actors.backoff import retryable
from tinker_actors.local import ConnectionFaults, FaultProxy, open_local_server
from tinker_actors.transport._h11 import TrioH11Transport
from tinker_actors.types import ModelInput, SamplingParams

KEY = "tml-h11-test"
GUARD = 20.0  # seconds: a hang fails the test instead of stalling the run


@dataclass
class Script:
    """What the scripted server does and what it saw."""

    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: int = 0
    gate: trio.Event = field(default_factory=trio.Event)
    arrived: int = 0
    arrive_target: int = 0
    all_arrived: trio.Event = field(default_factory=trio.Event)
    hung_up: trio.Event = field(default_factory=trio.Event)
    chunk_events: list[trio.Event] = field(default_factory=lambda: [trio.Event() for _ in range(3)])


async def _read_request(conn: h11.Connection, stream: trio.SocketStream) -> tuple[str, bytes]:
    target = ""
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif type(event) is h11.Request:
            target = event.target.decode()
        elif type(event) is h11.Data:
            body += event.data
        elif type(event) is h11.EndOfMessage:
            return target, body
        elif type(event) is h11.ConnectionClosed:
            return "", b""  # the client hung up between requests
        else:
            raise AssertionError(f"unexpected {event!r}")


async def _handle(script: Script, stream: trio.SocketStream) -> None:
    script.connections += 1
    script.open_now += 1
    script.most_open = max(script.most_open, script.open_now)
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            try:
                target, body = await _read_request(conn, stream)
            except (trio.BrokenResourceError, h11.RemoteProtocolError):
                return
            if conn.their_state is h11.MUST_CLOSE or not target:
                return
            script.requests += 1
            if await _respond(script, conn, stream, target, body) == "close":
                return
            conn.start_next_cycle()
    finally:
        script.open_now -= 1
        await trio.aclose_forcefully(stream)
        script.hung_up.set()


async def _respond(
    script: Script, conn: h11.Connection, stream: trio.SocketStream, target: str, body: bytes
) -> str:
    async def send(*events: h11.Event) -> None:
        await stream.send_all(b"".join(conn.send(e) or b"" for e in events))

    if target == "/nothing":
        return "close"  # hang up without a response
    if target == "/hang":
        await trio.sleep_forever()
    if target == "/half":  # promise 100 bytes, send 10, hang up
        await send(h11.Response(status_code=200, headers=[("content-length", "100")]))
        await stream.send_all(b"0123456789")
        return "close"
    if target == "/gate":  # hold every request until the test opens the gate
        script.arrived += 1
        if script.arrived == script.arrive_target:
            script.all_arrived.set()
        await script.gate.wait()
    if target == "/stream":  # chunked; each chunk waits for the client to ask for it
        await send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
        for i, ready in enumerate(script.chunk_events):
            await ready.wait()
            await send(h11.Data(data=f"chunk{i};".encode()))
        await send(h11.EndOfMessage())
        return "keep"
    headers = [("content-length", str(len(body) if target == "/echo" else 2))]
    if target == "/close":
        headers.append(("connection", "close"))
    await send(
        h11.Response(status_code=200, headers=headers),
        h11.Data(data=body if target == "/echo" else b"ok"),
        h11.EndOfMessage(),
    )
    return "close" if target in ("/close", "/ok-then-hangup") else "keep"


@asynccontextmanager
async def scripted_server() -> AsyncIterator[tuple[str, Script]]:
    script = Script()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp, functools.partial(_handle, script), 0, host="127.0.0.1"
            )
        )
        port = listeners[0].socket.getsockname()[1]
        yield f"http://127.0.0.1:{port}", script
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def client(
    transport: TrioH11Transport, **timeouts: float | None
) -> AsyncIterator[httpx.AsyncClient]:
    timeout = httpx.Timeout(**{"timeout": 10.0, **timeouts})
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as c:
        yield c


# -- pooling -------------------------------------------------------------------------------------


async def test_sequential_requests_reuse_one_keep_alive_connection() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                for _ in range(5):
                    response = await c.get(f"{url}/ok")
                    assert (response.status_code, response.content) == (200, b"ok")
                    assert response.http_version == "HTTP/1.1"
                assert transport.connections_opened == 1
                assert transport.connections_idle == 1
            assert (script.connections, script.requests) == (1, 5)


async def test_concurrent_requests_stay_within_the_connection_bound() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport(max_connections=4)
            statuses: list[int] = []
            async with client(transport) as c:

                async def one() -> None:
                    statuses.append((await c.get(f"{url}/gate")).status_code)

                script.arrive_target = 4
                async with trio.open_nursery() as nursery:
                    for _ in range(40):
                        nursery.start_soon(one)
                    await script.all_arrived.wait()
                    # every connection is busy: the other 36 wait in the transport's queue
                    await trio.testing.wait_all_tasks_blocked()
                    assert script.arrived == 4
                    assert transport.connections_open == 4
                    script.gate.set()
            assert statuses == [200] * 40
            assert script.most_open == 4
            assert script.connections == 4  # released connections were handed on, not reopened


async def test_server_connection_close_drops_the_connection() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                assert (await c.get(f"{url}/close")).content == b"ok"
                assert transport.connections_idle == 0
                assert (await c.get(f"{url}/ok")).content == b"ok"
            assert script.connections == 2


async def test_expired_idle_connection_is_not_reused() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport(keepalive_expiry=0.0)
            async with client(transport) as c:
                await c.get(f"{url}/ok")
                await c.get(f"{url}/ok")
            assert script.connections == 2


async def test_idle_connection_closed_by_the_server_is_not_reused() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                # a keep-alive response, then the server hangs up (as at its keep-alive timeout)
                assert (await c.get(f"{url}/ok-then-hangup")).content == b"ok"
                assert transport.connections_idle == 1
                await script.hung_up.wait()
                # sending on the dead connection would fail: a fresh one is opened instead
                assert (await c.get(f"{url}/ok")).content == b"ok"
                assert transport.connections_opened == 2
            assert script.connections == 2


async def test_pool_timeout_when_every_connection_is_held() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, _script):
            transport = TrioH11Transport(max_connections=1)
            async with client(transport, pool=0.05) as c:
                held = await c.send(c.build_request("GET", f"{url}/stream"), stream=True)
                with pytest.raises(httpx.PoolTimeout) as caught:
                    await c.get(f"{url}/ok")
                assert caught.value.request.url.path == "/ok"
                await held.aclose()  # closed early: the connection is dropped, the slot freed
                assert transport.connections_open == 0
                assert (await c.get(f"{url}/ok")).content == b"ok"


async def test_cancelled_request_frees_its_slot() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport(max_connections=1)
            async with client(transport) as c:
                with trio.move_on_after(0.05) as scope:
                    await c.get(f"{url}/hang")
                assert scope.cancelled_caught
                assert transport.connections_open == 0
                assert (await c.get(f"{url}/ok")).content == b"ok"
            assert script.connections == 2


# -- bodies --------------------------------------------------------------------------------------


async def test_request_bodies_bytes_and_async_stream() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            big = bytes(range(256)) * 1024  # 256 KiB: several writes

            async def parts() -> AsyncIterator[bytes]:
                for i in range(5):
                    yield f"part{i}|".encode()
                    await trio.lowlevel.checkpoint()

            async with client(transport) as c:
                assert (await c.post(f"{url}/echo", content=b"hello")).content == b"hello"
                assert (await c.post(f"{url}/echo", content=big)).content == big
                streamed = await c.post(f"{url}/echo", content=parts())  # chunked upload
                assert streamed.content == b"part0|part1|part2|part3|part4|"
                assert (await c.post(f"{url}/echo", content=b"")).content == b""

                # chunked, mixing pieces below and above the write buffer (sent unjoined)
                mixed = [b"a" * 10, big, b"b" * 70_000, b"c", big[::-1]]

                async def mixed_parts() -> AsyncIterator[bytes]:
                    for piece in mixed:
                        yield piece

                echoed = await c.post(f"{url}/echo", content=mixed_parts())
                assert echoed.content == b"".join(mixed)
            assert script.connections == 1


async def test_streaming_response_arrives_incrementally_then_reuses_the_connection() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                request = c.build_request("GET", f"{url}/stream")
                response = await c.send(request, stream=True)
                seen: list[bytes] = []
                script.chunk_events[0].set()
                async for piece in response.aiter_raw():
                    seen.append(piece)
                    # the server sends chunk i+1 only now: each piece came before the next existed
                    if len(seen) < len(script.chunk_events):
                        assert not script.chunk_events[len(seen)].is_set()
                        script.chunk_events[len(seen)].set()
                assert b"".join(seen) == b"chunk0;chunk1;chunk2;"
                assert len(seen) == 3
                await response.aclose()
                assert transport.connections_idle == 1
                assert (await c.get(f"{url}/ok")).content == b"ok"
            assert script.connections == 1


# -- failures ------------------------------------------------------------------------------------


async def test_server_hangs_up_without_a_response_is_remote_protocol_error() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, _script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                with pytest.raises(httpx.RemoteProtocolError) as caught:
                    await c.get(f"{url}/nothing")
                assert caught.value.request.url.path == "/nothing"
                assert retryable(exception=caught.value)
                assert transport.connections_open == 0


async def test_truncated_body_is_remote_protocol_error_and_drops_the_connection() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, script):
            transport = TrioH11Transport()
            async with client(transport) as c:
                with pytest.raises(httpx.RemoteProtocolError):
                    await c.get(f"{url}/half")
                assert transport.connections_open == 0
                assert (await c.get(f"{url}/ok")).content == b"ok"
            assert script.connections == 2


async def test_read_timeout() -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, _script):
            transport = TrioH11Transport()
            async with client(transport, read=0.05) as c:
                with pytest.raises(httpx.ReadTimeout) as caught:
                    await c.get(f"{url}/hang")
                assert caught.value.request.url.path == "/hang"
                assert retryable(exception=caught.value)
                assert transport.connections_open == 0


async def test_connect_refused_is_connect_error() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with trio.fail_after(GUARD):
        transport = TrioH11Transport()
        async with client(transport) as c:
            with pytest.raises(httpx.ConnectError) as caught:
                await c.get(f"http://127.0.0.1:{port}/ok")
            assert caught.value.request.url.port == port
            assert retryable(exception=caught.value)
            assert transport.connections_open == 0


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        (ConnectionFaults(reset=1.0), httpx.ReadError),
        (ConnectionFaults(close=1.0), httpx.RemoteProtocolError),
    ],
    ids=["reset", "close"],
)
async def test_proxy_faults_map_to_httpx_errors(
    faults: ConnectionFaults, expected: type[httpx.TransportError]
) -> None:
    with trio.fail_after(GUARD):
        async with scripted_server() as (url, _script), trio.open_nursery() as nursery:
            proxy = FaultProxy(upstream_port=httpx.URL(url).port or 0, faults=faults)
            proxy_url = await nursery.start(proxy.serve)
            transport = TrioH11Transport()
            async with client(transport) as c:
                for _ in range(3):  # each attempt on a fresh connection, each failing the same way
                    with pytest.raises(expected):
                        await c.get(f"{proxy_url}/ok")
                assert transport.connections_open == 0
                assert transport.connections_opened == 3
            nursery.cancel_scope.cancel()


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"max_connections": 0}, {"max_keepalive_connections": -1}, {"keepalive_expiry": -1.0}],
)
def test_bad_limits_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TrioH11Transport(**kwargs)  # type: ignore[arg-type]


async def test_unsupported_scheme_and_closed_transport() -> None:
    transport = TrioH11Transport()
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://127.0.0.1/x"))
    await transport.aclose()
    await transport.aclose()  # idempotent: every httpx client sharing it calls it
    with pytest.raises(RuntimeError, match="closed"):
        await transport.handle_async_request(httpx.Request("GET", "http://127.0.0.1/x"))


# -- the SDK path --------------------------------------------------------------------------------


async def test_sdk_calls_through_the_h11_transport() -> None:
    transport = TrioH11Transport(max_connections=8)
    with trio.fail_after(GUARD):
        async with open_local_server() as server, trio.open_nursery() as nursery:
            url = await nursery.start(server.serve)
            async with ta.open(base_url=url, api_key=KEY, http_transport=transport) as rt:
                sampler = await rt.create_sampling_client(base_model="local/tiny")
                params = SamplingParams(max_tokens=4)
                results = []

                async def one(i: int) -> None:
                    future = await sampler.sample(ModelInput.from_ints([5, 6, i + 7]), 1, params)
                    results.append(await future.result())

                async with trio.open_nursery() as calls:
                    for i in range(16):
                        calls.start_soon(one, i)
                assert len(results) == 16
                assert all(len(r.sequences) == 1 for r in results)
                assert 1 <= transport.connections_opened <= 8
            assert transport.closed
            nursery.cancel_scope.cancel()


async def test_sdk_retries_transport_failures_through_the_h11_transport() -> None:
    transport = TrioH11Transport()
    with trio.fail_after(60):  # real-time retry backoff
        async with open_local_server() as server, trio.open_nursery() as nursery:
            upstream = await nursery.start(server.serve)
            proxy = FaultProxy(upstream_port=httpx.URL(upstream).port or 0)
            url = await nursery.start(proxy.serve)
            async with ta.open(base_url=url, api_key=KEY, http_transport=transport) as rt:
                sampler = await rt.create_sampling_client(base_model="local/tiny")
                # from now on, each new request on a connection is reset or cut off 20% of the time
                proxy.set_faults(ConnectionFaults(reset=0.1, close=0.1, seed=4))
                for i in range(3):
                    prompt = ModelInput.from_ints([5, 6, 7 + i])
                    future = await sampler.sample(prompt, 1, SamplingParams(max_tokens=2))
                    assert len((await future.result()).sequences) == 1
                assert proxy.statistics().injected > 0
                proxy.set_faults(ConnectionFaults())
            nursery.cancel_scope.cancel()
