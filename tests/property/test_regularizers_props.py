"""Composed losses are linear in their parts, for any data, masks and weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.regularizers import (
    Regularizer,
    compose,
    cross_entropy,
    kl_penalty,
    negative_entropy,
)
from tinker_actors.types import Datum, ModelInput

torch = pytest.importorskip("torch")

_logprob = st.floats(min_value=-8.0, max_value=0.0, allow_nan=False, width=32)
_weight = st.floats(min_value=-10.0, max_value=10.0, allow_nan=False)


@st.composite
def _batches(draw: st.DrawFn) -> tuple[list[Datum], list[list[float]]]:
    data, logprobs = [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 6))
        lp = draw(st.lists(_logprob, min_size=n, max_size=n))
        ref = draw(st.lists(_logprob, min_size=n, max_size=n))
        inputs: dict[str, Any] = {
            "target_tokens": np.arange(n, dtype=np.int64),
            "ref_logprobs": np.array(ref, dtype=np.float32),
        }
        if draw(st.booleans()):
            mask = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n, max_size=n))
            inputs["weights"] = np.array(mask, dtype=np.float32)
        data.append(Datum(model_input=ModelInput.from_ints(list(range(n))), loss_fn_inputs=inputs))
        logprobs.append(lp)
    return data, logprobs


def _leaves(values: list[list[float]]) -> list[Any]:
    return [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in values]


def _base(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    return -sum((lp * lp.exp()).sum() for lp in logprobs), {}


@settings(max_examples=60, deadline=None)
@given(
    batch=_batches(),
    weights=st.tuples(_weight, _weight, _weight),
    estimator=st.sampled_from(["k1", "k2", "k3"]),
)
def test_loss_value_and_gradient_are_the_weighted_sums_of_the_parts(
    batch: tuple[list[Datum], list[list[float]]],
    weights: tuple[float, float, float],
    estimator: Any,
) -> None:
    data, values = batch
    parts = [kl_penalty(estimator=estimator), negative_entropy(), cross_entropy()]
    names = ["kl", "ent", "ce"]
    loss_fn = compose(
        _base,
        *(Regularizer(n, fn, weight=w) for n, fn, w in zip(names, parts, weights, strict=True)),
    )
    leaves = _leaves(values)
    total, metrics = loss_fn(data, leaves)
    total.backward()

    expected_value = 0.0
    expected_grads = [torch.zeros(len(v), dtype=torch.float64) for v in values]
    for fn, w in [(_base, 1.0), *zip(parts, weights, strict=True)]:
        ls = _leaves(values)
        out = fn(data, ls)
        term = out[0] if isinstance(out, tuple) else out
        (w * term).backward()
        expected_value += w * float(term.detach())
        for acc, leaf in zip(expected_grads, ls, strict=True):
            if leaf.grad is not None:
                acc += leaf.grad

    assert math.isclose(float(total.detach()), expected_value, rel_tol=1e-9, abs_tol=1e-9)
    reg_total = sum(metrics[f"regularizer/{n}/weighted"] for n in names)
    assert math.isclose(metrics["regularizer_total"], reg_total, rel_tol=1e-9, abs_tol=1e-9)
    for leaf, expected in zip(leaves, expected_grads, strict=True):
        assert torch.allclose(leaf.grad, expected, rtol=1e-9, atol=1e-9)
    if estimator == "k3":
        assert metrics["regularizer/kl"] >= -1e-12  # k3 is never negative
