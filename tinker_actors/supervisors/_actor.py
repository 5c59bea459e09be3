"""Actors: a task with private state that handles typed messages one at a time.

Subclass :class:`Actor`, give it a message type (frozen Structs work well, matched with
``match``), and start it under a supervisor or with ``nursery.start(run_actor, factory)``::

    class Increment(msgspec.Struct, frozen=True):
        by: int

    class Get(msgspec.Struct, frozen=True):
        reply: Reply[int]

    class Counter(Actor[Increment | Get]):
        def __init__(self) -> None:
            self.count = 0

        async def handle(self, message: Increment | Get) -> None:
            match message:
                case Increment(by=by):
                    self.count += by
                case Get(reply=reply):
                    reply.send(self.count)

    ref = await nursery.start(run_actor, Counter)
    await ref.cast(Increment(2))
    assert await ref.call(Get) == 2          # Get(reply) is built by call()

Lifecycle and its guarantees:

1. ``init()`` runs first; only when it succeeds does the actor report ``task_status.started(ref)``,
   so whoever started it gets a ref to a *ready* actor.
2. The loop takes one message at a time from the bounded mailbox and awaits ``handle``.
3. On exit for any reason (returned, ``stop()``, ``request_stop()``, crash, cancellation) the
   mailbox closes *first*, synchronously: every queued or in-flight caller, and every later one,
   gets ``ActorExited(reason)`` in the same scheduling pass. Then ``terminate(reason)`` runs, then
   monitors get ``Down(ref, reason)``.

``Cancelled`` is never a crash: it makes the reason ``SHUTDOWN`` and keeps propagating. Other
exceptions make the reason the exception itself and propagate to the supervisor.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar, final

import msgspec
import trio

from tinker_actors.supervisors._errors import ActorExited, MailboxFull
from tinker_actors.supervisors._introspect import ActorInfo, CallInfo, child_path, current_census
from tinker_actors.supervisors._mailbox import DEFAULT_MAILBOX_SIZE, Mailbox
from tinker_actors.supervisors._reply import CallLedger, Reply
from tinker_actors.supervisors._util import (
    NORMAL,
    PRIVATE,
    SHUTDOWN,
    ExitReason,
    Normal,
    Shutdown,
    check_private,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.supervisors._introspect import Census

__all__ = ["Actor", "ActorRef", "ActorStatistics", "Down", "run_actor"]

M = TypeVar("M")
R = TypeVar("R")


class Down(msgspec.Struct, Generic[M], frozen=True):
    """The message a monitor receives once, when the monitored actor has fully exited."""

    ref: ActorRef[M]
    reason: ExitReason


class ActorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one actor.

    Attributes:
        name: its path from the root.
        alive: False once it exited.
        uptime: seconds since init finished (0 before).
        queued: messages in its mailbox.
        capacity: its mailbox bound.
        senders_waiting: tasks blocked because the mailbox is full.
        calls_pending: calls accepted and not yet answered.
        handled: messages handled so far.
        handling: the type name of the message being handled now, if any.
    """

    name: str
    alive: bool
    uptime: float
    queued: int
    capacity: int
    senders_waiting: int
    calls_pending: int
    handled: int
    handling: str | None


@final
class _StopSignal:
    """Wakes an idle actor so it notices a stop request; never handed to ``handle``."""

    __slots__ = ()


_STOP = _StopSignal()


@final
class _Cell(Generic[M]):
    """State shared by an actor's task and all refs to it (refs are thin handles to this)."""

    __slots__ = (
        "exited",
        "handled",
        "handling",
        "handling_since",
        "ledger",
        "mailbox",
        "name",
        "on_exit",
        "reason",
        "started_at",
        "stop_reason",
    )

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.mailbox: Mailbox[M | _StopSignal] = Mailbox(PRIVATE, capacity)
        self.ledger = CallLedger()
        # Set once, synchronously, when the actor exits; from then on every send fails.
        self.reason: ExitReason | None = None
        self.stop_reason: Normal | Shutdown | None = None
        self.started_at: float | None = None
        self.handling: str | None = None
        self.handling_since = 0.0
        self.handled = 0
        self.on_exit: list[Callable[[ExitReason], None]] = []
        self.exited = trio.Event()

    def request_stop(self, reason: Normal | Shutdown) -> None:
        if self.reason is not None or self.stop_reason is not None:
            return
        self.stop_reason = reason
        # An idle actor is blocked in receive with an empty buffer, so this wakes it; a busy
        # one sees stop_reason after its current message, and a lost signal does not matter.
        with contextlib.suppress(trio.WouldBlock, trio.BrokenResourceError):
            self.mailbox._put_nowait(_STOP)

    def pending_stop(self) -> Normal | Shutdown | None:
        return self.stop_reason

    def close(self, reason: ExitReason) -> None:
        """Close the mailbox and fail every owed reply. Synchronous: no caller can slip in."""
        self.reason = reason
        self.handling = None
        self.mailbox._close()
        name = self.name
        self.ledger.fail_all(lambda: ActorExited(name, reason))

    def finish(self, reason: ExitReason) -> None:
        callbacks, self.on_exit = self.on_exit, []
        self.exited.set()
        for callback in callbacks:
            callback(reason)

    def exited_error(self) -> ActorExited:
        assert self.reason is not None
        return ActorExited(self.name, self.reason)

    def info(self, now: float) -> ActorInfo:
        stats = self.mailbox.statistics()
        return ActorInfo(
            name=self.name,
            kind="actor",
            uptime=0.0 if self.started_at is None else now - self.started_at,
            queued=stats.queued,
            capacity=stats.capacity,
            handling=self.handling,
            handling_for=None if self.handling is None else now - self.handling_since,
            calls=tuple(
                CallInfo(message=c.message, caller=c.caller, age=now - c.created_at)
                for c in self.ledger.pending()
            ),
        )


