"""What leaving ``open()`` owes the training requests callers were told are queued.

A training call's first await means "accepted: queued in order, its ``seq_id`` fixed, it will be
sent". Before this module, only a *normal* exit of the block sent what was queued: when an outer
cancel scope (a deadline around the training loop, say) or an exception ended the block, the
session was finished first and the accepted requests were dropped unsent, although the caller
had been told they were in. For a trainer that is the wrong trade: a step the program believes
it submitted silently never happened, and the next run's bookkeeping (step counters, the
checkpoint it thinks it saved) is off.

So however the block ends, leaving it first *flushes*: the supervision tree runs shielded from
the caller's cancel scopes (``_open.py``), so the training clients' senders go on posting their
queues in order, and the results of every accepted training request are awaited, shielded from
the cancellation that ended the block and bounded by ``flush_timeout`` (default
:data:`DEFAULT_FLUSH_TIMEOUT`; ``open(flush_timeout=0)`` skips it). Only then is the session
finished and the tree stopped, within ``shutdown_grace``. What the flush could not settle in
time fails with an :class:`~tinker_actors.actors.OperationCancelledError` that says whether the
request was never submitted (so it was not applied) or was submitted and only its result did not
arrive (so the service may still apply it), and one warning names how many of each there were.
Sampling requests are not waited for: their results have no one left to read them.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final, final

import trio

from tinker_actors.actors import OperationCancelledError
from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from tinker_actors.actors import FutureState

__all__ = ["DEFAULT_FLUSH_TIMEOUT", "AcceptedOps", "check_flush_timeout"]

logger = logging.getLogger("tinker_actors.runtime")

#: Seconds leaving ``open()`` may spend sending accepted training requests and awaiting them.
DEFAULT_FLUSH_TIMEOUT: Final = 30.0
#: Seconds an interrupted flush waits quietly before saying what it waits for.
ANNOUNCE_AFTER: Final = 1.0
#: Request types the flush does not wait for (background loops and samples).
_NOT_FLUSHED: Final = frozenset({"Sample", "SessionHeartbeat", "RetrieveFutures"})


def check_flush_timeout(value: object) -> float:
    """Return ``flush_timeout`` as seconds, or raise InvalidInputError unless finite >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise InvalidInputError(
            f"flush_timeout must be a finite number of seconds >= 0 (0 skips the flush), "
            f"got {value!r}"
        )
    return float(value)


@final
class AcceptedOps:
    """The accepted training requests whose outcome is still pending."""

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[FutureState[Any], None] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, state: FutureState[Any]) -> None:
        """Remember ``state`` until it resolves, unless it is a kind the flush skips."""
        if state.request_type in _NOT_FLUSHED or state.done():
            return
        self._pending[state] = None
        state.add_done_callback(self._settled)

    def _settled(self, state: FutureState[Any]) -> None:
        self._pending.pop(state, None)

    async def flush(self, budget: float, *, announce: bool = False) -> int:
        """Await every tracked outcome, within ``budget`` seconds.

        The training clients' senders keep posting their queues meanwhile (they run shielded
        from the caller's cancel scopes, see ``_open.py``), so awaiting the outcomes is enough.

        Shielded: the cancellation that ended the block does not cut the flush short; only the
        timeout does. What is still pending then fails with a clear error (see the module doc).

        ``announce`` (the block ended with a Ctrl-C): when the flush is still waiting after
        :data:`ANNOUNCE_AFTER` seconds, one warning says what it waits for and that a second
        Ctrl-C ends the wait; otherwise the program would seem to ignore the first one.

        Returns:
            How many requests the flush could not settle.
        """
        deadline = trio.current_time() + budget
        with trio.CancelScope(shield=True):
            if announce and self._pending and budget > ANNOUNCE_AFTER:
                with trio.move_on_after(ANNOUNCE_AFTER):
                    await self._settle_all()
                if self._pending:
                    logger.warning(
                        "leaving open() after an interrupt: waiting up to %g s for %d accepted "
                        "training request(s) (Ctrl-C again to stop waiting; a request already "
                        "sent may still be applied)",
                        budget,
                        len(self._pending),
                    )
            with trio.move_on_at(deadline):
                await self._settle_all()
        return self._abandon(budget)

    async def _settle_all(self) -> None:
        while self._pending:
            await next(iter(self._pending)).wait()

    def _abandon(self, timeout: float) -> int:
        left = list(self._pending)
        unsent = 0
        for state in left:
            if state.request_id is None:
                unsent += 1
                why = (
                    f"{state.request_type} was accepted but its submission did not complete "
                    f"within flush_timeout={timeout:g} s of leaving open(), so it was not "
                    "applied; raise flush_timeout to give the flush more time"
                )
            else:
                why = (
                    f"{state.request_type} {state.request_id} was submitted, but its result did "
                    f"not arrive within flush_timeout={timeout:g} s of leaving open(); the "
                    "service may still apply it"
                )
            state.set_error(OperationCancelledError(why))
        self._pending.clear()
        if left:
            logger.warning(
                "leaving open(): %d accepted training request(s) not settled within "
                "flush_timeout=%g s (%d never submitted, %d without a result)",
                len(left),
                timeout,
                unsent,
                len(left) - unsent,
            )
        return len(left)
