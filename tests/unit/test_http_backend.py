"""``Config.http_backend``: resolution and validation, and what ``open_transport`` builds for it.

``h11`` is the lean HTTP/1.1 transport (one httpx client over a ``TrioH11Transport``),
``httpx`` the httpcore one (several small clients, see transport/_pool.py). An explicit
``http_transport=`` wins over either; ``http2`` needs ``httpx``.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import trio
import trio.testing

from tinker_actors.config import Config, Secret, resolve_config
from tinker_actors.errors import InvalidInputError
from tinker_actors.transport import open_transport
from tinker_actors.transport._h11 import TrioH11Transport

KEY = "tml-backend-test"
GUARD = 20.0  # seconds: a hang fails the test instead of stalling the run
#: The backend a config gets when nothing picks one.
DEFAULT = "auto"


@pytest.fixture
def no_file(tmp_path: Path) -> Path:
    return tmp_path / "missing.json"


def resolve(no_file: Path, env: dict[str, str] | None = None, **overrides: Any) -> Config:
    return resolve_config(api_key=KEY, env=env or {}, credentials_path=no_file, **overrides)


# -- resolution and validation -------------------------------------------------------------------


def test_default_backend(no_file: Path) -> None:
    assert resolve(no_file).http_backend == DEFAULT
    assert Config(api_key=Secret(KEY)).http_backend == DEFAULT


@pytest.mark.parametrize(
    ("value", "expected"),
    [("h11", "h11"), ("httpx", "httpx"), (" H11 ", "h11"), ("HTTPX", "httpx")],
)
def test_env_picks_the_backend(no_file: Path, value: str, expected: str) -> None:
    assert resolve(no_file, {"TINKER_HTTP_BACKEND": value}).http_backend == expected


def test_empty_env_counts_as_unset(no_file: Path) -> None:
    assert resolve(no_file, {"TINKER_HTTP_BACKEND": ""}).http_backend == DEFAULT


def test_override_wins_over_env(no_file: Path) -> None:
    env = {"TINKER_HTTP_BACKEND": "h11"}
    assert resolve(no_file, env, http_backend="httpx").http_backend == "httpx"
    env = {"TINKER_HTTP_BACKEND": "httpx"}
    assert resolve(no_file, env, http_backend="h11").http_backend == "h11"


def test_unknown_backend_in_env_is_refused_naming_the_variable(no_file: Path) -> None:
    with pytest.raises(
        InvalidInputError, match=r"'h11' or 'httpx', got 'curl'.*TINKER_HTTP_BACKEND"
    ):
        resolve(no_file, {"TINKER_HTTP_BACKEND": "curl"})


@pytest.mark.parametrize("value", ["http3", "", None, 11])
def test_unknown_backend_argument_is_refused(no_file: Path, value: object) -> None:
    with pytest.raises(InvalidInputError, match="http_backend must be 'auto', 'h11' or 'httpx'"):
        resolve(no_file, http_backend=value)
    with pytest.raises(InvalidInputError, match="http_backend must be 'auto', 'h11' or 'httpx'"):
        Config(api_key=Secret(KEY), http_backend=value)  # type: ignore[arg-type]


def test_http2_without_a_backend_picks_httpx(no_file: Path) -> None:
    config = resolve(no_file, http2=True)
    assert (config.http2, config.http_backend) == (True, "httpx")


def test_http2_with_h11_is_refused(no_file: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"http2=True needs http_backend='httpx'"):
        resolve(no_file, http2=True, http_backend="h11")
    with pytest.raises(InvalidInputError, match=r"http2=True needs http_backend='httpx'"):
        resolve(no_file, {"TINKER_HTTP_BACKEND": "h11"}, http2=True)
    with pytest.raises(InvalidInputError, match=r"http2=True needs http_backend='httpx'"):
        Config(api_key=Secret(KEY), http2=True, http_backend="h11")


def test_http2_with_httpx_is_accepted(no_file: Path) -> None:
    env = {"TINKER_HTTP_BACKEND": "httpx"}
    assert resolve(no_file, env, http2=True).http_backend == "httpx"


# -- what open_transport builds --------------------------------------------------------------


def config_for(backend: str, base_url: str = "http://127.0.0.1:9", **settings: Any) -> Config:
    return resolve_config(
        base_url=base_url, api_key=KEY, env={}, http_backend=backend, max_retries=0, **settings
    )


async def test_h11_backend_is_one_client_over_the_lean_transport() -> None:
    config = config_for("h11", max_connections=7, max_keepalive_connections=3, keepalive_expiry=2.5)
    async with open_transport(config) as transport:
        pool = transport._pool
        assert (pool._per_client, pool._max_clients) == (7, 1)
        async with pool.lease() as client:
            lean = client._transport
            assert isinstance(lean, TrioH11Transport)
            # every connection of a burst stays idle-able until its expiry (see open_transport)
            assert (lean._limit, lean._max_idle, lean._expiry) == (7, 7, 2.5)
            assert client.follow_redirects is False  # followed in _dispatch.py
            assert client.timeout == httpx.Timeout(config.timeout, connect=config.connect_timeout)
        assert pool.clients == 1
    assert lean.closed  # closing the transport closed the lean pool


async def test_httpx_backend_spreads_over_httpcore_clients() -> None:
    async with open_transport(config_for("httpx", max_connections=120)) as transport:
        assert (transport._pool._per_client, transport._pool._max_clients) == (50, 2)
        async with transport._pool.lease() as client:
            assert isinstance(client._transport, httpx.AsyncHTTPTransport)


@pytest.mark.parametrize("backend", ["h11", "httpx"])
async def test_an_explicit_http_transport_wins_over_the_backend(backend: str) -> None:
    seen: list[str] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(200, json={"ok": True})

    mock = httpx.MockTransport(handler)
    async with open_transport(config_for(backend), http_transport=mock) as transport:
        response = await transport.request("GET", "/api/v1/healthz")
        async with transport._pool.lease() as client:
            assert client._transport is mock
    assert response.json() == {"ok": True}
    assert seen == ["/api/v1/healthz"]


# -- the h11 backend on the wire -----------------------------------------------------------------


@dataclass
class Server:
    """A loopback HTTP/1.1 server; ``/gate`` requests wait until ``gate`` is set."""

    connections: int = 0
    requests: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    #: set once ``in_flight`` reaches ``busy_target``
    busy_target: int = 0
    busy: trio.Event = field(default_factory=trio.Event)
    gate: trio.Event = field(default_factory=trio.Event)


async def _handle(server: Server, stream: trio.SocketStream) -> None:
    server.connections += 1
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            target = ""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif type(event) is h11.Request:
                    target = event.target.decode()
                elif type(event) is h11.EndOfMessage:
                    break
                elif type(event) is h11.ConnectionClosed:
                    return
            server.requests += 1
            server.in_flight += 1
            server.most_in_flight = max(server.most_in_flight, server.in_flight)
            if server.in_flight == server.busy_target:
                server.busy.set()
            if target.endswith("/gate"):
                await server.gate.wait()
            server.in_flight -= 1
            body = b'{"path": "%s"}' % target.encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            await stream.send_all(
                b"".join(
                    conn.send(e) or b""
                    for e in (h11.Response(status_code=200, headers=headers), h11.Data(data=body))
                )
                + (conn.send(h11.EndOfMessage()) or b"")
            )
            conn.start_next_cycle()
    except (trio.BrokenResourceError, h11.RemoteProtocolError):
        return
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def loopback() -> AsyncIterator[tuple[str, Server]]:
    server = Server()
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(
                trio.serve_tcp, functools.partial(_handle, server), 0, host="127.0.0.1"
            )
        )
        yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}", server
        nursery.cancel_scope.cancel()


async def test_h11_backend_sends_on_one_keep_alive_connection() -> None:
    with trio.fail_after(GUARD):
        async with loopback() as (url, server), open_transport(config_for("h11", url)) as t:
            for i in range(4):
                response = await t.request("GET", f"/api/v1/r{i}")
                assert response.json() == {"path": f"/api/v1/r{i}"}
            async with t._pool.lease() as client:
                lean = client._transport
                assert isinstance(lean, TrioH11Transport)
                assert lean.connections_opened == 1
    assert (server.connections, server.requests) == (1, 4)


async def test_h11_backend_bounds_requests_in_flight_at_max_connections() -> None:
    done: list[int] = []
    with trio.fail_after(GUARD):
        async with (
            loopback() as (url, server),
            open_transport(config_for("h11", url, max_connections=2)) as t,
        ):
            server.busy_target = 2

            async def one(i: int) -> None:
                await t.request("GET", "/api/v1/gate")
                done.append(i)

            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(one, i)
                await server.busy.wait()
                await trio.testing.wait_all_tasks_blocked()
                # two requests on the wire, four waiting in the client pool's FIFO queue (no
                # pool timeout there, unlike a queue inside the transport)
                assert (server.in_flight, t._pool.in_flight, t._pool.waiting) == (2, 2, 4)
                server.gate.set()
    assert sorted(done) == list(range(6))
    assert server.most_in_flight == 2
    assert server.connections == 2  # freed connections were handed on, never a third opened


def test_auto_picks_h11_unless_a_proxy_or_http2_is_wanted(
    no_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinker_actors.transport._open import effective_http_backend

    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    auto = resolve(no_file)
    assert auto.http_backend == "auto"
    assert effective_http_backend(auto) == "h11"
    assert effective_http_backend(resolve(no_file, http2=True)) == "httpx"
    assert effective_http_backend(resolve(no_file, http_backend="httpx")) == "httpx"
    # only httpx's transport speaks to proxies: a configured proxy keeps auto on it
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    assert effective_http_backend(auto) == "httpx"
    assert effective_http_backend(resolve(no_file, http_backend="h11")) == "h11"


async def test_h11_backend_caps_idle_keepalive_connections() -> None:
    """Issue 14: a burst's connections are kept for reuse, but not a thousand of them."""
    from tinker_actors.transport._open import H11_MAX_IDLE

    async with open_transport(config_for("h11")) as transport, transport._pool.lease() as client:
        lean = client._transport
        assert isinstance(lean, TrioH11Transport)
        assert (lean._limit, lean._max_idle) == (1000, H11_MAX_IDLE)
    assert H11_MAX_IDLE <= 128
