"""One sample request inside the torch backend: checked (:class:`Checked`), then decoding
(:class:`Sampling`: its rows' tokens, logprobs and stops, and the response they make).

Stop strings are searched as each row's completion streams (:class:`StopScan`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tinker_actors.local._torch_prompt import PromptExtras, topk_rows, wanted
from tinker_actors.types import SampledSequence, SampleResponse, TopkLogprobs

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt
    import torch

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._images import Flat
    from tinker_actors.local._torch_model import KVCache
    from tinker_actors.local._torch_prefix import PrefixEntry
    from tinker_actors.local._torch_prompt import Scores

__all__ = ["Checked", "Sampling", "StopRule", "StopScan"]

log = logging.getLogger("tinker_actors.local")


@dataclass(frozen=True)
class StopRule:
    """When a sequence stops: on any of ``token_ids``, or once its text contains a string."""

    token_ids: frozenset[int]
    strings: tuple[str, ...] = ()


class StopScan:
    """Finds a stop string in one row's completion as its tokens arrive.

    With a tokenizer that decodes as a stream (``decode.stream()``: the text each new token
    adds), only that text and the last ``longest - 1`` characters before it are searched: a
    stop string not found at the previous token must end in the new text. Decoding the whole
    completion at every token instead cost time quadratic in its length (a quarter of a
    32 x 1,000-token batch's decoding). Other ``decode`` functions get the whole completion."""

    def __init__(self, decode: Callable[[list[int]], str], strings: tuple[str, ...]) -> None:
        stream: Callable[[], Callable[[int], str]] | None = getattr(decode, "stream", None)
        self._push = stream() if stream is not None else None
        self._decode = decode
        self._strings = strings
        self._keep = max(len(s) for s in strings) - 1
        self._tail = ""

    def found(self, tokens: list[int]) -> bool:
        """Whether the completion ``tokens`` (one token longer than last time) holds a stop."""
        if self._push is None:
            text = self._decode(tokens)
            return any(s in text for s in self._strings)
        added = self._push(tokens[-1])
        if not added:  # the token only began a character
            return False
        window = self._tail + added
        self._tail = window[-self._keep :] if self._keep else ""
        return any(s in window for s in self._strings)


@dataclass
class Checked:
    """A request that passed the checks: its prompt flattened, its stop rule and token limit."""

    key: Any  # the caller's, handed back with the outcome
    job: SampleJob
    flat: Flat
    rule: StopRule
    limit: int
    seed: int
    decode: Callable[[list[int]], str] | None
    cancelled: Callable[[], bool]

    @property
    def tokens(self) -> list[int]:
        return self.flat.ids

    @property
    def full(self) -> bool:
        """Whether the prompt's every logit is wanted (prompt logprobs), not just its last."""
        return wanted(self.job)


@dataclass
class Sampling:
    """One request in a decoding batch: its prompt done, its completions under way."""

    checked: Checked
    gen: torch.Generator
    first_logits: torch.Tensor  # [V]: the distribution of the first completion token
    cache: KVCache  # the prompt's keys and values: row ``cache_row`` of its prefill batch
    cache_row: int
    prompt: PromptExtras  # what the request asked about its prompt
    tokens: list[list[int]]
    logprobs: list[list[float]]
    topk: list[list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]]
    stopped: list[bool]
    steps: int = 0
    scans: list[StopScan] | None = None  # one per row, when the request has stop strings
    cache_hits: int = 0  # prompt tokens computed before (by another request, or kept)
    prompt_entry: PrefixEntry | None = None  # where its prompt's keys and values are kept
    scores: Scores | None = None  # what its prompt's positions scored, as far as known

    @property
    def job(self) -> SampleJob:
        return self.checked.job

    @property
    def rows(self) -> int:
        return self.checked.job.num_samples

    @property
    def prompt_length(self) -> int:
        return len(self.checked.tokens)

    @property
    def limit(self) -> int:
        return self.checked.limit

    @property
    def cancelled(self) -> Callable[[], bool]:
        return self.checked.cancelled

    def response(self) -> SampleResponse:
        k = self.job.topk_sample_logprobs
        sequences = []
        for i in range(self.rows):
            topk = None
            if k > 0:
                rows = self.topk[i]
                topk = TopkLogprobs(
                    token_ids=np.stack([r[0] for r in rows])
                    if rows
                    else np.zeros((0, k), dtype=np.int32),
                    logprobs=np.stack([r[1] for r in rows])
                    if rows
                    else np.zeros((0, k), dtype=np.float32),
                )
            sequences.append(
                SampledSequence(
                    stop_reason="stop" if self.stopped[i] else "length",
                    tokens_np=np.asarray(self.tokens[i], dtype=np.int32),
                    logprobs_np=np.asarray(self.logprobs[i], dtype=np.float32),
                    topk_logprobs_np=topk,
                )
            )
        return SampleResponse(
            sequences=sequences,
            prompt_logprobs_np=self.prompt.logprobs,
            topk_prompt_logprobs_np=self.prompt.topk,
            target_prompt_logprobs=self.prompt.targets,
            prompt_alt_tokens=self.prompt.alt,
            prompt_cache_hit_tokens=self.cache_hits,
        )

    def record(self, ids: list[int], lps: list[float], logprobs: torch.Tensor) -> None:
        """Record this request's rows' next tokens ``ids`` (their logprobs ``lps``, the rows'
        distributions ``logprobs``); a row that stopped keeps what it had."""
        k = self.job.topk_sample_logprobs
        topk = topk_rows(logprobs, k) if k > 0 else None
        rule, decode = self.checked.rule, self.checked.decode
        scans = self.scans
        if scans is None and rule.strings and decode is not None:
            scans = self.scans = [StopScan(decode, rule.strings) for _ in range(self.rows)]
        progress = self.job.progress
        new: list[list[int]] | None = [] if progress is not None else None
        for i in range(self.rows):
            if self.stopped[i]:
                if new is not None:
                    new.append([])
                continue
            token = ids[i]
            if new is not None:
                new.append([token])
            self.tokens[i].append(token)
            self.logprobs[i].append(lps[i])
            if topk is not None:
                self.topk[i].append((topk[0][i], topk[1][i]))
            if token in rule.token_ids or (scans is not None and scans[i].found(self.tokens[i])):
                self.stopped[i] = True
        self.steps += 1
        if progress is not None and new is not None:
            try:
                progress(new)
            except Exception:  # a listener's failure is its own: the samples go on
                log.exception("local server: a sample's progress listener failed")

    @property
    def finished(self) -> bool:
        return self.steps >= self.limit or all(self.stopped)
