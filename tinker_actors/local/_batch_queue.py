"""Worker-thread jobs that stop when cancelled, and a queue whose requests run in batches.

:func:`run_stoppable` runs one blocking job in a worker thread behind a limiter (every torch
job of the torch backend goes through it). :class:`BatchQueue` batches requests: one caller
at a time leads, the rest wait.

The torch backend's sample requests go through one :class:`BatchQueue`, so requests that
arrive while the model is busy (an RL loop's batch of groups, sent at once) are answered by
one batched decoding run instead of one run each. There is no task of its own: the callers
take turns.

* The first caller to find nobody leading *leads*: it takes its own request and the queue's
  others for the same key (the same model and weights), in arrival order, up to ``budget``
  (the leader's always fits), and runs them in a worker thread through ``run`` (the backend's
  limiter). When that batch is done the lead passes to the key of the oldest request still
  queued, to its largest request (by ``cost``), whose caller wakes and leads the next batch;
  with nothing queued, nobody leads.
* Each request's outcome is delivered as soon as the batch produces it (the worker thread
  calls back into trio), so a short request does not wait for a long one in its batch. The
  leader's caller alone waits for its batch to end, which is why the lead goes to the largest
  request: usually the one answered last anyway.
* A caller cancelled while queued leaves the queue; one cancelled while its request is in a
  running batch sets its ``stop`` flag, which the batch polls between steps. A cancelled
  leader still waits for its batch to end (others' requests are in it, and torch must not run
  unattended), and hands the lead on. A batch that never started (the leader was cancelled
  first) goes back to the head of the queue.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import trio

__all__ = ["BatchQueue", "Entry", "run_stoppable"]

P = TypeVar("P")
R = TypeVar("R")


async def run_stoppable(
    limiter: trio.CapacityLimiter,
    fn: Callable[..., Any],
    *args: Any,
    stop: threading.Event | None = None,
) -> Any:
    """Run ``fn(*args)`` in a worker thread behind ``limiter``; on cancellation, stop it.

    ``stop`` is set when the call is cancelled: a job not started yet then never starts, and a
    job that polls ``stop`` ends early. A started job is waited for (shielded) before the
    cancellation goes on, because torch must never be left running unattended: a busy torch
    thread at interpreter exit aborts the process.
    """
    stop = stop if stop is not None else threading.Event()
    lock = threading.Lock()
    running = False
    finished = threading.Event()

    def job() -> Any:
        nonlocal running
        with lock:
            if stop.is_set():
                return None  # cancelled before it started: nobody waits for it
            running = True
        try:
            return fn(*args)
        finally:
            finished.set()

    try:
        # abandon_on_cancel: learn of a cancellation at once, not when the job ends
        return await trio.to_thread.run_sync(job, limiter=limiter, abandon_on_cancel=True)
    except trio.Cancelled:
        with lock:
            stop.set()
            started = running
        if started:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(finished.wait)
        raise


@dataclass(eq=False)
class Entry(Generic[P, R]):
    """One queued request. ``stop`` is set once nobody waits for its outcome."""

    key: Hashable
    cost: int
    payload: P
    stop: threading.Event = field(default_factory=threading.Event)
    outcome: R | BaseException | None = None
    done: bool = False
    lead: bool = False
    ready: trio.Event = field(default_factory=trio.Event)


#: ``more(accept)``, called by a running batch between its steps: requests queued for its key
#: since it started, that fit its budget and that ``accept(payload)``; they join the batch.
More = Callable[[Callable[[P], bool]], list[Entry[P, R]]]

#: ``execute(batch, finish, more)``: blocking; calls ``finish(entry, outcome)`` once per entry
#: it answers (an outcome that is an exception is raised to that entry's caller), and may call
#: ``more`` to take in newcomers (it answers them too).
Execute = Callable[[list[Entry[P, R]], Callable[[Entry[P, R], Any], None], More[P, R]], None]


class BatchQueue(Generic[P, R]):
    """See the module docstring.

    Args:
        run: ``await run(fn, *args, stop=event)`` runs ``fn(*args)`` in a worker thread; when
            cancelled it sets ``event``, and either ``fn`` never starts or the call waits for it
            to end (the torch backend's ``_run``).
        execute: answers one batch (in the worker thread).
        budget: the most total ``cost`` one batch takes (its first request always fits).
    """

    def __init__(
        self,
        run: Callable[..., Awaitable[Any]],
        execute: Execute[P, R],
        *,
        budget: int,
    ) -> None:
        self._run = run
        self._execute = execute
        self._budget = budget
        self._pending: list[Entry[P, R]] = []
        self._leading = False
        # set when a request is queued or a batch's request ends, so a running batch's
        # ``more`` costs one flag read when nothing could join
        self._changed = threading.Event()

    @property
    def queued(self) -> int:
        """Requests waiting for a batch (not those in a running one)."""
        return len(self._pending)

    async def submit(self, key: Hashable, cost: int, payload: P) -> R:
        """Queue a request and return its outcome (or raise the exception it ended with)."""
        entry: Entry[P, R] = Entry(key=key, cost=cost, payload=payload)
        self._pending.append(entry)
        self._changed.set()
        if not self._leading:
            self._leading = entry.lead = True
        try:
            while not entry.done:
                if entry.lead:
                    entry.lead = False
                    await self._lead(entry)
                else:
                    await entry.ready.wait()
                    entry.ready = trio.Event()
        except BaseException:
            entry.stop.set()
            if entry in self._pending:
                self._pending.remove(entry)
            if entry.lead:  # handed the lead, cancelled before taking it
                entry.lead = False
                self._hand_over()
            raise
        if isinstance(entry.outcome, BaseException):
            raise entry.outcome
        return entry.outcome  # type: ignore[return-value]  # done: the execute's result

    async def _lead(self, entry: Entry[P, R]) -> None:
        batch = self._take(entry)
        try:
            # cancelled, run() sets the leader's own stop flag: its request leaves the batch
            # (which goes on for the others) or, not started yet, the batch never starts
            await self._run(self._execute_in_thread, batch, stop=entry.stop)
        finally:
            undone = [e for e in batch if not e.done and not e.stop.is_set()]
            self._pending[:0] = undone
            self._hand_over()

    def _take(self, lead: Entry[P, R]) -> list[Entry[P, R]]:
        batch, cost = [lead], lead.cost
        rest: list[Entry[P, R]] = []
        for e in self._pending:
            if e is lead:
                continue
            if e.key == lead.key and cost + e.cost <= self._budget:
                batch.append(e)
                cost += e.cost
            else:
                rest.append(e)
        self._pending = rest
        return batch

    def _hand_over(self) -> None:
        if not self._pending:
            self._leading = False
            return
        # the oldest request's key goes next; its largest request leads, because a leader
        # waits for its whole batch and the largest is the likeliest to be answered last
        key = self._pending[0].key
        head = max((e for e in self._pending if e.key == key), key=lambda e: e.cost)
        head.lead = True
        head.ready.set()

    def _finish(self, entry: Entry[P, R], outcome: Any) -> None:
        if not entry.done:
            entry.outcome, entry.done = outcome, True
            entry.ready.set()
            if self._pending:  # its budget is free for a newcomer
                self._changed.set()

    def _take_more(
        self, batch: list[Entry[P, R]], accept: Callable[[P], bool]
    ) -> list[Entry[P, R]]:
        """Move queued requests for ``batch``'s key into it, in arrival order, while they fit
        its budget (what its unfinished requests leave) and ``accept`` takes them."""
        self._changed.clear()
        room = self._budget - sum(e.cost for e in batch if not e.done)
        taken: list[Entry[P, R]] = []
        rest: list[Entry[P, R]] = []
        for e in self._pending:
            joins = e.key == batch[0].key and not e.lead and not e.stop.is_set()
            if joins and e.cost <= room and accept(e.payload):
                taken.append(e)
                room -= e.cost
            else:
                rest.append(e)
        self._pending = rest
        batch.extend(taken)  # the leader's list: what is left undone when it ends is requeued
        return taken

    def _execute_in_thread(self, batch: list[Entry[P, R]]) -> None:
        def finish(entry: Entry[P, R], outcome: Any) -> None:
            # run_sync returns once _finish has run: ``done`` is then set for this thread too;
            # a loop that is gone has nobody waiting
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self._finish, entry, outcome)

        def more(accept: Callable[[P], bool]) -> list[Entry[P, R]]:
            if not self._changed.is_set():
                return []
            try:
                taken: list[Entry[P, R]] = trio.from_thread.run_sync(self._take_more, batch, accept)
            except trio.RunFinishedError:
                return []
            return taken

        try:
            self._execute(batch, finish, more)
        except Exception as exc:  # a defect in the batch fails what it had not answered
            for entry in batch:
                if not entry.done:
                    finish(entry, exc)
