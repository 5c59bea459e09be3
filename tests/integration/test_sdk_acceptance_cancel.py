"""Acceptance: cancelling a scope with 1,000 samples in flight cleans up completely.

The null backend holds every sample for 1,000 s of virtual time, and the server admits all of
them at once (``sample_capacity`` 4,096), so when the scope is cancelled all 1,000 are pending
on the server. Cancelling must then

* resolve every future as cancelled and free every client-side slot (rate limiter dispatch
  slots, the poller's pending set, the runtime's in-flight calls);
* send one ``cancel_future`` per sample (the dynamic flag ``sample_cancel_enabled`` is on),
  which the server counts as ``cancelled`` and which frees its sample slots;
* leave no task behind: trio's task tree, walked from the root task, is back to the size it had
  before the burst; with the flag off, no cancel is sent at all.

Everything runs in-process over ``httpx.ASGITransport`` (no sockets can leak) on the virtual
clock, with ``trio.fail_after`` guards.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from sdk_support import open_runtime, totals

import tinker_actors as ta
from tinker_actors.actors import rate_limiter_for
from tinker_actors.clients import APIFuture, OperationCancelledError, SamplingClient
from tinker_actors.local import LatencyModel, LocalServer, NullBackend, open_local_server
from tinker_actors.types import (
    ClientDynamicConfigResponse,
    ModelInput,
    SampleResponse,
    SamplingParams,
)

BURST = 1000
PROMPT = ModelInput.from_ints([3, 1, 4, 1, 5])
PARAMS = SamplingParams(max_tokens=4)


def task_tree_size() -> int:
    """Count every live task, walking child nurseries from the root task."""
    count = 0
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        count += 1
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return count


class CountingApp:
    """ASGI wrapper counting requests per path (what the client sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.paths: dict[str, int] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.paths[scope["path"]] = self.paths.get(scope["path"], 0) + 1
        await self.app(scope, receive, send)


@asynccontextmanager
async def slow_sampler(
    *, cancel_enabled: bool
) -> AsyncIterator[tuple[ta.Runtime, SamplingClient, LocalServer, CountingApp]]:
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=1000)})
    flags = ClientDynamicConfigResponse(sample_cancel_enabled=cancel_enabled)
    async with open_local_server(
        backend=backend, sample_capacity=4096, dynamic_config=flags
    ) as server:
        app = CountingApp(server.app)
        async with open_runtime(app) as rt:
            sc = await rt.create_sampling_client(base_model="local/tiny")
            yield rt, sc, server, app


async def warm_up(sc: SamplingClient) -> None:
    """One sample that completes: starts the poller and the limiter before the baseline."""
    done = await (await sc.sample(PROMPT, 1, PARAMS)).result()
    assert len(done.sequences) == 1


async def burst_then_cancel(
    sc: SamplingClient, server: LocalServer
) -> list[APIFuture[SampleResponse]]:
    """Start BURST samples under one scope, wait until the server holds all, cancel it."""
    futures: list[APIFuture[SampleResponse]] = []
    received_before = totals(server).get("received:Sample", 0)

    all_submitted = trio.Event()

    async def one() -> None:
        future = await sc.sample(PROMPT, 1, PARAMS)
        futures.append(future)
        if len(futures) == BURST:
            all_submitted.set()
        await future.result()
        raise AssertionError("a 1,000 s sample finished inside the scope")

    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            for _ in range(BURST):
                nursery.start_soon(one)
            await all_submitted.wait()
            await trio.sleep(1)  # every waiter is parked on its poll now
            assert totals(server)["received:Sample"] - received_before == BURST
            assert server.engine.sampling.in_flight == BURST
            scope.cancel()
    assert scope.cancelled_caught
    return futures


def client_slots_free(rt: ta.Runtime) -> None:
    dump = rt.dump()
    assert [a.name for a in dump.actors if a.calls] == [], dump.render()
    assert all(a.queued == 0 for a in dump.actors), dump.render()


async def test_cancelling_a_scope_with_1000_samples_cleans_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with slow_sampler(cancel_enabled=True) as (rt, sc, server, app):
        with trio.fail_after(100_000):
            # Only the backend's first sample is slow: the warm-up waits its 1,000 s too.
            await warm_up(sc)
            limiter = await rate_limiter_for(rt.registry, rt.limiter_key)
            baseline_tasks = task_tree_size()
            cancels_before = app.paths.get("/api/v1/cancel_future", 0)

            futures = await burst_then_cancel(sc, server)

            assert len(futures) == BURST
            for future in futures:
                assert future.done()
                with pytest.raises(OperationCancelledError):
                    await future.result()
            await trio.sleep(5)  # let the cancel_future requests drain
            # one cancel per sample, each honoured by the server
            assert app.paths.get("/api/v1/cancel_future", 0) - cancels_before == BURST
            assert totals(server)["cancelled"] == BURST
            assert server.engine.sampling.in_flight == 0
            # client-side slots and calls: all free
            stats = limiter.statistics()
            assert stats.sample_dispatching == 0
            assert stats.sample_slots_waiting == 0
            assert stats.throttled_dispatching == 0
            client_slots_free(rt)
            # no task left behind: no poll, no cancel sender, no waiter
            assert task_tree_size() == baseline_tasks
            # and the client still works: a fresh sample is admitted and polled
            polls_before = app.paths.get("/api/v1/retrieve_future", 0)
            await warm_up(sc)
            assert app.paths["/api/v1/retrieve_future"] > polls_before
            assert task_tree_size() == baseline_tasks


async def test_without_the_flag_no_cancel_is_sent_but_nothing_leaks(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with slow_sampler(cancel_enabled=False) as (rt, sc, server, app):
        with trio.fail_after(100_000):
            await warm_up(sc)
            baseline_tasks = task_tree_size()
            futures = await burst_then_cancel(sc, server)
            assert all(f.done() for f in futures)
            await trio.sleep(5)
            assert app.paths.get("/api/v1/cancel_future", 0) == 0
            assert totals(server).get("cancelled", 0) == 0
            client_slots_free(rt)
            # The in-process server still runs the uncancelled samples (their tasks are in the
            # same tree); once they finish, nothing of the client's may remain either.
            await trio.sleep(1100)
            assert server.engine.sampling.in_flight == 0
            assert totals(server)["applied:Sample"] >= BURST
            assert task_tree_size() == baseline_tasks
