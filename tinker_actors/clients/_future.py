"""APIFuture: the handle to an operation the service is working on.

A training call returns one once the request is accepted in order (the first await); awaiting
its :meth:`APIFuture.result` gives the outcome (the second await)::

    fut = await training.forward_backward(batch, "cross_entropy")   # queued, ordering fixed
    output = await fut.result()                                     # done

Waiting and cancelling follow trio's rules:

* ``await fut.result(timeout=30)`` raises :class:`TimeoutError` after 30 s and leaves the
  operation running (ask again later), like ``concurrent.futures.Future.result``;
* a waiter that is *cancelled* (its scope was cancelled, e.g. ``trio.move_on_after`` around it)
  takes the operation with it, like awaiting an asyncio future: the work stops, a pending sample
  is cancelled on the server (when it allows that), and the future fails with
  :class:`~tinker_actors.actors.OperationCancelledError`;
* :meth:`APIFuture.cancel` does the same explicitly.

An operation whose result is awaited (without a timeout) before its caller's next schedule
point, as in ``await (await client.sample(...)).result()``, runs in the awaiting task instead of
a task of the runtime's poller: the same work, the same rules, without a task per operation and
the scheduler turns of handing it over. Any other operation runs in the poller.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Generic, TypeVar, final

import trio

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.actors import FutureState
    from tinker_actors.types import QueueState

__all__ = ["APIFuture"]

T = TypeVar("T")


@final
class APIFuture(Generic[T]):
    """The eventual result of one operation; obtained from a client, never built by hand."""

    __slots__ = ("_state",)

    def __init__(self, state: FutureState[T]) -> None:
        self._state = state

    def __repr__(self) -> str:
        status = "done" if self._state.done() else self._state.queue_state.value
        return f"<APIFuture {self._state.request_type} {self.request_id or '-'} {status}>"

    @property
    def request_id(self) -> str | None:
        """The server's id of the request (None until it was submitted)."""
        return self._state.request_id

    @property
    def request_type(self) -> str:
        """The kind of operation: ``ForwardBackward``, ``OptimStep``, ``Sample``..."""
        return self._state.request_type

    @property
    def queue_state(self) -> QueueState:
        """The latest queue state the server reported (``active`` once finished)."""
        return self._state.queue_state

    @property
    def queue_state_reason(self) -> str | None:
        """The server's explanation of a paused queue state, if any."""
        return self._state.queue_state_reason

    def done(self) -> bool:
        """Return True once the result or an error is available."""
        return self._state.done()

    def cancel(self) -> bool:
        """Cancel the operation; return False if it had already finished."""
        return self._state.cancel()

    def add_done_callback(self, callback: Callable[[APIFuture[T]], None]) -> None:
        """Call ``callback(self)`` when the future is done (at once if it already is).

        Callbacks run in the runtime's task that resolved the future: keep them short and do
        not block; an exception they raise is logged, never propagated.
        """
        self._state.add_done_callback(lambda _state: callback(self))

    def outcome(self) -> T:
        """Return the result of a done future, or raise its error, without waiting.

        For done callbacks and bridges to other threads (the blocking facade).

        Raises:
            RuntimeError: the future is not done yet.
            Exception: whatever the operation failed with.
        """
        return self._state.outcome()

    async def result(self, timeout: float | None = None) -> T:  # noqa: ASYNC109 (official API)
        """Wait for the outcome and return it (or raise the operation's error).

        Args:
            timeout: seconds to wait at most (None: as long as it takes).

        Raises:
            TimeoutError: ``timeout`` passed; the operation keeps running.
            OperationCancelledError: the operation was cancelled.
            InvalidInputError: ``timeout`` is not a number >= 0.
            Exception: whatever the operation failed with (``RequestFailedError``,
                ``APIStatusError``...).
        """
        state = self._state
        if not state.done():
            if timeout is not None and (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not 0 <= timeout < math.inf
            ):
                raise InvalidInputError(
                    f"timeout must be a finite number of seconds >= 0 or None, got {timeout!r}"
                )
            if timeout is None and await state.run_queued():
                return state.outcome()  # not started yet: run here rather than wait for it
            try:
                if timeout is None:  # no scope: a deadline-less one still costs ~4 µs a call
                    await state.wait()
                else:
                    with trio.move_on_after(timeout):
                        await state.wait()
            except trio.Cancelled:
                state.cancel()  # a cancelled waiter takes its operation with it
                raise
            if not state.done():
                raise TimeoutError(
                    f"{state.request_type} {state.request_id or ''} did not finish within "
                    f"{timeout} s; it is still running"
                )
        return state.outcome()
