"""forward_backward in length-sorted chunks: the same outputs, loss and gradients as one batch.

The chunks bound the padded logits of a request whose datums differ in length (multi-turn
RL); cutting them must change nothing a client can see, and a chunk that fails must leave the
gradients as they were.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_losses import parse_loss_config
from tinker_actors.local._torch_model import Adapter, AdapterShape, build_base
from tinker_actors.local._torch_train_batch import chunks, run_forward_backward
from tinker_actors.types import Datum, ModelInput, TensorData

TINY = lookup_model("local/tiny")
ONE_BATCH = 1 << 60


def rl_datum(length: int, rng: np.random.Generator, *, advantages: bool = True) -> Datum:
    tokens = rng.integers(4, 4096, length + 1)
    inputs: dict[str, Any] = {
        "target_tokens": TensorData.from_numpy(tokens[1:].astype(np.int64)),
        "logprobs": TensorData.from_numpy(rng.normal(-8, 1, length).astype(np.float32)),
    }
    if advantages:
        inputs["advantages"] = TensorData.from_numpy(rng.normal(0, 1, length).astype(np.float32))
    return Datum(model_input=ModelInput.from_ints(tokens[:-1].tolist()), loss_fn_inputs=inputs)


def grads(adapter: Adapter) -> list[torch.Tensor]:
    return [
        p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in adapter.parameters()
    ]


def test_chunks_are_sorted_by_length_and_under_the_budget() -> None:
    lengths = [30, 5, 400, 5, 60, 200, 1, 90]
    budget = 4 * 100 * 4096 * 12  # four rows of 100 positions
    groups = chunks(lengths, 4096, budget)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(flat)  # shortest first
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert len(group) == 1 or len(group) * longest * 4096 * 12 <= budget
    assert [2] in groups  # 400 positions: over the budget, alone
    assert groups[0] == [6, 1, 3, 0, 4]  # ties keep the request's order; 5 x 60 <= 400


def test_chunked_and_whole_batches_give_the_same_outputs_loss_and_gradients() -> None:
    base = build_base(TINY)
    rng = np.random.default_rng(0)
    data = [rl_datum(n, rng) for n in (40, 7, 120, 33, 7, 90, 64, 3)]
    config = parse_loss_config("importance_sampling", {})
    results = []
    for budget in (ONE_BATCH, 2 * 64 * 4096 * 12):  # one batch; chunks of about two rows
        assert len(chunks([d.model_input.length for d in data], 4096, budget)) > (
            1 if budget != ONE_BATCH else 0
        )
        adapter = Adapter.create(base, AdapterShape(rank=4), seed=3)
        out = run_forward_backward(
            base, adapter, data, "importance_sampling", config, forward_only=False, budget=budget
        )
        results.append((out, grads(adapter)))
    (whole, whole_grads), (chunked, chunked_grads) = results
    assert chunked.metrics["loss:sum"] == pytest.approx(whole.metrics["loss:sum"], rel=1e-5)
    for datum, a, b in zip(data, whole.loss_fn_outputs, chunked.loss_fn_outputs, strict=True):
        assert b["logprobs"].to_numpy().shape == (datum.model_input.length,)  # request order
        assert np.allclose(a["logprobs"].to_numpy(), b["logprobs"].to_numpy(), atol=1e-5)
        assert np.allclose(
            a["elementwise_loss"].to_numpy(), b["elementwise_loss"].to_numpy(), atol=1e-5
        )
    for a, b in zip(whole_grads, chunked_grads, strict=True):
        # float32 sums taken in another order: the error follows the tensor's largest entries,
        # not each entry's own size (on one CPU an entry of -0.0137, in a tensor whose largest
        # is 14.7, differed by 3e-6, over its own 2.4e-6); a datum lost or counted twice is
        # off by whole entries
        scale = float(b.abs().max())
        assert torch.allclose(a, b, atol=1e-6 + 1e-5 * scale, rtol=1e-4)


def test_a_chunk_that_fails_leaves_the_gradients_as_they_were() -> None:
    base = build_base(TINY)
    rng = np.random.default_rng(1)
    adapter = Adapter.create(base, AdapterShape(rank=4), seed=3)
    config = parse_loss_config("importance_sampling", {})
    earlier = [rl_datum(20, rng), rl_datum(30, rng)]
    run_forward_backward(base, adapter, earlier, "importance_sampling", config, forward_only=False)
    before = grads(adapter)
    # the longest datum lacks its advantages: the last chunk fails after the others ran
    data = [rl_datum(10, rng), rl_datum(12, rng), rl_datum(200, rng, advantages=False)]
    with pytest.raises(KeyError, match="advantages"):
        run_forward_backward(
            base, adapter, data, "importance_sampling", config, forward_only=False,
            budget=2 * 16 * 4096 * 12,
        )  # fmt: skip
    for a, b in zip(before, grads(adapter), strict=True):
        assert torch.equal(a, b)
