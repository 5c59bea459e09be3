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

Faults: every ``/api/v1`` request passes a :class:`~._fault_middleware.FaultInjector` whose
plan can be given at start (``faults=``), replaced with :meth:`LocalServer.set_faults`, or
replaced over HTTP with ``PUT /_local/faults`` (a JSON plan; ``GET`` reads the statistics).
A plan with a ``connection`` section also puts a :class:`~._fault_proxy.FaultProxy` in front
of the socket :meth:`LocalServer.serve` opens, and ``serve`` reports the proxy's URL.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, final

import msgspec
import trio

from tinker_actors.local._app import build_app
from tinker_actors.local._auth import CALLER, Authenticator, AuthError
from tinker_actors.local._catalogue import check_aliases
from tinker_actors.local._core import EngineError, ServerSettings
from tinker_actors.local._engine import LocalEngine, open_engine
from tinker_actors.local._fault_middleware import FaultInjector, Scope
from tinker_actors.local._fault_proxy import FaultProxy
from tinker_actors.local._faults import FaultPlan, FaultPlanError
from tinker_actors.local._http_server import LISTEN_BACKLOG, serve_asgi
from tinker_actors.local._limits import check_json_depth, over_limit
from tinker_actors.local._null_backend import NullBackend
from tinker_actors.local._refusals import consume_refused, peek_json_ids, peek_proto_ids

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.types import ASGIApp, Receive, Scope, Send

    from tinker_actors.local._backend import Backend

__all__ = ["LISTEN_BACKLOG", "LocalServer", "open_local_server"]

_DEBUG_ROUTES = frozenset({"/_local/counters", "/_local/faults"})
# Requests that carry a model's seq_id (protocol.md §5): a refusal of one consumes that id.
_TRAINING_SUBMISSIONS = frozenset(
    "/api/v1/" + name
    for name in (
        "forward_backward",
        "optim_step",
        "save_weights",
        "save_weights_for_sampler",
        "save_weights_external",
        "load_weights",
    )
)


