"""FuturePoller.host: work handed straight to the poller's nursery, without a mailbox hop.

The runtime starts each operation's waiting half with ``host`` while the poller runs (and a
Watch message is still accepted). What must hold either way: the work runs in the poller's
nursery (it outlives the submitter), a slot cancelled before its work started runs nothing,
and a poller that is gone fails the slot instead of leaving it pending forever.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel
from sdk_support import open_runtime

from tinker_actors.actors import FuturePoller, FutureState, Watch, run_hosted_actor
from tinker_actors.local import open_local_server
from tinker_actors.supervisors import ActorExited, ActorRef
from tinker_actors.types import ModelInput, SamplingParams


def _poller_factory(made: list[FuturePoller]) -> Any:
    # cancel_future is off (the flag reads False), so the poller never uses its transport
    def factory(nursery: trio.Nursery) -> FuturePoller:
        made.append(FuturePoller(nursery, None, lambda: False))  # type: ignore[arg-type]
        return made[-1]

    return factory


async def _value(x: object) -> object:
    await trio.sleep(0.5)
    return x


async def test_host_runs_work_in_the_pollers_nursery() -> None:
    made: list[FuturePoller] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            ref: ActorRef[Watch] = await nursery.start(
                run_hosted_actor, _poller_factory(made), "poller"
            )
            poller = made[0]
            assert poller.accepting
            states = [FutureState[Any]("Sample") for _ in range(3)]
            for i, state in enumerate(states):
                poller.host(state, lambda i=i: _value(i))
            # hosting is synchronous: the work is already a task of the poller's nursery
            assert sum(1 for s in states if not s.done()) == 3
            for s in states:
                await s.wait()
            assert [s.outcome() for s in states] == [0, 1, 2]
            # a Watch message still works the same way
            late = FutureState[Any]("Sample")
            await ref.cast(Watch(late, lambda: _value("w")))
            await late.wait()
            assert late.outcome() == "w"
            nursery.cancel_scope.cancel()


async def test_host_skips_a_slot_cancelled_before_its_work_started() -> None:
    made: list[FuturePoller] = []
    ran: list[str] = []

    async def work() -> str:
        ran.append("ran")
        return "x"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_hosted_actor, _poller_factory(made), "poller")
            state = FutureState[Any]("Sample")
            state.cancel()
            made[0].host(state, work)
            await trio.sleep(1)
            assert ran == []
            assert state.done()
            nursery.cancel_scope.cancel()


async def test_host_on_a_poller_that_is_gone_fails_the_slot() -> None:
    made: list[FuturePoller] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(run_hosted_actor, _poller_factory(made), "poller")
            running = FutureState[Any]("Sample")
            made[0].host(running, trio.sleep_forever)
            await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
    poller = made[0]
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
        async with open_local_server() as server, open_runtime(server.app) as runtime:
            sampler = await runtime.create_sampling_client(base_model="local/tiny")
            prompt = ModelInput.from_ints([1, 2, 3])
            params = SamplingParams(max_tokens=1)
            await (await sampler.sample(prompt, 1, params)).result()
            first = runtime._poller
            assert first is not None
            assert first.accepting
            await runtime.pollers.terminate_child("poller")
            assert not first.accepting
            result = await (await sampler.sample(prompt, 1, params)).result()
            assert len(result.sequences) == 1
            second = runtime._poller
            assert second is not None
            assert second is not first
            assert second.accepting
