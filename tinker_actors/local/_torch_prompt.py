"""What a sample request asks about its own prompt, answered from the prefill's logprobs.

Row ``i`` of a prompt's logprobs ``[length, V]`` is the distribution after position ``i``,
so it scores prompt position ``i + 1``; position 0 is never scored. From it come the prompt
logprobs (NaN where unscored), the top-k rows (padding where unscored), the logprobs of the
``target_prompt_logprobs`` ids and the ``prompt_alt_tokens_k`` draws (see
:mod:`._prompt_targets` for both). Prompt logprobs and top-k rows are first gathered into
:class:`Scores`, which a kept prefix carries, so a later prompt that starts with it needs
the distributions of its new positions only.
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

__all__ = [
    "PAD_LOGPROB",
    "PromptExtras",
    "Scores",
    "first_scores",
    "from_scores",
    "prompt_extras",
    "prompt_scores",
    "score_rows",
    "topk_rows",
]

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
class Scores:
    """What the first ``len`` positions of a sequence scored, as prompt logprobs report them:
    ``logprobs[i]`` is log p(ids[i] | ids[:i]) (NaN at 0), and ``top`` (``[n, k]`` ids and
    logprobs, or None) holds the ``k`` likeliest ids of the distribution that scored position
    ``i`` (padding at 0). Scores are prefix-closed: the first ``m`` positions' scores of a
    sequence are those of any sequence that starts with its first ``m`` ids, which is what
    lets a kept prefix answer a later prompt's questions about its first positions."""

    logprobs: npt.NDArray[np.float32]
    top: tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]] | None = None

    def __len__(self) -> int:
        return int(self.logprobs.shape[0])

    @property
    def k(self) -> int:
        """How many top ids each position holds (0: logprobs only)."""
        return 0 if self.top is None else int(self.top[0].shape[1])

    def known(self, k: int) -> int:
        """How many leading positions are answered for a request of ``k`` top ids."""
        return len(self) if k <= self.k else 0

    def head(self, n: int) -> Scores:
        """The first ``n`` positions."""
        top = None if self.top is None else (self.top[0][:n], self.top[1][:n])
        return Scores(self.logprobs[:n], top)

    def then(self, more: Scores) -> Scores:
        """These positions followed by ``more``'s (as many top ids as both hold)."""
        top = None
        if self.top is not None and more.top is not None:
            k = min(self.k, more.k)
            top = (
                np.concatenate([self.top[0][:, :k], more.top[0][:, :k]]),
                np.concatenate([self.top[1][:, :k], more.top[1][:, :k]]),
            )
        return Scores(np.concatenate([self.logprobs, more.logprobs]), top)

    def richer(self, other: Scores | None) -> bool:
        """Whether these answer all ``other`` answers and more: as many positions and top ids
        at least, and more of one. (An entry's scores are only ever replaced by richer ones,
        so whoever found it for what they answered finds that still answered.)"""
        if other is None:
            return True
        at_least = len(self) >= len(other) and self.k >= other.k
        return at_least and (len(self), self.k) != (len(other), other.k)


def first_scores(k: int) -> Scores:
    """The scores of a sequence's first position, which nothing scores."""
    top = None
    if k > 0:
        top = (np.zeros((1, k), dtype=np.int32), np.full((1, k), PAD_LOGPROB, dtype=np.float32))
    return Scores(np.full(1, np.nan, dtype=np.float32), top)


def score_rows(scoring: torch.Tensor, following: torch.Tensor, k: int) -> Scores:
    """The scores of the ids ``following`` [m], row ``j`` of ``scoring`` [m, V] (log-softmaxed)
    being the distribution that scores ``following[j]``; with the ``k`` likeliest of each."""
    lps = scoring.gather(-1, following[:, None]).squeeze(-1).float().cpu().numpy()
    return Scores(lps, topk_rows(scoring, k) if k > 0 else None)


def prompt_scores(logprobs: torch.Tensor, prompt: torch.Tensor, k: int) -> Scores:
    """The scores of every position of ``prompt`` [length] from its own ``logprobs``
    [length, V] (log-softmaxed), with ``k`` top ids each."""
    return first_scores(k).then(score_rows(logprobs[:-1], prompt[1:], k))


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


def from_scores(job: SampleJob) -> bool:
    """Whether :class:`Scores` answer all ``job`` asks about its prompt (logprobs and top ids;
    targets and alternative draws need the whole distributions)."""
    return job.target_prompt_logprobs is None and job.prompt_alt_tokens_k == 0


def prompt_extras(
    scores: Scores, job: SampleJob, seed: int, scoring: torch.Tensor | None = None
) -> PromptExtras:
    """Answer ``job``'s prompt questions from its prompt's ``scores`` (every position, with at
    least ``job.topk_prompt_logprobs`` top ids) and, for targets and alternative draws,
    ``scoring`` [length - 1, V], the log-softmaxed distributions that score positions 1 on;
    ``seed`` is the request's (the draws take their own generator)."""
    length = len(scores)
    first_scored = 1
    if job.prompt_logprobs_last_n is not None:
        first_scored = max(1, length - job.prompt_logprobs_last_n)
    prompt_lps = None
    if job.prompt_logprobs:
        prompt_lps = scores.logprobs.astype(np.float32, copy=True)
        prompt_lps[:first_scored] = np.nan
    topk = None
    k = job.topk_prompt_logprobs
    if k > 0:
        assert scores.top is not None
        assert scores.k >= k
        ids = scores.top[0][:, :k].copy()
        values = scores.top[1][:, :k].copy()
        ids[:first_scored] = 0
        values[:first_scored] = PAD_LOGPROB
        topk = TopkLogprobs(token_ids=ids, logprobs=values)
    targets = None
    alt = None
    if not from_scores(job):
        assert scoring is not None, "targets and draws need the prompt's distributions"
        if job.target_prompt_logprobs is not None:
            asked = torch.from_numpy(target_ids(job.target_prompt_logprobs)).to(scoring.device)
            found = scoring.gather(-1, asked.clamp(min=0)) if asked.numel() else asked.float()
            targets = answer_targets(job.target_prompt_logprobs, found.float().cpu().numpy())
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
