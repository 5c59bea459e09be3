"""forward_backward_custom against the local server: two passes, contiguous ids, merged metrics.

These tests run on the real clock: the loss runs in a worker thread (and the first one imports
torch), and a virtual clock would jump ahead while every trio task waits for that thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import trio
from sdk_support import open_runtime

import tinker_actors as ta
from tinker_actors.clients import OperationCancelledError, TrainingClient
from tinker_actors.custom_loss import forward_data_for_custom
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.types import AdamParams, ClientConfigResponse, Datum, ModelInput

torch = pytest.importorskip("torch")


def datum(offset: int, n: int = 6) -> Datum:
    tokens = [(offset + 3 * i) % 3000 + 4 for i in range(n + 1)]
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={
            "target_tokens": np.array(tokens[1:], dtype=np.int64),
            "advantage": np.full(n, 0.5 + offset, dtype=np.float32),  # stays client-side
        },
    )


@asynccontextmanager
async def trainer(**server_options: Any) -> AsyncIterator[tuple[TrainingClient, LocalServer]]:
    async with (
        open_local_server(**server_options) as server,
        open_runtime(server.app) as rt,
    ):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(120):
            yield tc, server


def model(server: LocalServer, model_id: str) -> dict[str, Any]:
    models: dict[str, Any] = server.counters()["models"]  # type: ignore[assignment]
    return models[model_id]  # type: ignore[no-any-return]


def weighted_loss(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    """-sum(advantage * logprob): its gradient per logprob is -advantage."""
    total = sum(
        -(torch.as_tensor(np.asarray(d.loss_fn_inputs["advantage"].to_numpy())) * lp).sum()
        for d, lp in zip(data, logprobs, strict=True)
    )
    return total, {"pairs:sum": float(len(data))}


async def test_custom_loss_is_a_forward_then_a_forward_backward_on_contiguous_ids() -> None:
    flags = ClientConfigResponse(fwdbwd_max_chunk_len=2)
    async with trainer(client_config=flags) as (tc, server):
        data = [datum(i) for i in range(3)]  # 2 chunks: ids 1-2 forward, 3-4 backward
        fut = await tc.forward_backward_custom(data, weighted_loss)
        opt = await tc.optim_step(AdamParams(learning_rate=1e-3))
        out = await fut.result()
        await opt.result()
        counters = model(server, tc.model_id)
    assert counters["applied_seq_ids"] == [0, 1, 2, 3, 4, 5]
    assert counters["applied_kinds"][1:6] == [
        "Forward", "Forward", "ForwardBackward", "ForwardBackward", "OptimStep",
    ]  # fmt: skip
    assert len(out.loss_fn_outputs) == 3
    assert out.metrics["pairs:sum"] == 3.0
    assert "surrogate_loss:sum" in out.metrics
    assert np.isfinite(out.metrics["loss:sum"])
    assert out.metrics["loss:sum"] != out.metrics["surrogate_loss:sum"]


async def test_custom_loss_value_and_backward_weights_match_the_maths() -> None:
    async with trainer() as (tc, _server):
        data = [datum(i) for i in range(2)]
        before = await (await tc.forward(forward_data_for_custom(data), "cross_entropy")).result()
        out = await (await tc.forward_backward_custom(data, weighted_loss)).result()
    expected = sum(
        -float(np.sum((0.5 + i) * np.asarray(before.loss_fn_outputs[i]["logprobs"].to_numpy())))
        for i in range(2)
    )
    assert out.metrics["loss:sum"] == pytest.approx(expected, rel=1e-5)
    # The surrogate is sum(-logprob * weight) with weight = -dloss/dlogprob = advantage.
    assert out.metrics["surrogate_loss:sum"] == pytest.approx(expected, rel=1e-4)


async def test_both_passes_send_the_ids_checked_at_the_call() -> None:
    """The ids are packed once, by the checks: a list the caller changes before the second pass
    (here, inside its own loss) does not change what that pass sends."""

    def loss_that_scribbles(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        for d in data:
            tokens = d.model_input.chunks[0].tokens  # type: ignore[union-attr]
            tokens[:] = [10**6] * len(tokens)  # past any vocabulary: refused if it were sent
        return weighted_loss(data, logprobs)

    async with trainer() as (tc, server):
        data = [datum(i) for i in range(2)]
        expected = await (await tc.forward_backward_custom(data, weighted_loss)).result()
        fresh = [datum(i) for i in range(2)]
        out = await (await tc.forward_backward_custom(fresh, loss_that_scribbles)).result()
        assert fresh[0].model_input.chunks[0].tokens[0] == 10**6  # type: ignore[union-attr]
        assert model(server, tc.model_id)["applied_kinds"][1:5] == [
            "Forward", "ForwardBackward", "Forward", "ForwardBackward",
        ]  # fmt: skip
    assert set(out.metrics) == set(expected.metrics)
    assert np.isfinite(out.metrics["surrogate_loss:sum"])


async def test_a_failing_loss_fails_its_call_alone_and_the_client_goes_on() -> None:
    """The loss runs after the forward pass, whose backward ids are already reserved: they
    carry the forward pass again (no gradient), so this call fails with the loss's error and
    the ops queued behind it run (0.38 poisons its client here)."""

    def broken(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        raise RuntimeError("my loss is broken")

    flags = ClientConfigResponse(fwdbwd_max_chunk_len=2)
    async with trainer(client_config=flags) as (tc, server):
        data = [datum(i) for i in range(3)]  # 2 chunks: ids 1-2 forward, 3-4 the filler
        fut = await tc.forward_backward_custom(data, broken)
        later = await tc.optim_step(AdamParams(learning_rate=1e-3))  # queued behind the gate
        with pytest.raises(RuntimeError, match="my loss is broken"):
            await fut.result()
        await later.result()
        out = await (await tc.forward_backward_custom(data, weighted_loss)).result()
        counters = model(server, tc.model_id)
    assert counters["applied_seq_ids"] == list(range(10))
    assert counters["applied_kinds"][1:6] == [
        "Forward", "Forward", "Forward", "Forward", "OptimStep",
    ]  # fmt: skip
    assert np.isfinite(out.metrics["loss:sum"])


async def test_a_loss_that_is_not_finite_fails_its_call_and_training_goes_on() -> None:
    def nan_loss(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        return sum(lp.sum() for lp in logprobs) * float("nan"), {}

    async with trainer() as (tc, server):
        with pytest.raises(ta.InvalidInputError, match="not finite"):
            await (await tc.forward_backward_custom([datum(1)], nan_loss)).result()
        await (await tc.forward_backward_custom([datum(1)], weighted_loss)).result()
        await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
        assert model(server, tc.model_id)["applied_kinds"][1:] == [
            "Forward", "Forward", "Forward", "ForwardBackward", "OptimStep",
        ]  # fmt: skip


async def test_cancelling_the_custom_future_fails_it_alone_and_the_client_goes_on() -> None:
    """Cancelled while its loss runs: the reserved backward ids get forward passes (no
    gradient), sent shielded, so the ops behind it run instead of failing as poisoned."""
    gate = trio.Event()

    def slow(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        trio.from_thread.run(gate.wait)  # hold the loss until the test cancelled the future
        return sum(lp.sum() for lp in logprobs), {}

    async with trainer() as (tc, server):
        fut = await tc.forward_backward_custom([datum(2)], slow)
        while fut.request_id is None:
            await trio.lowlevel.checkpoint()
        await trio.testing.wait_all_tasks_blocked()
        assert fut.cancel()
        gate.set()
        with pytest.raises(OperationCancelledError):
            await fut.result()
        await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
        await (await tc.forward_backward_custom([datum(2)], weighted_loss)).result()
        kinds = model(server, tc.model_id)["applied_kinds"]
    assert kinds[1:] == ["Forward", "Forward", "OptimStep", "Forward", "ForwardBackward"]


async def test_a_waiter_that_gives_up_on_a_custom_loss_leaves_the_client_usable() -> None:
    """trio's idiom: a deadline around the result cancels the operation with the waiter."""
    gate = trio.Event()

    def slow(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        trio.from_thread.run(gate.wait)
        return sum(lp.sum() for lp in logprobs), {}

    async with trainer() as (tc, server):
        fut = await tc.forward_backward_custom([datum(3)], slow)
        with trio.move_on_after(0.5):
            await fut.result()
        gate.set()
        await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
        assert model(server, tc.model_id)["applied_kinds"][1:] == [
            "Forward",
            "Forward",
            "OptimStep",
        ]


async def test_bad_custom_input_is_refused_before_anything_is_sent() -> None:
    async with trainer() as (tc, server):
        no_target = Datum(model_input=ModelInput.from_ints([1, 2]), loss_fn_inputs={})
        with pytest.raises(ta.InvalidInputError, match="target_tokens"):
            await tc.forward_backward_custom([no_target], weighted_loss)
        with pytest.raises(ta.InvalidInputError, match="No data"):
            await tc.forward_backward_custom([], weighted_loss)
        with pytest.raises(TypeError, match="callable"):
            await tc.forward_backward_custom([datum(0)], "dpo")  # type: ignore[arg-type]
        assert model(server, tc.model_id)["applied_seq_ids"] == [0]
        # the client still works: nothing was reserved
        await (await tc.forward(forward_data_for_custom([datum(0)]), "cross_entropy")).result()
        assert model(server, tc.model_id)["applied_seq_ids"] == [0, 1]
