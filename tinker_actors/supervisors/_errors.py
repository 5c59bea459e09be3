"""Exceptions of the actor kernel.

::

    Exception (each survives pickling)
    ├── ActorExited        a call or cast reached an actor that has exited (reason attached)
    ├── MailboxFull        cast_nowait found the bounded mailbox full (back-pressure)
    └── SupervisorGaveUp   a supervisor exceeded its restart intensity on normal exits

When a supervisor gives up because a child kept *crashing*, it re-raises the child's own
exception (with a note naming the supervisor), so ``except* ThatError`` works at ``open()``.
"""

from __future__ import annotations

from tinker_actors._pickling import PicklableError
from tinker_actors.supervisors._util import ExitReason, describe_reason

__all__ = ["ActorExited", "MailboxFull", "SupervisorGaveUp"]


class ActorExited(PicklableError):
    """The actor a call or cast was addressed to has exited.

    ``reason`` is ``NORMAL``, ``SHUTDOWN``, or the exception the actor crashed with; in the last
    case it is also the ``__cause__``, so tracebacks show the crash under the caller's error.
    """

    def __init__(self, actor: str, reason: ExitReason) -> None:
        super().__init__(f"actor {actor!r} exited ({describe_reason(reason)})")
        self.actor = actor
        self.reason = reason
        if isinstance(reason, BaseException):
            self.__cause__ = reason


class MailboxFull(PicklableError):
    """``cast_nowait`` could not enqueue: the actor's bounded mailbox is full."""

    def __init__(self, actor: str, capacity: int) -> None:
        super().__init__(
            f"mailbox of actor {actor!r} is full ({capacity} messages); "
            "use 'await cast(...)' to wait for room, or shed load"
        )
        self.actor = actor
        self.capacity = capacity


class SupervisorGaveUp(PicklableError):
    """A supervisor restarted children more than ``max_restarts`` times within ``period``.

    Raised only when the exits that used up the budget were not crashes (a PERMANENT child
    that keeps returning); crashes escalate as the child's own exception.
    """

    def __init__(self, supervisor: str, child: str, max_restarts: int, period: float) -> None:
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restarts within "
            f"{period:g} s (last: child {child!r})"
        )
        self.supervisor = supervisor
        self.child = child
        self.max_restarts = max_restarts
        self.period = period
