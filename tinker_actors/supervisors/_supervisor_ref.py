"""The outside of a supervisor: its handle, the requests it accepts, and its statistics.

:class:`SupervisorRef` is what callers hold; every request it makes (start or terminate a
dynamic child, stop) is queued to the supervisor's own task, so all restart decisions are made
by that one task, in order (see :mod:`._supervisor`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, cast, final

import msgspec
import trio

from tinker_actors.supervisors._errors import ActorExited
from tinker_actors.supervisors._reply import Reply
from tinker_actors.supervisors._spec import ChildSpec
from tinker_actors.supervisors._util import PRIVATE, ExitReason, check_private

if TYPE_CHECKING:
    from tinker_actors.supervisors._supervisor import _Supervisor

__all__ = ["ChildInfo", "SupervisorRef", "SupervisorStatistics"]

T = TypeVar("T")


class ChildInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One child as its supervisor sees it."""

    id: str
    running: bool
    restart: str
    restarts: int
    dynamic: bool


class SupervisorStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of one supervisor.

    Attributes:
        name: its path from the root.
        strategy: ``"one_for_one"``, ``"one_for_all"`` or ``"rest_for_one"``.
        children: children known (running or waiting to be restarted).
        running: children currently running.
        restarts: restarts performed since it started.
        recent_restarts: restarts inside the current intensity window.
        max_restarts: the intensity bound for that window.
        uptime: seconds since all initial children were started (0 before).
        pending_requests: start_child / terminate_child calls not answered yet.
    """

    name: str
    strategy: str
    children: int
    running: int
    restarts: int
    recent_restarts: int
    max_restarts: int
    uptime: float
    pending_requests: int


@final
class _StartChild:
    __slots__ = ("reply", "spec")

    def __init__(self, spec: ChildSpec[object], reply: Reply[object]) -> None:
        self.spec = spec
        self.reply = reply


@final
class _TerminateChild:
    __slots__ = ("id", "reply")

    def __init__(self, id: str, reply: Reply[None]) -> None:
        self.id = id
        self.reply = reply


@final
class _StopRequest:
    __slots__ = ()


_Request = _StartChild | _TerminateChild | _StopRequest


@final
class SupervisorRef:
    """A handle to a running supervisor. Obtained from ``run_supervisor`` / a supervisor spec."""

    __slots__ = ("_sup",)

    def __init__(self, token: object, supervisor: _Supervisor) -> None:
        check_private(token, SupervisorRef)
        self._sup = supervisor

    def __repr__(self) -> str:
        state = "alive" if self._sup.reason is None else "exited"
        return f"<SupervisorRef {self._sup.name!r} {self._sup.strategy.name} {state}>"

    @property
    def name(self) -> str:
        """The supervisor's path from the root."""
        return self._sup.name

    @property
    def alive(self) -> bool:
        """True until the supervisor exits."""
        return self._sup.reason is None

    @property
    def exit_reason(self) -> ExitReason | None:
        """Why the supervisor exited, or None while it runs."""
        return self._sup.reason

    async def start_child(self, spec: ChildSpec[T]) -> T:
        """Start a dynamic child after the existing ones and return its started value.

        Raises:
            ValueError: a child with the same id exists.
            ActorExited: the supervisor has exited.
            Exception: whatever the child's start raised before reporting ready.
        """
        if not isinstance(spec, ChildSpec):
            raise TypeError(f"start_child takes a ChildSpec, got {type(spec).__name__}")
        sup = self._sup
        if sup.reason is None and sup._find(spec.id) is not None:
            raise ValueError(f"supervisor {sup.name!r} already has a child {spec.id!r}")
        reply: Reply[object] = Reply(
            PRIVATE, sup.ledger, f"start_child({spec.id})", trio.lowlevel.current_task().name
        )
        self._send(_StartChild(spec, reply), reply)
        return cast("T", await reply._wait())

    async def terminate_child(self, child_id: str) -> None:
        """Stop a child through the shutdown ladder and forget it (unknown ids are ignored).

        Raises:
            ActorExited: the supervisor has exited.
        """
        sup = self._sup
        reply: Reply[None] = Reply(
            PRIVATE, sup.ledger, f"terminate_child({child_id})", trio.lowlevel.current_task().name
        )
        self._send(_TerminateChild(child_id, reply), reply)
        await reply._wait()

    def _send(self, event: _Request, reply: Reply[T]) -> None:
        sup = self._sup
        try:
            if sup.reason is not None:
                raise trio.BrokenResourceError
            sup.send.send_nowait(event)
        except trio.BrokenResourceError:
            reply._abandon()
            assert sup.reason is not None
            raise ActorExited(sup.name, sup.reason) from None

    def child(self, child_id: str) -> object | None:
        """Return the started value (ref) of a running child, or None."""
        child = self._sup._find(child_id)
        if child is None or not child.running:
            return None
        return child.value

    def which_children(self) -> list[ChildInfo]:
        """Return every known child in start order."""
        return [
            ChildInfo(
                id=c.spec.id,
                running=c.running,
                restart=c.spec.restart.value,
                restarts=c.restarts,
                dynamic=c.dynamic,
            )
            for c in self._sup.children
        ]

    def statistics(self) -> SupervisorStatistics:
        """Return children, restarts (total and in the current window) and uptime."""
        sup = self._sup
        now = trio.current_time()
        recent = sum(1 for t in sup.restart_times if t > now - sup.period)
        return SupervisorStatistics(
            name=sup.name,
            strategy=sup.strategy.value,
            children=len(sup.children),
            running=sum(1 for c in sup.children if c.running),
            restarts=sup.restarts,
            recent_restarts=recent,
            max_restarts=sup.max_restarts,
            uptime=0.0 if sup.started_at is None else now - sup.started_at,
            pending_requests=len(sup.ledger),
        )

    def request_stop(self) -> None:
        """Ask the supervisor to stop its children (reverse order, each by the ladder) and exit."""
        sup = self._sup
        if sup.reason is None:
            sup.send.send_nowait(_StopRequest())

    async def wait_stopped(self) -> ExitReason:
        """Wait until the supervisor and all its children have exited; return its reason."""
        await self._sup.stopped.wait()
        assert self._sup.reason is not None
        return self._sup.reason
