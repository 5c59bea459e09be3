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

from tinker_actors.local._backend import BackendInputError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LossConfig", "elementwise_loss", "parse_loss_config"]

_CLIP_DEFAULTS = {"ppo": (0.8, 1.2), "cispo": (0.0, 4.0)}
_DRO_BETA = 0.05
_KNOWN_KEYS = {
    "cross_entropy": frozenset(),
    "importance_sampling": frozenset(),
    "ppo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
    "cispo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
    "dro": frozenset({"beta"}),
}


@dataclass(frozen=True)
class LossConfig:
    """The resolved scalar parameters of one loss."""

    clip_low: float = 0.0
    clip_high: float = math.inf
    beta: float = _DRO_BETA


def _number(config: Mapping[str, float | str], key: str, default: float) -> float:
    raw = config.get(key, default)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BackendInputError(f"loss_fn_config[{key!r}] must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise BackendInputError(f"loss_fn_config[{key!r}] must be finite, got {raw!r}")
    return value


def parse_loss_config(loss_fn: str, config: Mapping[str, float | str]) -> LossConfig:
    """Resolve ``loss_fn_config`` for ``loss_fn`` with the documented defaults.

    Raises:
        BackendInputError: an unknown loss, an unknown key, or a non-numeric value.
    """
    known = _KNOWN_KEYS.get(loss_fn)
    if known is None:
        raise BackendInputError(
            f"the torch backend does not implement loss_fn {loss_fn!r}; it supports "
            f"{', '.join(sorted(_KNOWN_KEYS))}"
        )
    unknown = set(config) - known
    if unknown:
        accepted = ", ".join(sorted(known)) or "no keys"
        raise BackendInputError(
            f"loss_fn_config for {loss_fn!r} has unknown keys {sorted(unknown)}; it accepts "
            f"{accepted}"
        )
    if loss_fn in _CLIP_DEFAULTS:
        low, high = _CLIP_DEFAULTS[loss_fn]
        low = _number(config, "clip_low_threshold", low)
        high = _number(config, "clip_high_threshold", high)
        if low > high:
            raise BackendInputError(
                f"clip_low_threshold ({low}) must not exceed clip_high_threshold ({high})"
            )
        return LossConfig(clip_low=low, clip_high=high)
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
    sampling = inputs["logprobs"]
    advantages = inputs["advantages"]
    if loss_fn == "importance_sampling":
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
