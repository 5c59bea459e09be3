"""train_resumably: a run that loses its model goes on from its last checkpoint, exactly once.

Against the local server: a real restart (the models in memory are gone, the checkpoints are
not), an injected 404 on one forward_backward, a model that keeps failing (the loop gives up),
and what is never resumed (bad input, the step function's own errors, a failure the server
blames on the request).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
import trio
from sdk_support import lm_datum, served_runtime

import tinker_actors as ta
from tinker_actors.clients import TrainingClient
from tinker_actors.local import FaultPlan, FaultRule, LocalServer
from tinker_actors.resume import (
    Resume,
    ResumeGaveUpError,
    ResumePolicy,
    train_resumably,
)
from tinker_actors.types import AdamParams, Datum

FAST = {"delay": 0.01, "max_delay": 0.05}


def batch(step: int) -> list[Datum]:
    rng = np.random.default_rng(step)
    return [lm_datum([int(t) for t in rng.integers(4, 4000, size=9)]) for _ in range(2)]


async def one_step(training: TrainingClient, step: int) -> float:
    fb = await training.forward_backward(batch(step), "cross_entropy")
    optim = await training.optim_step(AdamParams(learning_rate=1e-3))
    output = await fb.result()
    await optim.result()
    return float(output.metrics["loss:sum"])


def applied_steps(server: LocalServer, model_id: str) -> int:
    kinds = server.counters()["models"][model_id]["applied_kinds"]  # type: ignore[index]
    return int(kinds.count("ForwardBackward"))


async def test_an_injected_404_resumes_from_the_last_checkpoint(
    autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture
) -> None:
    # the 6th forward_backward (step 5) finds no model: back to the step-3 checkpoint
    plan = FaultPlan(rules=(FaultRule(endpoint="forward_backward", status=404, after=5, count=1),))
    seen: list[Resume] = []
    async with served_runtime(lambda app: app, faults=plan) as (rt, server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        with trio.fail_after(600), caplog.at_level(logging.WARNING, "tinker_actors.resume"):
            run = await train_resumably(
                rt,
                first,
                one_step,
                steps=8,
                policy=ResumePolicy(checkpoint_every=3, **FAST),
                on_resume=seen.append,
            )
        assert run.step == 8
        assert len(run.results) == 8
        assert [step for step, _ in run.checkpoints] == [0, 3, 6, 8]
        assert [path.rsplit("/", 1)[1] for _, path in run.checkpoints] == [
            "step-000000",
            "step-000003",
            "step-000006",
            "step-000008",
        ]
        [resume] = run.resumes
        assert seen == [resume]
        assert (resume.failed_step, resume.checkpoint_step) == (5, 3)
        assert isinstance(resume.error, ta.NotFoundError)
        assert resume.checkpoint_path == run.checkpoints[1][1]
        assert run.training.model_id == resume.model_id != first.model_id
        # every step of the final model ran once: 5 on the first model (the 404 ran nothing),
        # steps 3 to 7 on the resumed one
        assert applied_steps(server, first.model_id) == 5
        assert applied_steps(server, run.training.model_id) == 5
        assert "step 5 failed (NotFoundError" in caplog.text


async def test_a_step_function_that_keeps_losing_its_model_gives_up(
    autojump_clock: trio.abc.Clock,
) -> None:
    plan = FaultPlan(rules=(FaultRule(endpoint="forward_backward", status=404, after=2),))
    async with served_runtime(lambda app: app, faults=plan) as (rt, _server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        started = trio.current_time()
        with trio.fail_after(600), pytest.raises(ResumeGaveUpError) as caught:
            await train_resumably(
                rt,
                first,
                one_step,
                steps=6,
                policy=ResumePolicy(checkpoint_every=2, max_attempts=3),
            )
        run = caught.value.run
        assert [r.checkpoint_step for r in run.resumes] == [2, 2, 2]
        assert isinstance(caught.value.__cause__, ta.NotFoundError)
        assert "gave up after 3 resumes in a row at step 2" in str(caught.value)
        assert "step-000002" in str(caught.value)
        # waits of 1, 2 and 4 s between the attempts (ResumePolicy's default delay)
        assert trio.current_time() - started >= 7


async def test_what_is_never_resumed_propagates_at_once(autojump_clock: trio.abc.Clock) -> None:
    async with served_runtime(lambda app: app) as (rt, _server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)

        async def bad_input(training: TrainingClient, step: int) -> None:
            if step == 1:
                bad = lm_datum([5, 6, 7, 99_999])  # beyond local/tiny's vocabulary
                await training.forward_backward([bad], "cross_entropy")
            await one_step(training, step)

        async def own_bug(training: TrainingClient, step: int) -> None:
            raise KeyError("my data loader")

        with trio.fail_after(600):
            with pytest.raises(ta.InvalidInputError) as caught:
                await train_resumably(rt, first, bad_input, steps=3, policy=ResumePolicy(**FAST))
            assert "train_resumably stopped at step 1" in "".join(caught.value.__notes__)
            with pytest.raises(KeyError, match="my data loader") as raised:
                await train_resumably(rt, first, own_bug, steps=3)
            assert not getattr(raised.value, "__notes__", None)


async def test_a_failure_the_server_blames_on_the_request_is_not_resumed(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with served_runtime(lambda app: app) as (rt, _server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)

        async def user_fault(training: TrainingClient, step: int) -> None:
            raise ta.RequestFailedError("the batch is malformed", "req-1", "user")

        with trio.fail_after(600), pytest.raises(ta.RequestFailedError):
            await train_resumably(rt, first, user_fault, steps=2, policy=ResumePolicy(**FAST))


async def test_a_new_process_goes_on_from_a_saved_state(autojump_clock: trio.abc.Clock) -> None:
    async with served_runtime(lambda app: app) as (rt, server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        with trio.fail_after(600):
            done = await train_resumably(
                rt, first, one_step, steps=4, policy=ResumePolicy(checkpoint_every=2)
            )
            # "the next day": a client from the last checkpoint, and the step it holds
            step, path = done.checkpoints[-1]
            again = await rt.create_training_client_from_state_with_optimizer(path)
            more = await train_resumably(
                rt, again, one_step, steps=7, start_step=step, policy=ResumePolicy(**FAST)
            )
        assert more.step == 7
        assert len(more.results) == 3
        assert [s for s, _ in more.checkpoints] == [4, 7]
        assert applied_steps(server, again.model_id) == 3


async def test_bad_arguments_are_refused_before_anything_is_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    for kwargs in (
        {"checkpoint_every": 0},
        {"max_attempts": 0},
        {"delay": float("nan")},
        {"checkpoint_name": "step-{epoch}"},
        {"ttl_seconds": 0},
    ):
        with pytest.raises(ta.InvalidInputError):
            ResumePolicy(**kwargs)
    async with served_runtime(lambda app: app) as (rt, server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        before = server.counters()["totals"]
        for bad in ({"steps": 2, "start_step": 3}, {"steps": 2, "start_step": -1}):
            with pytest.raises(ta.InvalidInputError):
                await train_resumably(rt, first, one_step, **bad)
        assert server.counters()["totals"] == before


def test_a_restart_of_the_service_is_outlived(tmp_path: Any) -> None:
    # a real restart: every connection drops, the models in memory are gone, the sessions and
    # checkpoints on disk are not
    from tinker_actors.testing import LocalServerThread

    with LocalServerThread(data_dir=tmp_path) as server:

        async def main() -> tuple[Any, str]:
            restarted = False

            async def step_fn(training: TrainingClient, step: int) -> float:
                nonlocal restarted
                if step == 4 and not restarted:
                    restarted = True
                    await trio.to_thread.run_sync(lambda: server.restart(downtime=0.2))
                return await one_step(training, step)

            async with ta.open(base_url=server.url, api_key="tml-resume") as rt:
                first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
                with trio.fail_after(300):
                    run = await train_resumably(
                        rt, first, step_fn, steps=6, policy=ResumePolicy(checkpoint_every=3, **FAST)
                    )
                return run, first.model_id

        run, first_model = trio.run(main)
        [resume] = run.resumes
        assert (resume.failed_step, resume.checkpoint_step) == (4, 3)
        assert run.step == 6
        assert [s for s, _ in run.checkpoints] == [0, 3, 6]
        counters = server.counters()
        # after the restart only the resumed model trained: steps 3, 4 and 5, once each, in order
        counters.assert_steps_applied_once(3, model_id=run.training.model_id)
        assert first_model not in counters.models


async def test_a_crashed_client_actor_is_left_behind_for_a_new_client(
    autojump_clock: trio.abc.Clock,
) -> None:
    # a bug that crashes the client's actor leaves that client dead (calls raise ActorExited);
    # the run goes on with a new client from the last checkpoint
    from tinker_actors.clients._training_ops import optim_step_op

    async with served_runtime(lambda app: app) as (rt, server, _app):
        first = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        crashed = False

        async def step_fn(training: TrainingClient, step: int) -> float:
            nonlocal crashed
            if step == 3 and not crashed:
                crashed = True
                crash = optim_step_op(training.model_id, AdamParams())
                crash.n_ids = "two"  # type: ignore[assignment]  # the actor cannot size it
                await training.submit(crash)
            return await one_step(training, step)

        with trio.fail_after(600):
            run = await train_resumably(
                rt, first, step_fn, steps=5, policy=ResumePolicy(checkpoint_every=2, **FAST)
            )
        [resume] = run.resumes
        assert isinstance(resume.error, ta.ActorExited)
        assert (resume.failed_step, resume.checkpoint_step) == (3, 2)
        assert applied_steps(server, run.training.model_id) == 3  # steps 2, 3 and 4

        # an actor that exited normally (a closed client) is not resumed
        await run.training.close()
        with pytest.raises(ta.ActorExited):
            await train_resumably(rt, run.training, one_step, steps=6, start_step=5)
