"""FuturePoller: waits for server futures and resolves the client's :class:`FutureState` slots.

The client "sends in order and waits in parallel": the submitting actor (a TrainingClient, or
a sampling job) hands the waiting (usually :func:`~._poll.poll_future`) to the poller and moves
on.

Pieces:

* :class:`FutureState` — a one-shot slot for a long operation's outcome (the :class:`Reply`
  analogue for work that outlives a call): value or error, ``request_id``, queue state, done
  callbacks, ``cancel()``.
* :class:`FuturePoller` — the actor under ``root/pollers`` that hosts waiting work: each
  piece of work handed to :meth:`FuturePoller.host` (the runtime's way, synchronous) or sent as
  a :class:`Watch` is queued and, at the next turn of the run loop, started as a task in the
  poller's own nursery, so the work lives as long as the poller, not as long as whoever
  submitted it. A waiter that comes for the outcome before that turn (``await (await
  client.sample(...)).result()``, the common idiom) runs the work itself instead
  (:meth:`FutureState.run_queued`): it would only have blocked until the work was done, and
  this way the operation costs no task and no two hand-over turns (about 100 µs of a
  sequential sample's 1.1 ms, bench/b8_paired.py). The lifetime rules are the same either
  way: cancelling that waiter cancels the operation, as it does for any waiter. When the
  poller exits, every pending slot fails with
  :class:`~tinker_actors.supervisors.ActorExited`: nobody waits forever.
  A user-cancelled ``Sample`` slot makes the poller send ``POST /api/v1/cancel_future`` when
  the server's dynamic flag ``sample_cancel_enabled`` is on (protocol §6.5).
* :func:`run_hosted_actor` — runs an actor together with a nursery for its background work.
"""

from __future__ import annotations

import functools
import logging
from contextvars import Context, copy_context
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar, final

import trio

from tinker_actors.actors._poll import OperationCancelledError
from tinker_actors.errors import TinkerError
from tinker_actors.latency import LatencyBook
from tinker_actors.supervisors import SHUTDOWN, Actor, ActorExited, run_actor
from tinker_actors.transport import RequestOptions
from tinker_actors.types import CancelFutureRequest, QueueState

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.supervisors import ActorRef, ExitReason
    from tinker_actors.transport import Transport

__all__ = [
    "FuturePoller",
    "FutureState",
    "Watch",
    "run_hosted_actor",
]

logger = logging.getLogger("tinker_actors.futures")

T = TypeVar("T")
M = TypeVar("M")

CANCEL_FUTURE_PATH: Final = "/api/v1/cancel_future"
CANCEL_TIMEOUT: Final = 30


# -- the one-shot slot ---------------------------------------------------------------------------


_PENDING: Final = 0
_VALUE: Final = 1
_ERROR: Final = 2


