"""One bad input never breaks a TrainingClient (issue 14).

Bad input the client can check is refused before anything is sent, with a typed error; input
only the server can judge is refused by it (400/404/422), which consumes that request's seq_id,
so the request fails alone and the next one runs. After each, the same client trains on.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import numpy as np
import pytest
import trio
from sdk_support import lm_datum, served_runtime

import tinker_actors as ta
from tinker_actors.clients import TrainingClient
from tinker_actors.clients._training_actor import Submit, TrainingActor, TrainingOrderBrokenError
from tinker_actors.clients._training_ops import fwd_op, optim_step_op
from tinker_actors.local import FaultPlan, FaultRule, LocalServer, ServerLimits
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.supervisors import ActorExited
from tinker_actors.types import (
    AdamParams,
    ClientConfigResponse,
    Datum,
    DimuonParams,
    ModelInput,
    SamplingParams,
    TensorData,
)

VOCAB = lookup_model("local/tiny").vocab_size
CONTEXT = lookup_model("local/tiny").context_length


class Counting:
    """ASGI middleware that records the path of every request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.posts: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.posts.append(scope["path"])
        await self.app(scope, receive, send)


@asynccontextmanager
async def trainer(**server: Any) -> AsyncIterator[tuple[TrainingClient, LocalServer, Counting]]:
    async with served_runtime(Counting, **server) as (rt, srv, app):
        client = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
        with trio.fail_after(600):
            yield client, srv, app


def good(offset: int = 0) -> Datum:
    return lm_datum([(offset + 7 * i) % 4000 + 4 for i in range(9)])


def rl(**inputs: Any) -> Datum:
    n = 4
    base: dict[str, Any] = {
        "target_tokens": np.arange(5, 5 + n, dtype=np.int64),
        "logprobs": np.full(n, -1.0, dtype=np.float32),
        "advantages": np.ones(n, dtype=np.float32),
    }
    base.update(inputs)
    base = {k: v for k, v in base.items() if v is not None}
    return Datum(model_input=ModelInput.from_ints([1, 2, 3, 4]), loss_fn_inputs=base)


def ce(tokens: list[int], targets: Any, **inputs: Any) -> Datum:
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": targets, **inputs},
    )


async def train_step(tc: TrainingClient, offset: int = 0) -> float:
    fb = await tc.forward_backward([good(offset)], "cross_entropy")
    opt = await tc.optim_step(AdamParams(learning_rate=1e-3))
    loss = (await fb.result()).metrics["loss:sum"]
    await opt.result()
    return loss


def applied(server: LocalServer, model_id: str) -> dict[str, Any]:
    models: dict[str, Any] = server.counters()["models"]  # type: ignore[assignment]
    out: dict[str, Any] = models[model_id]
    return out


def _unfinite_adam(**values: float) -> AdamParams:
    """An AdamParams holding values its constructor refuses (as a buggy caller might build)."""
    params = AdamParams()
    for name, value in values.items():
        msgspec.structs.force_setattr(params, name, value)
    return params


