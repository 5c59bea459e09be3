"""The :class:`Runtime`: the supervision tree of one ``tinker_actors.open()`` block.

The runtime holds the tree's root and the transport, starts the lazily created children (the
session manager, the poller, client actors), and is also the ServiceClient:
``create_lora_training_client``, ``create_training_client_from_state[_with_optimizer]``,
``create_sampling_client`` and ``get_server_capabilities`` delegate to
:class:`~tinker_actors.clients.ServiceClient`. Nothing is sent until one of them is called; the
first that needs a session bootstraps it (client config, dynamic config, create_session) and
starts its heartbeat.

The session is started lazily, as a dynamic child of the root, rather than as a fixed child
between the limiters and the pollers: a runtime used for REST calls or capabilities only never
creates a session, and the tree keeps its three fixed children. It is TEMPORARY: a lost session
is not silently replaced under clients that hold its id; the next factory call starts anew.

How the block opens and closes the runtime is in :mod:`tinker_actors._open`.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

import trio

from tinker_actors._flush import DEFAULT_FLUSH_TIMEOUT, AcceptedOps
from tinker_actors._runtime_parts import (
    RuntimeStatistics,
    ServiceMethods,
    collect_statistics,
    latency_report,
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
from tinker_actors.errors import InvalidInputError
from tinker_actors.latency import LatencyBook, LatencyReport
from tinker_actors.supervisors import (
    SHUTDOWN,
    ActorExited,
    ActorRef,
    Census,
    ChildSpec,
    Registry,
    Restart,
    RuntimeDump,
    SupervisorRef,
    actor_spec,
    registry_spec,
    supervisor_spec,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.actors import FutureState
    from tinker_actors.config import Config
    from tinker_actors.supervisors import Actor
    from tinker_actors.transport import Transport
    from tinker_actors.types import ClientConfigResponse

__all__ = [
    "DEFAULT_SHUTDOWN_GRACE",
    "RUNTIME_TOKEN",
    "Runtime",
    "RuntimeStatistics",
    "root_children",
]

T = TypeVar("T")
M = TypeVar("M")

LIMITERS: Final = "limiters"
POLLERS: Final = "pollers"
CLIENTS: Final = "clients"
SESSION: Final = "session"
POLLER: Final = "poller"
DEFAULT_SHUTDOWN_GRACE: Final = 5.0

#: Proves a Runtime is built by open() (the only constructor).
RUNTIME_TOKEN: Final = object()


def root_children() -> list[ChildSpec[object]]:
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
        "_accepted",
        "_budget",
        "_census",
        "_config",
        "_display_name",
        "_finish_override",
        "_flush_timeout",
        "_grace",
        "_latency_since",
        "_limiter",
        "_operations",
        "_poller",
        "_root",
        "_service",
        "_session_handle",
        "_shadows",
        "_started_at",
        "_starting",
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
        flush_timeout: float = DEFAULT_FLUSH_TIMEOUT,
        user_metadata: dict[str, Any] | None = None,
        display_name: str | None = None,
    ) -> None:
        if token is not RUNTIME_TOKEN:
            raise TypeError("Runtime has no public constructor; use 'async with open() as runtime'")
        self._config = config
        self._transport = transport
        self._root = root
        self._census = census
        self._grace = grace
        self._user_metadata = user_metadata
        self._display_name = display_name
        self._finish_override: tuple[FinishStatus, str | None] | None = None
        self._started_at = trio.current_time()
        self._session_handle: SessionHandle | None = None
        self._budget = ResponseBudget()
        self._limiter: RateLimiter | None = None
        #: (supervisor, child id) -> set when the task starting that child is done trying
        self._starting: dict[tuple[str, str], trio.Event] = {}
        #: the newest poller made (the running one, once its start returned)
        self._poller: FuturePoller | None = None
        #: operations' times, kept here so that they outlive a restarted poller
        self._operations = LatencyBook()
        self._latency_since = self._started_at
        self._telemetry = TelemetryReporter.for_config(transport, config)
        self._telemetry_started = False
        # Sampler handles from other runtimes join their own session here (shadow holders).
        # Accepted training requests still pending: leaving open() flushes them (_flush.py).
        self._accepted = AcceptedOps()
        self._flush_timeout = flush_timeout
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

    def current_session_id(self) -> str | None:
        """Return the session id if the session exists, else None (never creates one)."""
        handle = self._session_handle
        return handle.session_id if handle is not None else None

    def set_finish(self, status: FinishStatus, detail: str | None = None) -> None:
        """Choose the session's finish status (and a note) for when ``open()`` exits.

        By default the status follows how the block ends (``success``, ``errored`` for an
        Exception, ``interrupted`` otherwise); a caller that knows better (a blocking facade
        closing on the user's behalf) says so here. Queued training requests are still sent
        first on a normal exit.

        Raises:
            InvalidInputError: an unknown status or a non-str detail.
        """
        if status not in ("success", "errored", "interrupted"):
            raise InvalidInputError(
                f"status must be 'success', 'errored' or 'interrupted', got {status!r}"
            )
        if detail is not None and not isinstance(detail, str):
            raise InvalidInputError(f"detail must be a str or None, got {detail!r}")
        self._finish_override = (status, detail)

    # -- lazily started actors -----------------------------------------------------------------

    async def _child_actor(
        self, supervisor: SupervisorRef, child_id: str, make_spec: Callable[[], ChildSpec[T]]
    ) -> T:
        """Return the running child ``child_id``, starting it first if there is none.

        One task starts a missing child; tasks that need it meanwhile wait for that start
        instead of racing it (a burst of 2,048 first samples would otherwise make 2,047 failed
        ``start_child`` calls, each leaving an exception and its traceback cycle to the
        collector).
        """
        key = (supervisor.name, child_id)
        for _ in range(1000):
            value = supervisor.child(child_id)
            if isinstance(value, ActorRef) and value.alive:
                return cast("T", value)
            starting = self._starting.get(key)
            if starting is not None:
                await starting.wait()
                continue
            done = self._starting[key] = trio.Event()
            try:
                return await supervisor.start_child(make_spec())
            except ValueError:
                # the old child is still being removed (or was started past this runtime)
                await trio.lowlevel.checkpoint()
            finally:
                del self._starting[key]
                done.set()
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
        reserved: tuple[SessionHandle, int] = await (await self._session_ref()).call(
            lambda reply: Reserve(kind, reply)
        )
        # Reserve bootstraps the session as Ensure does (create_lora_training_client takes this
        # path), so it must start the telemetry flusher too, or SESSION_START is never sent.
        if not self._telemetry_started:
            await self._start_telemetry()
        return reserved

    async def _rate_limiter(self) -> RateLimiter:
        """Return this runtime's RateLimiter, sized by the session's client config flags."""
        limiter = self._limiter
        if limiter is not None and not limiter.closed:
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
        since = trio.current_time()  # the operation's time runs from its call (latency())
        self._accepted.track(state)
        # The cancel point comes first: a caller cancelled here starts nothing (its slot
        # fails as cancelled). One that awaits the result as soon as this returns finds the
        # work still queued and runs it itself (FuturePoller.host), so its first schedule
        # point is that work's first request: a schedule point here would be a turn of the
        # run loop on every call's critical path (about 15 us of B8's 900). Work a caller
        # leaves queued starts at its next schedule point, and a call that finds such work
        # still queued is a schedule point itself, so a loop of submissions keeps them all
        # in flight (each starts at the next call) and never runs without yielding.
        try:
            poller = self._poller
            if poller is not None and poller.accepting and not poller.backlog:
                await trio.lowlevel.checkpoint_if_cancelled()
            else:
                await trio.lowlevel.checkpoint()
                poller = self._poller
            if poller is None or not poller.accepting:
                await self._child_actor(self.pollers, POLLER, self._poller_spec)
                poller = self._poller
                assert poller is not None  # the spec's factory made it
        except BaseException:
            state.cancel()
            raise
        # Straight to the poller: a Watch message would cost a turn of the poller's own task.
        poller.host(state, work, since)

    def _poller_spec(self) -> ChildSpec[ActorRef[Watch]]:
        handle = self._session_handle
        batch = handle.dynamic_config.sample_cancel_max_batch_size if handle else 64

        def factory(nursery: trio.Nursery) -> FuturePoller:
            self._poller = FuturePoller(
                nursery, self._transport, self._cancel_enabled, max(batch, 1), self._operations
            )
            return self._poller

        return ChildSpec(
            POLLER, run_hosted_actor, factory, POLLER, restart=Restart.TEMPORARY,
            shutdown=self._grace,
        )  # fmt: skip

    async def _start_client_actor(
        self, id: str, factory: Callable[[trio.Nursery], Actor[Any]], restart: Restart
    ) -> ActorRef[Any]:
        spec: ChildSpec[ActorRef[Any]] = ChildSpec(
            id, run_hosted_actor, factory, id, restart=restart, shutdown=self._grace
        )
        return await self.start_child(spec)

    async def _stop_client_actor(self, id: str) -> None:
        await self.clients.terminate_child(id)

    async def _flush(self, *, interrupted: bool = False) -> int:
        """Send what training clients accepted and await it, within the flush timeout.

        ``interrupted``: the block ended with a Ctrl-C; a flush that takes more than a moment
        then says what it waits for (see :meth:`AcceptedOps.flush`).

        Returns:
            How many accepted requests could not be settled in time (they failed clearly).
        """
        return await self._accepted.flush(self._flush_timeout, announce=interrupted)

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
        """Finish the session, if one was created (the first reason wins).

        A status chosen with :meth:`set_finish` replaces the one derived from the block's end.
        """
        detail: str | None = None
        if self._finish_override is not None:
            status, detail = self._finish_override
        value = self._root.child(SESSION)
        if isinstance(value, ActorRef) and value.alive:
            ref = cast("ActorRef[SessionMessage]", value)
            with contextlib.suppress(ActorExited):
                await ref.call(lambda reply: Finish(status, detail, reply))
                return
        # The manager is gone (an outer cancel scope took the tree down with the body): the
        # session still exists server-side, so finish it directly. The handle makes it once.
        if self._session_handle is not None:
            await finish_session(self._transport, self._session_handle, status, detail)

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

    def latency(self, *, reset: bool = False) -> LatencyReport:
        """Return p50 / p90 / p99 times of the HTTP requests by route and of the long
        operations by request type, since ``open()`` or the last ``reset=True``.

        ``print(runtime.latency().render())`` answers "is the service slow today?".
        ``reset=True`` starts a new window after taking this report.
        """
        now = trio.current_time()
        report = latency_report(
            self._transport.latency, self._operations, now - self._latency_since
        )
        if reset:
            self._transport.latency.reset()
            self._operations.reset()
            self._latency_since = now
        return report

    def _running(self, child_id: str, kind: type[T]) -> T:
        value = self._root.child(child_id)
        if not isinstance(value, kind):
            reason = self._root.exit_reason or SHUTDOWN
            raise ActorExited(f"{self._root.name}/{child_id}", reason)
        return value
