"""Child specifications: what a supervisor starts, when it restarts it, how it stops it.

A :class:`ChildSpec` names a child (``id``), says how to start it (a trio start function
``fn(*args, task_status=...)`` that calls ``task_status.started(value)`` once it is ready), when
to restart it (:class:`Restart`) and how long it may take to stop politely (``shutdown``
seconds of grace before it is cancelled). The value a child reports through ``started`` is what
``SupervisorRef.start_child`` returns: an ``ActorRef`` for actors, a ``SupervisorRef`` for
nested supervisors.

============  ==================================================================
Restart       restarted when the child exits...
============  ==================================================================
PERMANENT     always (normal exit, shutdown, or crash)
TRANSIENT     only after a crash (an exception); the default for user-owned clients
TEMPORARY     never; the child is forgotten once it exits
============  ==================================================================
"""

from __future__ import annotations

import enum
import functools
import math
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, final, runtime_checkable

from tinker_actors.supervisors._actor import ActorRef, run_actor

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.supervisors._actor import Actor

__all__ = ["ChildSpec", "Restart", "Stoppable", "Strategy", "actor_spec"]

T_co = TypeVar("T_co", covariant=True)
M = TypeVar("M")


class Restart(enum.Enum):
    """When a supervisor restarts a child that exited."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them must be restarted.

    ONE_FOR_ONE restarts only that child. ONE_FOR_ALL stops all the others (in reverse start
    order) and restarts everyone in start order. REST_FOR_ONE does the same for the children
    started after it, leaving earlier ones alone.
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


@runtime_checkable
class Stoppable(Protocol):
    """A started value that can be asked to stop politely (the first rung of the ladder)."""

    def request_stop(self) -> None:
        """Begin a graceful exit and return at once."""
        ...


@final
class ChildSpec(Generic[T_co]):
    """How to start, restart and stop one child of a supervisor.

    ``T_co`` is the type of the value the child reports with ``task_status.started``; helpers
    such as :func:`actor_spec` fill it in, hand-written specs can state it:
    ``ChildSpec[None]("ticker", ticker, 1.0)``.

    Args:
        id: unique among the supervisor's children; no ``/`` (it becomes part of a path).
        start: an async function called as ``start(*args, task_status=status)``.
        *args: positional arguments for ``start``.
        restart: when to restart it (default PERMANENT, as in OTP).
        shutdown: seconds between the polite stop request and cancellation (``math.inf``:
            wait for ever, the right choice for nested supervisors).

    Raises:
        ValueError: empty or malformed id, or negative shutdown.
        TypeError: start is not callable, or restart is not a Restart.
    """

    __slots__ = ("args", "id", "restart", "shutdown", "start")

    # A start function's arguments are as free as trio's own nursery.start(fn, *args): the
    # one explicit Any in the kernel, confined to this signature.
    def __init__(  # type: ignore[explicit-any]
        self,
        id: str,
        start: Callable[..., Awaitable[object]],
        *args: object,
        restart: Restart = Restart.PERMANENT,
        shutdown: float = 5.0,
    ) -> None:
        if not isinstance(id, str) or not id or "/" in id:
            raise ValueError(f"child id must be a non-empty string without '/', got {id!r}")
        if not callable(start):
            raise TypeError(f"child {id!r}: start must be an async function, got {start!r}")
        if not isinstance(restart, Restart):
            raise TypeError(f"child {id!r}: restart must be a Restart member, got {restart!r}")
        if not isinstance(shutdown, int | float) or math.isnan(shutdown) or shutdown < 0:
            raise ValueError(f"child {id!r}: shutdown grace must be >= 0 seconds, got {shutdown!r}")
        self.id = id
        self.start = start
        self.args = args
        self.restart = restart
        self.shutdown = float(shutdown)

    def __repr__(self) -> str:
        return f"ChildSpec({self.id!r}, restart={self.restart.name}, shutdown={self.shutdown:g})"


def actor_spec(
    id: str,
    factory: Callable[[], Actor[M]],
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
) -> ChildSpec[ActorRef[M]]:
    """Return a spec that runs ``factory()`` as an actor named ``id``.

    Each (re)start calls ``factory`` again, so a restarted actor begins with fresh state.
    Use ``restart=Restart.TRANSIENT`` for actors a user owns (clients): they restart after a
    crash but not after a normal stop.
    """
    return ChildSpec(
        id, functools.partial(run_actor, name=id), factory, restart=restart, shutdown=shutdown
    )
