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
its warm keep-alive connections; more clients appear only under load.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import httpx

__all__ = ["ClientPool"]


@final
class _Slot:
    __slots__ = ("client", "in_flight")

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.in_flight = 0


@final
class ClientPool:
    """Hand out httpx clients so that none serves more than ``per_client`` requests at once.

    Args:
        factory: makes one more client (with its own connection pool).
        per_client: requests one client serves at once before the next client is used.
        max_clients: never more clients than this; past it, the least busy one takes the
            request and queues it in its own pool.
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

    @property
    def clients(self) -> int:
        """How many clients exist now."""
        return len(self._slots)

    @property
    def in_flight(self) -> int:
        """Requests being served now, over all clients."""
        return sum(slot.in_flight for slot in self._slots)

    @contextmanager
    def lease(self) -> Iterator[httpx.AsyncClient]:
        """Borrow a client for one request; give it back when the block ends."""
        slot = self._pick()
        slot.in_flight += 1
        try:
            yield slot.client
        finally:
            slot.in_flight -= 1

    def _pick(self) -> _Slot:
        for slot in self._slots:
            if slot.in_flight < self._per_client:
                return slot
        if len(self._slots) < self._max_clients:
            slot = _Slot(self._factory())
            self._slots.append(slot)
            return slot
        return min(self._slots, key=lambda s: s.in_flight)

    async def aclose(self) -> None:
        """Close every client (and its connections)."""
        slots, self._slots = self._slots, []
        for slot in slots:
            await slot.client.aclose()