# every bad call, each given the training client; all must raise InvalidInputError
BAD_CALLS: dict[str, Callable[[TrainingClient], Any]] = {
    "target_tokens shorter than model_input": lambda tc: tc.forward_backward(
        [ce([1, 2, 3], np.array([2, 3], dtype=np.int64))], "cross_entropy"
    ),
    "weights longer than target_tokens": lambda tc: tc.forward_backward(
        [ce([1, 2], np.array([2, 3]), weights=np.ones(3, dtype=np.float32))], "cross_entropy"
    ),
    "logprobs misaligned (ppo)": lambda tc: tc.forward_backward(
        [rl(logprobs=np.zeros(3, dtype=np.float32))], "ppo"
    ),
    "advantages misaligned (importance_sampling)": lambda tc: tc.forward_backward(
        [rl(advantages=np.zeros(5, dtype=np.float32))], "importance_sampling"
    ),
    "advantages missing (cispo)": lambda tc: tc.forward_backward([rl(advantages=None)], "cispo"),
    "logprobs missing (dro)": lambda tc: tc.forward_backward([rl(logprobs=None)], "dro"),
    "logprobs misaligned (gspo)": lambda tc: tc.forward_backward(
        [rl(logprobs=np.zeros(2, dtype=np.float32))], "gspo"
    ),
    "advantages missing (stable_reinforce)": lambda tc: tc.forward_backward(
        [rl(advantages=None)], "stable_reinforce"
    ),
    "float target_tokens TensorData": lambda tc: tc.forward_backward(
        [ce([1, 2], TensorData(data=[2.5, 3.0], dtype="float32"))], "cross_entropy"
    ),
    "int64 weights TensorData": lambda tc: tc.forward_backward(
        [ce([1, 2], np.array([2, 3]), weights=TensorData(data=[1, 1], dtype="int64"))],
        "cross_entropy",
    ),
    "token id -1": lambda tc: tc.forward_backward([ce([1, -1], np.array([2, 3]))], "cross_entropy"),
    "token id 10**6": lambda tc: tc.forward_backward(
        [ce([1, 10**6], np.array([2, 3]))], "cross_entropy"
    ),
    "target token 10**6": lambda tc: tc.forward(
        [ce([1, 2], np.array([2, 10**6]))], "cross_entropy"
    ),
    "context overflow": lambda tc: tc.forward_backward(
        [ce([5] * (CONTEXT + 1), np.full(CONTEXT + 1, 5))], "cross_entropy"
    ),
    "NaN weight": lambda tc: tc.forward_backward(
        [ce([1, 2], np.array([2, 3]), weights=np.array([1.0, math.nan], dtype=np.float32))],
        "cross_entropy",
    ),
    "inf advantage": lambda tc: tc.forward_backward(
        [rl(advantages=np.array([1, 1, math.inf, 1], dtype=np.float32))], "ppo"
    ),
    "a single Datum, not a list": lambda tc: tc.forward_backward(
        good(),  # type: ignore[arg-type]
        "cross_entropy",
    ),
    "custom loss with negative ids": lambda tc: tc.forward_backward_custom(
        [ce([1, -5], np.array([2, 3]))], lambda data, lps: (sum(lp.sum() for lp in lps), {})
    ),
    "checkpoint name ../x": lambda tc: tc.save_state("../x"),
    "checkpoint name /abs": lambda tc: tc.save_state("/abs"),
    "empty checkpoint name": lambda tc: tc.save_weights_for_sampler(""),
    "checkpoint name with a newline": lambda tc: tc.save_state("ok\n"),
    "checkpoint name with a space": lambda tc: tc.save_weights_external("my ckpt"),
    "load_state of a relative path": lambda tc: tc.load_state("../x"),
    "load_state of a short tinker path": lambda tc: tc.load_state("tinker://x"),
    "load_state of a sampler checkpoint": lambda tc: tc.load_state(
        "tinker://run/sampler_weights/s1"
    ),
    "NaN learning rate": lambda tc: tc.optim_step(_unfinite_adam(learning_rate=math.nan)),
    "negative learning rate": lambda tc: tc.optim_step(_unfinite_adam(learning_rate=-1.0)),
    "beta1 = 1": lambda tc: tc.optim_step(_unfinite_adam(beta1=1.0)),
    "eps = 0": lambda tc: tc.optim_step(AdamParams(eps=0.0)),
    "negative weight_decay": lambda tc: tc.optim_step(_unfinite_adam(weight_decay=-0.1)),
    "negative grad_clip_norm": lambda tc: tc.optim_step(AdamParams(grad_clip_norm=-1.0)),
}


