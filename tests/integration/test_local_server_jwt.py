"""The local server in JWT mode (protocol.md §1.3): raw keys only for the bootstrap and the
exchange, JWTs everywhere else, and an expired or foreign token refused with the header that
makes clients exchange again and replay."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import msgspec
import trio

from tinker_actors.config import jwt_claims
from tinker_actors.local import NullBackend, ServerSettings, open_local_server
from tinker_actors.local._app import build_app
from tinker_actors.local._auth import Authenticator
from tinker_actors.local._engine import open_engine
from tinker_actors.types import CreateSessionRequest, SessionHeartbeatRequest

RAW = "tml-jwt-test-SECRET"
BASE = "http://local"
INVALID_TOKEN = 'error="invalid_token"'


class WallClock:
    """A settable POSIX clock."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.5

    def __call__(self) -> float:
        return self.now


async def post(client: httpx.AsyncClient, path: str, body: object, key: str) -> httpx.Response:
    return await client.post(
        f"/api/v1/{path}", content=msgspec.json.encode(body), headers={"X-API-Key": key}
    )


async def exchange(client: httpx.AsyncClient, key: str = RAW) -> str:
    response = await post(client, "auth/token", {}, key)
    assert response.status_code == 200, response.text
    token: str = response.json()["jwt"]
    return token


@asynccontextmanager
async def jwt_server(clock: WallClock, lifetime: float) -> AsyncIterator[httpx.AsyncClient]:
    """A JWT-mode server whose token clock the test controls."""
    settings = ServerSettings(jwt_auth=True, jwt_lifetime=lifetime, wall_clock=clock)
    auth = Authenticator(jwt_auth=True, jwt_lifetime=lifetime, clock=clock)
    async with open_engine(settings, NullBackend()) as engine:
        app = build_app(engine, auth)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
            yield c


def assert_refused(response: httpx.Response, fragment: str) -> None:
    assert response.status_code == 401, response.text
    assert INVALID_TOKEN in response.headers["www-authenticate"]
    assert fragment in response.json()["detail"]
    assert "SECRET" not in response.text


async def test_raw_key_bootstraps_and_exchanges_jwt_used_elsewhere() -> None:
    async with open_local_server(jwt_auth=True) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            config = await post(client, "client/config", {"sdk_version": "0.38.0"}, RAW)
            assert config.status_code == 200
            assert config.json()["pjwt_auth_enabled"] is True

            token = await exchange(client)
            assert token.startswith("eyJ")
            claims: dict[str, Any] = jwt_claims(token)
            assert claims["exp"] - claims["iat"] == 3600
            assert claims["iss"].startswith("passport-")
            assert claims["sub"]
            assert "SECRET" not in json.dumps(claims)

            # raw keys are refused everywhere but the bootstrap and the exchange
            body = CreateSessionRequest(sdk_version="0.38.0")
            assert_refused(await post(client, "create_session", body, RAW), "JWT is required")
            created = await post(client, "create_session", body, token)
            assert created.status_code == 200, created.text
            session_id = created.json()["session_id"]
            beat = SessionHeartbeatRequest(session_id=session_id)
            assert (await post(client, "session_heartbeat", beat, token)).status_code == 200
            # the bootstrap also takes the JWT itself
            assert (
                await post(client, "client/config", {"sdk_version": "x"}, token)
            ).status_code == 200

            # a token with a forged payload, or from another server, is refused
            header, _, signature = token.split(".")
            forged_claims = {**claims, "exp": claims["exp"] + 10**6}
            forged = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=")
            bad = f"{header}.{forged.decode()}.{signature}"
            assert_refused(
                await post(client, "session_heartbeat", beat, bad), "not issued by this server"
            )
            assert_refused(
                await post(client, "session_heartbeat", beat, "eyJ.x"), "JWT is required"
            )
            async with open_local_server(jwt_auth=True) as other:
                other_transport = httpx.ASGITransport(app=other.app)
                async with httpx.AsyncClient(transport=other_transport, base_url=BASE) as c2:
                    foreign = await exchange(c2)
            assert_refused(
                await post(client, "session_heartbeat", beat, foreign), "not issued by this server"
            )

            # the exchange itself needs a proper raw key
            refused = await post(client, "auth/token", {}, "sk-SECRET")
            assert refused.status_code == 401
            assert "tml-" in refused.json()["detail"]
            assert "SECRET" not in refused.text
            missing = await client.post("/api/v1/auth/token", content=b"{}")
            assert missing.status_code == 401
            assert missing.json() == {"detail": "missing X-API-Key header"}
            assert server.auth.issued == 1  # refusals issue nothing


async def test_expired_jwt_gets_invalid_token_and_a_new_exchange_works() -> None:
    clock = WallClock()
    async with jwt_server(clock, lifetime=60) as client:
        token = await exchange(client)
        claims = jwt_claims(token)
        assert claims["exp"] - claims["iat"] == 60
        body = CreateSessionRequest(sdk_version="x")
        session_id = (await post(client, "create_session", body, token)).json()["session_id"]
        beat = SessionHeartbeatRequest(session_id=session_id)
        clock.now += 59
        assert (await post(client, "session_heartbeat", beat, token)).status_code == 200
        clock.now += 1
        assert_refused(await post(client, "session_heartbeat", beat, token), "expired")
        fresh = await exchange(client)
        assert fresh != token
        answer = await post(client, "session_heartbeat", beat, fresh)
        assert answer.status_code == 200
        assert answer.json() == {"type": "session_heartbeat"}


async def test_jwt_lifetime_setting_reaches_the_tokens() -> None:
    async with open_local_server(jwt_auth=True, jwt_lifetime=0) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            token = await exchange(client)
            claims = jwt_claims(token)
            assert claims["exp"] == claims["iat"]
            body = CreateSessionRequest(sdk_version="x")
            assert_refused(await post(client, "create_session", body, token), "expired")


async def test_server_without_jwt_refuses_the_exchange() -> None:
    async with open_local_server() as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            config = await post(client, "client/config", {"sdk_version": "x"}, RAW)
            assert config.json()["pjwt_auth_enabled"] is False
            refused = await post(client, "auth/token", {}, RAW)
            assert refused.status_code == 401
            assert "without JWT auth" in refused.json()["detail"]
            assert "www-authenticate" not in refused.headers
            with trio.fail_after(5):
                ok = await post(
                    client, "create_session", CreateSessionRequest(sdk_version="x"), RAW
                )
            assert ok.status_code == 200
