"""BatchQueue: requests that wait together run together; callers take turns leading.

No torch here: ``execute`` is a plain function run in real worker threads (run_stoppable),
and the tests synchronise with events rather than with time.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

from tinker_actors.local._batch_queue import BatchQueue, Entry, run_stoppable

GUARD = 20.0


class Recorder:
    """An ``execute`` that answers each request with (payload, batch number); it can be held
    at its start and can answer some requests before the others."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.fail: Exception | None = None
        self.answer_first: set[Any] = set()
        self.release_rest = threading.Event()
        self.release_rest.set()

    def __call__(self, batch: list[Entry[Any, Any]], finish: Any, more: Any = None) -> None:
        self.started.set()
        self.gate.wait(GUARD)
        number = len(self.batches)
        self.batches.append([e.payload for e in batch])
        for entry in batch:
            if entry.payload in self.answer_first:
                finish(entry, (entry.payload, number))
        self.release_rest.wait(GUARD)
        if self.fail is not None:
            raise self.fail
        for entry in batch:
            if entry.payload not in self.answer_first and not entry.stop.is_set():
                finish(entry, (entry.payload, number))


def queue(
    execute: Recorder, limiter: trio.CapacityLimiter, budget: int = 100
) -> BatchQueue[Any, Any]:
    async def run(fn: Any, *args: Any, stop: threading.Event | None = None) -> Any:
        return await run_stoppable(limiter, fn, *args, stop=stop)

    return BatchQueue(run, execute, budget=budget)


async def submit_all(
    q: BatchQueue[Any, Any], requests: list[tuple[Any, int, Any]], results: dict[Any, Any]
) -> None:
    async with trio.open_nursery() as nursery:
        for key, cost, payload in requests:

            async def one(key: Any = key, cost: int = cost, payload: Any = payload) -> None:
                results[payload] = await q.submit(key, cost, payload)

            nursery.start_soon(one)


async def _queue_behind_a_first_batch(
    q: BatchQueue[Any, Any],
    execute: Recorder,
    requests: list[tuple[Any, int, Any]],
    results: dict[Any, Any],
) -> None:
    """Run ``requests[0]`` alone (held at its start), queue the rest behind it, then let
    everything run. (Trio starts a batch of tasks in any order, so the first goes alone.)"""
    execute.gate.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(submit_all, q, requests[:1], results)
        await trio.to_thread.run_sync(execute.started.wait, GUARD)
        nursery.start_soon(submit_all, q, requests[1:], results)
        await trio.testing.wait_all_tasks_blocked()
        assert q.queued == len(requests) - 1
        execute.gate.set()


async def test_requests_that_wait_together_run_as_one_batch_per_key() -> None:
    execute = Recorder()
    q = queue(execute, trio.CapacityLimiter(1))
    results: dict[Any, Any] = {}
    requests = [("a", 1, "a0")] + [("a" if i % 3 else "b", 1, f"r{i}") for i in range(1, 10)]
    with trio.fail_after(GUARD):
        await _queue_behind_a_first_batch(q, execute, requests, results)
    assert execute.batches[0] == ["a0"]  # the first request found nobody leading
    # then every queued "a" in one batch and every "b" in another
    rest = sorted(sorted(batch) for batch in execute.batches[1:])
    assert rest == [["r1", "r2", "r4", "r5", "r7", "r8"], ["r3", "r6", "r9"]]
    assert results == {p: (p, n) for n, batch in enumerate(execute.batches) for p in batch}
    assert q.queued == 0


async def test_the_budget_splits_a_batch_and_a_large_request_runs_alone() -> None:
    execute = Recorder()
    q = queue(execute, trio.CapacityLimiter(1), budget=10)
    results: dict[Any, Any] = {}
    requests = [("k", 1, "first"), ("k", 4, "x1"), ("k", 4, "x2"), ("k", 4, "x3"), ("k", 50, "big")]
    with trio.fail_after(GUARD):
        await _queue_behind_a_first_batch(q, execute, requests, results)
    assert execute.batches[0] == ["first"]
    rest = execute.batches[1:]
    assert ["big"] in rest  # over the budget alone: it still runs, by itself
    assert sorted(len(b) for b in rest if b != ["big"]) == [1, 2]  # 4 + 4 fit 10, 4 more not
    assert len(results) == 5