async def test_each_bad_input_is_refused_before_sending_and_the_client_trains_on(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, app):
        await train_step(tc)
        sent = len(app.posts)
        for name, call in BAD_CALLS.items():
            with pytest.raises(ta.InvalidInputError) as caught:
                await call(tc)
            assert str(caught.value), name
        # constructors refuse what would be truncated or sent as null
        with pytest.raises(ta.InvalidInputError, match="fractional"):
            ModelInput.from_ints([1.5, 2.5])  # type: ignore[list-item]
        with pytest.raises(ta.InvalidInputError, match="target_tokens"):
            ce([1, 2], np.array([1.5, 2.0]))
        with pytest.raises(ta.InvalidInputError, match="learning_rate"):
            AdamParams(learning_rate=math.nan)
        with pytest.raises(ta.InvalidInputError, match="temperature"):
            SamplingParams(temperature=math.nan)
        assert len(app.posts) == sent, app.posts[sent:]  # nothing reached the server
        # float64 target_tokens that are whole numbers are converted exactly, not refused
        exact = ce([1, 2], np.array([2.0, 3.0]))
        assert exact.loss_fn_inputs["target_tokens"].dtype == "int64"
        await (await tc.forward([exact], "cross_entropy")).result()
        await train_step(tc, 1)
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 1, 2, 3, 4, 5]
        assert order["failed"] == 0


async def test_bad_sampling_parameters_are_refused_before_sending(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, _server, app):
        sampler = await tc.save_weights_and_get_sampling_client()
        prompt = ModelInput.from_ints([1, 2, 3])
        sent = len(app.posts)
        bad: list[tuple[ModelInput, int, SamplingParams]] = [
            (prompt, 0, SamplingParams(max_tokens=2)),
            (prompt, 1, SamplingParams(max_tokens=0)),
            (ModelInput.from_ints([1, -2]), 1, SamplingParams(max_tokens=2)),
        ]
        for p, n, params in bad:
            with pytest.raises(ta.InvalidInputError):
                await sampler.sample(p, num_samples=n, sampling_params=params)
        assert len(app.posts) == sent
        out = await (await sampler.sample(prompt, 1, SamplingParams(max_tokens=2))).result()
        assert len(out.sequences) == 1
        await train_step(tc)


async def test_a_forward_backward_the_server_refuses_fails_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app):
        # a body the client would refuse, built unchecked, so only the server judges it
        bad = ce([5, 6, 7], np.array([1, 2], dtype=np.int64))
        op = fwd_op(tc.model_id, ClientConfigResponse(), [bad], "cross_entropy", None,
                    forward_only=False)  # fmt: skip
        refused = await tc.submit(op)
        after = await tc.forward_backward([good()], "cross_entropy")  # queued behind it
        with pytest.raises(ta.BadRequestError, match="target_tokens"):
            await refused.result()
        assert (await after.result()).metrics["loss:sum"] > 0
        await train_step(tc)
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 2, 3, 4]
        assert order["refused"] == 1
        assert order["failed"] == 0


async def test_server_refusals_of_json_requests_consume_their_seq_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app):
        # a missing checkpoint (404) and an optimizer the local server does not run (400)
        with pytest.raises(ta.NotFoundError):
            await (await tc.load_state(f"tinker://{tc.model_id}/weights/never-saved")).result()
        with pytest.raises(ta.BadRequestError, match="adam"):
            await (await tc.optim_step(DimuonParams(learning_rate=0.01))).result()
        # NaN reaches the wire as null when the client check is bypassed: 422, consumed too
        nan = optim_step_op(tc.model_id, AdamParams())
        make = nan.make
        nan.make = lambda ids: [_with_nan_learning_rate(body) for body in make(ids)]
        with pytest.raises(ta.UnprocessableEntityError):
            await (await tc.submit(nan)).result()
        await train_step(tc)
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 4, 5]
        assert order["refused"] == 3


def _with_nan_learning_rate(body: Any) -> Any:
    assert body.json is not None
    msgspec.structs.force_setattr(body.json.adam_params, "learning_rate", math.nan)
    return body


