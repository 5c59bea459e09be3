"""Per-model request ordering and deduplication for the local server.

Training operations on one model must run strictly in ``seq_id`` order (protocol.md §8.4): the
client reserves ids at call time and POSTs them in order, but HTTP retries, concurrent chunk
uploads and holder-level re-POSTs mean the server can see them out of order, late, or twice.
A :class:`Sequencer` per model therefore

* runs operation ``n`` only after ``n - 1`` (or the model's first id) has run, waiting for gaps;
* deduplicates by idempotency key and by ``seq_id``: a repeat returns the original request id
  and is never applied again;
* counts what it received, applied and deduplicated, and records the applied order, so tests
  can prove "every operation applied exactly once, in seq_id order".

A gap that stays open for ``gap_timeout`` seconds fails every operation queued behind it with
a clear message instead of hanging them forever (a client that reserved ids and crashed).

A request the server *refuses* at submission (bad input it read, answered 400/404/422) has
still been seen: :meth:`Sequencer.refuse` consumes its ``seq_id``, so the next operation runs
without waiting for it, as the hosted service does. The client then goes on with the next id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["DuplicateSeqIdError", "SequencedOp", "Sequencer", "SequencerStatistics"]


#: The request id a consumed (refused) seq_id is recorded under: no future has it.
_REFUSED = "refused"


async def _nothing() -> None:
    pass


def _ignore(reason: str) -> None:
    del reason


class DuplicateSeqIdError(ValueError):
    """A ``seq_id`` arrived again with a different idempotency key and different content."""


@dataclass(eq=False)
class SequencedOp:
    """An accepted operation waiting for its turn.

    ``run`` does the work; ``fail`` is called instead when the op can never run (gap timeout,
    model closed), with the reason.
    """

    seq_id: int
    request_id: str
    kind: str
    run: Callable[[], Awaitable[None]]
    fail: Callable[[str], None]
    fingerprint: bytes = b""
    refused: bool = False  # a placeholder for a refused seq_id: consumed, never applied


@dataclass
class SequencerStatistics:
    """Counters of one model's operations, and the order they were applied in.

    The order is kept for the model's whole life, so it is kept compactly: seq_ids as runs of
    consecutive ids (one run unless a gap was skipped), kinds as one byte each. A long-running
    model costs about a byte per operation, not the 44 of two Python lists.
    """

    received: int = 0
    applied: int = 0
    deduplicated: int = 0
    failed: int = 0
    refused: int = 0
    _runs: list[list[int]] = field(default_factory=list)  # [first, last] seq_ids
    _kinds: bytearray = field(default_factory=bytearray)  # index into _kind_names
    _kind_names: list[str] = field(default_factory=list)

    def record(self, seq_id: int, kind: str) -> None:
        """Note that ``seq_id`` (of ``kind``) was applied."""
        self.applied += 1
        runs = self._runs
        if runs and runs[-1][1] + 1 == seq_id:
            runs[-1][1] = seq_id
        else:
            runs.append([seq_id, seq_id])
        try:
            code = self._kind_names.index(kind)
        except ValueError:
            code = len(self._kind_names)
            self._kind_names.append(kind)
        self._kinds.append(code)  # kinds are the server's own few names, never 256

    @property
    def applied_seq_ids(self) -> list[int]:
        """Every applied seq_id, in the order applied."""
        return [seq_id for first, last in self._runs for seq_id in range(first, last + 1)]

    @property
    def applied_kinds(self) -> list[str]:
        """The kind of every applied operation, in the order applied."""
        names = self._kind_names
        return [names[code] for code in self._kinds]


class Sequencer:
    """Run one model's operations in ``seq_id`` order, each exactly once.

    Args:
        next_seq_id: the first id expected (1 after create_model, whose own id is 0).
        gap_timeout: seconds to wait for a missing id before failing what queued behind it.
    """

    def __init__(self, *, next_seq_id: int = 1, gap_timeout: float = 600.0) -> None:
        self._next = next_seq_id
        self._gap_timeout = gap_timeout
        self._pending: dict[int, SequencedOp] = {}
        self._by_seq: dict[int, tuple[str, bytes]] = {}
        self._by_key: dict[str, str] = {}
        self._wakeup = trio.Event()
        self._closed: str | None = None
        self.stats = SequencerStatistics()

    @property
    def next_seq_id(self) -> int:
        """The id the model will run next."""
        return self._next

    def submit(self, op: SequencedOp, *, idempotency_key: str | None) -> tuple[str, bool]:
        """Queue ``op``; return ``(request_id, is_new)``.

        A repeat (same idempotency key, or a ``seq_id`` already accepted with the same
        content) returns the original request id and ``False``; nothing is queued.

        Raises:
            DuplicateSeqIdError: the ``seq_id`` was already used for different content, or is
                lower than every id still to run and was never seen.
            RuntimeError: the model is closed.
        """
        self.stats.received += 1
        if idempotency_key is not None and idempotency_key in self._by_key:
            self.stats.deduplicated += 1
            return self._by_key[idempotency_key], False
        seen = self._by_seq.get(op.seq_id)
        if seen is not None:
            request_id, fingerprint = seen
            if request_id == _REFUSED:
                raise DuplicateSeqIdError(
                    f"seq_id {op.seq_id} was consumed by a request the server refused; send "
                    "this operation with the model's next seq_id"
                )
            if fingerprint != op.fingerprint:
                raise DuplicateSeqIdError(
                    f"seq_id {op.seq_id} was already used by request {request_id} with "
                    "different content; each training operation needs the next seq_id"
                )
            self.stats.deduplicated += 1
            if idempotency_key is not None:
                self._by_key[idempotency_key] = request_id
            return request_id, False
        if op.seq_id < self._next:
            raise DuplicateSeqIdError(
                f"seq_id {op.seq_id} is below the model's next expected seq_id {self._next}; "
                "seq_ids must increase by one per operation"
            )
        if self._closed is not None:
            raise RuntimeError(self._closed)
        self._by_seq[op.seq_id] = (op.request_id, op.fingerprint)
        if idempotency_key is not None:
            self._by_key[idempotency_key] = op.request_id
        self._pending[op.seq_id] = op
        self._wakeup.set()
        return op.request_id, True

    def is_taken(self, seq_id: int) -> bool:
        """Whether ``seq_id`` was run, accepted or consumed (a new operation cannot use it)."""
        return seq_id < self._next or seq_id in self._by_seq

    def refuse(self, seq_id: int) -> bool:
        """Consume ``seq_id``, refused at submission; return whether it was consumed.

        Nothing runs at that id: the operation after it no longer waits for it. An id already
        accepted (or consumed), below the next one, or on a closed model is left alone. A later
        request reusing the id is refused as a duplicate (409).
        """
        if self._closed is not None or seq_id < self._next or seq_id in self._by_seq:
            return False
        self._by_seq[seq_id] = (_REFUSED, b"")
        self._pending[seq_id] = SequencedOp(
            seq_id=seq_id,
            request_id=_REFUSED,
            kind="refused",
            run=_nothing,
            fail=_ignore,
            refused=True,
        )
        self._wakeup.set()
        return True

    def prune(self, known: Callable[[str], bool]) -> None:
        """Forget the dedupe entries of operations whose futures are gone (``known`` False).

        Entries are kept in arrival order and operations settle in ``seq_id`` order, so the
        forgotten ones lead; the walk stops at the first live one. A repeat of a forgotten
        operation is then refused (409: its ``seq_id`` is below the next expected one).
        """
        stale_seqs = []
        for seq_id, (request_id, _) in self._by_seq.items():
            if known(request_id):
                break
            stale_seqs.append(seq_id)
        for seq_id in stale_seqs:
            del self._by_seq[seq_id]
        stale_keys = []
        for key, request_id in self._by_key.items():
            if known(request_id):
                break
            stale_keys.append(key)
        for key in stale_keys:
            del self._by_key[key]

    def close(self, reason: str) -> None:
        """Refuse new operations and fail the queued ones with ``reason``."""
        self._closed = reason
        for op in self._pending.values():
            self.stats.failed += not op.refused
            op.fail(reason)
        self._pending.clear()
        self._wakeup.set()

    async def run(self) -> None:
        """Execute operations in order until :meth:`close` (run this in a nursery)."""
        # when the current gap opened: later arrivals must not restart the gap's clock
        gap_since: float | None = None
        while self._closed is None:
            op = self._pending.pop(self._next, None)
            if op is not None:
                gap_since = None
                self._next += 1
                if op.refused:
                    self.stats.refused += 1
                    continue
                try:
                    await op.run()
                except Exception as exc:
                    # a failing op fails alone and the order goes on; Cancelled propagates
                    op.fail(f"internal error in the local server: {exc!r}")
                self.stats.record(op.seq_id, op.kind)
                continue
            self._wakeup = trio.Event()
            if not self._pending:
                await self._wakeup.wait()
                continue
            if gap_since is None:
                gap_since = trio.current_time()
            with trio.move_on_at(gap_since + self._gap_timeout) as scope:
                await self._wakeup.wait()
            if scope.cancelled_caught and self._next not in self._pending:
                self._fail_gap()
                gap_since = None

    def _fail_gap(self) -> None:
        waiting = sorted(self._pending)
        reason = (
            f"seq_id {self._next} never arrived within {self._gap_timeout:g} s; the operations "
            f"queued behind it (seq_ids {waiting[0]}..{waiting[-1]}) were failed. A client that "
            "reserved ids must send every one of them."
        )
        for seq_id in waiting:
            op = self._pending.pop(seq_id)
            self.stats.failed += not op.refused
            op.fail(reason)
        # skip past the gap so the model can be used again
        self._next = waiting[-1] + 1