async def test_an_answer_comes_before_its_batch_ends() -> None:
    gate, release, started = threading.Event(), threading.Event(), threading.Event()

    def execute(batch: list[Entry[Any, Any]], finish: Any, more: Any) -> None:
        started.set()
        gate.wait(GUARD)
        for entry in batch:
            if entry.payload in ("lead", "quick"):
                finish(entry, entry.payload)
        if len(batch) > 1:
            release.wait(GUARD)  # the long request of the batch goes on
        for entry in batch:
            if entry.payload == "slow":
                finish(entry, "slow")

    limiter = trio.CapacityLimiter(1)

    async def run(fn: Any, *args: Any, stop: threading.Event | None = None) -> Any:
        return await run_stoppable(limiter, fn, *args, stop=stop)

    q: BatchQueue[Any, Any] = BatchQueue(run, execute, budget=10)
    results: dict[Any, Any] = {}
    quick_done = trio.Event()

    async def quick() -> None:
        results["quick"] = await q.submit("k", 1, "quick")
        quick_done.set()

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_all, q, [("k", 1, "lead")], results)
            await trio.to_thread.run_sync(started.wait, GUARD)
            # the larger request leads the next batch and waits for it to end; the other is
            # answered as soon as its own samples are done
            nursery.start_soon(submit_all, q, [("k", 5, "slow")], results)
            nursery.start_soon(quick)
            await trio.testing.wait_all_tasks_blocked()
            gate.set()
            await quick_done.wait()
            assert "slow" not in results  # its batch still runs
            release.set()
    assert results == {"lead": "lead", "quick": "quick", "slow": "slow"}


async def test_a_leader_cancelled_before_its_batch_started_hands_the_batch_on() -> None:
    execute = Recorder()
    limiter = trio.CapacityLimiter(1)
    q = queue(execute, limiter)
    results: dict[Any, Any] = {}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await limiter.acquire()  # something else holds the worker: no batch can start
            lead_scope = trio.CancelScope()
            nursery.start_soon(_cancellable, q, "lead", lead_scope, results)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(submit_all, q, [("k", 1, "b"), ("k", 1, "c")], results)
            await trio.testing.wait_all_tasks_blocked()
            lead_scope.cancel()  # the leader goes before its batch started
            await trio.testing.wait_all_tasks_blocked()
            limiter.release()
    assert "lead" not in results
    assert results == {"b": ("b", 0), "c": ("c", 0)}
    assert [sorted(b) for b in execute.batches] == [["b", "c"]]  # the leader's never ran


async def _cancellable(
    q: BatchQueue[Any, Any], payload: str, scope: trio.CancelScope, results: dict[Any, Any]
) -> None:
    with scope:
        results[payload] = await q.submit("k", 1, payload)


async def test_a_cancelled_waiter_leaves_and_the_others_are_answered() -> None:
    execute = Recorder()
    execute.gate.clear()
    q = queue(execute, trio.CapacityLimiter(1))
    results: dict[Any, Any] = {}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_all, q, [("k", 1, "lead")], results)
            await trio.to_thread.run_sync(execute.started.wait, GUARD)
            scope = trio.CancelScope()
            nursery.start_soon(_cancellable, q, "gone", scope, results)
            nursery.start_soon(submit_all, q, [("k", 1, "kept")], results)
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
            await trio.testing.wait_all_tasks_blocked()
            assert q.queued == 1
            execute.gate.set()
    assert results == {"lead": ("lead", 0), "kept": ("kept", 1)}
    assert execute.batches == [["lead"], ["kept"]]


async def test_a_failed_batch_fails_what_it_had_not_answered() -> None:
    execute = Recorder()
    execute.answer_first = {"answered"}
    execute.fail = RuntimeError("the batch broke")
    execute.gate.clear()
    q = queue(execute, trio.CapacityLimiter(1))
    outcomes: dict[str, Any] = {}

    async def one(payload: str) -> None:
        try:
            outcomes[payload] = await q.submit("k", 1, payload)
        except RuntimeError as exc:
            outcomes[payload] = exc

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "lead")
            await trio.to_thread.run_sync(execute.started.wait, GUARD)
            nursery.start_soon(one, "answered")
            nursery.start_soon(one, "failed")
            await trio.testing.wait_all_tasks_blocked()
            execute.gate.set()
    assert isinstance(outcomes["lead"], RuntimeError)
    assert outcomes["answered"] == ("answered", 1)
    assert isinstance(outcomes["failed"], RuntimeError)
    assert "the batch broke" in str(outcomes["failed"])
    assert q.queued == 0