@final
class FutureState(Generic[T]):
    """The outcome of one long operation, resolved once: a value or an exception.

    Attributes:
        request_type: ``ForwardBackward``, ``Sample``... (the ``X-Tinker-Request-Type``).
        request_id: the server's id once submitted (None before).
        queue_state: the latest queue state the server reported.
        queue_state_reason: the server's explanation of a paused state, if any.
    """

    __slots__ = (
        "_callbacks",
        "_cancel_requested",
        "_error",
        "_event",
        "_queued_in",
        "_scope",
        "_state",
        "_value",
        "queue_state",
        "queue_state_reason",
        "request_id",
        "request_type",
    )

    _value: T
    _error: BaseException

    def __init__(self, request_type: str, request_id: str | None = None) -> None:
        self.request_type = request_type
        self.request_id = request_id
        self.queue_state = QueueState.ACTIVE
        self.queue_state_reason: str | None = None
        self._event = trio.Event()
        self._state = _PENDING
        self._scope: trio.CancelScope | None = None
        self._cancel_requested = False
        self._callbacks: list[Callable[[FutureState[T]], None]] = []
        #: the poller holding this slot's work queued, not yet started (see FuturePoller.host)
        self._queued_in: FuturePoller | None = None

    def __repr__(self) -> str:
        state = ("pending", "done", "failed")[self._state]
        return f"<FutureState {self.request_type} {self.request_id or '-'} {state}>"

    def done(self) -> bool:
        """Return True once a value or an error is set."""
        return self._state != _PENDING

    @property
    def cancel_requested(self) -> bool:
        """True once :meth:`cancel` was called on a pending slot."""
        return self._cancel_requested

    def set_result(self, value: T) -> bool:
        """Resolve with ``value``; return False (and drop it) if already resolved."""
        if self._state != _PENDING:
            return False
        self._value = value
        self._finish(_VALUE)
        return True

    def set_error(self, error: BaseException) -> bool:
        """Resolve with ``error``; return False (and drop it) if already resolved."""
        if self._state != _PENDING:
            return False
        self._error = error
        self._finish(_ERROR)
        return True

    def cancel(self) -> bool:
        """Cancel the operation: fail the slot now and stop the work hosting it.

        Returns:
            False if it was already resolved (nothing changes), else True.
        """
        if self._state != _PENDING:
            return False
        self._cancel_requested = True
        self.set_error(
            OperationCancelledError(
                f"{self.request_type} {self.request_id or '(not yet submitted)'} was cancelled"
            )
        )
        if self._scope is not None:
            self._scope.cancel()
        return True

    def set_queue_state(self, state: QueueState, reason: str | None) -> None:
        """Record the queue state the server reported."""
        self.queue_state = state
        self.queue_state_reason = reason

    def add_done_callback(self, callback: Callable[[FutureState[T]], None]) -> None:
        """Call ``callback(self)`` once resolved (at once if it already is)."""
        if self._state != _PENDING:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> None:
        """Wait until resolved (cancelling this wait does not cancel the operation)."""
        await self._event.wait()

    async def run_queued(self) -> bool:
        """Run this slot's work in the calling task if it has not started yet; return whether
        it did (the slot is then resolved, or the caller was cancelled and took the work with
        it, as a cancelled waiter does).

        For a waiter that would only block until the work is done: running it here saves the
        work's own task and the two scheduler turns of handing it over and waking the waiter.
        """
        poller = self._queued_in
        if poller is None:
            return False
        return await poller.run_here(self)

    def outcome(self) -> T:
        """Return the value or raise the error of a resolved slot.

        Raises:
            RuntimeError: not resolved yet.
        """
        if self._state == _VALUE:
            return self._value
        if self._state == _ERROR:
            raise self._error
        raise RuntimeError(f"{self!r} is not resolved yet")

    def abandon(self, error: BaseException) -> None:
        """Fail with ``error`` and stop the work bound to this slot: its host is going away.

        Work the poller started dies with the poller's nursery anyway; work a waiter took over
        runs in the waiter's task, and only this scope reaches it.
        """
        self.set_error(error)
        if self._scope is not None:
            self._scope.cancel()

    def bind(self, scope: trio.CancelScope) -> None:
        """Attach the cancel scope of the task doing the work (used by the poller)."""
        self._scope = scope
        if self._cancel_requested:
            scope.cancel()

    def _finish(self, state: int) -> None:
        self._state = state
        self.queue_state = QueueState.ACTIVE
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(self)
            except Exception:
                logger.exception("a done callback of %r raised", self)


# -- the poller actor ----------------------------------------------------------------------------


@final
class Watch:
    """Run ``work`` in the poller's nursery and resolve ``state`` with its outcome."""

    __slots__ = ("state", "work")

    def __init__(self, state: FutureState[Any], work: Callable[[], Awaitable[object]]) -> None:
        self.state = state
        self.work = work


