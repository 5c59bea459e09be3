"""Regularizers composed into a custom loss: the maths, the metrics and the refusals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from tinker_actors.custom_loss import custom_loss_weights
from tinker_actors.errors import InvalidInputError
from tinker_actors.regularizers import (
    Regularizer,
    compose,
    cross_entropy,
    kl_penalty,
    negative_entropy,
)
from tinker_actors.types import Datum, ForwardBackwardOutput, ModelInput, TensorData

torch = pytest.importorskip("torch")

LOGPROBS = [[-0.5, -1.0, -2.0], [-0.25, -3.0]]
REFS = [[-0.75, -1.0, -1.5], [-0.5, -2.0]]
MASKS = [[0.0, 1.0, 1.0], None]


def _data(masks: list[list[float] | None] = MASKS, refs: list[list[float]] = REFS) -> list[Datum]:
    out = []
    for lp, ref, mask in zip(LOGPROBS, refs, masks, strict=True):
        inputs: dict[str, Any] = {
            "target_tokens": np.arange(len(lp), dtype=np.int64) + 5,
            "ref_logprobs": np.array(ref, dtype=np.float32),
        }
        if mask is not None:
            inputs["weights"] = np.array(mask, dtype=np.float32)
        out.append(
            Datum(
                model_input=ModelInput.from_ints(list(range(1, len(lp) + 1))), loss_fn_inputs=inputs
            )
        )
    return out


def _f(tensor: Any) -> float:
    return float(tensor.detach())


def _leaves(values: list[list[float]] = LOGPROBS) -> list[Any]:
    return [torch.tensor(v, dtype=torch.float32, requires_grad=True) for v in values]


def _mean_loss(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    loss = -sum(lp.sum() for lp in logprobs) / 5.0
    return loss, {"pairs": 2.0}


def _tokens(masks: list[list[float] | None] = MASKS) -> list[tuple[int, int, float]]:
    """(datum, position, mask weight) of every token."""
    return [
        (i, j, 1.0 if mask is None else mask[j])
        for i, (lp, mask) in enumerate(zip(LOGPROBS, masks, strict=True))
        for j in range(len(lp))
    ]


def _masked_mean(value: Any) -> float:
    tokens = _tokens()
    return sum(w * value(i, j) for i, j, w in tokens) / sum(w for _, _, w in tokens)


# -- the maths of each built-in term -------------------------------------------------------------


@pytest.mark.parametrize(
    ("estimator", "formula"),
    [
        ("k1", lambda lp, ref: lp - ref),
        ("k2", lambda lp, ref: 0.5 * (ref - lp) ** 2),
        ("k3", lambda lp, ref: math.expm1(ref - lp) - (ref - lp)),
    ],
)
def test_kl_penalty_is_the_masked_token_mean_of_its_estimator(estimator: str, formula: Any) -> None:
    term = kl_penalty("ref_logprobs", estimator=estimator)(_data(), _leaves())  # type: ignore[arg-type]
    expected = _masked_mean(lambda i, j: formula(LOGPROBS[i][j], REFS[i][j]))
    assert _f(term) == pytest.approx(expected, rel=1e-6)


def test_k3_is_zero_at_the_reference_and_never_negative() -> None:
    same = _data(refs=LOGPROBS)
    assert _f(kl_penalty()(same, _leaves())) == pytest.approx(0.0, abs=1e-7)
    assert _f(kl_penalty()(_data(), _leaves())) > 0


def test_entropy_and_cross_entropy_terms_with_and_without_a_mask() -> None:
    neg = negative_entropy()(_data(), _leaves())
    assert _f(neg) == pytest.approx(_masked_mean(lambda i, j: LOGPROBS[i][j]))
    ce = cross_entropy()(_data(), _leaves())
    assert _f(ce) == pytest.approx(-_f(neg))
    unmasked = negative_entropy(mask=None)(_data(), _leaves())
    assert _f(unmasked) == pytest.approx(sum(map(sum, LOGPROBS)) / 5)


def test_a_mask_of_zeros_gives_a_zero_term_with_a_zero_gradient() -> None:
    leaves = _leaves()
    term = cross_entropy()(_data(masks=[[0.0] * 3, [0.0] * 2]), leaves)
    assert _f(term) == 0.0
    term.backward()
    assert all(float(leaf.grad.abs().sum()) == 0.0 for leaf in leaves)


def test_a_datum_without_the_reference_values_is_named() -> None:
    data = _data()
    bare = Datum(
        model_input=data[1].model_input,
        loss_fn_inputs={"target_tokens": data[1].loss_fn_inputs["target_tokens"]},
    )
    with pytest.raises(
        InvalidInputError, match=r"data\[1\] has no loss_fn_inputs\['ref_logprobs'\]"
    ):
        kl_penalty()([data[0], bare], _leaves())


def test_reference_values_of_the_wrong_length_are_refused() -> None:
    data = _data(refs=[REFS[0], [-1.0, -1.0, -1.0]])
    with pytest.raises(InvalidInputError, match=r"data\[1\].*3 values for 2 target tokens"):
        kl_penalty()(data, _leaves())


# -- composition --------------------------------------------------------------------------------


def test_the_composed_loss_is_the_base_plus_the_weighted_terms_and_reports_each() -> None:
    loss_fn = compose(
        _mean_loss,
        Regularizer("kl", kl_penalty(), weight=0.5),
        Regularizer("entropy", negative_entropy(), weight=-0.25),
    )
    leaves = _leaves()
    total, metrics = loss_fn(_data(), leaves)
    base = _f(_mean_loss(_data(), _leaves())[0])
    kl = _f(kl_penalty()(_data(), _leaves()))
    ent = _f(negative_entropy()(_data(), _leaves()))
    assert _f(total) == pytest.approx(base + 0.5 * kl - 0.25 * ent, rel=1e-6)
    assert metrics["pairs"] == 2.0  # the base's own metrics pass through
    assert metrics["base_loss"] == pytest.approx(base)
    assert metrics["regularizer/kl"] == pytest.approx(kl)
    assert metrics["regularizer/kl/weighted"] == pytest.approx(0.5 * kl)
    assert metrics["regularizer/entropy/weighted"] == pytest.approx(-0.25 * ent)
    assert metrics["regularizer_total"] == pytest.approx(0.5 * kl - 0.25 * ent)
    assert not any(key.endswith("grad_norm") for key in metrics)


def test_the_gradient_is_the_sum_of_the_parts_weighted_gradients() -> None:
    def grads(fn: Any, weight: float = 1.0) -> list[Any]:
        leaves = _leaves()
        out = fn(_data(), leaves)
        (weight * (out[0] if isinstance(out, tuple) else out)).backward()
        return [leaf.grad for leaf in leaves]

    leaves = _leaves()
    total, _ = compose(_mean_loss, Regularizer("kl", kl_penalty(), weight=0.3))(_data(), leaves)
    total.backward()
    parts = zip(grads(_mean_loss), grads(kl_penalty(), 0.3), strict=True)
    for leaf, (g_base, g_kl) in zip(leaves, parts, strict=True):
        assert torch.allclose(leaf.grad, g_base + g_kl, atol=1e-6)


def test_grad_norms_are_the_norms_of_each_parts_gradient_wrt_the_logprobs() -> None:
    def constant(data: list[Datum], logprobs: list[Any]) -> Any:
        return torch.tensor(3.0)

    loss_fn = compose(
        _mean_loss,
        Regularizer("kl", kl_penalty(), weight=2.0),
        Regularizer("const", constant),
        grad_norms=True,
    )
    leaves = _leaves()
    total, metrics = loss_fn(_data(), leaves)

    def norm(fn: Any, weight: float = 1.0) -> float:
        ls = _leaves()
        out = fn(_data(), ls)
        (weight * (out[0] if isinstance(out, tuple) else out)).backward()
        return math.sqrt(sum(float((leaf.grad**2).sum()) for leaf in ls))

    assert metrics["base_loss/grad_norm"] == pytest.approx(norm(_mean_loss), rel=1e-5)
    assert metrics["regularizer/kl/grad_norm"] == pytest.approx(norm(kl_penalty()), rel=1e-5)
    assert metrics["regularizer/const/grad_norm"] == 0.0
    assert metrics["total_grad_norm"] == pytest.approx(norm(loss_fn), rel=1e-5)
    total.backward()  # the graph is still there for the real backward pass
    assert leaves[0].grad is not None


def test_regularizers_alone_make_a_loss_and_a_terms_own_metrics_are_prefixed() -> None:
    def kl_with_stats(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, Any]]:
        return kl_penalty()(data, logprobs), {"tokens": torch.tensor(4.0)}

    total, metrics = compose(None, Regularizer("kl", kl_with_stats, weight=0.1))(_data(), _leaves())
    assert "base_loss" not in metrics
    assert metrics["regularizer/kl/tokens"] == 4.0
    assert _f(total) == pytest.approx(0.1 * metrics["regularizer/kl"])


def test_through_the_custom_loss_maths_the_server_gets_the_composed_gradient() -> None:
    data = _data()
    output = ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"logprobs": TensorData.from_numpy(np.array(v, np.float32))} for v in LOGPROBS
        ],
        metrics={},
    )
    loss_fn = compose(_mean_loss, Regularizer("kl", kl_penalty(), weight=0.5))
    backward, loss_sum, metrics = custom_loss_weights(data, output, loss_fn)
    leaves = _leaves()
    expected_total, _ = loss_fn(data, leaves)
    expected_total.backward()
    assert loss_sum == pytest.approx(_f(expected_total))
    for datum, leaf in zip(backward, leaves, strict=True):
        sent = datum.loss_fn_inputs["weights"].to_numpy()
        np.testing.assert_allclose(sent, -leaf.grad.numpy(), atol=1e-6)
    assert metrics["regularizer/kl/weighted"] == pytest.approx(0.5 * metrics["regularizer/kl"])


# -- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "", "fn": negative_entropy()}, "non-empty str"),
        ({"name": "a b", "fn": negative_entropy()}, "only letters, digits"),
        ({"name": "x", "fn": 3}, "fn must be callable"),
        ({"name": "x", "fn": negative_entropy(), "weight": True}, "weight must be a number"),
        ({"name": "x", "fn": negative_entropy(), "weight": "0.1"}, "weight must be a number"),
        ({"name": "x", "fn": negative_entropy(), "weight": math.nan}, "weight must be finite"),
        ({"name": "x", "fn": negative_entropy(), "weight": math.inf}, "weight must be finite"),
    ],
)
def test_a_bad_regularizer_is_refused_when_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Regularizer(**kwargs)


def test_bad_compositions_are_refused_when_composed() -> None:
    reg = Regularizer("kl", kl_penalty())
    with pytest.raises(InvalidInputError, match="needs a base loss"):
        compose()
    with pytest.raises(InvalidInputError, match="base loss must be callable"):
        compose("loss")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=r"regularizers\[1\] must be a Regularizer"):
        compose(None, reg, ("entropy", negative_entropy(), 0.1))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="two regularizers are named 'kl'"):
        compose(None, reg, Regularizer("kl", negative_entropy()))
    with pytest.raises(InvalidInputError, match="grad_norms must be a bool"):
        compose(None, reg, grad_norms=1)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="estimator must be one of k1, k2, k3"):
        kl_penalty(estimator="k4")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="reference must name"):
        kl_penalty("")
    with pytest.raises(InvalidInputError, match="mask must name"):
        negative_entropy(mask=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            lambda lps: lps[0],
            r"regularizer 'bad' must be a scalar torch tensor, got Tensor of shape \(3,\)",
        ),
        (lambda lps: 1.5, "regularizer 'bad' must be a scalar torch tensor, got float"),
        (lambda lps: lps[0].sum() * math.nan, r"regularizer 'bad' is not finite \(nan\)"),
        (lambda lps: (lps[0].sum(), [1]), "regularizer 'bad': metrics must be a dict"),
        (lambda lps: (lps[0].sum(), {"m": "x"}), "metric 'm' must be a number"),
        (lambda lps: (lps[0].sum(), {}, 1), "must return a scalar tensor or"),
    ],
)
def test_a_term_that_returns_something_else_is_named_when_the_loss_runs(
    result: Any, message: str
) -> None:
    loss_fn = compose(_mean_loss, Regularizer("bad", lambda data, lps: result(lps)))
    with pytest.raises(InvalidInputError, match=message):
        loss_fn(_data(), _leaves())


def test_a_base_loss_that_returns_something_else_is_refused() -> None:
    with pytest.raises(InvalidInputError, match=r"base loss must return \(loss, metrics\)"):
        compose(lambda data, lps: lps[0].sum())(_data(), _leaves())
    with pytest.raises(InvalidInputError, match="the base loss is not finite"):
        compose(lambda data, lps: (lps[0].sum() / 0.0, {}))(_data(), _leaves())


def test_the_composed_loss_names_its_parts() -> None:
    loss_fn = compose(_mean_loss, Regularizer("kl", kl_penalty(), weight=0.05))
    assert repr(loss_fn) == "<ComposedLoss _mean_loss + 0.05 * kl>"


def test_check_data_refuses_what_a_term_could_not_read_before_the_loss_runs() -> None:
    loss_fn = compose(
        _mean_loss, Regularizer("kl", kl_penalty()), Regularizer("h", cross_entropy())
    )
    data = _data()
    loss_fn.check_data(data)  # readable: no error
    bare = Datum(
        model_input=data[0].model_input,
        loss_fn_inputs={"target_tokens": data[0].loss_fn_inputs["target_tokens"]},
    )
    with pytest.raises(
        InvalidInputError, match=r"data\[1\] has no loss_fn_inputs\['ref_logprobs'\]"
    ):
        loss_fn.check_data([data[0], bare])
    bad_mask = Datum(
        model_input=data[0].model_input,
        loss_fn_inputs={**data[0].loss_fn_inputs, "weights": np.ones(2, np.float32)},
    )
    with pytest.raises(InvalidInputError, match=r"\['weights'\] has 2 values for 3 target tokens"):
        compose(None, Regularizer("h", cross_entropy())).check_data([bad_mask])
    # a term without a mask reads no weights
    compose(None, Regularizer("h", cross_entropy(mask=None))).check_data([bad_mask])


def test_the_training_client_asks_any_loss_with_a_check_data_method() -> None:
    from tinker_actors.custom_loss import check_custom_loss_data

    seen: list[int] = []

    class Checked:
        def check_data(self, data: list[Datum]) -> None:
            seen.append(len(data))
            raise InvalidInputError("not this data")

        def __call__(self, data: list[Datum], logprobs: list[Any]) -> Any:
            raise AssertionError("never run")

    with pytest.raises(InvalidInputError, match="not this data"):
        check_custom_loss_data(Checked(), _data())
    assert seen == [2]
    check_custom_loss_data(_mean_loss, _data())  # a plain function has nothing to check


def test_the_composed_losss_own_keys_win_over_a_parts_metrics_of_the_same_name() -> None:
    def noisy_base(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        return logprobs[0].sum(), {"base_loss": -1.0, "regularizer_total": -1.0}

    def noisy_term(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
        return logprobs[1].sum(), {"weighted": -1.0, "tokens": 2.0}

    _, metrics = compose(noisy_base, Regularizer("t", noisy_term, weight=2.0))(_data(), _leaves())
    assert metrics["base_loss"] == pytest.approx(sum(LOGPROBS[0]))
    assert metrics["regularizer/t/weighted"] == pytest.approx(2.0 * sum(LOGPROBS[1]))
    assert metrics["regularizer_total"] == pytest.approx(2.0 * sum(LOGPROBS[1]))
    assert metrics["regularizer/t/tokens"] == 2.0
