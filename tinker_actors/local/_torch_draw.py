"""Choosing each row's next token: temperature, top_k, top_p, and a seeded draw.

Every request draws from its own ``torch.Generator`` (seeded with its ``seed``), one uniform
per row per step, so what a request samples never depends on what it is batched with.
:func:`choose_rows` draws a whole decoding batch: the rows of every request without top_k /
top_p together, those with them request by request.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.local._torch_request import Sampling
    from tinker_actors.types import SamplingParams

__all__ = ["choose_rows", "draw", "tempered"]


def _filtered(params: SamplingParams, vocab: int) -> bool:
    """Whether top_k or top_p cut the distribution (such draws run request by request)."""
    return 0 < params.top_k < vocab or params.top_p < 1.0


def _choose(logits: torch.Tensor, params: SamplingParams, gen: torch.Generator) -> torch.Tensor:
    """Pick one token per row of ``logits`` [B, V]."""
    if params.temperature == 0:
        return logits.argmax(dim=-1)
    scaled = logits / params.temperature
    if 0 < params.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, params.top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if params.top_p < 1.0:
        ordered, order = torch.sort(scaled, dim=-1, descending=True)
        probs = torch.softmax(ordered, dim=-1)
        # drop a token when the mass before it already reaches top_p (the first always stays)
        drop = (torch.cumsum(probs, dim=-1) - probs) >= params.top_p
        ordered = ordered.masked_fill(drop, -math.inf)
        scaled = torch.empty_like(scaled).scatter_(-1, order, ordered)
    return draw(torch.softmax(scaled, dim=-1), _uniforms(scaled.shape[0], gen))


def choose_rows(requests: Sequence[Sampling], logits: torch.Tensor) -> torch.Tensor:
    """Every row's next token, for ``requests`` whose rows are ``logits`` [R, V] in order.

    Each request draws from its own generator exactly as :func:`_choose` would for its rows
    alone, so its samples do not depend on its batch; but the draws of every request without
    top_k / top_p run as one batch (per request, that was most of a decoding step's time when
    an RL loop sends a request per sample)."""
    chosen = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    greedy: list[int] = []
    sampled: list[int] = []
    temperatures: list[float] = []
    uniforms: list[torch.Tensor] = []
    row = 0
    vocab = logits.shape[-1]
    for request in requests:
        params, n = request.job.params, request.rows
        if _filtered(params, vocab):
            chosen[row : row + n] = _choose(logits[row : row + n], params, request.gen)
        elif params.temperature == 0:
            greedy.extend(range(row, row + n))
        else:
            sampled.extend(range(row, row + n))
            temperatures.extend([params.temperature] * n)
            uniforms.append(_uniforms(n, request.gen))
        row += n
    if greedy:
        index = torch.tensor(greedy, device=logits.device)
        chosen[index] = logits.index_select(0, index).argmax(dim=-1)
    if sampled:
        everyone = len(sampled) == row
        index = torch.tensor(sampled, device=logits.device)
        rows = logits if everyone else logits.index_select(0, index)
        scale = torch.tensor(temperatures, dtype=logits.dtype, device=logits.device)[:, None]
        drawn = draw(torch.softmax(rows / scale, dim=-1), torch.cat(uniforms))
        if everyone:
            chosen = drawn
        else:
            chosen[index] = drawn
    return chosen


def tempered(requests: Sequence[Sampling], logits: torch.Tensor) -> torch.Tensor:
    """``logits`` [R, V] divided row by row by their request's temperature: the distribution
    the reported logprobs of sampled tokens come from. Tinker reports the logprobs it sampled
    with, the temperature applied (tinker-cookbook's PR #86, checked against the service's
    code by its maintainers, and its tests/validate_temperature_logprobs.py). Greedy rows
    (temperature 0) keep the model's own; top_k / top_p do not renormalise them. The same
    tensor comes back when no row needs scaling (temperature 1, the common case)."""
    temperatures = [request.job.params.temperature for request in requests]
    if all(t in (0.0, 1.0) for t in temperatures):
        return logits
    scales = [
        1.0 if t in (0.0, 1.0) else t
        for request, t in zip(requests, temperatures, strict=True)
        for _ in range(request.rows)
    ]
    return logits / torch.tensor(scales, dtype=logits.dtype, device=logits.device)[:, None]


def _uniforms(rows: int, gen: torch.Generator) -> torch.Tensor:
    """One uniform draw per row ([rows, 1], float64), from a request's own generator."""
    return torch.rand(rows, 1, generator=gen, dtype=torch.float64, device=gen.device)


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One token per row of ``probs`` [B, V] by inverting its CDF at the uniform draws ``u``.

    ``torch.multinomial`` does the same at 10-40x the cost on the CPU (about 130 us a row for
    4,096 tokens). A token of zero probability is never chosen: the first index whose
    cumulative mass exceeds the draw has mass of its own."""
    cdf = probs.double().cumsum(dim=-1)
    index = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    index = index.clamp_(max=probs.shape[-1] - 1)
    # a draw that rounds up to the total lands past the end: take the likeliest token there
    empty = probs.gather(-1, index[:, None]).squeeze(-1) <= 0
    if bool(empty.any()):
        index = torch.where(empty, probs.argmax(dim=-1), index)
    return index
