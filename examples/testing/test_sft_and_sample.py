"""The loop of sft_and_sample.py under faults, tested with nothing but the tinker_actors plugin.

Each test gets a fresh local server (``tinker_server``) and a client on it (``tinker_service``);
the ``tinker_faults`` marker says what goes wrong, and the server's counters say what the
service really applied: every step once, in order, whatever happened on the way.

Run: ``pytest examples/testing`` (rerun a failure with the same faults: ``--tinker-seed N``).
"""

from __future__ import annotations

import concurrent.futures

import pytest
from sft_and_sample import Report, make_batch, train

import tinker_actors.compat as tinker
from tinker_actors.compat import types
from tinker_actors.testing import LocalServerThread, StepOrderError

STEPS = 12


def check(report: Report, server: LocalServerThread, steps: int = STEPS) -> None:
    """The run finished, and the final model applied each step since its start once, in order."""
    resumed = report.resumed_from[-1] if report.resumed_from else 0
    server.counters().assert_steps_applied_once(steps - resumed, model_id=report.model_id)
    assert len(report.samples) == 4
    assert all(len(tokens) == 8 for tokens in report.samples)


def test_without_faults(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    report = train(tinker_service, steps=STEPS)
    check(report, tinker_server)
    assert report.resumed_from == []
    assert report.losses == sorted(report.losses, reverse=True)  # the loss goes down
    assert len(report.checkpoints) == STEPS // 4
    assert tinker_server.counters().applied("sample") == 1


@pytest.mark.tinker_faults(
    "asample:429@0.6,count=6,retry_after_ms=20",
    "forward_backward:429@0.4,retry_after_ms=20",
    "optim_step:429@0.4,retry_after_ms=20",
    seed=3,
)
def test_429_storm(tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread) -> None:
    report = train(tinker_service, steps=STEPS)
    check(report, tinker_server)
    counters = tinker_server.counters()
    assert counters.injected("429") >= 5  # the storm happened...
    assert counters.applied("sample") == 1  # ...and no sample ran twice


@pytest.mark.tinker_faults("*:500|502|503@0.15,retry_after_ms=10", seed=5)
def test_5xx(tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread) -> None:
    check(train(tinker_service, steps=STEPS), tinker_server)
    counters = tinker_server.counters()
    assert counters.injected("500") + counters.injected("502") + counters.injected("503") >= 3


@pytest.mark.tinker_faults(
    lost=["forward_backward:502@0.3,retry_after_ms=10", "optim_step:504@0.3,retry_after_ms=10"],
    seed=2,
)
def test_answers_lost_after_the_work(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    # The service did the step, but the client heard a 502/504: the SDK's retry must be
    # recognised as the same request, or the step would be applied twice.
    check(train(tinker_service, steps=STEPS), tinker_server)
    assert tinker_server.counters().lost() >= 3


@pytest.mark.tinker_faults("connection:reset=0.05", seed=4)
def test_connection_resets(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    check(train(tinker_service, steps=STEPS), tinker_server)
    assert tinker_server.counters().injected("reset") >= 1


@pytest.mark.tinker_faults("connection:stall=0.05,stall_seconds=0.3", seed=6)
def test_stalls(tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread) -> None:
    check(train(tinker_service, steps=STEPS), tinker_server)
    assert tinker_server.counters().injected("stalled") >= 1


def test_server_restart(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    def restart_after_step_6(step: int, loss: float) -> None:
        if step == 6 and tinker_server.starts == 1:
            tinker_server.restart(downtime=0.2)

    report = train(tinker_service, steps=STEPS, on_step=restart_after_step_6)
    assert report.resumed_from == [4]  # the last checkpoint before the restart
    check(report, tinker_server)  # the new model ran steps 5..12, each once
    before = tinker_server.history[0]
    assert before.model().applied_kinds.count("ForwardBackward") == 6


@pytest.mark.tinker_faults(
    "seed=1",
    "*:429|500|502|503@0.1,retry_after_ms=10",
    lost=["forward_backward:502@0.2,retry_after_ms=10"],
)
def test_faults_lost_answers_and_a_restart_at_once(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    def restart_once(step: int, loss: float) -> None:
        if step == 6 and tinker_server.starts == 1:
            tinker_server.restart()

    report = train(tinker_service, steps=8, on_step=restart_once)
    check(report, tinker_server, steps=8)
    assert report.resumed_from[-1:] == [4]


# -- loops that are wrong, and what the counters say about them --------------------------------


def resubmit_when_slow(service: tinker.ServiceClient, steps: int) -> str:
    """A broken loop: when a step's result is slow to come, it submits the step again."""
    training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
    step = 0
    while step < steps:
        forward_backward = training.forward_backward(make_batch(step), "cross_entropy")
        optim = training.optim_step(types.AdamParams(learning_rate=1e-3))
        try:
            forward_backward.result(timeout=0.5)
            optim.result(timeout=0.5)
        except concurrent.futures.TimeoutError:
            continue  # wrong: the step was submitted, and the service will apply it
        step += 1
    return training.model_id


@pytest.mark.tinker_faults("retrieve_future:503,latency=0.5,after=4,count=2", seed=1)
def test_a_loop_that_resubmits_a_step_after_5xx_is_caught(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    # 503s hold the third step's result back past the loop's timeout; the loop submits the
    # step again, and the service applies it twice: once per submission.
    model_id = resubmit_when_slow(tinker_service, steps=4)
    counters = tinker_server.counters()
    assert counters.injected("503") >= 1
    with pytest.raises(StepOrderError, match="applied more than once"):
        counters.assert_steps_applied_once(4, model_id=model_id)


def resume_without_rewinding(service: tinker.ServiceClient, steps: int) -> str:
    """A broken loop: after an error it reloads the last checkpoint but keeps its step count."""
    training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
    checkpoint = training.save_state("start").result().path
    step = 0
    while step < steps:
        try:
            training.forward_backward(make_batch(step), "cross_entropy").result()
            training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
        except tinker.APIError:
            # wrong: the checkpoint is older than this step; the steps since it are lost
            training = service.create_training_client_from_state_with_optimizer(checkpoint).result()
            continue
        step += 1
        if step % 4 == 0:
            checkpoint = training.save_state(f"step-{step}").result().path
    return training.model_id


@pytest.mark.tinker_faults(lost=["optim_step:502,after=5,count=1,should_retry=false"])
def test_a_loop_that_resubmits_a_step_after_a_lost_5xx_is_caught(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    # The sixth optim_step is applied but its answer lost (a 502 the client may not retry):
    # the loop reloads step 4's checkpoint and redoes step 6 only, so the model it ends with
    # never ran step 5.
    model_id = resume_without_rewinding(tinker_service, steps=8)
    with pytest.raises(StepOrderError, match="missing"):
        tinker_server.counters().assert_steps_applied_once(8 - 4, model_id=model_id)


@pytest.mark.tinker_faults("retrieve_future:503,latency=0.5,after=4,count=2", seed=1)
def test_the_right_loop_under_slow_5xx_results(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    check(train(tinker_service, steps=4), tinker_server, steps=4)  # it waits: each step once


@pytest.mark.tinker_faults(lost=["optim_step:502,after=5,count=1,should_retry=false"])
def test_the_right_loop_under_a_lost_5xx(
    tinker_service: tinker.ServiceClient, tinker_server: LocalServerThread
) -> None:
    report = train(tinker_service, steps=8)
    assert report.resumed_from == [4]  # it goes back to the checkpoint's step
    check(report, tinker_server, steps=8)
