"""Shared setup of the SDK integration tests: the local server, in process, under a runtime.

The ``test_sdk_*`` modules drive ``tinker_actors.open()`` over ``httpx.ASGITransport``, so every
request stays in the process and runs on the virtual clock. Between the transport and the local
server's ASGI app they put small middlewares that record requests or answer some of them.
:class:`BufferedTap` is the base of those that read request bodies: it reads each body whole
once, shows it to :meth:`BufferedTap.inspect`, then replays it to the app byte for byte, so the
server sees exactly what the SDK sent.

pytest imports this as a plain module: with the default ``prepend`` import mode the folder of
each test module (it has no ``__init__.py``) is put on ``sys.path``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

import tinker_actors as ta
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.types import Datum, ModelInput

__all__ = [
    "BASE",
    "CLI",
    "EXAMPLES",
    "KEY",
    "BufferedTap",
    "json_or_none",
    "lm_datum",
    "open_runtime",
    "read_body",
    "run_example",
    "send_status",
    "served_runtime",
    "totals",
]

BASE = "http://local"
# Long and distinctive, so tests can search logs and bodies for it (and for KEY[4:]).
KEY = "tml-sdk-integration-secret-0123456789abcdef"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CLI = [sys.executable, "-m", "tinker_actors.cli"]

Receive = Callable[[], Awaitable[dict[str, Any]]]
App = TypeVar("App")


def open_runtime(
    app: Any, *, base_url: str = BASE, api_key: str = KEY, **options: Any
) -> AbstractAsyncContextManager[ta.Runtime]:
    """Open a runtime whose requests go in process to the ASGI ``app``."""
    return ta.open(
        http_transport=httpx.ASGITransport(app=app), base_url=base_url, api_key=api_key, **options
    )


@asynccontextmanager
async def served_runtime(
    wrap: Callable[[Any], App], **server_options: Any
) -> AsyncIterator[tuple[ta.Runtime, LocalServer, App]]:
    """Start a local server, put ``wrap(server.app)`` in front of it, open a runtime on that.

    Yields:
        The runtime, the server and the wrapping middleware.
    """
    async with open_local_server(**server_options) as server:
        app = wrap(server.app)
        async with open_runtime(app) as rt:
            yield rt, server, app


async def read_body(receive: Receive) -> bytes:
    """Read an ASGI request body to its end."""
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay(raw: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that gives the app ``raw`` once, then the real messages."""
    sent = False

    async def again() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return await receive()  # e.g. the disconnect the app may wait for
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return again


async def send_status(send: Callable[[dict[str, Any]], Awaitable[None]], status: int) -> None:
    """Answer the request with ``status`` and a JSON error body, instead of the app."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"detail": "injected"}'})


def json_or_none(raw: bytes) -> Any:
    """Decode a JSON body; None when it is empty or not JSON."""
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


class BufferedTap:
    """ASGI middleware base: reads each request body whole, inspects it, replays it to the app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def wants(self, scope: Any) -> bool:
        """Say whether to read and inspect this request (by default every HTTP request)."""
        return bool(scope["type"] == "http")

    async def inspect(self, path: str, raw: bytes) -> int | None:
        """See one request; return a status to answer it with instead of the app, or None."""
        return None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not self.wants(scope):
            await self.app(scope, receive, send)
            return
        raw = await read_body(receive)
        status = await self.inspect(scope["path"], raw)
        if status is not None:
            await send_status(send, status)
            return
        await self.app(scope, replay(raw, receive), send)


def lm_datum(tokens: list[int]) -> Datum:
    """Build a cross-entropy datum: predict each of ``tokens`` from those before it."""
    # Datum converts numpy arrays to TensorData on construction; its annotation says TensorData.
    inputs: dict[str, Any] = {
        "target_tokens": np.array(tokens[1:], dtype=np.int64),
        "weights": np.ones(len(tokens) - 1, dtype=np.float32),
    }
    return Datum(model_input=ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


def totals(server: LocalServer) -> dict[str, int]:
    """Return the server's total counters."""
    out: dict[str, int] = server.counters()["totals"]  # type: ignore[assignment]
    return out


def run_example(script: str, *args: str) -> list[str]:
    """Run one script of ``examples/`` to success and return its output lines."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
