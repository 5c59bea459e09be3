"""Queue-state reports reach a sampler's observer, as 0.38's ``on_queue_state_change`` hears them.

A fault plan answers the first polls of each sample with ``try_again`` and a queue state (a
pause for capacity): the observer hears each of those, then ACTIVE when the sample finishes.
On the compat layer the hook is the SamplingClient's ``on_queue_state_change``, set on the
client as 0.38 code does; an observer that raises never breaks sampling.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
from sdk_support import served_runtime

import tinker_actors.compat as tinker
from tinker_actors.local import FaultPlan, FaultRule
from tinker_actors.testing import server_in_thread
from tinker_actors.types import AdamParams, ModelInput, QueueState, SamplingParams

PAUSED = FaultPlan(
    rules=(
        FaultRule(
            endpoint="retrieve_future",
            try_again_polls=2,
            queue_state="paused_capacity",
            queue_state_reason="busy",
        ),
    )
)
PROMPT = ModelInput.from_ints([1, 2, 3])
PARAMS = SamplingParams(max_tokens=2)


async def test_a_native_observer_hears_the_pause_then_active(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    heard: list[tuple[QueueState, str | None]] = []
    async with served_runtime(lambda app: app, faults=PAUSED) as (rt, _server, _app):
        sampler = await rt.create_sampling_client(base_model="local/tiny")
        sampler.observe_queue_state(lambda state, reason: heard.append((state, reason)))
        with trio.fail_after(600):
            await (await sampler.sample(PROMPT, 1, PARAMS)).result()
        assert heard == [
            (QueueState.PAUSED_CAPACITY, "busy"),
            (QueueState.PAUSED_CAPACITY, "busy"),
            (QueueState.ACTIVE, None),
        ]

        def broken(state: QueueState, reason: str | None) -> None:
            raise RuntimeError("my dashboard is down")

        sampler.observe_queue_state(broken)
        with trio.fail_after(600), caplog.at_level(logging.ERROR, "tinker_actors"):
            result = await (await sampler.sample(PROMPT, 1, PARAMS)).result()
        assert len(result.sequences) == 1
        assert "queue-state observer raised" in caplog.text
        sampler.observe_queue_state(None)
        with pytest.raises(tinker.InvalidInputError, match="callable"):
            sampler.observe_queue_state("print")  # type: ignore[arg-type]


def test_0_38s_on_queue_state_change_set_on_the_client_is_called() -> None:
    heard: list[tuple[Any, str | None]] = []
    with (
        server_in_thread(faults=PAUSED) as (url, _server),
        tinker.ServiceClient(base_url=url, api_key="tml-queue") as service,
    ):
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        # 0.38 code follows pauses by replacing the hook on its client
        sampler.on_queue_state_change = lambda state, reason: heard.append((state, reason))  # type: ignore[method-assign]
        sampler.sample(PROMPT, 1, PARAMS).result(60)
    assert heard == [
        (QueueState.PAUSED_CAPACITY, "busy"),
        (QueueState.PAUSED_CAPACITY, "busy"),
        (QueueState.ACTIVE, None),
    ]


async def test_a_training_clients_observer_hears_its_pauses(autojump_clock: trio.abc.Clock) -> None:
    # the training-client limit holds this model's requests back for two polls each
    plan = FaultPlan(
        rules=(
            FaultRule(
                endpoint="retrieve_future", try_again_polls=2, queue_state="paused_rate_limit"
            ),
        )
    )
    heard: list[tuple[QueueState, str | None]] = []
    async with served_runtime(lambda app: app, faults=plan) as (rt, _server, _app):
        training = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        training.observe_queue_state(lambda state, reason: heard.append((state, reason)))
        with trio.fail_after(600):
            await (await training.optim_step(AdamParams(learning_rate=1e-3))).result()
    assert [state for state, _ in heard] == [
        QueueState.PAUSED_RATE_LIMIT,
        QueueState.PAUSED_RATE_LIMIT,
        QueueState.ACTIVE,
    ]
