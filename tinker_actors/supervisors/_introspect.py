"""Introspection: what is alive, and who is waiting on whom.

Every actor and supervisor started inside :func:`track_actors` (``tinker_actors.open()`` does
this for you) enrolls in that block's :class:`Census` while it lives. ``census.dump()`` lists
each one with its mailbox depth, the message it is handling and for how long, and every call
still waiting on it with the caller's task name and the call's age. That is the answer to
"what is my trainer waiting on?"::

    with track_actors() as census:
        ...
        print(census.dump().render())

The census travels in a context variable that trio copies into every task spawned under it, so
there is no process-global registry: two runtimes in one process each see only their own tree.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, final

import msgspec
import trio

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["ActorInfo", "CallInfo", "Census", "RuntimeDump", "current_census", "track_actors"]


class CallInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One call still waiting for its reply.

    Attributes:
        message: the request's type name.
        caller: the name of the task blocked in ``call``.
        age: seconds since the call was made (``trio.current_time()``).
    """

    message: str
    caller: str
    age: float


class ActorInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One live actor or supervisor.

    Attributes:
        name: the path from the root, such as ``"root/clients/training-1"``.
        kind: ``"actor"`` or ``"supervisor"``.
        uptime: seconds since it finished starting (0 while still initialising).
        queued: messages waiting in its mailbox.
        capacity: its mailbox bound (0 for supervisors, which have no user mailbox).
        handling: the type name of the message being handled now, if any.
        handling_for: seconds spent on that message so far.
        calls: unresolved calls addressed to it, oldest first.
    """

    name: str
    kind: str
    uptime: float
    queued: int
    capacity: int
    handling: str | None
    handling_for: float | None
    calls: tuple[CallInfo, ...]


class RuntimeDump(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of every live actor at ``time`` (``trio.current_time()``)."""

    time: float
    actors: tuple[ActorInfo, ...]

    def render(self) -> str:
        """Return the snapshot as an indented, human-readable text block."""
        lines = [f"{len(self.actors)} live actor(s) at t={self.time:.3f}"]
        for actor in self.actors:
            busy = (
                f", handling {actor.handling} for {actor.handling_for:.3f}s"
                if actor.handling is not None and actor.handling_for is not None
                else ""
            )
            lines.append(
                f"  {actor.kind} {actor.name}: up {actor.uptime:.3f}s, "
                f"mailbox {actor.queued}/{actor.capacity}{busy}"
            )
            lines.extend(
                f"    call {call.message} from task {call.caller!r}, waiting {call.age:.3f}s"
                for call in actor.calls
            )
        return "\n".join(lines)


class Introspectable(Protocol):
    """Anything that can describe itself for a dump."""

    def info(self, now: float) -> ActorInfo:
        """Return this member's snapshot at time ``now``."""
        ...


@final
class Census:
    """The set of live actors and supervisors of one runtime. Obtained from track_actors()."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[Introspectable, None] = {}

    def __len__(self) -> int:
        return len(self._members)

    def enroll(self, member: Introspectable) -> None:
        """Add a member that has started initialising."""
        self._members[member] = None

    def discharge(self, member: Introspectable) -> None:
        """Remove a member that has exited; unknown members are ignored."""
        self._members.pop(member, None)

    def dump(self) -> RuntimeDump:
        """Return a snapshot of every live member, ordered by name."""
        now = trio.current_time()
        infos = sorted((m.info(now) for m in self._members), key=lambda info: info.name)
        return RuntimeDump(time=now, actors=tuple(infos))


_CENSUS: contextvars.ContextVar[Census | None] = contextvars.ContextVar(
    "tinker_actors_census", default=None
)
_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("tinker_actors_path", default="")


def current_census() -> Census | None:
    """Return the census the current task's actors enroll in, if any."""
    return _CENSUS.get()


@contextmanager
def track_actors() -> Iterator[Census]:
    """Enroll every actor and supervisor started by tasks spawned inside the block."""
    census = Census()
    token = _CENSUS.set(census)
    try:
        yield census
    finally:
        _CENSUS.reset(token)


def child_path(name: str) -> str:
    """Return ``name`` prefixed with the path of the supervisor starting it."""
    parent = _PATH.get()
    return f"{parent}/{name}" if parent else name


@contextmanager
def under_path(path: str) -> Iterator[None]:
    """Make tasks spawned inside the block see ``path`` as their parent's path."""
    token = _PATH.set(path)
    try:
        yield
    finally:
        _PATH.reset(token)
