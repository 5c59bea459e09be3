"""Sampling for the torch backend: prompt scoring, then KV-cached batched decoding.

One request runs as: a single prefill of the prompt (batch 1) that yields the prompt's
logprobs and the first next-token distribution; the cache is then repeated ``num_samples``
times and every sample decodes one token per step together.

Semantics (documented in docs/local-server.md):

* ``temperature`` 0 is greedy (argmax). Otherwise logits are divided by the temperature,
  then ``top_k`` (-1 = no limit) and ``top_p`` (nucleus mass, 1 = no limit) filter them, and a
  token is drawn from a ``torch.Generator`` seeded with ``seed`` (same seed, same samples).
* Reported logprobs (sampled tokens, prompt, top-k) are always those of the model's own
  distribution (temperature 1, unfiltered), computed from the same float32 logits as a
  forward pass, so they equal ``forward`` / ``compute_logprobs`` and can feed the RL losses'
  ``logprobs`` input directly. The temperature only changes which token is drawn.
* Stops: ``stop`` unset means stop at EOS (the model's ``eos_ids``: id 0 for the local models,
  ``<|im_end|>`` and ``<|endoftext|>`` for SmolLM2); a list of token ids stops at exactly those
  (``[]`` disables every stop, EOS included); stop strings stop once the decoded completion
  contains one of them, and EOS still stops. The stopping token is part of the returned tokens
  and the reason is ``stop``; running out of ``max_tokens`` (default: the rest of the context)
  gives ``length``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._torch_model import KVCache, forward
from tinker_actors.types import SampledSequence, SampleResponse, TopkLogprobs

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.types import SamplingParams

__all__ = ["EOS_ID", "SampleCancelled", "StopRule", "run_sample", "stop_rule"]

#: The local tokenizers' end-of-sequence id.
EOS_ID = 0
_PAD_LOGPROB = -99999.0


class SampleCancelled(Exception):
    """The caller of :func:`run_sample` gave up on it (its ``cancelled`` answered True)."""


@dataclass(frozen=True)
class StopRule:
    """When a sequence stops: on any of ``token_ids``, or once its text contains a string."""

    token_ids: frozenset[int]
    strings: tuple[str, ...] = ()


def stop_rule(params: SamplingParams, eos_ids: Sequence[int] = (EOS_ID,)) -> StopRule:
    """Resolve ``SamplingParams.stop`` (see the module docstring); EOS is the model's."""
    stop = params.stop
    if stop is None or not isinstance(stop, str | list | tuple):
        return StopRule(frozenset(eos_ids))
    items: Sequence[str | int] = [stop] if isinstance(stop, str) else stop
    if all(isinstance(s, int) and not isinstance(s, bool) for s in items):
        return StopRule(frozenset(int(s) for s in items))
    if all(isinstance(s, str) for s in items):
        strings = tuple(str(s) for s in items if s)
        return StopRule(frozenset(eos_ids), strings)
    raise BackendInputError("stop must be a list of strings or a list of token ids, not a mix")


def _check_params(params: SamplingParams) -> None:
    if not math.isfinite(params.temperature) or params.temperature < 0:
        raise BackendInputError(f"temperature must be >= 0, got {params.temperature}")
    if params.top_k != -1 and params.top_k < 1:
        raise BackendInputError(f"top_k must be -1 (no limit) or >= 1, got {params.top_k}")
    if not (0.0 < params.top_p <= 1.0):
        raise BackendInputError(f"top_p must be in (0, 1], got {params.top_p}")


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
    probs = torch.softmax(scaled, dim=-1)
    return torch.multinomial(probs, 1, generator=gen).squeeze(-1)


def _topk(logprobs: torch.Tensor, k: int) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]:
    values, ids = torch.topk(logprobs, min(k, logprobs.shape[-1]), dim=-1)
    ids_np = ids.cpu().numpy().astype(np.int32)
    values_np = values.cpu().numpy().astype(np.float32)
    if ids_np.shape[-1] < k:  # a vocabulary smaller than k: pad the rows
        pad = k - ids_np.shape[-1]
        ids_np = np.pad(ids_np, ((0, 0), (0, pad)))
        values_np = np.pad(values_np, ((0, 0), (0, pad)), constant_values=_PAD_LOGPROB)
    return ids_np, values_np


def _prompt_extras(
    logprobs: torch.Tensor, prompt: torch.Tensor, job: SampleJob
) -> tuple[npt.NDArray[np.float32] | None, TopkLogprobs | None]:
    """Prompt logprobs (NaN where unscored) and top-k rows (padding where unscored)."""
    length = prompt.shape[0]
    first_scored = 1
    if job.prompt_logprobs_last_n is not None:
        first_scored = max(1, length - job.prompt_logprobs_last_n)
    prompt_lps = None
    if job.prompt_logprobs:
        scored = logprobs[:-1].gather(-1, prompt[1:, None]).squeeze(-1)
        prompt_lps = np.full(length, np.nan, dtype=np.float32)
        prompt_lps[1:] = scored.cpu().numpy()
        prompt_lps[:first_scored] = np.nan
    topk = None
    if job.topk_prompt_logprobs > 0:
        k = job.topk_prompt_logprobs
        ids = np.zeros((length, k), dtype=np.int32)
        values = np.full((length, k), _PAD_LOGPROB, dtype=np.float32)
        if length > 1:
            ids[1:], values[1:] = _topk(logprobs[:-1], k)
        ids[:first_scored] = 0
        values[:first_scored] = _PAD_LOGPROB
        topk = TopkLogprobs(token_ids=ids, logprobs=values)
    return prompt_lps, topk