async def test_a_cancelled_job_that_never_started_does_not_run() -> None:
    limiter = trio.CapacityLimiter(1)
    ran: list[str] = []
    with trio.fail_after(GUARD):
        await limiter.acquire()
        with trio.CancelScope() as scope:
            scope.cancel()
            await run_stoppable(limiter, ran.append, "never")
        limiter.release()
        assert await run_stoppable(limiter, lambda: "ran") == "ran"
    assert ran == []


@pytest.mark.parametrize("leader_cancelled", [False, True])
async def test_a_cancelled_request_inside_a_running_batch_stops_only_itself(
    leader_cancelled: bool,
) -> None:
    polled = threading.Event()

    def execute(batch: list[Entry[Any, Any]], finish: Any, more: Any) -> None:
        # answers each request once it may: a stopped one is dropped, as the torch batch does
        pending = list(batch)
        while pending:
            for entry in list(pending):
                if entry.stop.is_set():
                    pending.remove(entry)
                elif entry.payload == "other":
                    finish(entry, "answered")
                    pending.remove(entry)
            polled.set()
            threading.Event().wait(0.002)
            if all(e.payload == "target" for e in pending):
                continue

    limiter = trio.CapacityLimiter(1)

    async def run(fn: Any, *args: Any, stop: threading.Event | None = None) -> Any:
        return await run_stoppable(limiter, fn, *args, stop=stop)

    q: BatchQueue[Any, Any] = BatchQueue(run, execute, budget=10)
    target_scope = trio.CancelScope()
    results: dict[str, Any] = {}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            await limiter.acquire()  # hold: both requests queue, then run as one batch
            first, second = ("target", "other") if leader_cancelled else ("other", "target")
            for payload in (first, second):
                if payload == "target":
                    nursery.start_soon(_cancellable, q, "target", target_scope, results)
                else:
                    nursery.start_soon(submit_all, q, [("k", 1, "other")], results)
                await trio.testing.wait_all_tasks_blocked()
            limiter.release()
            await trio.to_thread.run_sync(polled.wait, GUARD)
            target_scope.cancel()
    assert results == {"other": "answered"}


async def test_a_running_batch_takes_in_newcomers_that_fit_and_that_it_accepts() -> None:
    # between steps a batch asks for more: queued requests for its key, in arrival order,
    # within the budget its unfinished requests leave, that its ``accept`` takes; the rest
    # wait for the next batch
    started, queued = threading.Event(), threading.Event()
    joined: list[list[Any]] = []

    def execute(batch: list[Entry[Any, Any]], finish: Any, more: Any) -> None:
        if batch[0].payload == "lead":
            started.set()
            queued.wait(GUARD)
            joined.append([e.payload for e in more(lambda payload: payload != "refused")])
            joined.append([e.payload for e in more(lambda payload: True)])  # none new: no call
        for entry in batch:
            finish(entry, (entry.payload, batch[0].payload))

    limiter = trio.CapacityLimiter(1)

    async def run(fn: Any, *args: Any, stop: threading.Event | None = None) -> Any:
        return await run_stoppable(limiter, fn, *args, stop=stop)

    q: BatchQueue[Any, Any] = BatchQueue(run, execute, budget=10)
    results: dict[Any, Any] = {}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(submit_all, q, [("k", 4, "lead")], results)
            await trio.to_thread.run_sync(started.wait, GUARD)
            newcomers = [("k", 3, "a"), ("other", 1, "b"), ("k", 2, "refused")]
            newcomers += [("k", 4, "too big"), ("k", 2, "c")]
            for request in newcomers:  # one at a time: they queue in this order
                nursery.start_soon(submit_all, q, [request], results)
                await trio.testing.wait_all_tasks_blocked()
            queued.set()
    assert joined == [["a", "c"], []]  # 4 + 3 + 2 of 10; "too big" did not fit the 3 left
    assert results["a"] == ("a", "lead")
    assert results["c"] == ("c", "lead")
    for late in ("b", "refused", "too big"):
        assert results[late] != (late, "lead")
    assert q.queued == 0
