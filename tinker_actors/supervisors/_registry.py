"""Registry: a runtime-scoped map from a key to the one actor serving it.

``await registry.get(key, factory)`` returns the ref registered under ``key``, starting
``factory()`` under the registry's own supervisor on first use. Concurrent first uses of one key
wait for a single start, so exactly one actor serves a key. When that actor exits, its entry is
removed and the next ``get`` starts a fresh one; the actors are TEMPORARY children, so the
registry never restarts anything behind a caller's back.

Typical use: one RateLimiter per ``(base_url, sha256(api_key))``::

    limiter = await registry.get((base_url, key_digest), RateLimiter)

Keys are never printed (they may be derived from secrets); actors are named ``<prefix>-<n>``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Generic, TypeVar, cast, final

import msgspec
import trio

from tinker_actors.supervisors._spec import ChildSpec, Restart, actor_spec
from tinker_actors.supervisors._supervisor import run_supervisor
from tinker_actors.supervisors._util import PRIVATE, check_private

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.supervisors._actor import Actor, ActorRef
    from tinker_actors.supervisors._supervisor_ref import SupervisorRef

__all__ = ["Registry", "RegistryStatistics", "registry_spec", "run_registry"]

K = TypeVar("K", bound=Hashable)
M = TypeVar("M")


class RegistryStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a registry: live entries, starts in progress, actors started so far."""

    entries: int
    starting: int
    started: int


@final
class Registry(Generic[K]):
    """Key -> ActorRef, starting the actor on first use. Obtained from ``run_registry``."""

    __slots__ = ("_entries", "_prefix", "_started", "_starting", "_supervisor")

    def __init__(self, token: object, supervisor: SupervisorRef, prefix: str) -> None:
        check_private(token, Registry)
        self._supervisor = supervisor
        self._prefix = prefix
        self._entries: dict[K, ActorRef[object]] = {}
        self._starting: dict[K, trio.Event] = {}
        self._started = 0

    def __repr__(self) -> str:
        return f"<Registry {self._supervisor.name!r} entries={len(self._entries)}>"

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def supervisor(self) -> SupervisorRef:
        """The dynamic supervisor the registry's actors run under."""
        return self._supervisor

    async def get(self, key: K, factory: Callable[[], Actor[M]]) -> ActorRef[M]:
        """Return the live actor for ``key``, starting ``factory()`` if there is none.

        The caller chooses ``M``: every ``get`` for one key must use the same actor type.

        Raises:
            ActorExited: the registry's supervisor has exited.
            Exception: the actor's init failed (the next ``get`` tries again).
        """
        while True:
            ref = self._entries.get(key)
            if ref is not None and ref.alive:
                return cast("ActorRef[M]", ref)
            starting = self._starting.get(key)
            if starting is None:
                break
            await starting.wait()  # someone else is starting it; then look again
        event = self._starting[key] = trio.Event()
        try:
            self._started += 1
            spec = actor_spec(f"{self._prefix}-{self._started}", factory, restart=Restart.TEMPORARY)
            new_ref = await self._supervisor.start_child(spec)
            stored = cast("ActorRef[object]", new_ref)
            self._entries[key] = stored
            new_ref._on_exit(lambda _reason: self._forget(key, stored))
            return new_ref
        finally:
            del self._starting[key]
            event.set()

    def lookup(self, key: K) -> ActorRef[object] | None:
        """Return the live actor registered under ``key`` without starting one."""
        ref = self._entries.get(key)
        return ref if ref is not None and ref.alive else None

    async def remove(self, key: K) -> None:
        """Stop the actor registered under ``key`` (shutdown ladder) and forget it."""
        ref = self._entries.pop(key, None)
        if ref is not None:
            await self._supervisor.terminate_child(ref.name.rsplit("/", 1)[-1])

    def statistics(self) -> RegistryStatistics:
        """Return live entries, starts in progress and actors started so far."""
        return RegistryStatistics(
            entries=len(self._entries), starting=len(self._starting), started=self._started
        )

    def request_stop(self) -> None:
        """Stop every registered actor (via the supervisor) and then the registry."""
        self._supervisor.request_stop()

    def _forget(self, key: K, ref: ActorRef[object]) -> None:
        if self._entries.get(key) is ref:
            del self._entries[key]


async def run_registry(
    *,
    name: str = "registry",
    prefix: str = "entry",
    task_status: trio.TaskStatus[Registry[K]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a registry: a ONE_FOR_ONE supervisor of TEMPORARY actors, reported as a Registry."""
    async with trio.open_nursery() as nursery:
        supervisor: SupervisorRef = await nursery.start(
            functools.partial(run_supervisor, name=name)
        )
        task_status.started(Registry(PRIVATE, supervisor, prefix))


def registry_spec(
    id: str, *, prefix: str = "entry", shutdown: float = math.inf
) -> ChildSpec[Registry[K]]:
    """Return a spec that runs a registry named ``id`` whose actors are named ``<prefix>-<n>``.

    Like any supervisor, it waits by default for its actors' own graces when stopped.
    """
    return ChildSpec(id, _start_registry, id, prefix, shutdown=shutdown)


async def _start_registry(
    name: str, prefix: str, *, task_status: trio.TaskStatus[Registry[K]]
) -> None:
    await run_registry(name=name, prefix=prefix, task_status=task_status)
