"""Server-side futures: the promise store behind retrieve_future, retrieve_futures and cancel.

Every long operation the local server accepts becomes a :class:`FutureRecord` identified by a
``request_id``. Its result is stored already encoded (JSON or protobuf bytes plus the content
type), so a poll only copies bytes. Clients learn the outcome by long-polling
(protocol.md §6.2): :meth:`FutureStore.wait` holds the poll until the record settles or the
server's long-poll deadline passes, then the app answers ``try_again``.

Sampling futures are also appended to a per-(sampling session, clone) completion log with a
monotone cursor for the batched ``/retrieve_futures`` protocol (§6.4): entries at or before the
client's ``prev_cursor`` are trimmed, and payloads the client reports as retrieved are dropped.

Invariants:

* a record settles at most once (``done``, ``failed`` or ``cancelled``); later settle calls are
  ignored, so a cancelled operation that finishes anyway cannot overwrite the cancellation;
* a settled record's ``settled`` event is set, waking every waiting poll;
* a record whose payload was dropped (retrieved and acknowledged, or expired) answers 410;
* a record settled more than ``result_ttl`` ago is forgotten by :meth:`FutureStore.prune` (the
  engine calls it periodically), so memory does not grow with every request ever served;
  :meth:`FutureStore.was_issued` still tells such an id from one never issued.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

import trio

__all__ = [
    "CompletionEvent",
    "FutureRecord",
    "FutureState",
    "FutureStore",
    "UnknownFutureError",
]

FutureState = Literal["pending", "done", "failed", "cancelled", "expired"]


class UnknownFutureError(LookupError):
    """No future with this request id was ever issued by this server."""


@dataclass(eq=False)
class FutureRecord:
    """One accepted operation and, once settled, its encoded outcome."""

    request_id: str
    request_type: str
    session_id: str
    created: float
    state: FutureState = "pending"
    payload: bytes | None = None
    content_type: str = "application/json"
    #: for failures: the message and the RequestFailedResponse category
    error: str | None = None
    category: Literal["unknown", "server", "user"] = "unknown"
    settled_at: float | None = None
    polls: int = 0
    #: set by the engine so cancel_future can stop the running operation
    cancel_scope: trio.CancelScope | None = None
    completion_target: tuple[str, int] | None = None
    settled: trio.Event = field(default_factory=trio.Event)

    @property
    def payload_size(self) -> int:
        """Size in bytes of the stored result (0 when none)."""
        return len(self.payload) if self.payload is not None else 0


@dataclass(frozen=True)
class CompletionEvent:
    """One entry of a sampling session's completion log (§6.4)."""

    cursor: int
    request_id: str
    state: Literal["finished", "failed"]
    payload_size: int | None


@dataclass
class _CompletionLog:
    events: list[CompletionEvent] = field(default_factory=list)
    changed: trio.Event = field(default_factory=trio.Event)


