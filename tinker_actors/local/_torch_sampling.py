"""Sampling for the torch backend: prompt scoring, then KV-cached batched decoding.

A request's prompt runs once (the prefill), which yields its logprobs and the first
next-token distribution; the prompt's cache is then repeated ``num_samples`` times and its
samples decode one token per step. Requests on the same model run *together*
(:func:`sample_batch`): their prompts in padded groups, then their rows share each decoding
step's forward pass over one cache of prompts of different lengths
(:func:`decode_together`), so a loop that sends many small requests at once (an RL batch of
groups) costs a few batched passes rather than one decoding run per request. A prompt that
starts with a sequence the backend ran before (the same caller's, on the same weights) runs
only its new tokens (:mod:`._torch_prefill`, :mod:`._torch_prefix`). Each request keeps its
own generator, so its samples are the same alone or batched (up to float rounding, which the
batch's shape or a reused prefix can change in the last bits).

Semantics (documented in docs/local-server.md):

* ``temperature`` 0 is greedy (argmax). Otherwise logits are divided by the temperature,
  then ``top_k`` (-1 = no limit) and ``top_p`` (nucleus mass, 1 = no limit) filter them, and a
  token is drawn from a ``torch.Generator`` seeded with ``seed`` (same seed, same samples).
* Reported logprobs come from the same float32 logits as a forward pass. Those of sampled
  tokens (and the top-k at sampled positions) are the sampling distribution's, the
  temperature applied as Tinker applies it (:func:`._torch_draw.tempered`); at temperature 1
  or 0 they are the model's own and equal ``forward`` / ``compute_logprobs``. Prompt logprobs
  (and their top-k) are always the model's own. top_k / top_p never renormalise them.
* Stops: ``stop`` unset means stop at EOS (the model's ``eos_ids``: id 0 for the local models,
  ``<|im_end|>`` and ``<|endoftext|>`` for SmolLM2); a list of token ids stops at exactly those
  (``[]`` disables every stop, EOS included); stop strings stop once the decoded completion
  contains one of them, and EOS still stops. The stopping token is part of the returned tokens
  and the reason is ``stop``; running out of ``max_tokens`` (default: the rest of the context)
  gives ``length``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING, Any, TypeAlias

import torch

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import Flat, flatten
from tinker_actors.local._prompt_targets import check_targets
from tinker_actors.local._torch_decode import SampleCancelled, decode_together
from tinker_actors.local._torch_model import kv_position_bytes, length_groups
from tinker_actors.local._torch_prefill import (
    keep_shared,
    prefill,
    prefill_bytes,
    remember,
    resume,
    resume_bytes,
    same_prompts,
    top_wanted,
)
from tinker_actors.local._torch_prefix import BLOCK, shared_prefixes
from tinker_actors.local._torch_prompt import from_scores
from tinker_actors.local._torch_request import Checked, StopRule

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.local._torch_prefix import PrefixEntry, PrefixView
    from tinker_actors.local._torch_request import Sampling
    from tinker_actors.types import SampleResponse, SamplingParams

    #: ``(key, job, seed, decode, cancelled)``: one request of :func:`sample_batch`
    Item: TypeAlias = tuple[
        Any, SampleJob, int, Callable[[list[int]], str] | None, Callable[[], bool]
    ]

__all__ = [
    "EOS_ID",
    "SampleCancelled",
    "StopRule",
    "decode_together",
    "run_sample",
    "sample_batch",
    "sample_cost",
    "stop_rule",
    "token_limit",
]

#: The most memory one group of prompts run together may take (about; see _prefill_bytes).
PREFILL_BYTES = 64 * 1024 * 1024

#: The local tokenizers' end-of-sequence id.
EOS_ID = 0


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


def _check(
    spec: BaseModelSpec, job: SampleJob, decode: Callable[[list[int]], str] | None
) -> tuple[Flat, StopRule, int]:
    """A request's prompt tokens, stop rule and token limit; refuse what cannot be sampled."""
    params = job.params
    _check_params(params)
    rule = stop_rule(params, spec.eos_ids)
    if rule.strings and decode is None:
        raise BackendInputError("stop strings need the model's tokenizer, which is unavailable")
    flat = flatten(job.prompt, "the prompt")
    tokens = flat.ids
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
    if job.target_prompt_logprobs is not None:
        check_targets(job.target_prompt_logprobs, len(tokens), spec.vocab_size, spec.vocab_size)
    return flat, rule, limit


