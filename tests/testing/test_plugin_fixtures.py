"""The plugin's fixtures and markers, used by this suite itself (the plugin is installed).

Blocking code, asyncio code (``asyncio.run`` in a plain test) and trio code (pytest-trio) all
reach the same ``tinker_server``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import trio

import tinker_actors
import tinker_actors.compat as tinker
from tinker_actors.local import FaultPlan
from tinker_actors.testing import LocalServerThread
from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams

pytest.importorskip("starlette", reason="the server extra is not installed")


def batch() -> list[Datum]:
    tokens = np.arange(10, 27, dtype=np.int64)
    return [
        Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(16, dtype=np.float32)},
        )
    ]


@pytest.mark.tinker_faults(
    "forward_backward:503@0.5,retry_after_ms=10", "asample:429@0.3,retry_after_ms=10", seed=7
)
def test_blocking_code_under_the_marker_faults(
    tinker_service: tinker.ServiceClient,
    tinker_server: LocalServerThread,
    tinker_fault_plan: FaultPlan,
) -> None:
    assert tinker_fault_plan == FaultPlan.from_flags(
        ["forward_backward:503@0.5,retry_after_ms=10", "asample:429@0.3,retry_after_ms=10"], seed=7
    )
    assert tinker_server.faults == tinker_fault_plan
    training = tinker_service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    for _ in range(4):
        training.forward_backward(batch(), "cross_entropy").result()
        training.optim_step(AdamParams(learning_rate=1e-3)).result()
    sampler = training.save_weights_and_get_sampling_client().result()
    for seed in range(4):
        sampler.sample(
            ModelInput.from_ints([1, 2]), 1, SamplingParams(max_tokens=2, seed=seed)
        ).result()
    counters = tinker_server.counters()
    counters.assert_steps_applied_once(4, model_id=training.model_id)
    assert counters.injected("503") > 0
    assert counters.applied("sample") == 4


def test_asyncio_code(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    async def steps() -> list[float]:
        training = await tinker_service.create_lora_training_client(base_model="local/tiny", rank=4)
        losses = []
        for _ in range(3):
            output = await training.forward_backward(batch(), "cross_entropy")
            await training.optim_step(AdamParams(learning_rate=1e-3))
            losses.append(output.metrics["loss:sum"])
        return losses

    assert len(asyncio.run(steps())) == 3
    tinker_server.counters().assert_steps_applied_once(3)


async def test_trio_code(
    tinker_runtime: tinker_actors.Runtime, tinker_server: LocalServerThread
) -> None:
    with trio.fail_after(60):
        training = await tinker_runtime.create_lora_training_client("local/tiny", rank=4)
        for _ in range(2):
            forward_backward = await training.forward_backward(batch(), "cross_entropy")
            optim = await training.optim_step(AdamParams(learning_rate=1e-3))
            await forward_backward.result()
            await optim.result()
    tinker_server.counters().assert_steps_applied_once(2, model_id=training.model_id)


def test_env_for_code_that_builds_its_own_client(
    tinker_env: dict[str, str], tinker_server: LocalServerThread
) -> None:
    assert os.environ["TINKER_BASE_URL"] == tinker_server.url == tinker_env["TINKER_BASE_URL"]
    rest = tinker.RestClient()  # from the environment
    capabilities = rest.get_server_capabilities().result()
    assert "local/tiny" in {m.model_name for m in capabilities.supported_models}


@pytest.mark.tinker_server(long_poll_seconds=1.5, sample_capacity=3)
def test_server_settings_by_marker(tinker_server: LocalServerThread, tinker_data_dir: Path) -> None:
    assert tinker_server.server.settings.long_poll_seconds == 1.5
    assert tinker_server.server.settings.sample_capacity == 3
    assert tinker_server.data_dir == tinker_data_dir


def test_no_marker_no_faults(
    tinker_fault_plan: FaultPlan | None, tinker_lost_answers: FaultPlan | None
) -> None:
    assert tinker_fault_plan is None
    assert tinker_lost_answers is None


@pytest.mark.tinker_faults("seed=4", "asample:429@0.2")
def test_a_seed_among_the_rules(tinker_fault_plan: FaultPlan) -> None:
    assert tinker_fault_plan.seed == 4


@pytest.mark.tinker_faults(file="plans/storm.toml", seed=9)
def test_a_plan_file_next_to_the_test(tinker_fault_plan: FaultPlan) -> None:
    assert tinker_fault_plan.seed == 9
    assert [rule.endpoint for rule in tinker_fault_plan.rules] == ["asample"]


@pytest.mark.tinker_faults(lost=["create_session:502,count=1"])
def test_lost_answers_by_marker(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    tinker_service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    counters = tinker_server.counters()
    assert counters.lost("502") == 1
    # the first create_session was done, its answer lost; the retry, under the same
    # idempotency key, was recognised: one session
    assert counters.totals["applied:CreateSession"] == 1


def test_restart_keeps_the_port_and_the_data(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    training = tinker_service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    path = training.save_state("kept").result().path
    url = tinker_server.url
    assert tinker_server.restart(downtime=0.1) == url
    assert tinker_server.starts == 2
    before = tinker_server.history[0].models[training.model_id]
    assert before.applied_kinds == ("CreateModel", "SaveWeights")
    with pytest.raises(tinker.NotFoundError, match="restarted"):
        training.forward_backward(batch(), "cross_entropy").result()
    resumed = tinker_service.create_training_client_from_state(path).result()
    resumed.forward_backward(batch(), "cross_entropy").result()
    after = tinker_server.counters().models[resumed.model_id]
    assert after.applied_kinds == ("LoadWeights", "ForwardBackward")
