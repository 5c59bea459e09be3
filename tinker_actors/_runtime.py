"""``tinker_actors.open()``: the one ``async with`` that owns every lifetime.

Entering it resolves the configuration, opens the HTTP transport (a resource, not an actor),
and starts the supervision tree; leaving it stops the tree within ``shutdown_grace`` seconds and
closes the transport. Nothing it started outlives the block: no task, no socket.

::

    open()                         nursery + transport (one httpx.AsyncClient)
    └── root            rest_for_one
        ├── limiters    Registry: one RateLimiter per (base_url, sha256(api_key))
        ├── pollers     one_for_one, dynamic: the FuturePoller (started on first use)
        ├── clients     one_for_one, dynamic: one actor per Training client (TRANSIENT)
        └── session     the SessionManager, started on first use (TEMPORARY)

The runtime is also the ServiceClient: ``create_lora_training_client``,
``create_training_client_from_state[_with_optimizer]``, ``create_sampling_client`` and
``get_server_capabilities`` delegate to :class:`~tinker_actors.clients.ServiceClient`.
Nothing is sent until one of them is called; the first that needs a session bootstraps it
(client config, dynamic config, create_session) and starts its heartbeat.

The session is started lazily, as a dynamic child of the root, rather than as a fixed child
between the limiters and the pollers: a runtime used for REST calls or capabilities only never
creates a session, and the tree keeps its three fixed children. It is TEMPORARY: a lost session
is not silently replaced under clients that hold its id; the next factory call starts anew.

Leaving the block finishes the session, if one was created, before the tree stops:
``success`` on a normal exit, ``errored`` when the body raised an Exception, ``interrupted`` on
any other BaseException (KeyboardInterrupt, a cancellation).

Errors of individual calls reach their callers as ordinary exceptions. Only an escalation (a
supervisor that gave up) leaves ``open()``, as trio's exception group holding the child's own
exception::

    try:
        async with open(api_key="tml-...") as runtime:
            ...
    except* ConnectionError as group:
        ...

An exception raised by the body of the ``async with`` itself comes out unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

import trio

from tinker_actors._runtime_parts import (
    RuntimeStatistics,
    ServiceMethods,
    check_grace,
    check_session_options,
    collect_statistics,
    finish_status,
)
from tinker_actors.actors import (
    Ensure,
    Finish,
    FinishStatus,
    FuturePoller,
    RateLimiter,
    Reserve,
    ResponseBudget,
    SessionHandle,
    SessionMessage,
    TelemetryReporter,
    Watch,
    finish_session,
    rate_limiter_for,
    run_hosted_actor,
    session_spec,
    telemetry_spec,
)
from tinker_actors.clients import (
    ClientContext,
    ServiceClient,
)
from tinker_actors.clients._sampler_handle import ShadowSessions
from tinker_actors.config import Config, resolve_config
from tinker_actors.supervisors import (
    SHUTDOWN,
    ActorExited,
    ActorRef,
    Census,
    ChildSpec,
    Registry,
    Restart,
    RuntimeDump,
    Strategy,
    SupervisorRef,
    actor_spec,
    registry_spec,
    run_supervisor,
    supervisor_spec,
    track_actors,
)
from tinker_actors.transport import Transport, open_transport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    import httpx

    from tinker_actors.actors import FutureState
    from tinker_actors.supervisors import Actor
    from tinker_actors.types import ClientConfigResponse

__all__ = ["Runtime", "RuntimeStatistics", "open"]

T = TypeVar("T")
M = TypeVar("M")

LIMITERS: Final = "limiters"
POLLERS: Final = "pollers"
CLIENTS: Final = "clients"
SESSION: Final = "session"
POLLER: Final = "poller"
DEFAULT_SHUTDOWN_GRACE: Final = 5.0

_TOKEN: Final = object()


def _tree() -> list[ChildSpec[object]]:
    """The root's children, in start order (rest_for_one: later ones depend on earlier ones)."""
    return [
        registry_spec(LIMITERS, prefix="limiter"),
        supervisor_spec(POLLERS),
        supervisor_spec(CLIENTS),
    ]


