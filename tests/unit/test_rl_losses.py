"""gspo and stable_reinforce on the torch backend, against their definitions computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local._backend import BackendInputError, check_loss_config
from tinker_actors.local._torch_losses import LossConfig, elementwise_loss, parse_loss_config

LP = [-0.5, -1.0, -2.0, -0.1]
Q = [-0.7, -0.2, -2.0, -1.5]
A = [1.0, -1.0, 2.0, 0.5]


def _t(values: list[float], grad: bool = False) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, requires_grad=grad)


def test_gspo_value_is_the_clipped_sequence_ratio_over_the_mask() -> None:
    mask = [0.0, 1.0, 1.0, 0.0]
    cfg = LossConfig(clip_low=0.5, clip_high=1.5)
    loss = elementwise_loss(
        "gspo",
        _t(LP),
        {"logprobs": _t(Q), "advantages": _t(A), "sequence_ratio_mask": _t(mask)},
        cfg,
    )
    s = math.exp(((LP[1] - Q[1]) + (LP[2] - Q[2])) / 2)
    clipped = min(max(s, 0.5), 1.5)
    expected = [-min(s * a, clipped * a) for a in A]
    assert loss.tolist() == pytest.approx(expected, rel=1e-9)


def test_gspo_gradient_is_each_tokens_own_scaled_by_the_sequence_ratio() -> None:
    # unclipped (wide thresholds): d loss_t / d lp_t = -s * A_t, and nothing flows across tokens
    lp = _t(LP, grad=True)
    cfg = LossConfig(clip_low=0.0, clip_high=100.0)
    loss = elementwise_loss("gspo", lp, {"logprobs": _t(Q), "advantages": _t(A)}, cfg)
    loss[1].backward()
    s = math.exp(sum(a - b for a, b in zip(LP, Q, strict=True)) / 4)
    assert lp.grad is not None
    assert lp.grad.tolist() == pytest.approx([0.0, -s * A[1], 0.0, 0.0], rel=1e-9)


def test_gspo_without_a_mask_uses_every_position_and_an_empty_mask_means_ratio_one() -> None:
    cfg = parse_loss_config("gspo", {"clip_low_threshold": 0.0, "clip_high_threshold": 9.0})
    inputs = {"logprobs": _t(Q), "advantages": _t(A)}
    full = elementwise_loss("gspo", _t(LP), inputs, cfg)
    ones = elementwise_loss("gspo", _t(LP), {**inputs, "sequence_ratio_mask": _t([1.0] * 4)}, cfg)
    assert full.tolist() == pytest.approx(ones.tolist())
    empty = elementwise_loss("gspo", _t(LP), {**inputs, "sequence_ratio_mask": _t([0.0] * 4)}, cfg)
    assert empty.tolist() == pytest.approx([-a for a in A])


def test_gspo_defaults_are_the_papers_thresholds() -> None:
    cfg = parse_loss_config("gspo", {})
    assert (cfg.clip_low, cfg.clip_high) == pytest.approx((1 - 3e-4, 1 + 4e-4))


def _stable(lp: torch.Tensor, cfg: LossConfig, mask: list[float] | None = None) -> torch.Tensor:
    inputs = {
        "sampler_logprobs": _t(Q),
        "sampled_mask": _t(mask or [1.0] * 4),
        "advantages": _t(A),
    }
    return elementwise_loss("stable_reinforce", lp, inputs, cfg)


def test_stable_reinforce_is_reinforce_with_a_truncated_detached_weight() -> None:
    cfg = parse_loss_config("stable_reinforce", {})
    assert cfg.clip_high == 2.0
    assert cfg.kl_coeff == 0.0
    lp = _t(LP, grad=True)
    loss = _stable(lp, cfg, mask=[1.0, 1.0, 0.0, 1.0])
    weights = [min(math.exp(a - b), 2.0) for a, b in zip(LP, Q, strict=True)]
    expected = [-w * a * lp_ for w, a, lp_ in zip(weights, A, LP, strict=True)]
    expected[2] = 0.0  # a prompt position: not a sampled token
    assert loss.tolist() == pytest.approx(expected, rel=1e-9)
    loss.sum().backward()
    assert lp.grad is not None
    grads = [-w * a for w, a in zip(weights, A, strict=True)]
    grads[2] = 0.0
    assert lp.grad.tolist() == pytest.approx(grads, rel=1e-9)


def test_stable_reinforce_on_policy_gradient_is_reinforces() -> None:
    lp = _t(Q, grad=True)
    _stable(lp, parse_loss_config("stable_reinforce", {})).sum().backward()
    assert lp.grad is not None
    assert lp.grad.tolist() == pytest.approx([-a for a in A])


def test_stable_reinforce_kl_term_is_the_k3_estimator() -> None:
    cfg = parse_loss_config("stable_reinforce", {"kl_coeff": "0.5"})
    lp = _t(LP, grad=True)
    loss = _stable(lp, cfg)
    base = _stable(_t(LP), parse_loss_config("stable_reinforce", {}))
    kl = [math.exp(a - b) - 1 - (a - b) for a, b in zip(LP, Q, strict=True)]
    assert (loss - base).tolist() == pytest.approx([0.5 * k for k in kl], rel=1e-9)
    assert min(kl) >= 0


@pytest.mark.parametrize(
    ("loss_fn", "config", "needle"),
    [
        ("stable_reinforce", {"beta": 1.0}, "accepts clip_high_threshold, kl_coeff"),
        ("stable_reinforce", {"kl_coeff": -1.0}, "must be >= 0"),
        ("stable_reinforce", {"clip_high_threshold": 0.0}, "must be > 0"),
        ("gspo", {"clip_high_threshold": 0.9}, "must not exceed"),
        ("gspo", {"clip_low_threshold": "nan"}, "must be finite"),
        ("cross_entropy", {"kl_coeff": 0.1}, "accepts no keys"),
    ],
)
def test_bad_configs_are_refused_with_what_is_accepted(
    loss_fn: str, config: dict[str, float | str], needle: str
) -> None:
    with pytest.raises(BackendInputError, match=needle):
        check_loss_config(loss_fn, config)


def test_every_loss_runs_on_a_batch_of_one_position() -> None:
    # the degenerate shapes: one token, float32 as the backend passes them
    one = {
        "logprobs": torch.tensor([-1.0]),
        "advantages": torch.tensor([1.0]),
        "sampler_logprobs": torch.tensor([-1.0]),
        "sampled_mask": torch.tensor([1.0]),
    }
    for loss_fn in ("gspo", "stable_reinforce"):
        out = elementwise_loss(loss_fn, torch.tensor([-1.0]), one, parse_loss_config(loss_fn, {}))
        assert np.isfinite(out.numpy()).all()