def token_limit(spec: BaseModelSpec, job: SampleJob) -> int:
    """The most tokens ``job`` may draw: its ``max_tokens``, or the rest of the context."""
    limit = job.params.max_tokens
    return limit if isinstance(limit, int) else spec.context_length - job.prompt.length


def sample_cost(spec: BaseModelSpec, job: SampleJob) -> int:
    """The bytes a request's rows take in a decoding batch (cache and logits), about."""
    prompt, limit = job.prompt.length, token_limit(spec, job)
    # float32 keys and values for every position, and a few [rows, V] temporaries a step
    per_row = max(prompt + limit, 1) * kv_position_bytes(spec) + 16 * spec.vocab_size
    return max(job.num_samples, 1) * per_row


def sample_batch(
    base: BaseWeights,
    adapter: Adapter | None,
    items: Sequence[Item],
    finish: Callable[[Any, SampleResponse | Exception], None],
    more: Callable[[int], Sequence[Item]] | None = None,
    prefixes: PrefixView | None = None,
) -> None:
    """Answer several requests on one model: ``items`` are ``(key, job, seed, decode,
    cancelled)``; ``finish(key, outcome)`` gets each one's response, or the
    :class:`~._backend.BackendInputError` that refused it, or :class:`SampleCancelled`.
    A request already cancelled is skipped (nobody waits for it). Prompts are run shortest
    first in padded groups under ``PREFILL_BYTES``; then every request decodes together.
    ``more(left)``: requests that join the decoding between steps (see
    :mod:`._torch_decode`), each drawing at most ``left`` tokens. ``prefixes``: where
    sequences run on these weights are kept and found again (see :mod:`._torch_prefill`)."""

    def joining(left: int) -> list[Sampling]:
        assert more is not None
        fresh = more(left)
        return _prepare(base, adapter, fresh, finish, prefixes) if fresh else []

    decode_together(
        base,
        adapter,
        _prepare(base, adapter, items, finish, prefixes),
        lambda r, outcome: finish(r.checked.key, outcome),
        joining if more is not None else None,
        partial(remember, prefixes) if prefixes is not None else None,
    )


def _prepare(
    base: BaseWeights,
    adapter: Adapter | None,
    items: Sequence[Item],
    finish: Callable[[Any, SampleResponse | Exception], None],
    prefixes: PrefixView | None = None,
) -> list[Sampling]:
    """Check and prefill ``items``: those refused go to ``finish`` at once."""
    spec = base.spec
    checked: list[Checked] = []
    for key, job, seed, decode, cancelled in items:
        if cancelled():
            continue
        try:
            flat, rule, limit = _check(spec, job, decode)
        except BackendInputError as exc:
            finish(key, exc)
            continue
        checked.append(Checked(key, job, flat, rule, limit, seed, decode, cancelled))
    prepared: list[Sampling] = []
    with torch.inference_mode():
        # prompts whose every logit is wanted run apart from those that need only the last
        for full in (False, True):
            kind = same_prompts([c for c in checked if c.full == full])
            if prefixes is not None:
                kind = _resumed(base, adapter, kind, prefixes, prepared)
                paid = _share(base, adapter, kind, prefixes)
                if paid:
                    resumed = len(prepared)
                    kind = _resumed(base, adapter, kind, prefixes, prepared)
                    for sampling in prepared[resumed:]:  # the one that paid for the prefix
                        charged = paid.get(id(sampling.checked), 0)
                        sampling.cache_hits = max(0, sampling.cache_hits - charged)

            def fits(rows: int, longest: int, full: bool = full) -> bool:
                return prefill_bytes(spec, rows, longest, full) <= PREFILL_BYTES

            for group in length_groups([len(same[0].tokens) for same in kind], fits):
                prepared.extend(prefill(base, adapter, [kind[i] for i in group], prefixes))
    return prepared