@final
class ActorRef(Generic[M]):
    """A typed handle to an actor: ``call``, ``cast``, ``monitor``. Obtained from the runtime.

    Refs are cheap and safe to share; they never keep the actor alive. Every operation on a ref
    to an exited actor raises :class:`ActorExited`.
    """

    __slots__ = ("_cell",)

    def __init__(self, token: object, cell: _Cell[M]) -> None:
        check_private(token, ActorRef)
        self._cell = cell

    def __repr__(self) -> str:
        state = "alive" if self._cell.reason is None else "exited"
        return f"<ActorRef {self._cell.name!r} {state}>"

    @property
    def name(self) -> str:
        """The actor's path from the root, e.g. ``"root/clients/training-1"``."""
        return self._cell.name

    @property
    def alive(self) -> bool:
        """True until the actor exits (its mailbox closes at that moment)."""
        return self._cell.reason is None

    @property
    def exit_reason(self) -> ExitReason | None:
        """Why the actor exited, or None while it is alive."""
        return self._cell.reason

    async def call(self, request: Callable[[Reply[R]], M]) -> R:
        """Send the message ``request(reply)`` and wait for the actor to answer through ``reply``.

        The caller owns the timeout: wrap the call in ``trio.move_on_after`` / ``fail_after``.
        A caller that gives up abandons its reply; the actor's later answer is dropped.

        Args:
            request: builds the message from the reply slot, typically the message class itself
                (``ref.call(Get)``) or a lambda (``ref.call(lambda r: Add(2, reply=r))``).

        Returns:
            The value the actor sent.

        Raises:
            ActorExited: the actor exited before answering (queued, in flight, or already dead).
            Exception: whatever the actor delivered with ``reply.fail(error)``.
        """
        cell = self._cell
        if cell.reason is not None:
            raise cell.exited_error()
        reply: Reply[R] = Reply(PRIVATE, cell.ledger, "?", trio.lowlevel.current_task().name)
        try:
            message = request(reply)
            reply.message = type(message).__name__
            try:
                cell.mailbox._put_nowait(message)
            except trio.WouldBlock:
                await cell.mailbox._put(message)
        except trio.BrokenResourceError:
            reply._abandon()
            raise cell.exited_error() from None
        except BaseException:
            reply._abandon()
            raise
        return await reply._wait()

    async def cast(self, message: M) -> None:
        """Enqueue ``message`` without waiting for an answer; wait while the mailbox is full.

        Raises:
            ActorExited: the actor has exited (or exits while we wait for room).
        """
        cell = self._cell
        if cell.reason is not None:
            raise cell.exited_error()
        try:
            await cell.mailbox._put(message)
        except trio.BrokenResourceError:
            raise cell.exited_error() from None

    def cast_nowait(self, message: M) -> None:
        """Enqueue ``message`` now, or fail.

        Raises:
            MailboxFull: the mailbox is at capacity (apply back-pressure or shed load).
            ActorExited: the actor has exited.
        """
        cell = self._cell
        if cell.reason is not None:
            raise cell.exited_error()
        try:
            cell.mailbox._put_nowait(message)
        except trio.WouldBlock:
            raise MailboxFull(cell.name, cell.mailbox.capacity) from None

    def request_stop(self) -> None:
        """Ask the actor to exit (reason ``SHUTDOWN``) after the message it is handling.

        This is the polite first rung of the shutdown ladder; queued messages are not handled
        and their callers get ``ActorExited``. Returns at once; see :meth:`wait_exited`.
        """
        self._cell.request_stop(SHUTDOWN)

    async def wait_exited(self) -> ExitReason:
        """Wait until the actor has fully exited (after ``terminate``); return the reason."""
        await self._cell.exited.wait()
        assert self._cell.reason is not None
        return self._cell.reason

    def monitor(self) -> trio.MemoryReceiveChannel[Down[M]]:
        """Return a channel that receives exactly one ``Down(ref, reason)`` when the actor exits.

        Monitoring an already-exited actor delivers the Down at once. Close the channel to
        stop monitoring.
        """
        send, receive = trio.open_memory_channel[Down[M]](1)

        def deliver(reason: ExitReason) -> None:
            with contextlib.suppress(trio.BrokenResourceError):
                send.send_nowait(Down(self, reason))
            send.close()

        self._on_exit(deliver)
        return receive

    def statistics(self) -> ActorStatistics:
        """Return mailbox depth, pending calls, messages handled and uptime."""
        cell = self._cell
        stats = cell.mailbox.statistics()
        return ActorStatistics(
            name=cell.name,
            alive=cell.reason is None,
            uptime=0.0 if cell.started_at is None else trio.current_time() - cell.started_at,
            queued=stats.queued,
            capacity=stats.capacity,
            senders_waiting=stats.senders_waiting,
            calls_pending=len(cell.ledger),
            handled=cell.handled,
            handling=cell.handling,
        )

    def _on_exit(self, callback: Callable[[ExitReason], None]) -> None:
        """Run ``callback(reason)`` once the actor fully exited (now, if it already has)."""
        cell = self._cell
        if cell.exited.is_set():
            assert cell.reason is not None
            callback(cell.reason)
        else:
            cell.on_exit.append(callback)


