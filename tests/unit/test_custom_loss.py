"""Client-side custom loss maths (protocol.md §9.3): forward data, weights, metrics."""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import pytest

from tinker_actors.custom_loss import (
    SURROGATE_LOSS_KEY,
    custom_loss_weights,
    forward_data_for_custom,
    merge_custom_metrics,
    run_custom_loss,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    Datum,
    ForwardBackwardOutput,
    ModelInput,
    PromptProvenanceSpan,
    TensorData,
)


def _datum(tokens: list[int], weights: list[float] | None = None, **extra: Any) -> Datum:
    inputs: dict[str, Any] = {"target_tokens": [*tokens[1:], 0]}
    if weights is not None:
        inputs["weights"] = weights
    inputs.update(extra)
    return Datum(model_input=ModelInput.from_ints(tokens), loss_fn_inputs=inputs)


def _forward(logprobs: list[list[float]]) -> ForwardBackwardOutput:
    return ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": TensorData(data=lp, dtype="float32", shape=[len(lp)])} for lp in logprobs
        ],
        metrics={"loss:sum": 1.0},
    )


# -- forward data (no torch needed) ---------------------------------------------------------------


def test_forward_data_keeps_only_what_the_server_needs() -> None:
    ref = TensorData.from_numpy(np.array([0.1, 0.2, 0.3], dtype=np.float32))
    spans = [PromptProvenanceSpan(sequence_id="s", length=3)]
    with_weights = _datum([1, 2, 3], [1.0, 0.0, 1.0], ref_logprobs=ref).with_provenance(
        spans, spans
    )
    without = _datum([4, 5, 6], advantages=[0.5, 0.5, 0.5])
    fwd = forward_data_for_custom([with_weights, without])
    assert set(fwd[0].loss_fn_inputs) == {"target_tokens", "weights"}
    assert fwd[0].loss_fn_inputs["weights"] == with_weights.loss_fn_inputs["weights"]
    assert fwd[0].model_input_spans == spans
    assert fwd[0].loss_fn_input_spans == spans
    assert fwd[1].loss_fn_inputs["target_tokens"] == without.loss_fn_inputs["target_tokens"]
    zeros = fwd[1].loss_fn_inputs["weights"]
    assert (zeros.dtype, zeros.shape, zeros.data) == ("float32", [3], [0.0, 0.0, 0.0])
    assert fwd[1].model_input == without.model_input


def test_forward_data_needs_targets_and_data() -> None:
    with pytest.raises(InvalidInputError, match="No data"):
        forward_data_for_custom([])
    no_target = Datum(model_input=ModelInput.from_ints([1]), loss_fn_inputs={"weights": [1.0]})
    with pytest.raises(InvalidInputError, match=r"data\[0\].*target_tokens"):
        forward_data_for_custom([no_target])
    with pytest.raises(TypeError, match="Datum"):
        forward_data_for_custom(["x"])  # type: ignore[list-item]


def test_merge_moves_the_surrogate_and_adds_user_metrics() -> None:
    backward = ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[],
        metrics={"loss:sum": 3.0, "tokens:sum": 12.0},
    )
    merged = merge_custom_metrics(backward, 5.5, {"acc:mean": 0.75, "loss:sum": -1.0})
    assert merged.metrics == {
        "loss:sum": 5.5,
        SURROGATE_LOSS_KEY: 3.0,
        "tokens:sum": 12.0,
        "acc:mean": 0.75,
    }
    assert backward.metrics["loss:sum"] == 3.0  # the input is not changed
    bare = ForwardBackwardOutput(loss_fn_output_type="A", loss_fn_outputs=[], metrics={})
    assert merge_custom_metrics(bare, 1.0, {}).metrics == {"loss:sum": 1.0}


# -- the loss and its gradient (torch) ------------------------------------------------------------


