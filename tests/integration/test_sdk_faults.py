"""The SDK under the local server's fault plans, and the API key's secrecy.

Every injected status fault is answered by the server's FaultInjector before the app sees the
request, so "every operation completes exactly once" is read off the server's counters: each
training seq_id applied once and in order, each sample applied once, no duplicates.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from sdk_support import KEY, lm_datum, open_runtime

import tinker_actors as ta
from tinker_actors.local import FaultPlan, LocalServer, open_local_server
from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams


def datum(offset: int) -> Datum:
    return lm_datum([(offset + 5 * i) % 3000 + 4 for i in range(9)])


def counters(server: LocalServer) -> dict[str, Any]:
    return server.counters()


async def _train_and_sample(rt: ta.Runtime, steps: int, samples: int) -> tuple[str, int]:
    tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=1)
    with trio.fail_after(10_000):
        futures = []
        for step in range(steps):
            futures.append(
                await tc.forward_backward([datum(step), datum(step + 50)], "cross_entropy")
            )
            futures.append(await tc.optim_step(AdamParams(learning_rate=1e-3)))
        for future in futures:
            await future.result()
        sc = await tc.save_weights_and_get_sampling_client()
        pending = [
            await sc.sample(ModelInput.from_ints([7, 8, 9]), 1, SamplingParams(max_tokens=3))
            for _ in range(samples)
        ]
        for future in pending:
            assert len((await future.result()).sequences) == 1
    return tc.model_id, 2 * steps + 1


@pytest.mark.parametrize(
    "flags",
    [
        ["*:429|500|503|408@0.2,retry_after=0.5", "seed=3"],
        ["retrieve_future:503*3|429|408@0.5", "asample:429@0.3", "seed=5"],
        ["forward_backward:500@0.3", "optim_step:502@0.3", "seed=9"],
    ],
    ids=["mixed-storm", "poll-storm", "training-5xx"],
)
async def test_fault_storm_completes_every_operation_exactly_once(
    autojump_clock: trio.abc.Clock, flags: list[str]
) -> None:
    plan = FaultPlan.from_flags(flags)
    async with open_local_server() as server:
        async with open_runtime(server.app) as rt:
            server.set_faults(plan)
            model_id, ops = await _train_and_sample(rt, steps=6, samples=8)
        stats = counters(server)
        model = stats["models"][model_id]
        assert model["applied_seq_ids"] == list(range(ops + 1))
        assert model["failed"] == 0
        totals = stats["totals"]
        assert totals["applied:Sample"] == 8
        assert stats["faults"]["replaced"] > 0  # the plan did fire


async def test_api_key_never_appears_in_logs_reprs_or_errors(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    plan = FaultPlan.from_flags(["*:503|429@0.2", "seed=1"])
    async with (
        open_local_server() as server,
        open_runtime(server.app) as rt,
    ):
        server.set_faults(plan)
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(10_000):
            fb = await tc.forward_backward([datum(1)], "cross_entropy")
            await fb.result()
            sc = await tc.save_weights_and_get_sampling_client()
            fut = await sc.sample(ModelInput.from_ints([1, 2]), 1, SamplingParams(max_tokens=2))
            await fut.result()
            seen += [repr(rt), repr(rt.config), repr(tc), repr(sc), repr(fb), repr(fut)]
            seen.append(rt.dump().render())
            seen.append(repr(rt.statistics()))
    async with (
        open_local_server(api_keys=frozenset({"tml-someone-else"})) as server,
        open_runtime(server.app) as rt,
    ):
        with pytest.raises(ta.AuthenticationError) as refused:
            await rt.session_id()
        seen += [str(refused.value), repr(refused.value), repr(refused.value.body)]
    seen.append(caplog.text)
    assert caplog.records  # the flow did log
    for text in seen:
        assert KEY not in text
        assert KEY[4:] not in text
