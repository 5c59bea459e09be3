"""JWT mode (protocol.md §1.3): lazy exchange, half-life refresh, fallback and one replay."""

from __future__ import annotations

import logging
import shlex
import sys

import httpx
import pytest
import trio
from test_transport_support import EPOCH, KEY, make_jwt, ok, opened, status

from tinker_actors.errors import (
    APIResponseValidationError,
    AuthenticationError,
    InternalServerError,
    InvalidInputError,
)
from tinker_actors.transport import RequestOptions

LIFETIME = 1000.0
INVALID = {"www-authenticate": 'Bearer error="invalid_token", error_description="expired"'}


class AuthServer:
    """Mints numbered JWTs at /auth/token and checks them everywhere else."""

    def __init__(self) -> None:
        self.minted: list[str] = []
        self.exchanges: list[httpx.Headers] = []
        self.exchange_bodies: list[bytes] = []
        self.calls: list[tuple[str, str, str]] = []  # (path, x-api-key, idempotency key)
        self.exchange_fails: httpx.Response | None = None
        self.exchange_delay = 0.0
        self.rejected: set[str] = set()
        self.reject_everything = False

    def token(self, n: int) -> str:
        return self.minted[n]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        if request.url.path.endswith("/api/v1/auth/token"):
            self.exchanges.append(request.headers)
            self.exchange_bodies.append(body)
            await trio.sleep(self.exchange_delay)
            if self.exchange_fails is not None:
                return httpx.Response(
                    self.exchange_fails.status_code,
                    headers=self.exchange_fails.headers,
                    content=self.exchange_fails.content,
                )
            now = EPOCH + trio.current_time()
            jwt = make_jwt({"iat": now, "exp": now + LIFETIME, "n": len(self.minted), "sub": "u"})
            self.minted.append(jwt)
            return ok({"jwt": jwt})
        key = request.headers["x-api-key"]
        self.calls.append((request.url.path, key, request.headers.get("x-idempotency-key", "")))
        if key in self.rejected or self.reject_everything:
            return httpx.Response(401, json={"detail": "token revoked"}, headers=INVALID)
        return ok({"key_was_jwt": key.startswith("eyJ")})