def run_sample(
    base: BaseWeights,
    adapter: Adapter | None,
    job: SampleJob,
    *,
    seed: int,
    decode: Callable[[list[int]], str] | None,
    cancelled: Callable[[], bool] | None = None,
) -> SampleResponse:
    """Answer one sample request (blocking; run it in a worker thread).

    Args:
        base, adapter: the model to sample from (``adapter`` None = the base model).
        job: the validated request.
        seed: the generator seed (the request's, or one the backend drew).
        decode: token ids -> text, needed only for stop strings.
        cancelled: polled before every decoding step; once it answers True the work stops.

    Raises:
        SampleCancelled: ``cancelled`` answered True (nobody waits for the result).
    """
    spec = base.spec
    params = job.params
    _check_params(params)
    rule = stop_rule(params, spec.eos_ids)
    if rule.strings and decode is None:
        raise BackendInputError("stop strings need the model's tokenizer, which is unavailable")
    tokens = job.prompt.to_ints()
    if not tokens:
        raise BackendInputError("the prompt is empty; give at least one token")
    if min(tokens) < 0 or max(tokens) >= spec.vocab_size:
        raise BackendInputError(f"prompt token ids must be in [0, {spec.vocab_size})")
    room = spec.context_length - len(tokens)
    limit = params.max_tokens if isinstance(params.max_tokens, int) else room
    if limit < 0 or limit > room:
        raise BackendInputError(
            f"prompt ({len(tokens)} tokens) + max_tokens ({limit}) exceeds the context of "
            f"{spec.name} ({spec.context_length})"
        )
    if job.num_samples < 1:
        raise BackendInputError(f"num_samples must be >= 1, got {job.num_samples}")
    device = base.device
    with torch.inference_mode():
        prompt = torch.tensor(tokens, dtype=torch.long, device=device)
        cache = KVCache()
        logits = forward(base, adapter, prompt[None, :], cache)[0]
        logprobs = torch.log_softmax(logits, dim=-1)
        prompt_lps, topk_prompt = _prompt_extras(logprobs, prompt, job)
        sequences = _decode(
            base,
            adapter,
            job,
            logits[-1],
            cache,
            limit,
            rule,
            seed=seed,
            decode=decode,
            cancelled=cancelled,
        )
    return SampleResponse(
        sequences=sequences, prompt_logprobs_np=prompt_lps, topk_prompt_logprobs_np=topk_prompt
    )


def _decode(
    base: BaseWeights,
    adapter: Adapter | None,
    job: SampleJob,
    first_logits: torch.Tensor,
    prompt_cache: KVCache,
    limit: int,
    rule: StopRule,
    *,
    seed: int,
    decode: Callable[[list[int]], str] | None,
    cancelled: Callable[[], bool] | None,
) -> list[SampledSequence]:
    n = job.num_samples
    device = base.device
    gen = torch.Generator(device=device).manual_seed(seed)
    cache = prompt_cache.expand(n)
    logits = first_logits.expand(n, -1)
    out_tokens: list[list[int]] = [[] for _ in range(n)]
    out_lps: list[list[float]] = [[] for _ in range(n)]
    out_topk: list[list[tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]]] = [
        [] for _ in range(n)
    ]
    stopped = [False] * n
    k = job.topk_sample_logprobs
    for step in range(limit):
        if cancelled is not None and cancelled():
            raise SampleCancelled(f"sampling cancelled after {step} of {limit} steps")
        logprobs = F.log_softmax(logits, dim=-1)
        chosen = _choose(logits, job.params, gen)
        chosen_lps = logprobs.gather(-1, chosen[:, None]).squeeze(-1).cpu().tolist()
        chosen_ids = chosen.cpu().tolist()
        topk_rows = _topk(logprobs, k) if k > 0 else None
        for i in range(n):
            if stopped[i]:
                continue
            out_tokens[i].append(int(chosen_ids[i]))
            out_lps[i].append(float(chosen_lps[i]))
            if topk_rows is not None:
                out_topk[i].append((topk_rows[0][i], topk_rows[1][i]))
            if chosen_ids[i] in rule.token_ids or (
                rule.strings
                and decode is not None
                and any(s in decode(out_tokens[i]) for s in rule.strings)
            ):
                stopped[i] = True
        if all(stopped) or step == limit - 1:
            break
        logits = forward(base, adapter, chosen[:, None], cache)[:, -1]
    sequences = []
    for i in range(n):
        topk = None
        if k > 0:
            rows = out_topk[i]
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
                stop_reason="stop" if stopped[i] else "length",
                tokens_np=np.asarray(out_tokens[i], dtype=np.int32),
                logprobs_np=np.asarray(out_lps[i], dtype=np.float32),
                topk_logprobs_np=topk,
            )
        )
    return sequences