class Actor(Generic[M]):
    """Base class for actors: override ``handle``, and ``init`` / ``terminate`` if needed.

    Attributes:
        mailbox_size: the mailbox bound for this actor class (override per class).
    """

    mailbox_size: ClassVar[int] = DEFAULT_MAILBOX_SIZE
    _actor_cell: _Cell[M] | None = None

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's own ref (available from ``init`` on)."""
        cell = self._actor_cell
        if cell is None:
            raise RuntimeError(f"{type(self).__name__} is not running; start it with run_actor")
        return ActorRef(PRIVATE, cell)

    async def init(self) -> None:
        """Prepare state before the actor is reported started; raising aborts the start."""

    async def handle(self, message: M) -> None:
        """Handle one message. An exception escaping here crashes the actor."""
        raise NotImplementedError(f"{type(self).__name__} must implement handle()")

    async def terminate(self, reason: ExitReason) -> None:
        """Clean up after the mailbox closed. Under cancellation, awaits here raise Cancelled."""

    def stop(self) -> None:
        """Exit normally (reason ``NORMAL``) once the current message is handled."""
        if self._actor_cell is not None:
            self._actor_cell.request_stop(NORMAL)


async def run_actor(
    factory: Callable[[], Actor[M]],
    *,
    name: str | None = None,
    task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Build an actor with ``factory()``, initialise it, report its ref, and run its loop.

    Meant for ``nursery.start(run_actor, factory)``; supervisors call it through
    :func:`actor_spec`. Returns when the actor stops; re-raises its crash.

    Args:
        factory: a zero-argument callable returning a fresh actor (a class, or a lambda).
        name: the last part of the actor's path (default: the class name).
        task_status: filled by ``nursery.start``.

    Raises:
        TypeError: ``factory()`` did not return an Actor.
    """
    actor = factory()
    if not isinstance(actor, Actor):
        raise TypeError(
            f"actor factory {factory!r} returned {type(actor).__name__}, not an Actor subclass"
        )
    cell: _Cell[M] = _Cell(child_path(name or type(actor).__name__), actor.mailbox_size)
    actor._actor_cell = cell
    census = current_census()
    if census is not None:
        census.enroll(cell)
    try:
        await actor.init()
    except BaseException as exc:
        # As in OTP, terminate() is for actors that started: a failing init cleans up itself.
        failed: ExitReason = SHUTDOWN if isinstance(exc, trio.Cancelled) else exc
        cell.close(failed)
        _discharge(cell, failed, census)
        raise
    reason: ExitReason = SHUTDOWN
    try:
        cell.started_at = trio.current_time()
        task_status.started(ActorRef(PRIVATE, cell))
        reason = await _serve(actor, cell)
    except trio.Cancelled:
        reason = SHUTDOWN
        raise
    except BaseException as exc:
        reason = exc
        raise
    finally:
        cell.close(reason)
        try:
            await actor.terminate(reason)
        finally:
            _discharge(cell, reason, census)


def _discharge(cell: _Cell[M], reason: ExitReason, census: Census | None) -> None:
    """Tell monitors and the census that the actor is gone."""
    cell.finish(reason)
    if census is not None:
        census.discharge(cell)


async def _serve(actor: Actor[M], cell: _Cell[M]) -> Normal | Shutdown:
    """Handle messages until a stop is requested; return the stop's reason."""
    get = cell.mailbox._get
    while True:
        # Read through a call: mypy must not assume the field is unchanged across awaits.
        stop = cell.pending_stop()
        if stop is not None:
            return stop
        message = await get()
        if isinstance(message, _StopSignal) or cell.pending_stop() is not None:
            continue  # a stop request: the loop head returns; stale wake-ups are skipped
        cell.handling = type(message).__name__
        cell.handling_since = trio.current_time()
        await actor.handle(message)
        cell.handling = None
        cell.handled += 1