async def test_a_refused_chunk_fails_its_op_alone_and_every_chunk_is_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    flags = ClientConfigResponse(fwdbwd_max_chunk_len=2)
    async with trainer(client_config=flags) as (tc, server, app):
        data = [good(i) for i in range(5)]
        data[3] = ce([5, 6, 7], np.array([1, 2], dtype=np.int64))  # the second chunk
        op = fwd_op(tc.model_id, flags, data, "cross_entropy", None, forward_only=False)
        with pytest.raises(ta.BadRequestError):
            await (await tc.submit(op)).result()
        assert app.posts.count("/api/v1/forward_backward") == 3
        await train_step(tc)
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 1, 3, 4, 5]
        assert order["refused"] == 1


async def test_a_batch_over_the_servers_limits_fails_alone(
    autojump_clock: trio.abc.Clock,
) -> None:
    # the client cannot know the server's limits: it sends, the server refuses (400)
    async with trainer(limits=ServerLimits(max_batch_tokens=20)) as (tc, _server, _app):
        with pytest.raises(ta.BadRequestError, match="max_batch_tokens"):
            await (await tc.forward_backward([good(i) for i in range(4)], "cross_entropy")).result()
        await train_step(tc)


async def test_a_submission_that_never_reached_the_model_still_breaks_the_order(
    autojump_clock: trio.abc.Clock,
) -> None:
    # 413: the server did not read the body, so it may still wait for the id
    limits = ServerLimits(max_body_bytes=2048, max_json_body_bytes=2048)
    async with trainer(limits=limits) as (tc, _server, _app):
        big = lm_datum([(7 * i) % 4000 + 4 for i in range(401)])
        with pytest.raises(ta.APIStatusError) as caught:
            await (await tc.forward_backward([big], "cross_entropy")).result()
        assert caught.value.status_code == 413
        with pytest.raises(TrainingOrderBrokenError):
            await (await tc.optim_step(AdamParams())).result()


async def test_a_restarted_training_actor_resumes_after_the_last_seq_id(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app):
        await train_step(tc)  # seq_ids 1, 2
        # a new incarnation of the client's actor, as its supervisor starts after a crash
        ctx, handle, counter = tc._ctx, tc._handle, tc._counter
        _, ref = await ctx.start_actor(
            "training",
            lambda nursery: TrainingActor(nursery, ctx, handle, tc.model_id, counter),
        )
        op = optim_step_op(tc.model_id, AdamParams(learning_rate=1e-3))
        future = await ref.call(lambda reply: Submit(op, reply))
        await future.result()  # seq_id 3, not 1 again
        await train_step(tc, 1)  # and the original goes on after it
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 1, 2, 3, 4, 5]
        assert order["deduplicated"] == 0
        assert counter.incarnations == 2


async def test_after_a_crash_of_its_actor_the_client_fails_clearly(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with trainer() as (tc, server, _app):
        await train_step(tc)
        crash = optim_step_op(tc.model_id, AdamParams())
        crash.n_ids = "two"  # type: ignore[assignment]  # the actor cannot even size it
        with pytest.raises(ActorExited):
            await tc.submit(crash)
        with pytest.raises(ActorExited, match="crashed with TypeError"):
            await tc.optim_step(AdamParams())
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 1, 2]
        assert order["deduplicated"] == 0


async def test_an_injected_refusal_fails_alone_like_the_servers_own(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A fault plan's 422/400 with a body stands for the server refusing what it read: the
    # model's seq_id is consumed, so the next step runs at once instead of waiting out the
    # gap timeout behind an id that will never come.
    plan = FaultPlan(
        rules=(
            FaultRule(endpoint="forward_backward", status=422, count=1),
            FaultRule(endpoint="optim_step", status=400, count=1),
        )
    )
    async with trainer(faults=plan) as (tc, server, _app):
        with pytest.raises(ta.UnprocessableEntityError):
            await (await tc.forward_backward([good()], "cross_entropy")).result()
        with pytest.raises(ta.BadRequestError):
            await (await tc.optim_step(AdamParams())).result()
        started = trio.current_time()
        await train_step(tc)
        assert trio.current_time() - started < 60  # no wait for the gap timeout
        order = applied(server, tc.model_id)
        assert order["applied_seq_ids"] == [0, 3, 4]
        assert order["refused"] == 2
