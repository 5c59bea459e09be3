"""ByteBudget: a FIFO byte budget with overdraft, the unit of the rate limiter's byte limits.

A budget of ``total`` bytes admits a request whenever what is left is **non-negative**, even
when the request's own size takes it below zero (an *overdraft*). So a request larger than the
whole budget is still admitted instead of waiting forever, and the bytes in flight never exceed
``total`` plus the last request admitted::

    budget = ByteBudget(100)
    async with budget.hold(250):     # admitted at once: 100 >= 0; now -150 (overdrawn)
        ...                          # a second hold(1) waits until these 250 come back

Admission is first come, first served: while anyone is queued, a newcomer queues behind them
even if it would fit, so a stream of small requests cannot starve a big one. A release hands
the bytes to the queue's head on its behalf (charging them before it wakes), so no later
arrival can slip in between.

Cancellation is clean: a caller cancelled while queued leaves the queue, and one cancelled at
the very moment it was admitted gives its bytes back. :meth:`ByteBudget.close` (called when the
owning :class:`~tinker_actors.actors.RateLimiterActor` exits) wakes every waiter with the
owner's :class:`~tinker_actors.supervisors.ActorExited` and refuses later callers.
"""

from __future__ import annotations

import collections
import contextlib
from typing import TYPE_CHECKING, final

import msgspec
import trio

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tinker_actors.supervisors import ActorExited

__all__ = ["ByteBudget", "ByteBudgetStatistics", "check_nbytes"]


def _check_budget(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInputError(f"{name} must be an int >= 1 (bytes), got {value!r}")
    return value


def check_nbytes(nbytes: object) -> int:
    """Return ``nbytes`` if it is an int >= 0; raise InvalidInputError otherwise."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0:
        raise InvalidInputError(f"nbytes must be an int >= 0, got {nbytes!r}")
    return nbytes


class ByteBudgetStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a byte budget.

    Attributes:
        total: the budget's size in bytes.
        available: bytes left; negative while overdrawn.
        holders: admissions not yet released.
        waiting: callers queued for admission.
    """

    total: int
    available: int
    holders: int
    waiting: int


@final
class _Waiter:
    __slots__ = ("admitted", "event", "nbytes")

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.admitted = False
        self.event = trio.Event()


@final
class ByteBudget:
    """A byte budget with overdraft: admit whenever what is left is non-negative.

    Admission is first come, first served: a caller never overtakes an earlier waiter, so a
    stream of small requests cannot starve a big one.
    """

    __slots__ = ("_available", "_closed", "_holders", "_name", "_total", "_waiters")

    def __init__(self, total: int, *, name: str = "budget") -> None:
        self._total = _check_budget(name, total)
        self._available = self._total
        self._name = name
        self._holders = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._closed: ActorExited | None = None

    def __repr__(self) -> str:
        return f"<ByteBudget {self._name} {self._available}/{self._total}>"

    @property
    def total(self) -> int:
        """The budget's size in bytes."""
        return self._total

    @property
    def available(self) -> int:
        """Bytes left (negative while overdrawn)."""
        return self._available

    def resize(self, total: int) -> None:
        """Change the budget's size; bytes held stay charged against the new size."""
        total = _check_budget(self._name, total)
        self._available += total - self._total
        self._total = total
        self._admit()

    @contextlib.asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[None]:
        """Wait for admission, charge ``nbytes``, and give them back when the block exits.

        Raises:
            ActorExited: the limiter that owns the budget has exited.
        """
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    async def acquire(self, nbytes: int) -> None:
        """Wait until the budget is non-negative and no one queued earlier, then charge ``nbytes``.

        Raises:
            ActorExited: the owning limiter exited (before or while waiting).
            InvalidInputError: ``nbytes`` is negative or not an int.
        """
        nbytes = check_nbytes(nbytes)
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._closed is not None:
            raise self._closed
        if not self._waiters and self._available >= 0:
            self._available -= nbytes
            self._holders += 1
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(nbytes)
        self._waiters.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.admitted:
                self.release(nbytes)  # admitted at the moment we were cancelled: hand it back
            else:
                self._waiters.remove(waiter)
                self._admit()  # we may have been the head blocking no one: let the next try
            raise
        if not waiter.admitted:
            assert self._closed is not None
            raise self._closed

    def try_acquire(self, nbytes: int) -> bool:
        """Charge ``nbytes`` if :meth:`acquire` would admit them at once (no one queued, the
        budget non-negative, not closed) and say whether it did; never waits or checkpoints.

        ``nbytes`` must already be checked (:func:`check_nbytes`).
        """
        if self._waiters or self._available < 0 or self._closed is not None:
            return False
        self._available -= nbytes
        self._holders += 1
        return True

    def release(self, nbytes: int) -> None:
        """Give back ``nbytes`` charged by :meth:`acquire` and admit whoever now fits."""
        self._available += nbytes
        self._holders -= 1
        self._admit()

    def close(self, error: ActorExited) -> None:
        """Refuse later admissions and wake every waiter with ``error``."""
        self._closed = error
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            waiter.event.set()

    def _admit(self) -> None:
        # Hand-off: the bytes are charged here, on the waiter's behalf, in queue order, so no
        # later arrival can slip in between a release and the waiter's wake-up.
        while self._waiters and self._available >= 0 and self._closed is None:
            waiter = self._waiters.popleft()
            self._available -= waiter.nbytes
            self._holders += 1
            waiter.admitted = True
            waiter.event.set()

    def statistics(self) -> ByteBudgetStatistics:
        """Return the size, what is left, holders and waiters."""
        return ByteBudgetStatistics(
            total=self._total,
            available=self._available,
            holders=self._holders,
            waiting=len(self._waiters),
        )
