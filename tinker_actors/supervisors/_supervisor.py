"""Supervisors: the only place that catches children's crashes, and decides what happens next.

A supervisor is a task owning a nursery. It starts its children in order, each only after the
previous one reported ready, then waits for exits and requests. When a child exits, its
:class:`Restart` type says whether to restart it, and the :class:`Strategy` says which siblings
go down and come back with it: stopped in reverse start order, restarted in start order, after a
delay from ``backoff.exponential_delay``.

Intensity bounds the damage. More than ``max_restarts`` restarts within ``period`` seconds
(measured on ``trio.current_time()``, so MockClock drives it) and the supervisor gives up: it
stops every child and re-raises the crash of the child that used up the budget, with a note
naming the supervisor. Its own supervisor then treats that as its child's crash, and so on up to
``tinker_actors.open()``, which lets it out as trio's exception group::

    try:
        async with tinker_actors.open() as runtime:
            ...
    except* ConnectionError as group:
        ...   # the very exception the child raised, after the tree gave up on it

Shutdown ladder, per child: ``request_stop()`` on its started value (polite), wait up to the
child's ``shutdown`` grace, then cancel its scope. ``Cancelled`` is never a crash; a BaseException
that is not an Exception (KeyboardInterrupt, SystemExit) is never caught and tears the tree down.

Dynamic children (``start_child`` / ``terminate_child``) go through the supervisor's own queue,
so every restart decision is made by one task, in order.

Each child runs as a series of incarnations, each reporting how it ended back to that queue; the
record of a child and the task that runs one incarnation live in :mod:`._child`.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from typing import TYPE_CHECKING, Final, TypeVar

import trio

from tinker_actors.backoff import exponential_delay
from tinker_actors.supervisors._child import Child, Exited, run_incarnation
from tinker_actors.supervisors._errors import ActorExited, SupervisorGaveUp
from tinker_actors.supervisors._introspect import (
    ActorInfo,
    CallInfo,
    child_path,
    current_census,
    under_path,
)
from tinker_actors.supervisors._reply import CallLedger, Reply
from tinker_actors.supervisors._spec import ChildSpec, Restart, Stoppable, Strategy
from tinker_actors.supervisors._supervisor_ref import (
    SupervisorRef,
    _StartChild,
    _StopRequest,
    _TerminateChild,
)
from tinker_actors.supervisors._util import (
    NORMAL,
    PRIVATE,
    SHUTDOWN,
    ExitReason,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.backoff import Rng

__all__ = ["run_supervisor", "supervisor_spec"]

T = TypeVar("T")

DEFAULT_MAX_RESTARTS: Final = 3
DEFAULT_PERIOD: Final = 5.0
DEFAULT_RESTART_DELAY: Final = 0.05
DEFAULT_MAX_RESTART_DELAY: Final = 2.0


_Event = Exited | _StartChild | _TerminateChild | _StopRequest


class _Supervisor:
    """The state and the task body of one supervisor; reached from outside via SupervisorRef."""

    def __init__(
        self,
        name: str,
        specs: Sequence[ChildSpec[object]],
        *,
        strategy: Strategy,
        max_restarts: int,
        period: float,
        restart_delay: float,
        max_restart_delay: float,
        restart_jitter: float,
        rng: Rng | None,
    ) -> None:
        self.name = name
        self.strategy = strategy
        self.max_restarts = max_restarts
        self.period = period
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self.restart_jitter = restart_jitter
        self.rng = rng
        self.children = [Child(spec, dynamic=False) for spec in specs]
        # Unbounded on purpose: each child reports at most one exit per incarnation and each
        # requester waits for its answer, so the queue is bounded by children + callers, and a
        # dying child must never block on (or lose) its exit report.
        self.send, self.receive = trio.open_memory_channel[_Event](math.inf)
        self.ledger = CallLedger()
        self.restart_times: deque[float] = deque()
        self.restarts = 0
        self.started_at: float | None = None
        self.reason: ExitReason | None = None
        self.stopped = trio.Event()
        self.escalation: BaseException | None = None
        self.activity: str | None = None
        self.activity_since = 0.0
        self.nursery: trio.Nursery | None = None

    # -- the task -------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[SupervisorRef]) -> None:
        census = current_census()
        if census is not None:
            census.enroll(self)
        reason: ExitReason = SHUTDOWN
        escalation: BaseException | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    try:
                        for child in self.children:
                            self._busy(f"starting {child.spec.id}")
                            await self._start(child)
                        self._busy(None)
                        self.started_at = trio.current_time()
                        task_status.started(SupervisorRef(PRIVATE, self))
                        await self._serve()
                        reason = NORMAL
                    except Exception as exc:
                        # An init failure at startup, or a give-up: ours to raise, unwrapped.
                        self.escalation = exc
                        raise
                    finally:
                        # Shielded so that stopping the children completes even when we are
                        # being cancelled; every rung of the ladder is itself time-bounded.
                        with trio.CancelScope(shield=True):
                            await self._stop_all()
            except BaseExceptionGroup as group:
                # Our own error comes back wrapped by our nursery: unwrap it, so that a parent
                # supervisor sees the child's exception and not a growing nest of groups.
                mine = self.escalation
                if mine is None or group.split(lambda exc: exc is mine)[1] is not None:
                    raise
                escalation = mine
            if escalation is not None:
                reason = escalation
                raise escalation
        except trio.Cancelled:
            reason = SHUTDOWN
            raise
        except BaseException as exc:
            reason = exc
            raise
        finally:
            self._close(reason)
            if census is not None:
                census.discharge(self)

    def _close(self, reason: ExitReason) -> None:
        self.reason = reason
        self.activity = None
        self.receive.close()
        name = self.name
        self.ledger.fail_all(lambda: ActorExited(name, reason))
        self.stopped.set()

    async def _serve(self) -> None:
        async for event in self.receive:
            match event:
                case Exited(child=child, incarnation=incarnation, reason=reason):
                    if (
                        incarnation != child.incarnation
                        or child.stopping
                        or child not in self.children
                    ):
                        continue  # a stale report, or a stop we asked for
                    child.running = False
                    self._busy(f"handling exit of {child.spec.id}")
                    await self._on_exit(child, reason)
                case _StartChild(spec=spec, reply=reply):
                    self._busy(f"starting {spec.id}")
                    await self._start_dynamic(spec, reply)
                case _TerminateChild(id=child_id, reply=done):
                    self._busy(f"terminating {child_id}")
                    await self._terminate(child_id)
                    done.send(None)
                case _StopRequest():
                    return
            self._busy(None)

    def _busy(self, activity: str | None) -> None:
        self.activity = activity
        self.activity_since = trio.current_time()

    # -- starting ---------------------------------------------------------------------------

    async def _start(self, child: Child) -> None:
        """Start one incarnation of ``child``; raise whatever its start raised."""
        assert self.nursery is not None
        child.incarnation += 1
        child.done = trio.Event()
        child.stopping = False
        with under_path(self.name):
            child.value = await self.nursery.start(
                run_incarnation,
                child,
                child.incarnation,
                self.send.send_nowait,
                name=f"{self.name}/{child.spec.id}",
            )
        child.running = True
        child.pending = False

    async def _start_dynamic(self, spec: ChildSpec[object], reply: Reply[object]) -> None:
        if reply.abandoned:
            return  # the requester gave up before we got to it: start nothing
        if self._find(spec.id) is not None:
            reply.fail(ValueError(f"supervisor {self.name!r} already has a child {spec.id!r}"))
            return
        child = Child(spec, dynamic=True)
        self.children.append(child)
        try:
            await self._start(child)
        except Exception as exc:
            self.children.remove(child)
            reply.fail(exc)
            return
        if not reply.send(child.value):
            # The requester gave up while the child was starting: nobody holds its ref.
            await self._terminate(spec.id)

    # -- exits and restarts -------------------------------------------------------------------

    async def _on_exit(self, child: Child, reason: ExitReason) -> None:
        restart = child.spec.restart
        crashed = isinstance(reason, Exception)
        if restart is Restart.TEMPORARY or (restart is Restart.TRANSIENT and not crashed):
            if child.dynamic or restart is Restart.TEMPORARY:
                self.children.remove(child)
            return
        await self._restart(child, reason)

    async def _restart(self, child: Child, reason: ExitReason) -> None:
        """Restart ``child`` and the siblings its strategy ties to it, within the intensity."""
        while True:
            self._count_restart(child, reason)
            group = self._group(child)
            for sibling in reversed(group):
                if sibling is not child:
                    await self._stop_child(sibling)
            for sibling in group:
                if sibling is not child and sibling.spec.restart is Restart.TEMPORARY:
                    self.children.remove(sibling)  # temporaries never come back (as in OTP)
            group = [member for member in group if member in self.children]
            for member in group:
                member.pending = True
            delay = exponential_delay(
                len(child.restart_times) - 1,
                base=self.restart_delay,
                cap=self.max_restart_delay,
                jitter=self.restart_jitter,
                rng=self.rng,
            )
            if delay > 0:
                await trio.sleep(delay)
            for member in group:
                try:
                    await self._start(member)
                except Exception as exc:
                    # A failed restart is one more crash of that child: go round again.
                    child, reason = member, exc
                    break
            else:
                return

    def _count_restart(self, child: Child, reason: ExitReason) -> None:
        now = trio.current_time()
        horizon = now - self.period
        for times in (self.restart_times, child.restart_times):
            times.append(now)
            while times and times[0] <= horizon:
                times.popleft()
        if len(self.restart_times) > self.max_restarts:
            self._give_up(child, reason)
        self.restarts += 1
        child.restarts += 1

    def _give_up(self, child: Child, reason: ExitReason) -> None:
        if isinstance(reason, Exception):
            reason.add_note(
                f"supervisor {self.name!r} gave up: more than {self.max_restarts} restarts "
                f"within {self.period:g} s; child {child.spec.id!r} crashed with this"
            )
            self.escalation = reason
        else:
            self.escalation = SupervisorGaveUp(
                self.name, child.spec.id, self.max_restarts, self.period
            )
        raise self.escalation

    def _group(self, child: Child) -> list[Child]:
        """Return the children restarted together with ``child``, in start order."""
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        index = self.children.index(child)
        candidates = (
            self.children if self.strategy is Strategy.ONE_FOR_ALL else self.children[index:]
        )
        return [c for c in candidates if c is child or c.running or c.pending]

    # -- stopping -----------------------------------------------------------------------------

    async def _stop_child(self, child: Child) -> None:
        """Run the shutdown ladder on one child: polite stop, bounded wait, then cancel."""
        if not child.running:
            return
        child.stopping = True
        target = child.value
        if isinstance(target, Stoppable):
            target.request_stop()
            with trio.move_on_after(child.spec.shutdown):
                await child.done.wait()
        if not child.done.is_set():
            assert child.scope is not None
            child.scope.cancel()
            await child.done.wait()
        child.running = False

    async def _stop_all(self) -> None:
        self._busy("stopping")
        for child in reversed(self.children):
            await self._stop_child(child)

    async def _terminate(self, child_id: str) -> None:
        child = self._find(child_id)
        if child is None:
            return
        await self._stop_child(child)
        self.children.remove(child)

    def _find(self, child_id: str) -> Child | None:
        for child in self.children:
            if child.spec.id == child_id:
                return child
        return None

    # -- introspection ------------------------------------------------------------------------

    def info(self, now: float) -> ActorInfo:
        return ActorInfo(
            name=self.name,
            kind="supervisor",
            uptime=0.0 if self.started_at is None else now - self.started_at,
            queued=self.receive.statistics().current_buffer_used,
            capacity=0,
            handling=self.activity,
            handling_for=None if self.activity is None else now - self.activity_since,
            calls=tuple(
                CallInfo(message=c.message, caller=c.caller, age=now - c.created_at)
                for c in self.ledger.pending()
            ),
        )


def _validate(
    specs: Sequence[ChildSpec[object]],
    strategy: Strategy,
    max_restarts: int,
    period: float,
    restart_delay: float,
    max_restart_delay: float,
) -> None:
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a Strategy member, got {strategy!r}")
    if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
        raise ValueError(f"max_restarts must be an int >= 0, got {max_restarts!r}")
    if not period > 0 or math.isinf(period):
        raise ValueError(f"period must be a finite number of seconds > 0, got {period!r}")
    if not 0 <= restart_delay <= max_restart_delay or math.isinf(max_restart_delay):
        raise ValueError(
            "restart delays must satisfy 0 <= restart_delay <= max_restart_delay < inf, got "
            f"{restart_delay!r} and {max_restart_delay!r}"
        )
    seen: set[str] = set()
    for spec in specs:
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"children must be ChildSpec instances, got {type(spec).__name__}")
        if spec.id in seen:
            raise ValueError(f"duplicate child id {spec.id!r}")
        seen.add(spec.id)


async def run_supervisor(
    children: Sequence[ChildSpec[object]] = (),
    *,
    name: str = "supervisor",
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    period: float = DEFAULT_PERIOD,
    restart_delay: float = DEFAULT_RESTART_DELAY,
    max_restart_delay: float = DEFAULT_MAX_RESTART_DELAY,
    restart_jitter: float = 0.0,
    rng: Rng | None = None,
    task_status: trio.TaskStatus[SupervisorRef] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start ``children`` in order, report a SupervisorRef, and supervise until stopped.

    Meant for ``nursery.start(run_supervisor, children, name=...)`` or :func:`supervisor_spec`.
    The n-th restart of a child within the window waits
    ``exponential_delay(n, base=restart_delay, cap=max_restart_delay, jitter=restart_jitter)``.

    Raises:
        ValueError / TypeError: bad options or duplicate child ids (before starting anything).
        Exception: a child's init failure during the initial start (the tree refuses to start),
            or the crash of a child after more than ``max_restarts`` within ``period``.
        SupervisorGaveUp: the restart budget was used up by exits that were not crashes.
    """
    _validate(children, strategy, max_restarts, period, restart_delay, max_restart_delay)
    supervisor = _Supervisor(
        child_path(name),
        children,
        strategy=strategy,
        max_restarts=max_restarts,
        period=float(period),
        restart_delay=float(restart_delay),
        max_restart_delay=float(max_restart_delay),
        restart_jitter=restart_jitter,
        rng=rng,
    )
    await supervisor.run(task_status)


def supervisor_spec(
    id: str,
    children: Sequence[ChildSpec[object]] = (),
    *,
    strategy: Strategy = Strategy.ONE_FOR_ONE,
    max_restarts: int = DEFAULT_MAX_RESTARTS,
    period: float = DEFAULT_PERIOD,
    restart_delay: float = DEFAULT_RESTART_DELAY,
    max_restart_delay: float = DEFAULT_MAX_RESTART_DELAY,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = math.inf,
) -> ChildSpec[SupervisorRef]:
    """Return a spec for a nested supervisor named ``id`` (grace: unbounded by default)."""
    _validate(children, strategy, max_restarts, period, restart_delay, max_restart_delay)
    start = functools.partial(
        run_supervisor,
        tuple(children),
        name=id,
        strategy=strategy,
        max_restarts=max_restarts,
        period=period,
        restart_delay=restart_delay,
        max_restart_delay=max_restart_delay,
    )
    return ChildSpec(id, start, restart=restart, shutdown=shutdown)
