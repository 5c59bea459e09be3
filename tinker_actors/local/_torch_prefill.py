"""Prompts run before decoding: fresh in padded groups, or continued from a stored prefix.

A group of prompts runs as one right-padded batch (padding is never attended to: no real
position attends to a later one), and each request keeps its row of the cache. A prompt
that several requests of one prefill send (an RL loop sends a group's prompt once per sample)
runs once when they are the same caller's: the first request pays for it, the others report
its tokens as ``prompt_cache_hit_tokens``, as the service reports prefix-cache hits.

With a :class:`~._torch_prefix.PrefixView`, every prompt's keys and values are kept, and so
are each finished row's prompt and completion (:func:`remember`), each under its caller's
``cache_salt``; a prompt that starts with
a kept sequence (the next turn of a conversation, a fixed preamble) runs only its new tokens
on top of the kept ones (:func:`resume`), and reports the reused ones as cache hits.

Logits are not kept, but what prompt logprobs report of them is: an entry made by a prompt
whose logprobs (and top ids) were asked for carries its :class:`~._torch_prompt.Scores`, and
so does every entry resumed from it, for the positions they share. A prompt that asks for
its logprobs resumes from such an entry one position before the reused ones end (the last
reused position's distribution scores the first new token) and takes the earlier positions'
scores from the entry: scoring many continuations of one long context (likelihood
evaluations, a chain of thought scored step by step) runs each context once. Requests for
target logprobs or alternative draws need the whole distributions and always run whole.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from tinker_actors.local._images import Flat
from tinker_actors.local._torch_model import KVCache, forward, kv_position_bytes, length_groups
from tinker_actors.local._torch_prompt import (
    PromptExtras,
    Scores,
    prompt_extras,
    prompt_scores,
    score_rows,
)
from tinker_actors.local._torch_request import Sampling
from tinker_actors.local._torch_vision import image_inserts

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tinker_actors.local._catalogue import BaseModelSpec
    from tinker_actors.local._torch_decode import _Rows
    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.local._torch_prefix import PrefixEntry, PrefixView
    from tinker_actors.local._torch_request import Checked

__all__ = [
    "keep_shared",
    "prefill",
    "prefill_bytes",
    "remember",
    "resume",
    "resume_bytes",
    "same_prompts",
    "top_wanted",
]


def prefill_bytes(spec: BaseModelSpec, rows: int, longest: int, full: bool) -> int:
    """About the most memory a prefill of ``rows`` prompts padded to ``longest`` takes: the
    attention scores, the activations, and the logits where every position's are kept."""
    per_row = spec.n_heads * longest * longest * 4 + 16 * longest * spec.d_ff
    if full:
        per_row += longest * spec.vocab_size * 8
    return rows * per_row


def resume_bytes(
    spec: BaseModelSpec, rows: int, reused: int, longest: int, full: bool = False
) -> int:
    """About the most memory resuming ``rows`` prompts takes: ``longest`` new positions each
    on top of ``reused`` kept ones (attention scores, activations, the kept keys stacked,
    and the new positions' logits where all are kept)."""
    kept = kv_position_bytes(spec) * (reused + longest)
    scores = spec.n_heads * longest * (reused + longest) * 4
    per_row = kept + scores + 16 * longest * spec.d_ff
    if full:
        per_row += longest * spec.vocab_size * 8
    return rows * per_row


def top_wanted(same: Sequence[Checked]) -> int:
    """The most top ids any of ``same`` (requests of one prompt) asks of each position."""
    return max(c.job.topk_prompt_logprobs for c in same)


def same_prompts(requests: Sequence[Checked]) -> list[list[Checked]]:
    """``requests`` grouped by identical prompt (tokens and pictures) and caller, in
    first-seen order (a caller is never told another sent the same prompt)."""
    groups: dict[tuple[Any, ...], list[Checked]] = {}
    for checked in requests:
        flat = checked.flat
        pictures = tuple((i.offset, i.data) for i in flat.images)
        key = (checked.job.cache_salt, tuple(flat.ids), pictures)
        groups.setdefault(key, []).append(checked)
    return list(groups.values())


