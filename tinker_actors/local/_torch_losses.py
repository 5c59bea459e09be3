"""The built-in losses of ``forward_backward``, as the Tinker documentation defines them.

Every loss is a function of the learner's per-token log-probabilities of the target tokens
(``target_logprobs``, from this forward pass, with gradient) and the datum's ``loss_fn_inputs``.
Each returns the per-token ``elementwise_loss``; the datum's loss is its sum, and the batch's
``loss:sum`` metric is the sum over datums. Gradients flow only through ``target_logprobs``.

Definitions (``lp`` = target_logprobs, ``q`` = the sampler's ``logprobs`` input, ``A`` =
``advantages``, ``ratio = exp(lp - q)``, ``w`` = ``weights``):

* ``cross_entropy``: ``-lp * w`` (``w`` defaults to 1). Targets may be ``[N]`` or ``[N, K]``
  (K weighted targets per position, top-K distillation) with weights of the same shape.
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/cross-entropy
* ``importance_sampling``: ``-ratio * A``.
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/importance-sampling
* ``ppo``: ``-min(ratio * A, clamp(ratio, lo, hi) * A)``; ``lo``/``hi`` from
  ``loss_fn_config`` ``clip_low_threshold`` / ``clip_high_threshold``, default 0.8 / 1.2
  (the docs' epsilon of 0.2 on both sides).
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/ppo
* ``cispo``: ``-sg(clamp(ratio, lo, hi)) * lp * A`` (``sg`` = stop-gradient); default
  thresholds 0.0 / 4.0 (a one-sided clip).
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/cispo
* ``dro``: ``-(lp * A - 0.5 * beta * (lp - q) ** 2)``; ``beta`` from ``loss_fn_config``.
  The docs do not state a default; this server uses 0.05 (the docs' example value).
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/dro
* ``gspo`` (GSPO-token): the sequence log-ratio ``m = mean over M of sg(lp) - q``, ``M`` the
  positions ``sequence_ratio_mask`` marks (every position without a mask); each token's ratio
  ``s_t = exp(m + lp - sg(lp))`` (the sequence ratio's value, its own token's gradient); loss
  ``-min(s_t * A, clamp(s_t, lo, hi) * A)``. The docs give no default thresholds; this server
  uses the GSPO paper's 1 - 3e-4 and 1 + 4e-4.
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/gspo
* ``stable_reinforce``: Tinker publishes the sampling-side contract (``record_stability_info``,
  provenance by ``sequence_id``, ``kl_coeff``) but not the objective. This server's version is
  REINFORCE with a truncated, stop-gradient importance weight against the sampler's recorded
  logprob ``q`` of each sampled target (``sampled_mask``), plus an optional KL penalty:
  ``w = sg(min(exp(lp - q), cap))``, loss ``-(w * A * lp) + kl_coeff * (r - 1 - log r)`` with
  ``r = exp(lp - q)`` (the k3 estimator of KL(sampler || learner)), on sampled targets only
  (prompt positions contribute 0). ``cap`` is ``clip_high_threshold`` (default 2.0),
  ``kl_coeff`` defaults to 0. On-policy (``lp == q``) its gradient is REINFORCE's.
  Source: https://tinker-docs.thinkingmachines.ai/tinker/losses/stable-reinforce

Local extensions, which reduce to the documented formulas when absent: the RL losses multiply
the per-token loss by ``weights`` when the datum has them (to mask prompt tokens), and the
clipping thresholds may also be given per token as ``clip_low_threshold`` /
``clip_high_threshold`` tensors in ``loss_fn_inputs`` (they take precedence over the config).
``loss_fn_config`` values may be numbers or numeric strings (the 0.38 client sends strings).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from tinker_actors.local._backend import LOSS_CLIP_DEFAULTS, BackendInputError, check_loss_config

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["TORCH_LOSSES", "LossConfig", "elementwise_loss", "parse_loss_config"]

_DRO_BETA = 0.05
#: The losses this backend computes.
TORCH_LOSSES = frozenset(
    {"cross_entropy", "importance_sampling", "ppo", "cispo", "dro", "gspo", "stable_reinforce"}
)


@dataclass(frozen=True)
class LossConfig:
    """The resolved scalar parameters of one loss."""

    clip_low: float = 0.0
    clip_high: float = math.inf
    beta: float = _DRO_BETA
    kl_coeff: float = 0.0


def _number(config: Mapping[str, float | str], key: str, default: float) -> float:
    # check_loss_config has accepted every value as a finite number
    return float(config.get(key, default))


def parse_loss_config(loss_fn: str, config: Mapping[str, float | str]) -> LossConfig:
    """Resolve ``loss_fn_config`` for ``loss_fn`` with the documented defaults.

    Raises:
        BackendInputError: an unknown loss, an unknown key, or a non-numeric value.
    """
    if loss_fn not in TORCH_LOSSES:
        raise BackendInputError(
            f"the torch backend does not implement loss_fn {loss_fn!r}; it supports "
            f"{', '.join(sorted(TORCH_LOSSES))}"
        )
    check_loss_config(loss_fn, config)
    if loss_fn in LOSS_CLIP_DEFAULTS:
        low, high = LOSS_CLIP_DEFAULTS[loss_fn]
        low = _number(config, "clip_low_threshold", low)
        high = _number(config, "clip_high_threshold", high)
        return LossConfig(clip_low=low, clip_high=high, kl_coeff=_number(config, "kl_coeff", 0.0))
    if loss_fn == "dro":
        return LossConfig(beta=_number(config, "beta", _DRO_BETA))
    return LossConfig()


def elementwise_loss(
    loss_fn: str,
    target_logprobs: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
    config: LossConfig,
) -> torch.Tensor:
    """Return the per-token loss of one datum (same shape as ``target_logprobs``).

    Args:
        loss_fn: one of the built-in loss names.
        target_logprobs: the learner's logprobs of ``target_tokens`` (float32, with grad).
        inputs: the datum's float ``loss_fn_inputs`` as tensors of ``target_logprobs``' shape.
        config: from :func:`parse_loss_config`.
    """
    lp = target_logprobs
    weights = inputs.get("weights")
    if loss_fn == "cross_entropy":
        return -lp * weights if weights is not None else -lp
    advantages = inputs["advantages"]
    if loss_fn == "stable_reinforce":
        loss = _stable_reinforce(lp, inputs, advantages, config)
        return loss * weights if weights is not None else loss
    sampling = inputs["logprobs"]
    if loss_fn == "gspo":
        loss = _gspo(lp, sampling, advantages, inputs.get("sequence_ratio_mask"), config)
    elif loss_fn == "importance_sampling":
        loss = -(torch.exp(lp - sampling) * advantages)
    elif loss_fn in ("ppo", "cispo"):
        ratio = torch.exp(lp - sampling)
        low = inputs.get("clip_low_threshold", torch.full_like(lp, config.clip_low))
        high = inputs.get("clip_high_threshold", torch.full_like(lp, config.clip_high))
        clipped = torch.minimum(torch.maximum(ratio, low), high)
        if loss_fn == "ppo":
            loss = -torch.minimum(ratio * advantages, clipped * advantages)
        else:
            loss = -(clipped.detach() * lp * advantages)
    elif loss_fn == "dro":
        loss = -(lp * advantages - 0.5 * config.beta * (lp - sampling) ** 2)
    else:  # parse_loss_config has already refused it
        raise BackendInputError(f"unknown loss_fn {loss_fn!r}")
    return loss * weights if weights is not None else loss


def _gspo(
    lp: torch.Tensor,
    sampling: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor | None,
    config: LossConfig,
) -> torch.Tensor:
    in_ratio = mask != 0 if mask is not None else torch.ones_like(lp, dtype=torch.bool)
    log_ratios = (lp.detach() - sampling)[in_ratio]
    # an empty mask leaves the sequence ratio at 1 (nothing to compare)
    sequence = log_ratios.mean() if log_ratios.numel() else torch.zeros((), device=lp.device)
    ratio = torch.exp(sequence + lp - lp.detach())
    clipped = torch.clamp(ratio, config.clip_low, config.clip_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def _stable_reinforce(
    lp: torch.Tensor,
    inputs: Mapping[str, torch.Tensor],
    advantages: torch.Tensor,
    config: LossConfig,
) -> torch.Tensor:
    sampled = inputs["sampled_mask"]
    log_ratio = torch.where(sampled != 0, lp - inputs["sampler_logprobs"], torch.zeros_like(lp))
    ratio = torch.exp(log_ratio)
    weight = torch.clamp(ratio, max=config.clip_high).detach()
    loss = -(weight * advantages * lp)
    if config.kl_coeff:
        loss = loss + config.kl_coeff * (ratio - 1.0 - log_ratio)
    return loss * sampled
