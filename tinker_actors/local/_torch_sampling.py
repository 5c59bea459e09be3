"""Sampling for the torch backend: prompt scoring, then KV-cached batched decoding.

A request's prompt runs once (the prefill), which yields its logprobs and the first
next-token distribution; the prompt's cache is then repeated ``num_samples`` times and its
samples decode one token per step. Requests on the same model run *together*
(:func:`sample_batch`): their prompts in padded groups, then their rows share each decoding
step's forward pass over one cache of prompts of different lengths
(:func:`decode_together`), so a loop that sends many small requests at once (an RL batch of
groups) costs a few batched passes rather than one decoding run per request. Each request keeps
its own generator, so its samples are the same alone or batched (up to float rounding, which
the batch's shape can change in the last bits).

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
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import Flat, flatten
from tinker_actors.local._prompt_targets import check_targets
from tinker_actors.local._torch_decode import SampleCancelled, decode_together
from tinker_actors.local._torch_model import KVCache, forward, length_groups
from tinker_actors.local._torch_prompt import PromptExtras, prompt_extras, topk_rows, wanted
from tinker_actors.local._torch_vision import image_inserts
from tinker_actors.types import SampledSequence, SampleResponse, TopkLogprobs

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy.typing as npt

    from tinker_actors.local._backend import SampleJob
    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.types import SamplingParams

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


class _StopScan:
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


def _check_params(params: SamplingParams) -> None:
    if not math.isfinite(params.temperature) or params.temperature < 0:
        raise BackendInputError(f"temperature must be >= 0, got {params.temperature}")
    if params.top_k != -1 and params.top_k < 1:
        raise BackendInputError(f"top_k must be -1 (no limit) or >= 1, got {params.top_k}")
    if not (0.0 < params.top_p <= 1.0):
        raise BackendInputError(f"top_p must be in (0, 1], got {params.top_p}")


@dataclass
class _Sampling:
    """One request in a decoding batch: its prompt done, its completions under way."""

    checked: _Checked
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
    scans: list[_StopScan] | None = None  # one per row, when the request has stop strings
    cache_hits: int = 0  # prompt tokens another request of its prefill computed for it

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
            scans = self.scans = [_StopScan(decode, rule.strings) for _ in range(self.rows)]
        for i in range(self.rows):
            if self.stopped[i]:
                continue
            token = ids[i]
            self.tokens[i].append(token)
            self.logprobs[i].append(lps[i])
            if topk is not None:
                self.topk[i].append((topk[0][i], topk[1][i]))
            if token in rule.token_ids or (scans is not None and scans[i].found(self.tokens[i])):
                self.stopped[i] = True
        self.steps += 1

    @property
    def finished(self) -> bool:
        return self.steps >= self.limit or all(self.stopped)


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


@dataclass
class _Checked:
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


def _prefill_bytes(spec: BaseModelSpec, rows: int, longest: int, full: bool) -> int:
    """About the most memory a prefill of ``rows`` prompts padded to ``longest`` takes: the
    attention scores, the activations, and the logits where every position's are kept."""
    per_row = spec.n_heads * longest * longest * 4 + 16 * longest * spec.d_ff
    if full:
        per_row += longest * spec.vocab_size * 8
    return rows * per_row


def _same_prompts(requests: Sequence[_Checked]) -> list[list[_Checked]]:
    """``requests`` grouped by identical prompt (tokens and pictures), in first-seen order."""
    groups: dict[tuple[Any, ...], list[_Checked]] = {}
    for checked in requests:
        flat = checked.flat
        key = (tuple(flat.ids), tuple((i.offset, i.data) for i in flat.images))
        groups.setdefault(key, []).append(checked)
    return list(groups.values())