def _started(
    same: list[Checked],
    first_logits: torch.Tensor,
    cache: KVCache,
    row: int,
    reused: int,
    scores: Scores | None = None,
    scoring: torch.Tensor | None = None,
) -> list[Sampling]:
    """The decoding state of requests that share one prompt, run as ``row`` of ``cache``:
    the first reused ``reused`` positions, the others the whole prompt. ``scores``: what the
    prompt's positions scored, when known; ``scoring``: the distributions that scored them,
    when the prompt ran whole with its logits kept."""
    out = []
    length = len(same[0].tokens)
    for j, checked in enumerate(same):
        job = checked.job
        extras = PromptExtras()
        if checked.full:
            assert scores is not None
            assert len(scores) == length
            extras = prompt_extras(scores, job, checked.seed, scoring)
        n = job.num_samples
        out.append(
            Sampling(
                checked=checked,
                gen=torch.Generator(device=first_logits.device).manual_seed(checked.seed),
                first_logits=first_logits,
                cache=cache,
                cache_row=row,
                prompt=extras,
                tokens=[[] for _ in range(n)],
                logprobs=[[] for _ in range(n)],
                topk=[[] for _ in range(n)],
                stopped=[False] * n,
                cache_hits=reused if j == 0 else length,
                scores=scores,
            )
        )
    return out


def _keep_prompt(
    prefixes: PrefixView | None,
    cache: KVCache,
    row: int,
    flat: Flat,
    out: list[Sampling],
    scores: Scores | None,
) -> None:
    """Keep the prompt ``flat`` (row ``row`` of ``cache``; ``scores``: what its positions
    scored, as far as known) for later prompts to reuse."""
    if prefixes is None:
        return
    entry = _put_row(prefixes, cache, row, out[0].job.cache_salt, flat, scores)
    if entry is not None and len(entry) == len(flat.ids):  # not a longer one that held it
        for sampling in out:
            sampling.prompt_entry = entry


def _put_row(
    prefixes: PrefixView,
    cache: KVCache,
    row: int,
    salt: str | None,
    flat: Flat,
    scores: Scores | None,
) -> PrefixEntry | None:
    """Keep row ``row`` of ``cache``, the sequence ``flat``, for ``salt``; the entry that
    holds it, or None when the store does not keep it."""
    length = len(flat.ids)
    if not prefixes.keeps(length, length * _position_bytes(cache)):
        return None
    keys = [k[row, :, :length].clone() for k in cache.keys]
    values = [v[row, :, :length].clone() for v in cache.values]
    return prefixes.put(salt, flat.ids, flat.images, keys, values, scores)


def keep_shared(
    base: BaseWeights,
    adapter: Adapter | None,
    prefixes: PrefixView,
    runs: Sequence[tuple[str | None, list[int], int | None]],
    fits: Callable[[int, int], bool],
) -> list[int]:
    """Run the prefixes ``runs`` (``(salt, ids, k)``, no pictures) in padded batches that
    ``fits(rows, longest)`` allows, and keep each for its ``salt``, with its scores (``k``
    top ids each) where ``k`` is not None: the prompts that share them then resume from them
    (:func:`resume`). Returns the indices of the runs kept."""
    device = base.device
    kept = []
    for part in length_groups([len(ids) for _, ids, _ in runs], fits):
        batch = [runs[i] for i in part]
        padded = _right_padded([ids for _, ids, _ in batch], device)
        full = any(k is not None for _, _, k in batch)
        last = torch.tensor([len(ids) - 1 for _, ids, _ in batch], device=device)
        cache = KVCache()
        logits = forward(base, adapter, padded, cache, logits_at=None if full else last)
        for row, (index, (salt, ids, k)) in enumerate(zip(part, batch, strict=True)):
            scores = None
            if k is not None:
                logprobs = torch.log_softmax(logits[row, : len(ids)], dim=-1)
                scores = prompt_scores(logprobs, padded[row, : len(ids)], k)
            if _put_row(prefixes, cache, row, salt, Flat(ids, ()), scores) is not None:
                kept.append(index)
    return kept


def _right_padded(rows: Sequence[list[int]], device: torch.device) -> torch.Tensor:
    """``rows`` of ids as one ``[rows, longest]`` batch, right-padded with zeros."""
    out = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long, device=device)
    for i, ids in enumerate(rows):
        out[i, : len(ids)] = torch.tensor(ids, device=device)
    return out


def _position_bytes(cache: KVCache) -> int:
    """The bytes of one position's keys and values over every layer of ``cache``."""
    return 2 * sum(k.shape[1] * k.shape[3] * k.element_size() for k in cache.keys)


