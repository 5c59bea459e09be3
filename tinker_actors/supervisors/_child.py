"""A supervisor's child across its incarnations, and the task that runs one incarnation.

A child spec (:class:`~tinker_actors.supervisors.ChildSpec`) is what to start; a :class:`Child`
is the supervisor's record of it while it lives under that supervisor. Each (re)start is a new
*incarnation*, numbered from 1: :func:`run_incarnation` runs one and, once it has reported
``started``, always sends one :class:`Exited` report saying how it ended::

    start #1 ──started──▶ running ──crash──▶ Exited(child, 1, exc) ──▶ supervisor restarts
    start #2 ──started──▶ running ...

The incarnation number lets the supervisor drop stale reports: an exit it caused by stopping the
child (``Child.stopping``), or one that arrives after the child was already restarted.

Two rules keep errors where they belong:

* An exception *before* ``started`` is an init failure: it propagates to whoever is starting the
  child (``nursery.start``), and no exit report is sent.
* Cancellation by the supervisor's own shutdown ladder ends the incarnation with
  :data:`~tinker_actors.supervisors.SHUTDOWN`, never as a crash.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, final

import trio

from tinker_actors.supervisors._util import NORMAL, SHUTDOWN, ExitReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.supervisors._spec import ChildSpec

__all__ = ["Child", "Exited", "StatusRelay", "run_incarnation"]


class Child:
    """A supervisor's bookkeeping for one child, across its incarnations."""

    __slots__ = (
        "done",
        "dynamic",
        "incarnation",
        "pending",
        "restart_times",
        "restarts",
        "running",
        "scope",
        "spec",
        "stopping",
        "value",
    )

    def __init__(self, spec: ChildSpec[object], *, dynamic: bool) -> None:
        self.spec = spec
        self.dynamic = dynamic
        self.value: object = None
        self.running = False
        # Waiting to be (re)started as part of a restart group.
        self.pending = False
        # Set while *we* stop it, so its exit is not mistaken for a failure.
        self.stopping = False
        self.incarnation = 0
        self.scope: trio.CancelScope | None = None
        self.done = trio.Event()
        self.restarts = 0
        self.restart_times: deque[float] = deque()


@final
class Exited:
    """The report that incarnation ``incarnation`` of ``child`` ended, and why."""

    __slots__ = ("child", "incarnation", "reason")

    def __init__(self, child: Child, incarnation: int, reason: ExitReason) -> None:
        self.child = child
        self.incarnation = incarnation
        self.reason = reason


@final
class StatusRelay:
    """Forwards ``started`` to trio and remembers that the child got that far."""

    __slots__ = ("_inner", "started_called")

    def __init__(self, inner: trio.TaskStatus[object]) -> None:
        self._inner = inner
        self.started_called = False

    def started(self, value: object = None) -> None:
        self.started_called = True
        self._inner.started(value)


async def run_incarnation(
    child: Child,
    incarnation: int,
    report: Callable[[Exited], None],
    task_status: trio.TaskStatus[object] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run one incarnation of ``child`` and ``report`` how it ended.

    Args:
        child: the record to run; its ``scope`` is set to the incarnation's cancel scope and its
            ``done`` event (taken before starting) is set when the incarnation ends.
        incarnation: the number of this incarnation, carried in the report.
        report: called with the :class:`Exited` report once the incarnation has ended after
            ``started``; it must not block (the supervisor passes its queue's ``send_nowait``).
        task_status: trio's, for ``nursery.start``.

    Raises:
        Exception: whatever the child raised before calling ``started`` (an init failure).
    """
    status = StatusRelay(task_status)
    done = child.done
    reason: ExitReason = NORMAL
    try:
        with trio.CancelScope() as scope:
            child.scope = scope
            await child.spec.start(*child.spec.args, task_status=status)
        if scope.cancelled_caught:
            reason = SHUTDOWN  # cancelled by our ladder: never a crash
    except Exception as exc:
        if not status.started_called:
            raise  # an init failure belongs to whoever is starting it
        reason = exc
    finally:
        done.set()
    if status.started_called:
        report(Exited(child, incarnation, reason))