async def test_lazy_exchange_then_jwt_on_every_request(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    async with opened(server, jwt_auth=True) as transport:
        assert server.exchanges == []  # nothing at open: the exchange is lazy
        first = await transport.request("POST", "/api/v1/create_session", json={})
        second = await transport.request("GET", "/api/v1/sessions")
        stats = transport.statistics()
    assert len(server.exchanges) == 1
    exchange = server.exchanges[0]
    assert exchange["x-api-key"] == KEY  # the raw credential goes only to the exchange
    assert exchange["content-type"] == "application/json"
    assert server.exchange_bodies == [b"{}"]
    assert "x-sdk-method" not in exchange
    assert [c[1] for c in server.calls] == [server.token(0), server.token(0)]
    assert first.json() == second.json() == {"key_was_jwt": True}
    assert stats.jwt_exchanges == 1


async def test_concurrent_first_requests_share_one_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    server.exchange_delay = 2.0
    async with opened(server, jwt_auth=True) as transport, trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(transport.request, "GET", "/x")
    assert len(server.exchanges) == 1
    assert {c[1] for c in server.calls} == {server.token(0)}


async def test_refresh_at_half_life(autojump_clock: trio.testing.MockClock) -> None:
    server = AuthServer()
    async with opened(server, jwt_auth=True) as transport:
        await transport.request("GET", "/x")
        await trio.sleep(0.44 * LIFETIME)  # before the earliest refresh point (0.45)
        await transport.request("GET", "/x")
        assert len(server.exchanges) == 1
        await trio.sleep(0.12 * LIFETIME)  # now past the latest one (0.55)
        await transport.request("GET", "/x")
        assert len(server.exchanges) == 2
        await transport.request("GET", "/x")
    assert [c[1] for c in server.calls] == [server.token(0)] * 2 + [server.token(1)] * 2


async def test_refresh_point_is_drawn_from_rng(autojump_clock: trio.testing.MockClock) -> None:
    # Probe every 5 s: the refresh happens at the first probe past the drawn point.
    points = []
    for seed in (1, 2, 3):
        server = AuthServer()
        async with opened(server, jwt_auth=True, seed=seed) as transport:
            start = trio.current_time()
            await transport.request("GET", "/x")
            while len(server.exchanges) == 1:
                await trio.sleep(5)
                await transport.request("GET", "/x")
            points.append(trio.current_time() - start)
    assert all(0.45 * LIFETIME <= p <= 0.55 * LIFETIME + 5 for p in points)
    assert len(set(points)) > 1


async def test_failed_refresh_keeps_old_token_until_expiry(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = AuthServer()
    caplog.set_level(logging.WARNING, logger="tinker_actors.transport")
    async with opened(server, jwt_auth=True, max_retries=1) as transport:
        await transport.request("GET", "/x")
        server.exchange_fails = status(503, {"detail": "auth down"})
        await trio.sleep(0.6 * LIFETIME)
        await transport.request("GET", "/x")  # refresh due, fails (2 attempts), old token used
        assert len(server.exchanges) == 3
        await transport.request("GET", "/x")  # no new attempt on every request
        assert len(server.exchanges) == 3
        assert any("JWT refresh failed" in r.getMessage() for r in caplog.records)
        await trio.sleep(0.45 * LIFETIME)  # the old token has now expired
        with pytest.raises(InternalServerError):
            await transport.request("GET", "/x")
        assert [c[1] for c in server.calls] == [server.token(0)] * 3
        server.exchange_fails = None
        await transport.request("GET", "/x")  # recovers with a fresh token
        assert server.calls[-1][1] == server.token(1)


async def test_exchange_401_raises_at_once(autojump_clock: trio.testing.MockClock) -> None:
    server = AuthServer()
    server.exchange_fails = status(401, {"detail": "bad key"})
    async with opened(server, jwt_auth=True) as transport:
        with pytest.raises(AuthenticationError) as info:
            await transport.request("POST", "/x", json={})
    assert len(server.exchanges) == 1  # no retries of a rejected credential
    assert server.calls == []  # the request itself was never sent
    assert info.value.status_code == 401


async def test_refresh_401_is_not_masked_by_old_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    async with opened(server, jwt_auth=True) as transport:
        await transport.request("GET", "/x")
        server.exchange_fails = status(401, {"detail": "key revoked"})
        await trio.sleep(0.6 * LIFETIME)
        with pytest.raises(AuthenticationError):
            await transport.request("GET", "/x")


async def test_invalid_token_replayed_once_with_new_token(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    async with opened(server, jwt_auth=True) as transport:
        await transport.request("GET", "/x")
        server.rejected.add(server.token(0))
        response = await transport.request("POST", "/y", json={})
        assert response.retries_taken == 0  # a replay is not a retry
        stats = transport.statistics()
    assert stats.jwt_replays == 1
    assert len(server.exchanges) == 2
    rejected, replay = server.calls[1], server.calls[2]
    assert rejected[1] == server.token(0)
    assert replay[1] == server.token(1)
    assert rejected[2] == replay[2]  # same idempotency key


async def test_concurrent_rejections_share_one_exchange(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    server.exchange_delay = 1.0
    async with opened(server, jwt_auth=True) as transport:
        await transport.request("GET", "/x")
        server.rejected.add(server.token(0))
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(transport.request, "GET", "/x")
    assert len(server.exchanges) == 2
    assert [c[1] for c in server.calls[1:]].count(server.token(1)) == 6


async def test_replay_happens_only_once(autojump_clock: trio.testing.MockClock) -> None:
    server = AuthServer()
    async with opened(server, jwt_auth=True) as transport:
        await transport.request("GET", "/x")
        server.reject_everything = True
        with pytest.raises(AuthenticationError):
            await transport.request("GET", "/x")
    # the first good call, then one rejection and exactly one replay
    assert [c[1] for c in server.calls] == [server.token(0), server.token(0), server.token(1)]
    assert len(server.exchanges) == 2


async def test_plain_401_is_not_replayed(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/auth/token"):
            return ok({"jwt": make_jwt({"iat": EPOCH, "exp": EPOCH + 9e9})})
        return httpx.Response(
            401, json={"detail": "who are you"}, headers={"www-authenticate": "Bearer"}
        )

    async with opened(handler, jwt_auth=True) as transport:
        with pytest.raises(AuthenticationError):
            await transport.request("GET", "/x")
        assert transport.statistics().jwt_replays == 0


async def test_raw_credential_option_and_runtime_switch(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    async with opened(server) as transport:
        await transport.request("POST", "/api/v1/client/config", json={})
        transport.configure(jwt_auth=True)
        await transport.request(
            "POST", "/api/v1/client/config", json={}, options=RequestOptions(raw_credential=True)
        )
        await transport.request("POST", "/api/v1/create_session", json={})
    assert [c[1] for c in server.calls] == [KEY, KEY, server.token(0)]
    assert len(server.exchanges) == 1


async def test_exchange_with_unreadable_reply(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return ok({"token": "x"})

    async with opened(handler, jwt_auth=True) as transport:
        with pytest.raises(APIResponseValidationError, match="AuthTokenResponse"):
            await transport.request("GET", "/x")


async def test_credential_cmd_source_for_exchange() -> None:
    server = AuthServer()
    cmd = f"{shlex.quote(sys.executable)} -c \"print('tml-from-the-cmd')\""
    async with opened(
        server, jwt_auth=True, env={"TINKER_CREDENTIAL_CMD": cmd}, api_key="tml-k"
    ) as transport:
        transport.configure(jwt_credential_source="credential_cmd")
        await transport.request("GET", "/x")
    assert server.exchanges[0]["x-api-key"] == "tml-from-the-cmd"
    assert server.calls[0][1] == server.token(0)


async def test_expired_jwt_api_key_refused_before_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = AuthServer()
    token = make_jwt({"iat": EPOCH, "exp": EPOCH + 100})
    async with opened(server, api_key=token, now=EPOCH) as transport:
        await transport.request("GET", "/x")
        await trio.sleep(101)
        with pytest.raises(InvalidInputError, match="expired") as info:
            await transport.request("GET", "/x")
    assert token not in str(info.value)
    assert len(server.calls) == 1


async def test_tokens_never_leak(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = AuthServer()
    caplog.set_level(logging.DEBUG)
    errors: list[Exception] = []
    async with opened(server, jwt_auth=True, max_retries=1) as transport:
        await transport.request("GET", "/x")
        server.rejected.add(server.token(0))
        await transport.request("GET", "/x")  # replay
        server.exchange_fails = httpx.Response(401, json={"detail": f"bad {KEY}"})
        server.rejected.add(server.token(1))
        try:
            await transport.request("GET", "/x")
        except AuthenticationError as exc:
            errors.append(exc)
    assert len(errors) == 1
    texts = [caplog.text, str(errors[0]), repr(errors[0]), *(str(r.args) for r in caplog.records)]
    for text in texts:
        assert KEY not in text
        for token in server.minted:
            assert token not in text
