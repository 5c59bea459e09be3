"""Run the local Tinker-compatible server: in-process, on a loopback socket, or from the CLI.

Three ways to use it, all from one object::

    async with open_local_server() as server:                  # engine + ASGI app, no sockets
        client = httpx.AsyncClient(transport=httpx.ASGITransport(server.app), base_url="http://t")

    async with open_local_server() as server:                  # plus a real socket
        url = await nursery.start(server.serve)                # "http://127.0.0.1:<port>"

    $ tinker-actors serve --port 8000 --backend null --data-dir ./state

The server binds 127.0.0.1 by default. Its counters (everything received, applied,
deduplicated, per-model applied order, injected faults) are readable as ``server.counters()``
and at ``GET /_local/counters``.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, final

import msgspec
import trio

from tinker_actors.local._app import build_app
from tinker_actors.local._auth import Authenticator
from tinker_actors.local._core import ServerSettings
from tinker_actors.local._engine import LocalEngine, open_engine
from tinker_actors.local._null_backend import NullBackend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp

    from tinker_actors.local._backend import Backend

__all__ = ["LocalServer", "open_local_server"]


@final
class LocalServer:
    """A running local server; obtained from :func:`open_local_server`."""

    def __init__(self, engine: LocalEngine, auth: Authenticator, app: ASGIApp) -> None:
        self.engine = engine
        self.auth = auth
        self.app = app
        self.urls: list[str] = []

    @property
    def settings(self) -> ServerSettings:
        """The settings in force."""
        return self.engine.settings

    def counters(self) -> dict[str, object]:
        """Everything received, applied and deduplicated, and per-model applied order."""
        return self.engine.counters()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve HTTP/1.1 on ``host:port`` until cancelled; report the URL when listening."""
        from hypercorn.config import Config
        from hypercorn.trio import serve

        config = Config()
        config.bind = [f"{host}:{port}"]
        config.accesslog = None
        config.errorlog = logging.getLogger("tinker_actors.local.http")
        # above the clients' keep-alive expiry, so an idle connection is never reused as it closes
        config.keep_alive_timeout = 75.0
        config.keep_alive_max_requests = 1 << 30
        config.graceful_timeout = 1.0

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            await serve(self.app, config, task_status=task_status)  # type: ignore[arg-type]

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            self.urls = binds
            task_status.started(binds[0])


@asynccontextmanager
async def open_local_server(
    *,
    backend: Backend | None = None,
    settings: ServerSettings | None = None,
    **overrides: object,
) -> AsyncIterator[LocalServer]:
    """Start the engine (null backend unless given one) and yield the server.

    Args:
        backend: the model backend; a fresh :class:`NullBackend` by default.
        settings: the server settings; keyword ``overrides`` replace single fields.
    """
    settings = replace(settings or ServerSettings(), **overrides)  # type: ignore[arg-type]
    if settings.jwt_auth and not settings.client_config.pjwt_auth_enabled:
        flags = msgspec.structs.replace(settings.client_config, pjwt_auth_enabled=True)
        settings = replace(settings, client_config=flags)
    auth = Authenticator(
        api_keys=settings.api_keys, jwt_auth=settings.jwt_auth, jwt_lifetime=settings.jwt_lifetime
    )
    async with open_engine(settings, backend or NullBackend()) as engine:
        yield LocalServer(engine, auth, build_app(engine, auth))