def test_cross_entropy_reproduces_its_own_weights() -> None:
    torch = pytest.importorskip("torch")
    data = [_datum([1, 2, 3], [1.0, 0.5, 0.0]), _datum([4, 5], [2.0, 1.0])]
    lps = [[-1.0, -2.0, -3.0], [-0.5, -0.25]]

    def cross_entropy(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        total = sum(
            (-lp * d.loss_fn_inputs["weights"].to_torch()).sum()
            for d, lp in zip(data, logprobs, strict=True)
        )
        return total, {"n:sum": torch.tensor(2.0)}

    backward, loss_sum, metrics = custom_loss_weights(data, _forward(lps), cross_entropy)
    assert loss_sum == pytest.approx(1.0 + 1.0 + 0.0 + 1.0 + 0.25)
    assert metrics == {"n:sum": 2.0}
    for before, after in zip(data, backward, strict=True):
        assert after.loss_fn_inputs["weights"].tolist() == pytest.approx(
            before.loss_fn_inputs["weights"].tolist()
        )
        assert after.loss_fn_inputs["target_tokens"] == before.loss_fn_inputs["target_tokens"]
        assert after.model_input == before.model_input
        assert after.loss_fn_inputs["weights"].dtype == "float32"


def test_dpo_pair_loss_gives_the_analytic_weights() -> None:
    pytest.importorskip("torch")
    import torch.nn.functional as F

    beta = 0.1
    chosen = _datum([1, 2, 3, 4], mask=TensorData(data=[0, 1, 1, 1], dtype="float32"))
    rejected = _datum([1, 2, 7, 8], mask=TensorData(data=[0, 1, 1, 0], dtype="float32"))
    ref = {"chosen": -4.0, "rejected": -3.0}
    lp_c = [-0.5, -1.0, -1.5, -0.7]
    lp_r = [-0.4, -2.0, -0.3, -0.9]

    def dpo(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        masks = [d.loss_fn_inputs["mask"].to_torch() for d in data]
        pol_c = (logprobs[0] * masks[0]).sum()
        pol_r = (logprobs[1] * masks[1]).sum()
        margin = beta * ((pol_c - ref["chosen"]) - (pol_r - ref["rejected"]))
        loss = -F.logsigmoid(margin)
        return loss, {"margin:mean": margin.detach(), "accuracy:mean": float(margin > 0)}

    backward, loss_sum, metrics = custom_loss_weights(
        [chosen, rejected], _forward([lp_c, lp_r]), dpo
    )
    mask_c = np.array([0, 1, 1, 1], dtype=np.float64)
    mask_r = np.array([0, 1, 1, 0], dtype=np.float64)
    z = beta * ((np.dot(lp_c, mask_c) - ref["chosen"]) - (np.dot(lp_r, mask_r) - ref["rejected"]))
    sig_neg = 1.0 / (1.0 + math.exp(z))  # sigmoid(-z) = -d(-logsigmoid(z))/dz
    assert loss_sum == pytest.approx(math.log1p(math.exp(-z)), rel=1e-5)
    # weights = -dL/dlogprobs: +beta*sigmoid(-z)*mask for chosen, -beta*sigmoid(-z)*mask for rejected
    assert backward[0].loss_fn_inputs["weights"].tolist() == pytest.approx(
        list(beta * sig_neg * mask_c), rel=1e-5
    )
    assert backward[1].loss_fn_inputs["weights"].tolist() == pytest.approx(
        list(-beta * sig_neg * mask_r), rel=1e-5
    )
    assert metrics["margin:mean"] == pytest.approx(z, rel=1e-5)
    assert metrics["accuracy:mean"] == (1.0 if z > 0 else 0.0)
    assert "mask" not in backward[0].loss_fn_inputs  # only targets and weights go back


def test_two_d_logprobs_keep_their_shape() -> None:
    torch = pytest.importorskip("torch")
    data = [
        Datum(
            model_input=ModelInput.from_ints([1, 2]),
            loss_fn_inputs={
                "target_tokens": TensorData(data=[1, 2, 3, 4], dtype="int64", shape=[2, 2])
            },
        )
    ]
    out = ForwardBackwardOutput(
        loss_fn_output_type="A",
        loss_fn_outputs=[
            {"logprobs": TensorData(data=[-1.0, -2.0, -3.0, -4.0], dtype="float32", shape=[2, 2])}
        ],
    )
    seen: list[tuple[int, ...]] = []

    def first_column(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        seen.append(tuple(logprobs[0].shape))
        return -logprobs[0][:, 0].sum(), {}

    backward, _, _ = custom_loss_weights(data, out, first_column)
    assert seen == [(2, 2)]
    weights = backward[0].loss_fn_inputs["weights"]
    assert weights.to_numpy().tolist() == [[1.0, 0.0], [1.0, 0.0]]
    assert torch.is_tensor(weights.to_torch())


def test_a_datum_the_loss_ignores_gets_zero_weights() -> None:
    pytest.importorskip("torch")
    data = [_datum([1, 2]), _datum([3, 4])]
    backward, _, _ = custom_loss_weights(
        data, _forward([[-1.0, -1.0], [-2.0, -2.0]]), lambda d, lp: (-lp[0].sum(), {})
    )
    assert backward[1].loss_fn_inputs["weights"].tolist() == [0.0, 0.0]
    assert backward[0].loss_fn_inputs["weights"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    ("loss_fn", "match"),
    [
        (lambda d, lp: lp[0].sum(), r"\(loss, metrics\)"),
        (lambda d, lp: (lp[0] * 2, {}), "scalar"),
        (lambda d, lp: (1.0, {}), "scalar"),
        (lambda d, lp: (lp[0].sum().detach(), {}), "does not depend"),
        (lambda d, lp: (lp[0].sum(), {"bad": "text"}), "metric 'bad'"),
        (lambda d, lp: (lp[0].sum() / 0.0 * 0.0, {}), "not finite"),
    ],
)
def test_bad_loss_functions_are_explained(loss_fn: Any, match: str) -> None:
    pytest.importorskip("torch")
    with pytest.raises(InvalidInputError, match=match):
        custom_loss_weights([_datum([1, 2])], _forward([[-1.0, -1.0]]), loss_fn)


def test_outputs_must_match_the_data() -> None:
    pytest.importorskip("torch")
    with pytest.raises(InvalidInputError, match="2 outputs for 1 datums"):
        custom_loss_weights([_datum([1, 2])], _forward([[-1.0], [-1.0]]), lambda d, lp: (0, {}))
    no_logprobs = ForwardBackwardOutput(
        loss_fn_output_type="A",
        loss_fn_outputs=[{"other": TensorData(data=[1.0], dtype="float32")}],
    )
    with pytest.raises(InvalidInputError, match="no 'logprobs'"):
        custom_loss_weights([_datum([1])], no_logprobs, lambda d, lp: (0, {}))


async def test_the_async_runner_uses_a_worker_thread() -> None:
    pytest.importorskip("torch")
    threads: list[threading.Thread] = []

    def loss(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        threads.append(threading.current_thread())
        return -logprobs[0].sum(), {}

    backward, loss_sum, _ = await run_custom_loss([_datum([1, 2])], _forward([[-1.0, -3.0]]), loss)
    assert threads
    assert threads[0] is not threading.main_thread()
    assert loss_sum == pytest.approx(4.0)
    assert backward[0].loss_fn_inputs["weights"].tolist() == [1.0, 1.0]
