"""``runtime.latency()``: request and operation times as the SDK measured them.

The local server delays ``asample`` by a fixed 0.25 s (a fault plan) on trio's virtual clock,
so the times read back are exact up to the histogram's 1.6 % bucket bound.
"""

from __future__ import annotations

import pytest
import trio
from sdk_support import lm_datum, open_runtime

import tinker_actors as ta
from tinker_actors.latency import SUB_BUCKETS
from tinker_actors.local import FaultPlan, open_local_server
from tinker_actors.types import AdamParams, ModelInput, SamplingParams

DELAY = 0.25
PROMPT = ModelInput.from_ints([7, 8, 9])
PARAMS = SamplingParams(max_tokens=2)


async def test_latency_reports_routes_operations_failures_and_windows(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server, open_runtime(server.app) as rt:
        server.set_faults(FaultPlan.from_flags([f"asample:latency={DELAY}"]))
        with trio.fail_after(600):
            tc = await rt.create_lora_training_client("local/tiny", rank=4, seed=1)
            fb = await tc.forward_backward([lm_datum([5, 6, 7, 8])], "cross_entropy")
            optim = await tc.optim_step(AdamParams(learning_rate=1e-3))
            await fb.result()
            await optim.result()
            sampler = await tc.save_weights_and_get_sampling_client()
            for _ in range(4):
                await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            doomed = await sampler.sample(PROMPT, 1, PARAMS)
            await trio.sleep(DELAY / 2)  # sent, and held by the server
            assert doomed.cancel()
            rest = rt.create_rest_client()
            await rest.get_training_run(tc.model_id)
            with pytest.raises(ta.NotFoundError):
                await rest.get_training_run("no-such-run")
            await trio.sleep(1)

            report = rt.latency()
            asample = report.requests["POST /api/v1/asample"]
            assert asample.count == 4  # the cancelled one never had an answer: not counted
            assert asample.failed == 0
            assert DELAY <= asample.min <= asample.p50 <= DELAY * (1 + 1 / SUB_BUCKETS)
            run = report.requests["GET /api/v1/training_runs/{id}"]
            assert (run.count, run.failed) == (2, 1)
            assert "POST /api/v1/retrieve_future" in report.requests
            assert not any("no-such-run" in name or tc.model_id in name for name in report.requests)

            ops = report.operations
            assert (ops["ForwardBackward"].count, ops["OptimStep"].count) == (1, 1)
            samples = ops["Sample"]
            assert (samples.count, samples.failed) == (5, 1)  # the cancel is a failed outcome
            assert samples.p50 >= DELAY
            assert DELAY / 2 <= samples.min < DELAY  # the cancelled one
            assert report.window >= DELAY * 5
            assert "POST /api/v1/asample" in report.render()

            first = rt.latency(reset=True)
            assert first.requests == report.requests
            await trio.sleep(3)
            await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            after = rt.latency()
            assert after.requests["POST /api/v1/asample"].count == 1
            assert set(after.operations) == {"Sample"}
            assert 3 + DELAY <= after.window < 3 + DELAY + 1