def _prefill(
    base: BaseWeights, adapter: Adapter | None, group: Sequence[list[_Checked]]
) -> list[_Sampling]:
    """Run a group of prompts as one right-padded batch (padding is never attended to: no
    real position attends to a later one); each request keeps its row of the cache.

    ``group``: the requests of each prompt. A prompt is run once however many requests send
    it (an RL loop sends a group's prompt once per sample): the first request pays for it,
    the others report its tokens as ``prompt_cache_hit_tokens``, as the service reports
    prefix-cache hits."""
    device = base.device
    firsts = [same[0] for same in group]
    longest = max(len(c.tokens) for c in firsts)
    padded = torch.zeros(len(firsts), longest, dtype=torch.long, device=device)
    for row, checked in enumerate(firsts):
        padded[row, : len(checked.tokens)] = torch.tensor(checked.tokens, device=device)
    cache = KVCache()
    lengths = torch.tensor([len(c.tokens) for c in firsts], device=device)
    full = any(c.full for c in firsts)
    images = image_inserts([c.flat for c in firsts], device)
    logits = forward(
        base, adapter, padded, cache, logits_at=None if full else lengths - 1, images=images
    )
    out = []
    for row, same in enumerate(group):
        length = len(same[0].tokens)
        # the requests of a row share its prompt, so its logprobs are computed once
        logprobs = torch.log_softmax(logits[row, :length], dim=-1) if same[0].full else None
        for j, checked in enumerate(same):
            job = checked.job
            extras = PromptExtras()
            if logprobs is not None:
                extras = prompt_extras(logprobs, padded[row, :length], job, checked.seed)
            n = job.num_samples
            out.append(
                _Sampling(
                    checked=checked,
                    gen=torch.Generator(device=device).manual_seed(checked.seed),
                    first_logits=logits[row, length - 1 if full else 0],
                    cache=cache,
                    cache_row=row,
                    prompt=extras,
                    tokens=[[] for _ in range(n)],
                    logprobs=[[] for _ in range(n)],
                    topk=[[] for _ in range(n)],
                    stopped=[False] * n,
                    cache_hits=0 if j == 0 else length,
                )
            )
    return out


def token_limit(spec: BaseModelSpec, job: SampleJob) -> int:
    """The most tokens ``job`` may draw: its ``max_tokens``, or the rest of the context."""
    limit = job.params.max_tokens
    return limit if isinstance(limit, int) else spec.context_length - job.prompt.length


def sample_cost(spec: BaseModelSpec, job: SampleJob) -> int:
    """The bytes a request's rows take in a decoding batch (cache and logits), about."""
    prompt, limit = job.prompt.length, token_limit(spec, job)
    head_dim = spec.d_model // spec.n_heads
    per_position = spec.n_layers * 2 * spec.kv_heads * head_dim * 4
    # float32 keys and values for every position, and a few [rows, V] temporaries a step
    per_row = max(prompt + limit, 1) * per_position + 16 * spec.vocab_size
    return max(job.num_samples, 1) * per_row


def sample_batch(
    base: BaseWeights,
    adapter: Adapter | None,
    items: Sequence[Item],
    finish: Callable[[Any, SampleResponse | Exception], None],
    more: Callable[[int], Sequence[Item]] | None = None,
) -> None:
    """Answer several requests on one model: ``items`` are ``(key, job, seed, decode,
    cancelled)``; ``finish(key, outcome)`` gets each one's response, or the
    :class:`~._backend.BackendInputError` that refused it, or :class:`SampleCancelled`.
    A request already cancelled is skipped (nobody waits for it). Prompts are run shortest
    first in padded groups under ``PREFILL_BYTES``; then every request decodes together.
    ``more(left)``: requests that join the decoding between steps (see
    :mod:`._torch_decode`), each drawing at most ``left`` tokens."""

    def joining(left: int) -> list[_Sampling]:
        assert more is not None
        fresh = more(left)
        return _prepare(base, adapter, fresh, finish) if fresh else []

    decode_together(
        base,
        adapter,
        _prepare(base, adapter, items, finish),
        lambda r, outcome: finish(r.checked.key, outcome),
        joining if more is not None else None,
    )


def _prepare(
    base: BaseWeights,
    adapter: Adapter | None,
    items: Sequence[Item],
    finish: Callable[[Any, SampleResponse | Exception], None],
) -> list[_Sampling]:
    """Check and prefill ``items``: those refused go to ``finish`` at once."""
    spec = base.spec
    checked: list[_Checked] = []
    for key, job, seed, decode, cancelled in items:
        if cancelled():
            continue
        try:
            flat, rule, limit = _check(spec, job, decode)
        except BackendInputError as exc:
            finish(key, exc)
            continue
        checked.append(_Checked(key, job, flat, rule, limit, seed, decode, cancelled))
    prepared: list[_Sampling] = []
    with torch.inference_mode():
        # prompts whose every logit is wanted run apart from those that need only the last
        for full in (False, True):
            kind = _same_prompts([c for c in checked if c.full == full])

            def fits(rows: int, longest: int, full: bool = full) -> bool:
                return _prefill_bytes(spec, rows, longest, full) <= PREFILL_BYTES

            for group in length_groups([len(same[0].tokens) for same in kind], fits):
                prepared.extend(_prefill(base, adapter, [kind[i] for i in group]))
    return prepared


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