class FuturePoller(Actor[Watch]):
    """Hosts the waiting half of every operation: a task in its nursery for each piece of work
    no waiter took over first (see :meth:`host`).

    Args:
        nursery: the nursery the work runs in (cancelled when the actor exits).
        transport: for ``cancel_future``.
        cancel_enabled: reads the dynamic flag ``sample_cancel_enabled`` now.
        cancel_concurrency: at most this many ``cancel_future`` requests at once
            (``sample_cancel_max_batch_size``).
    """

    mailbox_size = 4096

    def __init__(
        self,
        nursery: trio.Nursery,
        transport: Transport,
        cancel_enabled: Callable[[], bool],
        cancel_concurrency: int = 64,
        latency: LatencyBook | None = None,
    ) -> None:
        self._nursery = nursery
        #: each operation's time from its call to its outcome, by request type (the runtime's
        #: book, so it outlives a restarted poller); one cancelled before its work started,
        #: which sent nothing, is not recorded
        self.latency = latency if latency is not None else LatencyBook()
        self._transport = transport
        self._cancel_enabled = cancel_enabled
        self._cancel_limiter = trio.CapacityLimiter(cancel_concurrency)
        self._pending: dict[FutureState[Any], None] = {}
        #: hosted work not started yet, with the context it was hosted in and when
        self._queued: dict[
            FutureState[Any], tuple[Callable[[], Awaitable[object]], Context, float]
        ] = {}
        self._wake = trio.Event()
        self._me: ActorRef[Watch] | None = None
        self.cancels_sent = 0

    async def init(self) -> None:
        self._me = self.ref
        self._nursery.start_soon(self._starter, name="poller starter")

    @property
    def accepting(self) -> bool:
        """True while the actor runs: work handed to :meth:`host` then runs in its nursery."""
        return self._me is not None and self._me.alive

    @property
    def backlog(self) -> bool:
        """True while hosted work waits for the starter (no waiter took it over)."""
        return bool(self._queued)

    def host(
        self,
        state: FutureState[Any],
        work: Callable[[], Awaitable[object]],
        since: float | None = None,
    ) -> None:
        """Run ``work`` in this poller's nursery from the caller's next schedule point on,
        resolving ``state`` with its outcome: the same as sending :class:`Watch`, without the
        mailbox's hop through the actor's own task.

        The work is queued and the poller's starter task woken: it starts every queued piece
        as a task of its own (in the context it was hosted in) on its next turn, which comes
        once the caller yields. Until then a waiter may take the work over and run it itself
        (:meth:`FutureState.run_queued`): ``await (await client.sample(...)).result()`` then
        costs no task and no hand-over turns.

        ``since`` is the trio time the operation was called (now by default): its
        :attr:`latency` record runs from there to its outcome.
        """
        if state.done():
            return  # cancelled before we got to it: nothing to run
        if not self.accepting:
            state.set_error(ActorExited(self.ref.name, SHUTDOWN))
            return
        self._pending[state] = None
        self._queued[state] = (
            work,
            copy_context(),
            trio.current_time() if since is None else since,
        )
        state._queued_in = self
        self._wake.set()

    async def _starter(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            queued, self._queued = self._queued, {}
            for state, (work, context, hosted_at) in queued.items():
                state._queued_in = None
                if state.done():  # cancelled while queued
                    self._pending.pop(state, None)
                    continue
                # start_soon copies the current context: inside ``run`` that is the caller's
                context.run(self._spawn, state, work, hosted_at)

    def _spawn(
        self, state: FutureState[Any], work: Callable[[], Awaitable[object]], hosted_at: float
    ) -> None:
        name = f"poll {state.request_type}"
        self._nursery.start_soon(self._run, state, work, hosted_at, name=name)

    async def run_here(self, state: FutureState[Any]) -> bool:
        """Run ``state``'s queued work in the calling task (see :meth:`FutureState.run_queued`);
        False if it is no longer queued here."""
        found = self._queued.pop(state, None)
        state._queued_in = None
        if found is None:
            return False
        if state.done():  # cancelled while queued: its outcome is already set
            self._pending.pop(state, None)
            return True
        try:
            await self._resolve(state, found[0], found[2])
        except BaseException:
            # The waiter itself was cancelled (or interrupted) and takes the operation with
            # it, as a cancelled waiter of a started operation does (APIFuture.result).
            if state.cancel():
                self._after_cancel(state)
            raise
        finally:
            self._pending.pop(state, None)
        return True

    async def handle(self, message: Watch) -> None:
        self.host(message.state, message.work)

    async def _run(
        self, state: FutureState[Any], work: Callable[[], Awaitable[object]], hosted_at: float
    ) -> None:
        try:
            await self._resolve(state, work, hosted_at)
        finally:
            self._pending.pop(state, None)
            if not state.done():  # the poller itself is going away
                state.set_error(ActorExited(self.ref.name, SHUTDOWN))

    async def _resolve(
        self, state: FutureState[Any], work: Callable[[], Awaitable[object]], hosted_at: float
    ) -> None:
        """Run ``work`` under a scope ``state.cancel()`` cancels; resolve ``state`` with it.

        The time from ``hosted_at`` (the call that made the operation, which hosts its work at
        once) is recorded under the request type, as failed when the outcome is an
        error (``cancel()`` and :meth:`FutureState.abandon` included); work cancelled from
        outside this scope (a waiter running it that was cancelled) raises through here
        unrecorded.
        """
        with trio.CancelScope() as scope:
            state.bind(scope)
            try:
                value = await work()
            except Exception as exc:
                state.set_error(exc)
            else:
                state.set_result(value)
        if scope.cancelled_caught and state.cancel_requested:
            self._after_cancel(state)
        failed = state._state != _VALUE  # an error, a cancel, or (never) no outcome at all
        self.latency.record(state.request_type, trio.current_time() - hosted_at, failed=failed)

    def _after_cancel(self, state: FutureState[Any]) -> None:
        if state.request_type != "Sample" or state.request_id is None:
            return
        if not self._cancel_enabled():
            return
        self._nursery.start_soon(self._send_cancel, state.request_id)

    async def _send_cancel(self, request_id: str) -> None:
        async with self._cancel_limiter:
            try:
                await self._transport.request(
                    "POST",
                    CANCEL_FUTURE_PATH,
                    json=CancelFutureRequest(request_id=request_id),
                    options=RequestOptions(timeout=CANCEL_TIMEOUT, max_retries=0),
                )
                self.cancels_sent += 1
            except TinkerError as exc:
                logger.info("cancel_future for %s failed: %s", request_id, type(exc).__name__)

    async def terminate(self, reason: ExitReason) -> None:
        error = ActorExited(self.ref.name, reason)
        for state in self._queued:
            state._queued_in = None  # nobody may start it now: it fails below
        self._queued.clear()
        for state in list(self._pending):
            state.abandon(error)
        self._pending.clear()


async def run_hosted_actor(
    factory: Callable[[trio.Nursery], Actor[M]],
    name: str,
    *,
    task_status: trio.TaskStatus[ActorRef[M]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run an actor that owns a nursery for background work; the nursery ends with the actor.

    Meant as a ChildSpec start function: ``ChildSpec(id, run_hosted_actor, factory, id)``. The
    actor's background tasks (heartbeats, polls) are cancelled as soon as the actor exits, so
    nothing it started outlives it; its crash propagates unchanged.
    """
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:

            async def actor(task_status: trio.TaskStatus[ActorRef[M]]) -> None:
                try:
                    await run_actor(functools.partial(factory, nursery), name=name,
                                    task_status=task_status)  # fmt: skip
                finally:
                    nursery.cancel_scope.cancel()

            ref: ActorRef[M] = await nursery.start(actor)
            task_status.started(ref)
    except BaseExceptionGroup as group:
        # One task can fail here (the actor); hand its own exception to the supervisor.
        if len(group.exceptions) != 1:
            raise
        error = group.exceptions[0]
    if error is not None:
        raise error
