"""The loopback TCP fault proxy: each fault looks to httpx as protocol.md and
dependencies.md §8 say, and a seeded plan injects the same faults every run."""

from __future__ import annotations

import contextlib
import functools
import math

import httpx
import pytest
import trio

from tinker_actors.local import ConnectionFaults, FaultProxy

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


async def _tiny_http_server(stream: trio.SocketStream) -> None:
    """Answer every request on a keep-alive connection with 200 "ok"."""
    buffer = b""
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                _, buffer = buffer.split(b"\r\n\r\n", 1)
                await stream.send_all(RESPONSE)


async def _start(nursery: trio.Nursery, faults: ConnectionFaults) -> tuple[FaultProxy, str]:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, _tiny_http_server, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    proxy = FaultProxy(upstream_port=port, faults=faults)
    url = await nursery.start(proxy.serve)
    return proxy, url


async def test_forwards_when_no_faults(nursery: trio.Nursery) -> None:
    proxy, url = await _start(nursery, ConnectionFaults())
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(5):
                response = await client.get("/")
                assert response.status_code == 200
                assert response.text == "ok"
    stats = proxy.statistics()
    assert stats.requests == 5
    assert stats.forwarded == 5
    assert stats.injected == 0
    # keep-alive: several requests shared one connection, yet each was counted
    assert stats.connections < 5


@pytest.mark.parametrize(
    ("faults", "error"),
    [
        (ConnectionFaults(reset=1.0), httpx.ReadError),
        (ConnectionFaults(close=1.0), httpx.RemoteProtocolError),
    ],
)
async def test_fault_kinds(
    nursery: trio.Nursery, faults: ConnectionFaults, error: type[Exception]
) -> None:
    proxy, url = await _start(nursery, faults)
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url) as client:
            with pytest.raises(error):
                await client.get("/")
    assert proxy.statistics().injected == 1


async def test_stall_times_out_the_client(nursery: trio.Nursery) -> None:
    proxy, url = await _start(nursery, ConnectionFaults(stall=1.0, stall_seconds=math.inf))
    with trio.fail_after(10):
        async with httpx.AsyncClient(base_url=url, timeout=0.2) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/")
    assert proxy.statistics().stalled == 1


async def _outcomes(seed: int) -> tuple[list[str], int]:
    async with trio.open_nursery() as nursery:
        proxy, url = await _start(nursery, ConnectionFaults(reset=0.3, close=0.2, seed=seed))
        outcomes = []
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(30):
                try:
                    response = await client.get("/")
                    outcomes.append(str(response.status_code))
                except httpx.TransportError as exc:
                    outcomes.append(type(exc).__name__)
        nursery.cancel_scope.cancel()
    return outcomes, proxy.statistics().injected


async def test_seeded_plan_is_reproducible() -> None:
    with trio.fail_after(20):
        first, injected = await _outcomes(seed=11)
        second, _ = await _outcomes(seed=11)
    assert first == second
    failures = [o for o in first if o != "200"]
    assert len(failures) == injected > 0
    assert "200" in first


def test_fault_probabilities_validated() -> None:
    with pytest.raises(ValueError, match="reset"):
        ConnectionFaults(reset=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        ConnectionFaults(reset=0.6, close=0.6)


async def _answer_and_close(stream: trio.SocketStream) -> None:
    """Answer one request, then close: the proxy sees the server side go away mid-connection."""
    async with stream:
        buffer = b""
        while b"\r\n\r\n" not in buffer:
            data = await stream.receive_some(65536)
            if not data:
                return
            buffer += data
        await stream.send_all(
            RESPONSE.replace(b"Content-Length", b"Connection: close\r\nContent-Length")
        )


async def test_proxy_survives_closes_from_both_sides(nursery: trio.Nursery) -> None:
    """Regression: a side closed while the other pump used it once crashed the whole proxy."""
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, _answer_and_close, 0, host="127.0.0.1")
    )
    port = listeners[0].socket.getsockname()[1]
    proxy = FaultProxy(upstream_port=port, faults=ConnectionFaults(reset=0.3, close=0.2, seed=3))
    url = await nursery.start(proxy.serve)
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(60):
                with contextlib.suppress(httpx.TransportError):
                    await client.get("/")
            proxy.set_faults(ConnectionFaults())
            response = await client.get("/")
    assert response.status_code == 200
    assert proxy.statistics().injected > 0