@final
class LocalServer:
    """A running local server; obtained from :func:`open_local_server`."""

    def __init__(self, engine: LocalEngine, auth: Authenticator, api: ASGIApp) -> None:
        self.engine = engine
        self.auth = auth
        self.faults = FaultInjector(api, on_refused=self._consume_injected_refusal)
        self._api = api
        self.proxy: FaultProxy | None = None
        self.urls: list[str] = []

    def _consume_injected_refusal(self, scope: Scope, body: bytes, status: int) -> None:
        """Treat an injected refusal of a training request as the server's own refusal."""
        if scope["path"] not in _TRAINING_SUBMISSIONS:
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            principal = self.auth.check(headers.get("x-api-key"), raw_key_allowed=False)
        except AuthError:
            return  # the app would have refused it as unauthenticated: nothing to consume
        content_type = headers.get("content-type", "")
        if "protobuf" in content_type:
            ids = peek_proto_ids(body, headers.get("content-encoding"))
        else:
            ids = peek_json_ids(body)
        token = CALLER.set(principal)
        try:
            consume_refused(self.engine.core, *ids, status)
        finally:
            CALLER.reset(token)

    @property
    def settings(self) -> ServerSettings:
        """The settings in force."""
        return self.engine.settings

    def set_faults(self, plan: FaultPlan) -> None:
        """Replace the fault plan (and the proxy's connection faults, when serving)."""
        self.faults.set_plan(plan)
        connection = plan.connection_faults()
        if self.proxy is not None and connection is not None:
            self.proxy.set_faults(connection)

    def counters(self) -> dict[str, object]:
        """Everything received, applied and deduplicated, per-model order, injected faults."""
        out = self.engine.counters()
        out["faults"] = self.faults.statistics().as_dict()
        if self.proxy is not None:
            out["connection_faults"] = self.proxy.statistics().as_dict()
        return out

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point: the debug routes here, the rest through the injector.

        The signed download links (``/_local/files/...``) are the app's: their token is the
        credential, as in a signed storage URL.
        """
        if scope["type"] == "http" and scope.get("path", "") in _DEBUG_ROUTES:
            await self._debug_route(scope, receive, send)  # debug routes are never faulted
        else:
            await self.faults(scope, receive, send)

    async def _debug_route(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /_local/counters``, ``GET``/``PUT /_local/faults``; an (admin) key required."""
        path, method = scope["path"], scope["method"]
        key = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-api-key"), None)
        status = 200
        answer: object = None
        try:
            self.auth.check_admin(key)
        except AuthError as exc:
            status, answer = exc.status, {"detail": exc.message}
        else:
            if path == "/_local/counters" and method == "GET":
                answer = self.counters()
            elif path == "/_local/faults" and method == "PUT":
                status, answer = await self._put_faults(receive)
            elif path == "/_local/faults" and method == "GET":
                answer = self._fault_statistics()
            elif path in ("/_local/counters", "/_local/faults"):
                allowed = "GET" if path == "/_local/counters" else "GET or PUT"
                status, answer = 405, {"detail": f"Method Not Allowed: {path} takes {allowed}"}
            else:
                status, answer = 404, {"detail": f"Not Found: no endpoint {path}"}
        self.engine.core.counters[f"http:{path}"] += 1
        body = msgspec.json.encode(answer)
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _fault_statistics(self) -> dict[str, object]:
        """The injector's statistics, plus the proxy's under ``connection`` when it runs."""
        stats = self.faults.statistics().as_dict()
        if self.proxy is not None:
            stats["connection"] = self.proxy.statistics().as_dict()
        return stats

    async def _put_faults(self, receive: Receive) -> tuple[int, object]:
        limits = self.settings.limits
        body = b""
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return 400, {"detail": "the client disconnected before its request body arrived"}
            body += message.get("body", b"")
            if len(body) > limits.max_json_body_bytes:
                error = over_limit(
                    f"a body of at least {len(body)} bytes",
                    "max_json_body_bytes",
                    limits.max_json_body_bytes,
                    status=413,
                )
                return error.status, {"detail": error.message}
            if not message.get("more_body", False):
                break
        try:
            check_json_depth(body, limits.max_json_depth)
            self.set_faults(FaultPlan.from_json(body, source="PUT /_local/faults"))
        except FaultPlanError as exc:
            return 400, {"detail": str(exc)}
        except EngineError as exc:
            return exc.status, {"detail": exc.message}
        return 200, self._fault_statistics()

    async def serve(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve HTTP/1.1 on ``host:port`` until cancelled; report the URL when listening.

        With connection faults in the plan, the HTTP server listens on a free loopback port
        and a :class:`FaultProxy` on ``host:port`` forwards to it; the proxy's URL is reported.
        """
        connection = self.faults.plan.connection_faults()
        bind_port = 0 if connection is not None else port
        # 75 s is above the clients' keep-alive expiry (5 s), so the server never closes an idle
        # connection just as a client reuses it
        limits = self.settings.limits
        run = partial(
            serve_asgi,
            self.app,
            host=host,
            port=bind_port,
            backlog=LISTEN_BACKLOG,
            keep_alive_timeout=75.0,
            max_connections=limits.max_connections,
            max_body_bytes=limits.max_body_bytes,
            body_timeout=limits.body_timeout,
        )

        async with trio.open_nursery() as nursery:
            binds: list[str] = await nursery.start(run)
            url = binds[0]
            if connection is not None:
                upstream_port = int(url.rsplit(":", 1)[1])
                self.proxy = FaultProxy(
                    upstream_port=upstream_port, faults=connection, host=host, port=port
                )
                url = await nursery.start(self.proxy.serve)
            self.urls = [url]
            task_status.started(url)


@asynccontextmanager
async def open_local_server(
    *,
    backend: Backend | None = None,
    settings: ServerSettings | None = None,
    faults: FaultPlan | None = None,
    **overrides: object,
) -> AsyncIterator[LocalServer]:
    """Start the engine (null backend unless given one) and yield the server.

    Args:
        backend: the model backend; a fresh :class:`NullBackend` by default.
        settings: the server settings; keyword ``overrides`` replace single fields.
        faults: a fault plan to inject from the first request on.

    Raises:
        CatalogueError: ``model_aliases`` that do not name catalogue models.
    """
    settings = replace(settings or ServerSettings(), **overrides)  # type: ignore[arg-type]
    settings = replace(settings, model_aliases=check_aliases(settings.model_aliases))
    if settings.jwt_auth and not settings.client_config.pjwt_auth_enabled:
        flags = msgspec.structs.replace(settings.client_config, pjwt_auth_enabled=True)
        settings = replace(settings, client_config=flags)
    auth = Authenticator(
        api_keys=settings.api_keys,
        admin_keys=settings.admin_keys,
        jwt_auth=settings.jwt_auth,
        jwt_lifetime=settings.jwt_lifetime,
        clock=settings.wall_clock,
    )
    async with open_engine(settings, backend or NullBackend()) as engine:
        server = LocalServer(engine, auth, build_app(engine, auth))
        if faults is not None:
            server.set_faults(faults)
        yield server
