"""Composed losses through forward_backward_custom on the local server, and their refusals.

Real clock, as in test_sdk_phase2_custom_loss: the loss runs in a worker thread.
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
from tinker_actors.clients import TrainingClient
from tinker_actors.custom_loss import forward_data_for_custom
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.regularizers import Regularizer, compose, kl_penalty, negative_entropy
from tinker_actors.types import AdamParams, Datum, ModelInput

torch = pytest.importorskip("torch")


def datum(offset: int, n: int = 6, *, ref: bool = True) -> Datum:
    tokens = [(offset + 5 * i) % 3000 + 4 for i in range(n + 1)]
    inputs: dict[str, Any] = {
        "target_tokens": np.array(tokens[1:], dtype=np.int64),
        "weights": np.array([0.0] + [1.0] * (n - 1), dtype=np.float32),
    }
    if ref:
        inputs["ref_logprobs"] = np.full(n, -2.0, dtype=np.float32)
    return Datum(model_input=ModelInput.from_ints(tokens[:-1]), loss_fn_inputs=inputs)


def base(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    return -sum(lp.sum() for lp in logprobs) / len(logprobs), {"datums": float(len(data))}


LOSS = compose(
    base,
    Regularizer("kl", kl_penalty("ref_logprobs"), weight=0.1),
    Regularizer("entropy", negative_entropy(), weight=0.01),
    grad_norms=True,
)


@asynccontextmanager
async def trainer() -> AsyncIterator[tuple[TrainingClient, LocalServer]]:
    async with open_local_server() as server, open_runtime(server.app) as rt:
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(120):
            yield tc, server


def applied(server: LocalServer, tc: TrainingClient) -> list[int]:
    models: Any = server.counters()["models"]
    return list(models[tc.model_id]["applied_seq_ids"])


async def test_a_composed_loss_trains_and_reports_each_part() -> None:
    async with trainer() as (tc, _server):
        data = [datum(i) for i in range(3)]
        before = await (await tc.forward(forward_data_for_custom(data), "cross_entropy")).result()
        out = await (await tc.forward_backward_custom(data, LOSS)).result()
        await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
    metrics = out.metrics
    assert metrics["datums"] == 3.0
    total = metrics["base_loss"] + metrics["regularizer_total"]
    assert metrics["loss:sum"] == pytest.approx(total, rel=1e-5)
    # the KL term, recomputed from the forward pass's logprobs (the null backend's are fixed)
    lps = [np.asarray(o["logprobs"].to_numpy(), dtype=np.float64) for o in before.loss_fn_outputs]
    r = [-2.0 - lp[1:] for lp in lps]  # the mask drops each datum's first token
    k3 = sum(float(np.sum(np.expm1(x) - x)) for x in r) / sum(len(x) for x in r)
    assert metrics["regularizer/kl"] == pytest.approx(k3, rel=1e-4, abs=1e-6)
    for key in ("base_loss/grad_norm", "regularizer/kl/grad_norm", "total_grad_norm"):
        assert np.isfinite(metrics[key])
    assert "surrogate_loss:sum" in metrics


async def test_data_a_regularizer_cannot_read_is_refused_before_anything_is_sent() -> None:
    async with trainer() as (tc, server):
        short = datum(1)
        short = Datum(
            model_input=short.model_input,
            loss_fn_inputs={**short.loss_fn_inputs, "ref_logprobs": np.zeros(2, np.float32)},
        )
        with pytest.raises(ta.InvalidInputError, match=r"data\[1\] has no loss_fn_inputs\['ref_"):
            await tc.forward_backward_custom([datum(0), datum(1, ref=False)], LOSS)
        with pytest.raises(ta.InvalidInputError, match=r"data\[0\].*2 values for 6 target"):
            await tc.forward_backward_custom([short], LOSS)
        assert applied(server, tc) == [0]  # nothing was sent, no id was taken
        # the client goes on: the next step trains
        await (await tc.forward_backward_custom([datum(0)], LOSS)).result()
        await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()
        assert applied(server, tc) == [0, 1, 2, 3]