def _resumed(
    base: BaseWeights,
    adapter: Adapter | None,
    kind: list[list[Checked]],
    prefixes: PrefixView,
    prepared: list[Sampling],
) -> list[list[Checked]]:
    """Resume the prompts of ``kind`` (all of one kind: prompt logprobs wanted or not) that
    start with a kept sequence (into ``prepared``), in batches of the same reused length
    under ``PREFILL_BYTES``; return the others."""
    fresh = []
    found: dict[int, list[tuple[list[Checked], PrefixEntry]]] = {}
    for same in kind:
        hit = _reusable(prefixes, same)
        if hit is None:
            fresh.append(same)
        else:
            found.setdefault(hit[1], []).append((same, hit[0]))
    spec = base.spec
    full = bool(kind) and kind[0][0].full
    for reused, group in found.items():

        def fits(rows: int, longest: int, reused: int = reused) -> bool:
            return resume_bytes(spec, rows, reused, longest, full) <= PREFILL_BYTES

        rests = [len(same[0].tokens) - reused for same, _ in group]
        for part in length_groups(rests, fits):
            prepared.extend(resume(base, adapter, [group[i] for i in part], reused, prefixes))
    return fresh


def _share(
    base: BaseWeights, adapter: Adapter | None, kind: list[list[Checked]], prefixes: PrefixView
) -> dict[int, int]:
    """Run once, and keep, each prefix that several prompts of ``kind`` (all of one kind)
    share (:func:`~._torch_prefix.shared_prefixes`), so that they resume from it rather than
    each running it. Returns who pays for each prefix run: the ``id`` of its first
    request and the prefix's length (its resumed tokens are not cache hits); empty when
    nothing was kept."""
    candidates = [same for same in kind if _resumable(same)]
    full = bool(kind) and kind[0][0].full
    # a prompt scored from a prefix reuses one position fewer (see _reusable)
    shortest = max(prefixes.shortest, 2 * BLOCK) if full else prefixes.shortest
    callers = [(same[0].job.cache_salt, same[0].tokens) for same in candidates]
    groups = shared_prefixes(callers, shortest)
    if not groups:
        return {}
    runs = []
    payers = []
    for length, members in groups:
        first = candidates[members[0]][0]
        k = max(top_wanted(candidates[i]) for i in members) if full else None
        runs.append((first.job.cache_salt, first.tokens[:length], k))
        payers.append((id(first), length))
    spec = base.spec

    def fits(rows: int, longest: int) -> bool:
        return prefill_bytes(spec, rows, longest, full) <= PREFILL_BYTES

    return dict(payers[i] for i in keep_shared(base, adapter, prefixes, runs, fits))


def _resumable(same: list[Checked]) -> bool:
    """Whether the prompt of ``same`` may resume from a prefix that :func:`_share` runs, or
    (asking for its logprobs) from a kept one: no pictures, and nothing asked of the prompt
    that only its whole distributions answer."""
    return not same[0].flat.images and all(from_scores(c.job) for c in same)


def _reusable(prefixes: PrefixView, same: list[Checked]) -> tuple[PrefixEntry, int] | None:
    """The kept entry the prompt of ``same`` resumes from and how many of its positions to
    reuse, or None. A prompt that asks for its logprobs reuses one position fewer than it
    shares (that position's distribution scores the first new token), and only positions
    whose scores the entry holds; targets and draws, or pictures, make it run whole."""
    first = same[0]
    if not first.full:
        return prefixes.find(first.job.cache_salt, first.tokens, first.flat.images)
    if not _resumable(same):
        return None
    k = top_wanted(same)

    def scored(entry: PrefixEntry) -> int:
        scores = entry.scores
        return 0 if scores is None else scores.known(k)

    hit = prefixes.find(first.job.cache_salt, first.tokens, usable=scored)
    if hit is None or hit[1] - 1 < BLOCK:
        return None
    return hit[0], hit[1] - 1


def run_sample(
    base: BaseWeights,
    adapter: Adapter | None,
    job: SampleJob,
    *,
    seed: int,
    decode: Callable[[list[int]], str] | None,
    cancelled: Callable[[], bool] | None = None,
) -> SampleResponse:
    """Answer one sample request on its own (blocking; run it in a worker thread).

    Args:
        base, adapter: the model to sample from (``adapter`` None = the base model).
        job: the validated request.
        seed: the generator seed (the request's, or one the backend drew).
        decode: token ids -> text, needed only for stop strings.
        cancelled: polled before every decoding step; once it answers True the work stops.

    Raises:
        SampleCancelled: ``cancelled`` answered True (nobody waits for the result).
    """
    outcome: list[SampleResponse | Exception] = []
    items = [(0, job, seed, decode, cancelled or (lambda: False))]
    sample_batch(base, adapter, items, lambda _, result: outcome.append(result))
    if not outcome:
        raise SampleCancelled("sampling cancelled before it started")
    if isinstance(outcome[0], Exception):
        raise outcome[0]
    return outcome[0]