class FutureStore:
    """Issue, settle, long-poll and expire futures.

    Args:
        result_ttl: seconds a settled result stays retrievable; later polls answer 410.
    """

    def __init__(self, *, result_ttl: float = 3600.0) -> None:
        self._records: dict[str, FutureRecord] = {}
        self._issued = 0
        #: (settled_at, request_id) in settling order, which is time order: what prune() walks
        self._settled: deque[tuple[float, str]] = deque()
        self._cursors = itertools.count(1)
        self._logs: dict[tuple[str, int], _CompletionLog] = {}
        self._result_ttl = result_ttl

    def __len__(self) -> int:
        return len(self._records)

    def create(
        self,
        request_type: str,
        session_id: str,
        *,
        completion_target: tuple[str, int] | None = None,
    ) -> FutureRecord:
        """Issue a pending future; ``completion_target`` = (sampling session, clone id)."""
        self._issued += 1
        request_id = f"{session_id}:req:{self._issued}"
        record = FutureRecord(
            request_id=request_id,
            request_type=request_type,
            session_id=session_id,
            created=trio.current_time(),
            completion_target=completion_target,
        )
        self._records[request_id] = record
        return record

    def known(self, request_id: str) -> bool:
        """Whether the store still holds this request id (issued and not yet pruned)."""
        return request_id in self._records

    def was_issued(self, request_id: str) -> bool:
        """Whether this store issued the id at some point (it may have been pruned since)."""
        _, sep, number = request_id.rpartition(":req:")
        return bool(sep) and number.isdigit() and 0 < int(number) <= self._issued

    def prune(self) -> int:
        """Forget records settled more than ``result_ttl`` ago; return how many went."""
        horizon = trio.current_time() - self._result_ttl
        settled = self._settled
        pruned = 0
        while settled and settled[0][0] < horizon:
            if self._records.pop(settled.popleft()[1], None) is not None:
                pruned += 1
        if pruned:
            for log in self._logs.values():
                # events are appended in settling order, so the forgotten ones lead
                stale = 0
                while stale < len(log.events) and log.events[stale].request_id not in self._records:
                    stale += 1
                del log.events[:stale]
        return pruned

    def discard(self, request_id: str) -> None:
        """Forget a future that was issued but never handed to a client (a duplicate)."""
        self._records.pop(request_id, None)

    def get(self, request_id: str) -> FutureRecord:
        """Return the record, expiring it first if its result outlived ``result_ttl``.

        Raises:
            UnknownFutureError: no such request id was ever issued.
        """
        record = self._records.get(request_id)
        if record is None:
            raise UnknownFutureError(f"unknown request_id {request_id!r}")
        if (
            record.settled_at is not None
            and record.state != "expired"
            and trio.current_time() - record.settled_at > self._result_ttl
        ):
            record.state = "expired"
            record.payload = None
        return record

    def resolve(self, request_id: str, payload: bytes, content_type: str) -> None:
        """Settle a future with its encoded result."""
        record = self._records[request_id]
        if record.state != "pending":
            return
        record.payload = payload
        record.content_type = content_type
        self._settle(record, "done")

    def fail(
        self,
        request_id: str,
        message: str,
        category: Literal["unknown", "server", "user"] = "user",
    ) -> None:
        """Settle a future as failed; polls get a RequestFailedResponse."""
        record = self._records[request_id]
        if record.state != "pending":
            return
        record.error = message
        record.category = category
        self._settle(record, "failed")

    def cancel(self, request_id: str) -> bool:
        """Cancel a pending future (and its running operation); return whether it was pending."""
        record = self.get(request_id)
        if record.state != "pending":
            return False
        if record.cancel_scope is not None:
            record.cancel_scope.cancel()
        record.error = "cancelled by the client"
        record.category = "user"
        self._settle(record, "cancelled")
        return True

    def _settle(self, record: FutureRecord, state: FutureState) -> None:
        record.state = state
        record.settled_at = trio.current_time()
        record.settled.set()
        self._settled.append((record.settled_at, record.request_id))
        if record.completion_target is not None:
            log = self._log(record.completion_target)
            log.events.append(
                CompletionEvent(
                    cursor=next(self._cursors),
                    request_id=record.request_id,
                    state="finished" if state == "done" else "failed",
                    payload_size=record.payload_size if state == "done" else None,
                )
            )
            log.changed.set()
            log.changed = trio.Event()

    async def wait(self, request_id: str, *, hold: float) -> FutureRecord:
        """Long-poll: return the record once settled, or after ``hold`` seconds anyway."""
        record = self.get(request_id)
        record.polls += 1
        if record.state == "pending":
            with trio.move_on_after(hold):
                await record.settled.wait()
        return self.get(request_id)

    def drop_payload(self, request_id: str) -> None:
        """Forget a delivered result (the client acknowledged it); later polls answer 410."""
        record = self._records.get(request_id)
        if record is not None and record.state in ("done", "failed"):
            record.payload = None
            record.state = "expired"

    def _log(self, target: tuple[str, int]) -> _CompletionLog:
        log = self._logs.get(target)
        if log is None:
            log = self._logs[target] = _CompletionLog()
        return log

    async def completions(
        self,
        target: tuple[str, int],
        *,
        prev_cursor: int,
        hold: float,
        retrieved: list[str],
    ) -> tuple[list[CompletionEvent], int]:
        """Answer one ``/retrieve_futures`` poll: events after ``prev_cursor`` and the new cursor.

        Events at or before ``prev_cursor`` are acknowledged and trimmed; ``retrieved`` ids'
        payloads are dropped. Waits up to ``hold`` seconds for a first new event.
        """
        for request_id in retrieved:
            self.drop_payload(request_id)
        log = self._log(target)
        log.events = [e for e in log.events if e.cursor > prev_cursor]
        if not log.events and hold > 0:
            changed = log.changed
            with trio.move_on_after(hold):
                await changed.wait()
        events = [e for e in log.events if e.cursor > prev_cursor]
        cursor = events[-1].cursor if events else prev_cursor
        return events, cursor
