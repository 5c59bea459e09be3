"""A small set of httpx clients, each serving a bounded number of requests at once.

httpcore's connection pool re-scans every connection for every queued request whenever a
request starts or ends, so one pool holding a thousand connections costs O(n²) per burst: a
2,048-sample burst spent a third of its client CPU in that scan. Long polls make the obvious fix
(a small pool with a queue in front) wrong, because every waiting future holds a connection for
up to the server's long-poll time. So, like the official SDK's per-instance caps (protocol.md
§7.2), requests are spread over several clients of at most ``per_client`` connections each: the
scans stay short, and concurrency is still bounded only by ``max_clients * per_client``.

A request leases a client for exactly its own lifetime (a streamed response until it is
closed). The first client with a free slot is used, so a quiet program keeps one client and
its warm keep-alive connections; more clients appear only under load. When every slot of the
last allowed client is taken, further requests wait here, first come first served, rather than
in httpcore's queue, whose every entry would be rescanned on every request start and end.
"""

from __future__ import annotations

import collections
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, final

import trio

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import httpx

__all__ = ["ClientPool"]


@final
class _Slot:
    __slots__ = ("client", "in_flight")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.in_flight = 0


@final
class _Waiter:
    __slots__ = ("event", "slot")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.slot: _Slot | None = None


@final
class ClientPool:
    """Hand out httpx clients so that none serves more than ``per_client`` requests at once.

    Args:
        factory: makes one more client (with its own connection pool).
        per_client: requests one client serves at once before the next client is used.
        max_clients: never more clients than this; past it, requests wait for a free slot.
    """

    def __init__(
        self, factory: Callable[[], httpx.AsyncClient], *, per_client: int, max_clients: int
    ) -> None:
        if per_client < 1 or max_clients < 1:
            raise ValueError("per_client and max_clients must be >= 1")
        self._factory = factory
        self._per_client = per_client
        self._max_clients = max_clients
        self._slots: list[_Slot] = []
        self._queue: collections.deque[_Waiter] = collections.deque()

    @property
    def clients(self) -> int:
        """How many clients exist now."""
        return len(self._slots)

    @property
    def in_flight(self) -> int:
        """Requests being served now, over all clients."""
        return sum(slot.in_flight for slot in self._slots)

    @property
    def waiting(self) -> int:
        """Requests waiting for a free slot."""
        return len(self._queue)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[httpx.AsyncClient]:
        """Borrow a client for one request; give it back when the block ends.

        Waiters are served in arrival order: a freed slot is handed to the oldest waiter
        directly (it never becomes free in between), so newcomers cannot overtake.
        """
        slot = None if self._queue else self._free_slot()
        if slot is None:
            waiter = _Waiter()
            self._queue.append(waiter)
            try:
                await waiter.event.wait()
            except BaseException:
                if waiter.slot is None:
                    self._queue.remove(waiter)
                else:  # handed a slot as we were cancelled: pass it on
                    self._release(waiter.slot)
                raise
            assert waiter.slot is not None
            slot = waiter.slot
        else:
            slot.in_flight += 1
        try:
            yield slot.client
        finally:
            self._release(slot)

    def take_now(self) -> _Slot | None:
        """A slot for one request if one is free without waiting (nobody queued), else None;
        hand it back with :meth:`give_back`. The same as :meth:`lease` without its generator
        context manager, for the hot path of every request."""
        slot = None if self._queue else self._free_slot()
        if slot is not None:
            slot.in_flight += 1
        return slot

    def give_back(self, slot: _Slot) -> None:
        """Return a slot from :meth:`take_now`."""
        self._release(slot)

    def _release(self, slot: _Slot) -> None:
        if self._queue:
            waiter = self._queue.popleft()
            waiter.slot = slot  # the slot stays counted as in flight: it changes hands
            waiter.event.set()
        else:
            slot.in_flight -= 1

    def _free_slot(self) -> _Slot | None:
        for slot in self._slots:
            if slot.in_flight < self._per_client:
                return slot
        if len(self._slots) < self._max_clients:
            slot = _Slot(self._factory())
            self._slots.append(slot)
            return slot
        return None

    async def aclose(self) -> None:
        """Close every client (and its connections)."""
        slots, self._slots = self._slots, []
        for slot in slots:
            await slot.client.aclose()
