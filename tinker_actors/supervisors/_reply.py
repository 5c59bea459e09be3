"""Reply slots: the one-shot answer to a call.

A ``Reply[T]`` is created by ``ActorRef.call`` and travels inside the request message. The actor
(or whoever it hands the slot to, such as a poller) resolves it exactly once with
``reply.send(value)`` or ``reply.fail(error)``; the caller, blocked in ``call``, then returns the
value or raises the error.

Invariants:

* A slot is resolved at most once. Later ``send``/``fail`` calls are no-ops that return False,
  so a deferred reply racing an actor's exit can never raise in the replier.
* A caller that gives up (cancelled, or its timeout fired) *abandons* the slot: the eventual
  ``send`` is silently dropped and ``reply.abandoned`` lets the actor skip now-useless work.
* Every unresolved slot is listed in its target's :class:`CallLedger`. When the target exits,
  the ledger fails every slot with ``ActorExited``, so no caller ever waits forever, even when the
  slot was handed on to a task that crashed.

Example (inside an actor's ``handle``)::

    match message:
        case GetCount(reply=reply):
            reply.send(self.count)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Generic, Protocol, TypeVar, final

import trio

from tinker_actors.supervisors._util import check_private

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CallLedger", "PendingCall", "Reply"]

T = TypeVar("T")

_PENDING: Final = 0
_VALUE: Final = 1
_ERROR: Final = 2
_ABANDONED: Final = 3


class PendingCall(Protocol):
    """What a ledger needs from an unresolved reply, whatever its value type."""

    @property
    def message(self) -> str:
        """The request's type name."""
        ...

    @property
    def caller(self) -> str:
        """The calling task's name."""
        ...

    @property
    def created_at(self) -> float:
        """When the call was made, in ``trio.current_time()`` seconds."""
        ...

    def fail(self, error: Exception) -> bool:
        """Deliver ``error`` unless already resolved."""
        ...


@final
class Reply(Generic[T]):
    """A one-shot slot that carries a value or an exception to exactly one caller.

    Attributes:
        message: the type name of the request (never its contents, which may hold secrets).
        caller: the name of the trio task that made the call.
        created_at: ``trio.current_time()`` when the call was made.
    """

    __slots__ = (
        "_error",
        "_event",
        "_ledger",
        "_state",
        "_value",
        "caller",
        "created_at",
        "message",
    )

    _value: T
    _error: BaseException

    def __init__(self, token: object, ledger: CallLedger | None, message: str, caller: str) -> None:
        check_private(token, Reply)
        self._event = trio.Event()
        self._state = _PENDING
        self._ledger = ledger
        self.message = message
        self.caller = caller
        self.created_at = trio.current_time()
        if ledger is not None:
            ledger._replies[self] = None

    def __repr__(self) -> str:
        state = ("pending", "sent", "failed", "abandoned")[self._state]
        return f"<Reply {self.message} from {self.caller!r}: {state}>"

    @property
    def done(self) -> bool:
        """True once the slot was resolved or abandoned; a later send/fail does nothing."""
        return self._state != _PENDING

    @property
    def abandoned(self) -> bool:
        """True when the caller gave up before an answer arrived."""
        return self._state == _ABANDONED

    def send(self, value: T) -> bool:
        """Deliver ``value`` to the caller.

        Returns:
            True if this delivered the answer; False if the slot was already resolved or the
            caller gave up (the value is dropped).
        """
        if self._state != _PENDING:
            return False
        self._value = value
        self._resolve(_VALUE)
        return True

    def fail(self, error: Exception) -> bool:
        """Deliver ``error``; the caller's ``call`` raises it.

        Returns:
            True if this delivered the error; False if the slot was already resolved or the
            caller gave up.
        """
        if not isinstance(error, Exception):
            raise TypeError(f"Reply.fail takes an Exception instance, got {error!r}")
        if self._state != _PENDING:
            return False
        self._error = error
        self._resolve(_ERROR)
        return True

    def _resolve(self, state: int) -> None:
        self._state = state
        if self._ledger is not None:
            self._ledger._replies.pop(self, None)
        self._event.set()

    def _abandon(self) -> None:
        if self._state == _PENDING:
            self._state = _ABANDONED
            if self._ledger is not None:
                self._ledger._replies.pop(self, None)

    async def _wait(self) -> T:
        """Wait for the answer; abandon the slot if the wait is cancelled."""
        try:
            await self._event.wait()
        except BaseException:
            self._abandon()
            raise
        if self._state == _VALUE:
            return self._value
        # Drop our reference so the error's traceback does not keep this slot alive.
        error = self._error
        del self._error
        raise error


@final
class CallLedger:
    """The unresolved replies owed by one actor or supervisor, in call order.

    The owner fails them all when it exits; a resolved or abandoned reply removes itself.
    """

    __slots__ = ("_replies",)

    def __init__(self) -> None:
        # A dict keeps insertion order (oldest call first) with O(1) removal.
        self._replies: dict[PendingCall, None] = {}

    def __len__(self) -> int:
        return len(self._replies)

    def pending(self) -> list[PendingCall]:
        """Return the unresolved replies, oldest first."""
        return list(self._replies)

    def fail_all(self, make_error: Callable[[], Exception]) -> int:
        """Fail every unresolved reply with a fresh error each; return how many there were."""
        pending = list(self._replies)
        self._replies.clear()
        for reply in pending:
            reply.fail(make_error())
        return len(pending)