def prefill(
    base: BaseWeights,
    adapter: Adapter | None,
    group: Sequence[list[Checked]],
    prefixes: PrefixView | None = None,
) -> list[Sampling]:
    """Run a group of prompts as one right-padded batch (see the module docstring).

    ``group``: the requests of each prompt."""
    device = base.device
    firsts = [same[0] for same in group]
    padded = _right_padded([c.tokens for c in firsts], device)
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
        scores = scoring = None
        if same[0].full:
            # the requests of a row share its prompt, so its logprobs are computed once
            logprobs = torch.log_softmax(logits[row, :length], dim=-1)
            scores = prompt_scores(logprobs, padded[row, :length], top_wanted(same))
            scoring = logprobs[:-1]
        first = logits[row, length - 1 if full else 0]
        started = _started(same, first, cache, row, 0, scores, scoring)
        _keep_prompt(prefixes, cache, row, same[0].flat, started, scores)
        out.extend(started)
    return out


def resume(
    base: BaseWeights,
    adapter: Adapter | None,
    group: Sequence[tuple[list[Checked], PrefixEntry]],
    reused: int,
    prefixes: PrefixView,
) -> list[Sampling]:
    """Run prompts from the first ``reused`` positions of kept entries: ``group`` is each
    prompt's requests and its entry. Only the rest of each prompt goes through the model,
    right-padded in one batch on top of the entries' keys and values (a later position never
    reaches back to an earlier one's padding), so each row of the cache holds its prompt from
    column 0, as after :func:`prefill`. Prompts that ask for their logprobs (a group is all
    one kind) take the first ``reused + 1`` positions' scores from their entries, which must
    hold them, and the rest from the new positions' logits."""
    device = base.device
    flats = [same[0].flat for same, _ in group]
    rests = [
        Flat(
            flat.ids[reused:],
            tuple(replace(s, offset=s.offset - reused) for s in flat.images if s.offset >= reused),
        )
        for flat in flats
    ]
    tokens = _right_padded([rest.ids for rest in rests], device)
    longest = tokens.shape[1]
    entries = [entry for _, entry in group]

    def stacked(per_entry: Sequence[list[torch.Tensor]]) -> list[torch.Tensor]:
        # each layer: the entries' first ``reused`` positions as one batch
        layers = zip(*per_entry, strict=True)  # every entry has the model's layers
        return [torch.stack([t[:, :reused] for t in layer]) for layer in layers]

    cache = KVCache(
        keys=stacked([e.keys for e in entries]),
        values=stacked([e.values for e in entries]),
        length=reused,
        most=reused + longest,
    )
    full = group[0][0][0].full
    last = torch.tensor([len(rest.ids) - 1 for rest in rests], device=device)
    logits = forward(
        base,
        adapter,
        tokens,
        cache,
        logits_at=None if full else last,
        images=image_inserts(rests, device),
    )
    out = []
    for row, (same, entry) in enumerate(group):
        kept = entry.scores
        if full:
            assert kept is not None
            assert len(kept) > reused
            n = len(rests[row].ids)
            logprobs = torch.log_softmax(logits[row, :n], dim=-1)
            # as many top ids as the entry holds, so the new entry answers what it did
            k = max(top_wanted(same), kept.k)
            new = score_rows(logprobs[:-1], tokens[row, 1:n], k)
            scores: Scores | None = kept.head(reused + 1).then(new)
            first = logits[row, n - 1]
        else:
            scores = kept.head(reused) if kept is not None else None
            first = logits[row, 0]
        started = _started(same, first, cache, row, reused, scores)
        _keep_prompt(prefixes, cache, row, flats[row], started, scores)
        out.extend(started)
    return out


def remember(prefixes: PrefixView, request: Sampling, batch: _Rows, first_row: int) -> None:
    """Keep each row of a finished request as its prompt and completion (but the last token,
    never run), for a next turn to resume from; the prompt's own entry is then redundant."""
    flat = request.checked.flat
    per_position = _position_bytes(batch.cache)
    prompt = request.scores
    whole = prompt is not None and len(prompt) == len(flat.ids)
    kept = False
    for i in range(request.rows):
        completion = request.tokens[i][:-1]
        count = len(flat.ids) + len(completion)
        if not completion or not prefixes.keeps(count, count * per_position):
            continue
        keys, values = batch.row_kv(first_row + i, count)
        sequence = [*flat.ids, *completion]
        scores = prompt
        if prompt is not None and whole:  # a sampled token's logprob is the model's own
            sampled = np.asarray(request.logprobs[i][: len(completion)], dtype=np.float32)
            scores = Scores(prompt.logprobs).then(Scores(sampled))
        salt = request.job.cache_salt
        entry = prefixes.put(salt, sequence, flat.images, keys, values, scores)
        kept = kept or entry is not None
    if kept and request.prompt_entry is not None:
        prefixes.drop(request.prompt_entry)
