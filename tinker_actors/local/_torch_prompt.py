"""What a sample request asks about its own prompt, answered from the prefill's logprobs.

Row ``i`` of a prompt's logprobs ``[length, V]`` is the distribution after position ``i``,
so it scores prompt position ``i + 1``; position 0 is never scored. From it come the prompt
logprobs (NaN where unscored), the top-k rows (padding where unscored), the logprobs of the
``target_prompt_logprobs`` ids and the ``prompt_alt_tokens_k`` draws (see
:mod:`._prompt_targets` for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from tinker_actors.local._prompt_targets import alt_tokens, answer_targets, target_ids
from tinker_actors.types import PromptAltTokens, TensorData, TopkLogprobs

if TYPE_CHECKING:
    import numpy.typing as npt

    from tinker_actors.local._backend import SampleJob

__all__ = ["PAD_LOGPROB", "PromptExtras", "prompt_extras", "topk_rows"]

#: The logprob of a top-k cell that holds nothing (an unscored position, a tiny vocabulary).
PAD_LOGPROB = -99999.0

#: Mixed into a request's seed for its alternative-token draws, so drawing them leaves the
#: request's samples exactly what they are without them.
_ALT_SEED_MIX = 0x5DEECE66D


def topk_rows(
    logprobs: torch.Tensor, k: int
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    """The ``k`` likeliest ids of each row and their logprobs (padded past the vocabulary)."""
    values, ids = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1)
    ids_np = ids.cpu().numpy().astype(np.int32)
    values_np = values.cpu().numpy().astype(np.float32)
    if ids_np.shape[-1] < k:  # a vocabulary smaller than k: pad the rows
        pad = k - ids_np.shape[-1]
        ids_np = np.pad(ids_np, ((0, 0), (0, pad)))
        values_np = np.pad(values_np, ((0, 0), (0, pad)), constant_values=PAD_LOGPROB)
    return ids_np, values_np


@dataclass(frozen=True)
class PromptExtras:
    """The prompt-side parts of a response; ``None`` where not asked for."""

    logprobs: npt.NDArray[np.float32] | None = None
    topk: TopkLogprobs | None = None
    targets: TensorData | None = None
    alt: PromptAltTokens | None = None


def wanted(job: SampleJob) -> bool:
    """Whether ``job`` needs its prompt's every distribution (not just the last one)."""
    return bool(
        job.prompt_logprobs
        or job.topk_prompt_logprobs > 0
        or job.target_prompt_logprobs is not None
        or job.prompt_alt_tokens_k > 0
    )


def prompt_extras(
    logprobs: torch.Tensor, prompt: torch.Tensor, job: SampleJob, seed: int
) -> PromptExtras:
    """Answer ``job``'s prompt questions from ``logprobs`` [length, V] (log-softmaxed) of
    ``prompt`` [length]; ``seed`` is the request's (the draws take their own generator)."""
    length = prompt.shape[0]
    first_scored = 1
    if job.prompt_logprobs_last_n is not None:
        first_scored = max(1, length - job.prompt_logprobs_last_n)
    scoring = logprobs[:-1]  # row i scores prompt position i + 1
    prompt_lps = None
    if job.prompt_logprobs:
        scored = scoring.gather(-1, prompt[1:, None]).squeeze(-1)
        prompt_lps = np.full(length, np.nan, dtype=np.float32)
        prompt_lps[1:] = scored.cpu().numpy()
        prompt_lps[:first_scored] = np.nan
    topk = None
    if job.topk_prompt_logprobs > 0:
        k = job.topk_prompt_logprobs
        ids = np.zeros((length, k), dtype=np.int32)
        values = np.full((length, k), PAD_LOGPROB, dtype=np.float32)
        if length > 1:
            ids[1:], values[1:] = topk_rows(scoring, k)
        ids[:first_scored] = 0
        values[:first_scored] = PAD_LOGPROB
        topk = TopkLogprobs(token_ids=ids, logprobs=values)
    targets = None
    if job.target_prompt_logprobs is not None:
        asked = torch.from_numpy(target_ids(job.target_prompt_logprobs)).to(logprobs.device)
        found = scoring.gather(-1, asked.clamp(min=0)) if asked.numel() else asked.float()
        targets = answer_targets(job.target_prompt_logprobs, found.float().cpu().numpy())
    alt = None
    if job.prompt_alt_tokens_k > 0:
        alt = _alt_draws(scoring, job.prompt_alt_tokens_k, job.params.temperature, seed)
    return PromptExtras(prompt_lps, topk, targets, alt)


def _alt_draws(scoring: torch.Tensor, k: int, temperature: float, seed: int) -> PromptAltTokens:
    """``k`` draws with replacement per row at ``temperature`` (0: the likeliest, k times),
    with the model's own logprob of each."""
    rows = scoring.shape[0]
    if rows == 0:
        drawn = torch.zeros(0, k, dtype=torch.long, device=scoring.device)
    elif temperature == 0:
        drawn = scoring.argmax(dim=-1, keepdim=True).expand(rows, k)
    else:
        gen = torch.Generator(device=scoring.device).manual_seed((seed ^ _ALT_SEED_MIX) % 2**63)
        probs = torch.softmax(scoring.float() / temperature, dim=-1)
        drawn = torch.multinomial(probs, k, replacement=True, generator=gen)
    lps = scoring.gather(-1, drawn)
    return alt_tokens(drawn.cpu().numpy(), lps.float().cpu().numpy())