@final
class Runtime(ServiceMethods):
    """What ``open()`` yields: the tree, the limiter registry, the transport. No public constructor."""

    __slots__ = (
        "_budget",
        "_census",
        "_config",
        "_display_name",
        "_grace",
        "_limiter",
        "_root",
        "_service",
        "_session_handle",
        "_shadows",
        "_started_at",
        "_telemetry",
        "_telemetry_started",
        "_transport",
        "_user_metadata",
    )

    def __init__(
        self,
        token: object,
        *,
        config: Config,
        transport: Transport,
        root: SupervisorRef,
        census: Census,
        grace: float = DEFAULT_SHUTDOWN_GRACE,
        user_metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("Runtime has no public constructor; use 'async with open() as runtime'")
        self._config = config
        self._transport = transport
        self._root = root
        self._census = census
        self._grace = grace
        self._user_metadata = user_metadata
        self._display_name = display_name
        self._started_at = trio.current_time()
        self._session_handle: SessionHandle | None = None
        self._budget = ResponseBudget()
        self._limiter: RateLimiter | None = None
        self._telemetry = TelemetryReporter.for_config(transport, config)
        self._telemetry_started = False
        # Sampler handles from other runtimes join their own session here (shadow holders).
        self._shadows = ShadowSessions(transport, lambda: self._session_handle, self._flags_ready)
        self._service = ServiceClient(
            ClientContext(
                transport=transport,
                config=config,
                budget=self._budget,
                ensure_session=self._ensure_session,
                reserve=self._reserve,
                watch=self._watch,
                start_actor=self._start_client_actor,
                stop_actor=self._stop_client_actor,
                rate_limiter=self._rate_limiter,
                telemetry=self._telemetry,
                shadows=self._shadows,
            )
        )

    def __repr__(self) -> str:
        return f"<Runtime {self._config.base_url} {'alive' if self._root.alive else 'stopped'}>"

    @property
    def config(self) -> Config:
        """The resolved configuration (the api key inside is a redacted Secret)."""
        return self._config

    @property
    def transport(self) -> Transport:
        """The HTTP transport every actor sends through."""
        return self._transport

    @property
    def telemetry(self) -> TelemetryReporter:
        """The telemetry reporter (a no-op when ``TINKER_TELEMETRY`` / ``telemetry`` is off).

        Its flusher starts with the session and drains (bounded by the shutdown grace) when
        ``open()`` exits.
        """
        return self._telemetry

    @property
    def root(self) -> SupervisorRef:
        """The root supervisor."""
        return self._root

    @property
    def registry(self) -> Registry[tuple[str, str]]:
        """The limiter registry, keyed by :attr:`limiter_key`.

        Raises:
            ActorExited: the registry is not running (the tree is stopping or restarting it).
        """
        return self._running(LIMITERS, Registry)

    @property
    def limiter_key(self) -> tuple[str, str]:
        """``(base_url, sha256(api_key))``: this runtime's key in the limiter registry."""
        return (self._config.base_url, self._config.api_key.fingerprint())

    @property
    def pollers(self) -> SupervisorRef:
        """The dynamic supervisor of FuturePoller actors."""
        return self._running(POLLERS, SupervisorRef)

    @property
    def clients(self) -> SupervisorRef:
        """The dynamic supervisor of per-client actors."""
        return self._running(CLIENTS, SupervisorRef)

    async def start_child(self, spec: ChildSpec[T]) -> T:
        """Start ``spec`` under the clients supervisor and return its started value."""
        return await self.clients.start_child(spec)

    async def start_actor(
        self,
        id: str,
        factory: Callable[[], Actor[M]],
        *,
        restart: Restart = Restart.TRANSIENT,
        shutdown: float = DEFAULT_SHUTDOWN_GRACE,
    ) -> ActorRef[M]:
        """Start ``factory()`` as a client actor named ``id`` (TRANSIENT by default) and return its ref.

        TRANSIENT is the default because a client belongs to the user: it comes back after a
        crash, but a normal stop is final (a PERMANENT client that kept restarting is how the
        Elixir port's restart storms took down their parent).
        """
        return await self.start_child(actor_spec(id, factory, restart=restart, shutdown=shutdown))

    # -- the ServiceClient (its factories are ServiceMethods') -------------------------------

    async def session_id(self) -> str:
        """Return the session id, bootstrapping the session if needed (quote it to support)."""
        return (await self._ensure_session()).session_id

    # -- lazily started actors -----------------------------------------------------------------

    async def _child_actor(
        self, supervisor: SupervisorRef, child_id: str, make_spec: Callable[[], ChildSpec[T]]
    ) -> T:
        """Return the running child ``child_id``, starting it first if there is none."""
        for _ in range(1000):
            value = supervisor.child(child_id)
            if isinstance(value, ActorRef) and value.alive:
                return cast("T", value)
            try:
                return await supervisor.start_child(make_spec())
            except ValueError:
                # Another task is starting it, or the old one is still being removed.
                await trio.lowlevel.checkpoint()
        raise RuntimeError(f"{supervisor.name}/{child_id} could not be started")

    async def _session_ref(self) -> ActorRef[SessionMessage]:
        def spec() -> ChildSpec[ActorRef[SessionMessage]]:
            return session_spec(
                self._transport,
                self._config,
                on_ready=self._session_ready,
                id=SESSION,
                user_metadata=self._user_metadata,
                display_name=self._display_name,
            )

        return await self._child_actor(self._root, SESSION, spec)

    def _session_ready(self, handle: SessionHandle) -> None:
        self._session_handle = handle
        self._budget.resize(handle.client_config.inflight_response_bytes_semaphore_size)
        self._telemetry.bind_session(handle.session_id)  # queues SESSION_START

    def _flags_ready(self, flags: ClientConfigResponse) -> None:
        """Size the response budget from flags fetched without a session (a shadow holder)."""
        if self._session_handle is None:
            self._budget.resize(flags.inflight_response_bytes_semaphore_size)

    async def _ensure_session(self) -> SessionHandle:
        handle = await (await self._session_ref()).call(Ensure)
        if not self._telemetry_started:
            await self._start_telemetry()
        return handle

    async def _start_telemetry(self) -> None:
        """Start the telemetry flusher under the root, once, after the session exists.

        Started after the session, it is stopped before it: the stop ladder's polite rung makes
        it drain what is queued (bounded by the grace of ``open()``).
        """
        self._telemetry_started = True
        if not self._config.telemetry:
            return
        with contextlib.suppress(ValueError):  # already there (started concurrently)
            await self._root.start_child(telemetry_spec(self._telemetry))

    async def _reserve(self, counter: str) -> tuple[SessionHandle, int]:
        kind: Any = counter
        return await (await self._session_ref()).call(lambda reply: Reserve(kind, reply))

    async def _rate_limiter(self) -> RateLimiter:
        """Return this runtime's RateLimiter, sized by the session's client config flags."""
        limiter = self._limiter
        if limiter is not None and not limiter.statistics().closed:
            return limiter
        # The own session's flags; a runtime that only samples on sampler handles of other
        # runtimes has no session, and fetches the flags alone (no create_session).
        flags, _ = await self._shadows.flags()
        limiter = await rate_limiter_for(
            self.registry,
            self.limiter_key,
            sample_dispatch_bytes=flags.sample_dispatch_bytes_semaphore_size,
            fwdbwd_dispatch_bytes=flags.fwdbwd_dispatch_bytes_semaphore_size,
        )
        self._limiter = limiter
        return limiter

    def _cancel_enabled(self) -> bool:
        handle = self._session_handle
        return handle is not None and handle.dynamic_config.sample_cancel_enabled

    async def _watch(self, state: FutureState[Any], work: Callable[[], Awaitable[object]]) -> None:
        def spec() -> ChildSpec[ActorRef[Watch]]:
            handle = self._session_handle
            batch = handle.dynamic_config.sample_cancel_max_batch_size if handle else 64

            def factory(nursery: trio.Nursery) -> FuturePoller:
                return FuturePoller(nursery, self._transport, self._cancel_enabled, max(batch, 1))

            return ChildSpec(
                POLLER, run_hosted_actor, factory, POLLER, restart=Restart.TEMPORARY,
                shutdown=self._grace,
            )  # fmt: skip

        poller = await self._child_actor(self.pollers, POLLER, spec)
        await poller.cast(Watch(state, work))

    async def _start_client_actor(
        self, id: str, factory: Callable[[trio.Nursery], Actor[Any]], restart: Restart
    ) -> ActorRef[Any]:
        spec: ChildSpec[ActorRef[Any]] = ChildSpec(
            id, run_hosted_actor, factory, id, restart=restart, shutdown=self._grace
        )
        return await self.start_child(spec)

    async def _stop_client_actor(self, id: str) -> None:
        await self.clients.terminate_child(id)

    async def _stop_clients(self) -> None:
        """Stop every client actor politely, together: training clients send what they queued."""
        try:
            clients = self.clients
        except ActorExited:
            return

        async def stop(child_id: str) -> None:
            with contextlib.suppress(ActorExited):
                await clients.terminate_child(child_id)

        async with trio.open_nursery() as nursery:
            for child in clients.which_children():
                if child.running:
                    nursery.start_soon(stop, child.id)

    async def _finish_session(self, status: FinishStatus) -> None:
        """Finish the session, if one was created (the first reason wins)."""
        value = self._root.child(SESSION)
        if isinstance(value, ActorRef) and value.alive:
            ref = cast("ActorRef[SessionMessage]", value)
            with contextlib.suppress(ActorExited):
                await ref.call(lambda reply: Finish(status, None, reply))
                return
        # The manager is gone (an outer cancel scope took the tree down with the body): the
        # session still exists server-side, so finish it directly. The handle makes it once.
        if self._session_handle is not None:
            await finish_session(self._transport, self._session_handle, status, None)

    def dump(self) -> RuntimeDump:
        """List every live actor and supervisor with its in-flight calls and their age.

        ``print(runtime.dump().render())`` answers "what is my trainer waiting on?".
        """
        return self._census.dump()

    def statistics(self) -> RuntimeStatistics:
        """Return uptime, live actors, every supervisor's counters, limiters and transport."""
        return collect_statistics(
            self._root, (LIMITERS, POLLERS, CLIENTS), self._census, self._started_at,
            self._transport,
        )  # fmt: skip

    def _running(self, child_id: str, kind: type[T]) -> T:
        value = self._root.child(child_id)
        if not isinstance(value, kind):
            reason = self._root.exit_reason or SHUTDOWN
            raise ActorExited(f"{self._root.name}/{child_id}", reason)
        return value


@asynccontextmanager
async def open(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    http_transport: httpx.AsyncBaseTransport | None = None,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE,
    user_metadata: dict[str, Any] | None = None,
    display_name: str | None = None,
    **config_overrides: Any,
) -> AsyncIterator[Runtime]:
    """Open the transport, start the supervision tree, and yield the :class:`Runtime`.

    Args:
        base_url: the API root (else ``TINKER_BASE_URL``, else the default service).
        api_key: the credential (else ``TINKER_API_KEY`` and the other sources of
            :func:`~tinker_actors.config.resolve_config`).
        http_transport: an httpx transport to use instead of the network (tests:
            ``httpx.MockTransport`` / ``httpx.ASGITransport``).
        shutdown_grace: seconds the tree gets to stop politely on exit before it is cancelled.
        user_metadata: metadata of the session, sent in ``create_session``.
        display_name: a human-readable name of the session, sent in ``create_session``.
        **config_overrides: any other Config field, e.g. ``timeout=30``.

    Raises:
        InvalidInputError: bad settings or no credential, before anything starts.
        ExceptionGroup: a supervisor escalation; it holds the crashed child's own exception.
    """
    grace = check_grace(shutdown_grace)
    check_session_options(user_metadata, display_name)
    config = resolve_config(base_url=base_url, api_key=api_key, **config_overrides)
    body_error: BaseException | None = None
    try:
        async with open_transport(config, http_transport=http_transport) as transport:
            with track_actors() as census:
                async with trio.open_nursery() as nursery:
                    root: SupervisorRef = await nursery.start(
                        functools.partial(
                            run_supervisor, _tree(), name="root", strategy=Strategy.REST_FOR_ONE
                        )
                    )
                    runtime = Runtime(
                        _TOKEN,
                        config=config,
                        transport=transport,
                        root=root,
                        census=census,
                        grace=grace,
                        user_metadata=user_metadata,
                        display_name=display_name,
                    )
                    try:
                        yield runtime
                    except BaseException as exc:
                        body_error = exc
                        raise
                    finally:
                        # The ladder, bounded as a whole by the grace: polite stop, then cancel.
                        with trio.CancelScope(shield=True), trio.move_on_after(grace):
                            if body_error is None:
                                # Clients first, while the session lives: what a training
                                # client accepted as queued is sent, not dropped.
                                with trio.move_on_after(grace / 3):
                                    await runtime._stop_clients()
                            # Finishing gets part of the grace, so the tree always gets the rest.
                            with trio.move_on_after(grace / 3):
                                await runtime._finish_session(finish_status(body_error))
                            root.request_stop()
                            await root.wait_stopped()
                        nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Our nursery wraps whatever the body raised; give the user their own exception back.
        # Escalations from the tree stay in the group.
        mine = body_error
        if mine is None or group.split(lambda exc: exc is mine)[1] is not None:
            raise
    else:
        return
    raise mine
