"""FuturePoller.host: work handed to the poller without a mailbox hop, or run by its waiter.

The runtime hands each operation's waiting half to ``host`` while the poller runs (and a
Watch message is still accepted). What must hold either way: work nobody waits for runs in the
poller's nursery (it outlives the submitter), a waiter that comes before it started runs it
in its own task with the same cancellation rules, a slot cancelled before its work started
runs nothing, and a poller that is gone fails the slot instead of leaving it pending forever.
"""

from __future__ import annotations

import contextvars
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import pytest
import trio
import trio.lowlevel
from sdk_support import open_runtime

from tinker_actors.actors import (
    FuturePoller,
    FutureState,
    OperationCancelledError,
    Watch,
    run_hosted_actor,
)
from tinker_actors.clients import APIFuture, SamplingClient
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.supervisors import ActorExited, ActorRef
from tinker_actors.types import ModelInput, SamplingParams

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class _Transport:
    """Records the cancel_future requests a poller sends."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, object]] = []

    async def request(self, method: str, path: str, **kwargs: object) -> None:
        self.sent.append((path, kwargs.get("json")))


@asynccontextmanager
async def _running_poller(transport: _Transport | None = None) -> AsyncIterator[FuturePoller]:
    """A poller in a nursery of its own, stopped when the block ends; with ``transport`` its
    cancel_future flag is on and it sends through that."""
    made: list[FuturePoller] = []

    def factory(nursery: trio.Nursery) -> FuturePoller:
        enabled = transport is not None
        made.append(FuturePoller(nursery, transport, lambda: enabled))  # type: ignore[arg-type]
        return made[-1]

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_hosted_actor, factory, "poller")
            yield made[0]
            nursery.cancel_scope.cancel()


PROMPT = ModelInput.from_ints([1, 2, 3])
PARAMS = SamplingParams(max_tokens=1)


@asynccontextmanager
async def _warm_sampler() -> AsyncIterator[tuple[LocalServer, Any, SamplingClient]]:
    """A local server, a runtime on it and a sampler that has sampled once (its poller runs)."""
    async with open_local_server() as server, open_runtime(server.app) as runtime:
        sampler = await runtime.create_sampling_client(base_model="local/tiny")
        await (await sampler.sample(PROMPT, 1, PARAMS)).result()
        yield server, runtime, sampler


async def _value(x: object) -> object:
    await trio.sleep(0.5)
    return x


async def test_host_runs_work_in_the_pollers_nursery() -> None:
    async with _running_poller() as poller:
        assert poller.accepting
        states = [FutureState[Any]("Sample") for _ in range(3)]
        for i, state in enumerate(states):
            poller.host(state, lambda i=i: _value(i))
        # hosting is synchronous: the work is with the poller (queued until we yield)
        assert sum(1 for s in states if not s.done()) == 3
        for s in states:
            await s.wait()
        assert [s.outcome() for s in states] == [0, 1, 2]
        # a Watch message still works the same way
        late = FutureState[Any]("Sample")
        ref: ActorRef[Watch] = poller.ref
        await ref.cast(Watch(late, lambda: _value("w")))
        await late.wait()
        assert late.outcome() == "w"


async def test_host_skips_a_slot_cancelled_before_its_work_started() -> None:
    ran: list[str] = []

    async def work() -> str:
        ran.append("ran")
        return "x"

    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        state.cancel()
        poller.host(state, work)
        await trio.sleep(1)
        assert ran == []
        assert state.done()


async def test_host_on_a_poller_that_is_gone_fails_the_slot() -> None:
    async with _running_poller() as poller:
        running = FutureState[Any]("Sample")
        poller.host(running, trio.sleep_forever)
        await trio.lowlevel.checkpoint()
    assert not poller.accepting
    # pending work failed with the poller: nobody waits forever
    with pytest.raises(ActorExited):
        running.outcome()
    late = FutureState[Any]("Sample")
    poller.host(late, lambda: _value(1))  # its nursery is closed to new tasks
    assert late.done()
    with pytest.raises(ActorExited):
        late.outcome()


async def test_a_sample_after_the_poller_stopped_starts_a_new_one() -> None:
    with trio.fail_after(60):
        async with _warm_sampler() as (_server, runtime, sampler):
            first = runtime._poller
            assert first is not None
            assert first.accepting
            await runtime.pollers.terminate_child("poller")
            assert not first.accepting
            result = await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            assert len(result.sequences) == 1
            second = runtime._poller
            assert second is not None
            assert second is not first
            assert second.accepting


# -- work that has not started yet: the first waiter runs it ----------------------------------


def _recording(where: list[trio.lowlevel.Task], result: object = "x") -> Any:
    async def work() -> object:
        await trio.lowlevel.checkpoint()
        where.append(trio.lowlevel.current_task())
        await trio.sleep(0.5)
        return result

    return work


async def test_a_waiter_runs_work_that_has_not_started_in_its_own_task() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        assert await APIFuture(state).result() == "x"
        assert where == [trio.lowlevel.current_task()]
        # nothing of it is left with the poller, and nothing runs it a second time
        assert state not in poller._pending
        await trio.sleep(1)
        assert len(where) == 1


async def test_work_nobody_awaits_starts_in_the_poller_once_the_caller_yields() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        await trio.sleep(0.1)  # any schedule point lets the poller start it
        assert len(where) == 1
        assert where[0] is not trio.lowlevel.current_task()
        assert where[0].parent_nursery is poller._nursery
        # once started, a waiter waits for it (it does not run it again)
        assert await APIFuture(state).result() == "x"
        assert len(where) == 1


async def test_result_with_a_timeout_leaves_the_work_to_the_poller() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        # a waiter that may give up must not hold the work: a timeout leaves it running
        assert await APIFuture(state).result(timeout=5) == "x"
        assert where[0] is not trio.lowlevel.current_task()


async def test_work_cancelled_while_queued_is_not_run_by_a_waiter() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        assert state.cancel()
        # the slot is settled; taking it off the queue runs nothing
        assert await state.run_queued()
        assert not await state.run_queued()
        with pytest.raises(OperationCancelledError):
            await APIFuture(state).result()
        assert state not in poller._pending
        await trio.sleep(1)
        assert where == []


_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("_VAR", default="unset")


async def test_queued_work_runs_in_the_context_it_was_hosted_in() -> None:
    seen: list[str] = []

    async def work() -> None:
        seen.append(_VAR.get())

    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        _VAR.set("when hosted")
        poller.host(state, work)
        _VAR.set("later")
        await state.wait()
        assert seen == ["when hosted"]


async def test_a_cancelled_waiter_takes_the_work_it_runs_with_it() -> None:
    transport = _Transport()
    submitted = trio.Event()

    async def work() -> None:
        state.request_id = "req-1"  # the sample reached the server
        submitted.set()
        await trio.sleep_forever()

    async with _running_poller(transport) as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, work)
        with trio.move_on_after(1) as scope:
            await APIFuture(state).result()
        assert scope.cancelled_caught
        assert submitted.is_set()
        with pytest.raises(OperationCancelledError):
            state.outcome()
        await trio.sleep(0.5)
        # as for a started sample: the server is asked to drop it (cancel_future)
        assert [path for path, _ in transport.sent] == ["/api/v1/cancel_future"]
        assert poller.cancels_sent == 1


async def test_cancel_from_elsewhere_stops_the_work_a_waiter_runs() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller, trio.open_nursery() as nursery:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        future = APIFuture(state)

        async def cancel_soon() -> None:
            await trio.sleep(0.2)
            assert future.cancel()

        nursery.start_soon(cancel_soon)
        with pytest.raises(OperationCancelledError):
            await future.result()
        assert where == [trio.lowlevel.current_task()]


async def test_work_queued_when_the_poller_stops_fails_and_never_runs_later() -> None:
    where: list[trio.lowlevel.Task] = []
    async with _running_poller() as poller:
        state = FutureState[Any]("Sample")
        poller.host(state, _recording(where))
        # the block ends before the caller yields: the poller stops with the work still queued
    with pytest.raises(ActorExited):
        await APIFuture(state).result()
    assert where == []


async def test_a_poller_that_stops_stops_the_work_a_waiter_runs() -> None:
    stopped = trio.Event()

    async def work() -> None:
        try:
            await trio.sleep_forever()
        finally:
            stopped.set()

    async with _running_poller() as poller, trio.open_nursery() as nursery:
        state = FutureState[Any]("Sample")
        poller.host(state, work)

        async def stop_soon() -> None:
            await trio.sleep(0.2)
            poller.ref.request_stop()

        nursery.start_soon(stop_soon)
        # the waiter runs the work; the poller going away ends it, as it ends its own tasks
        with pytest.raises(ActorExited):
            await APIFuture(state).result()
        assert stopped.is_set()


async def test_await_sample_result_spawns_no_task_per_sample() -> None:
    spawned: list[str] = []

    class Spawns(trio.abc.Instrument):
        def task_spawned(self, task: trio.lowlevel.Task) -> None:
            spawned.append(task.name)

    with trio.fail_after(60):
        async with _warm_sampler() as (_server, _runtime, sampler):
            instrument = Spawns()
            trio.lowlevel.add_instrument(instrument)
            try:
                for _ in range(5):
                    result = await (await sampler.sample(PROMPT, 1, PARAMS)).result()
                    assert len(result.sequences) == 1
            finally:
                trio.lowlevel.remove_instrument(instrument)
            assert [name for name in spawned if name.startswith("poll ")] == []
            # a future held across a schedule point still resolves through the poller
            future = await sampler.sample(PROMPT, 1, PARAMS)
            await trio.lowlevel.checkpoint()
            assert len((await future.result()).sequences) == 1


async def test_a_sample_cancelled_at_its_call_starts_nothing() -> None:
    with trio.fail_after(60):
        async with _warm_sampler() as (server, runtime, sampler):

            def samples() -> object:
                totals: Any = server.counters()["totals"]
                return totals.get("http:/api/v1/asample")

            before = samples()
            with trio.CancelScope() as scope:
                scope.cancel()
                await sampler.sample(PROMPT, 1, PARAMS)
            assert scope.cancelled_caught
            await trio.sleep(0.5)
            assert samples() == before
            assert len(runtime._accepted) == 0  # its slot was settled (as cancelled)


async def test_a_call_yields_only_while_earlier_work_waits_to_start() -> None:
    """The idiom ``await (await sample()).result()`` costs no scheduler turn at the call (it is
    a cancel point, not a schedule point); a loop of calls that never awaits a result still
    yields at every call after the first, and so starts each earlier sample as it goes on."""
    with trio.fail_after(60):
        async with _warm_sampler() as (_server, runtime, sampler):
            task = trio.lowlevel.current_task()  # trio.testing's own yield counters

            schedule, cancel = task._schedule_points, task._cancel_points
            future = await sampler.sample(PROMPT, 1, PARAMS)
            assert task._schedule_points == schedule  # nothing queued before it: no yield
            assert task._cancel_points > cancel
            assert len((await future.result()).sequences) == 1

            poller = runtime._poller
            assert poller is not None
            schedule = task._schedule_points
            futures = [await sampler.sample(PROMPT, 1, PARAMS) for _ in range(6)]
            assert task._schedule_points - schedule == 5  # every call after the first yielded
            assert poller.backlog  # the last one waits for the caller's next yield
            for _ in range(10):  # the starter runs in one of the next few batches
                await trio.lowlevel.checkpoint()
                if not poller.backlog:
                    break
            assert not poller.backlog
            for f in futures:
                assert len((await f.result()).sequences) == 1
