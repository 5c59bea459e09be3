"""Shared doubles for the transport tests (no tests here): a scripted in-process server."""

from __future__ import annotations

import base64
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

from tinker_actors.config import Config, resolve_config
from tinker_actors.transport import Transport, open_transport

KEY = "tml-transport-test-SECRET-abcdef0123"
BASE = "http://tinker.test/services/tinker"
#: The wall clock the transport sees: a fixed epoch plus trio's (virtual) time.
EPOCH = 1_700_000_000.0
NO_FILE = Path("/nonexistent/tinker-actors-tests/credentials.json")


def wall_clock() -> float:
    return EPOCH + trio.current_time()


def make_jwt(claims: dict[str, object]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.c2lnbmF0dXJl"


def make_config(**overrides: Any) -> Config:
    return resolve_config(
        base_url=overrides.pop("base_url", BASE),
        api_key=overrides.pop("api_key", KEY),
        env=overrides.pop("env", {}),
        credentials_path=NO_FILE,
        **overrides,
    )


@dataclass
class Seen:
    """One request as the server saw it."""

    method: str
    url: httpx.URL
    headers: httpx.Headers
    content: bytes
    at: float
    extensions: dict[str, Any]

    @property
    def path(self) -> str:
        return self.url.path

    def json(self) -> Any:
        return json.loads(self.content)


Step = httpx.Response | Exception | Callable[[httpx.Request], Awaitable[httpx.Response]]


@dataclass
class Server:
    """Answer requests from a script (one step per request; the last one repeats)."""

    script: list[Step] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        self.seen.append(
            Seen(
                request.method,
                request.url,
                request.headers,
                content,
                trio.current_time(),
                dict(request.extensions),
            )
        )
        index = min(len(self.seen) - 1, len(self.script) - 1)
        step = self.script[index] if self.script else httpx.Response(200, json={})
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            # Responses are single-use: hand out a fresh copy each time.
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return await step(request)

    def gaps(self) -> list[float]:
        """Return the time between consecutive requests."""
        return [b.at - a.at for a, b in zip(self.seen, self.seen[1:], strict=False)]


@asynccontextmanager
async def opened(
    handler: Callable[[httpx.Request], Awaitable[httpx.Response]],
    *,
    seed: int = 7,
    deadline: float = 4 * 3600.0,
    **overrides: Any,
) -> AsyncIterator[Transport]:
    """Open a transport over ``handler``; a hang fails after ``deadline`` (virtual) seconds."""
    config = make_config(**overrides)
    with trio.fail_after(deadline):
        async with open_transport(
            config,
            http_transport=httpx.MockTransport(handler),
            rng=random.Random(seed),
            clock=wall_clock,
        ) as transport:
            yield transport


def ok(body: object = None, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body if body is not None else {}, headers=headers)


def status(code: int, body: object = None, **headers: str) -> httpx.Response:
    if body is None:
        return httpx.Response(code, headers=headers)
    if isinstance(body, bytes):
        return httpx.Response(code, content=body, headers=headers)
    return httpx.Response(code, json=body, headers=headers)
