"""The torch backend's decoding loop: prepared requests draw one token per row per step, in
one forward pass over a cache of prompts of different lengths, and newcomers join it.

Every request's ``num_samples`` rows sit side by side in one batch, each row at its own
position, over one KV cache whose columns are slots rather than positions: a row attends to
its own prompt's columns and to every column decoding appended after the longest prompt
(``key_mask``), never to another row's padding. A request leaves as soon as it is finished or
cancelled (``cancelled`` is polled before every step), and ``done`` gets its answer at once.

**Joining.** Between steps, ``more(left)`` may hand over requests that arrived for the same
weights while the batch ran (see :class:`._batch_queue.BatchQueue`); ``left`` is how many
tokens the batch's longest request still has to draw, and only requests that need no more
join, so a join never makes the batch (or its leader's wait) longer. A joiner's prompt is
prefilled by the caller; its rows are appended to the cache (one copy of the cache, as when
rows leave), at the current column when its prompt is shorter than the cache, or after
widening every row's padding when it is longer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from tinker_actors.local._torch_draw import choose_rows, tempered
from tinker_actors.local._torch_model import KVCache, forward

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.local._torch_request import Sampling
    from tinker_actors.types import SampleResponse

__all__ = ["SampleCancelled", "decode_together"]


class SampleCancelled(Exception):
    """The caller of :func:`._torch_sampling.run_sample` gave up on it (its ``cancelled``
    answered True)."""


@dataclass
class _Rows:
    """The running batch: its requests, in row order, and their rows' decoding state."""

    device: torch.device
    active: list[Sampling] = field(default_factory=list)
    cache: KVCache = field(default_factory=KVCache)
    key_mask: torch.Tensor | None = None  # [rows, columns]: which cache slots a row reads
    positions: torch.Tensor | None = None  # [rows]: each row's next position
    logits: torch.Tensor | None = None  # [rows, V]: each row's next-token distribution

    def admit(self, joiners: Sequence[Sampling]) -> None:
        """Append the rows of prefilled requests (none with ``limit`` 0) to the batch."""
        everyone = [*self.active, *joiners]
        old_length = self.cache.length
        length = max(old_length, *(r.prompt_length for r in joiners))
        left = [r.limit - r.steps for r in everyone]
        # the last token drawn is never fed back, hence - 1
        most = length + max(left) - 1
        rows = sum(r.rows for r in everyone)
        own = sum(r.rows * (length + n) for r, n in zip(everyone, left, strict=True))
        # room for every step up front, unless that is far more than the rows' own lengths
        # (one long request among many short ones would reserve its length for every row):
        # then about twice their mean, and the cache grows when it must
        capacity = min(most, max(length + 1, 2 * own // rows))
        stacked = KVCache.stack(
            [(r.cache, r.cache_row, r.prompt_length) for r in joiners],
            [r.rows for r in joiners],
            0 if self.active else capacity,
            most,
        )
        for r in joiners:  # the prefill batches' caches are copied: let them go
            r.cache = KVCache()
        cache = self.cache.join(stacked, capacity, most) if self.active else stacked
        prompts = torch.tensor(
            [r.prompt_length for r in joiners for _ in range(r.rows)], device=self.device
        )
        columns = torch.arange(max(most, length), device=self.device)[None, :]
        # appended columns (from ``length`` on) are everyone's; below, a joiner reads its
        # prompt and an old row what it read before, never the padding between
        mask = (columns >= length).expand(rows, -1).clone()
        old_rows = rows - prompts.shape[0]
        if self.key_mask is not None:
            mask[:old_rows, :old_length] = self.key_mask[:, :old_length]
        mask[old_rows:] |= columns < prompts[:, None]
        first = torch.cat([r.first_logits.expand(r.rows, -1) for r in joiners])
        self.cache, self.key_mask, self.active = cache, mask, everyone
        self.positions = prompts if self.positions is None else torch.cat([self.positions, prompts])
        self.logits = first if self.logits is None else torch.cat([self.logits, first])

    def row_kv(self, row: int, count: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The keys and values of ``row``'s first ``count`` positions, per layer
        ``[kv_heads, count, head_dim]``, copied out of the batch: a row's columns are the ones
        its ``key_mask`` reads, in position order."""
        assert self.key_mask is not None
        columns = self.key_mask[row, : self.cache.length].nonzero().squeeze(1)[:count]
        return (
            [k[row].index_select(1, columns) for k in self.cache.keys],
            [v[row].index_select(1, columns) for v in self.cache.values],
        )

    def keep(self, kept: list[Sampling], rows: list[int], total: int) -> None:
        """Keep only ``kept`` (whose rows are ``rows`` of ``total``)."""
        if kept and len(rows) < total:  # someone left: drop their rows
            assert self.key_mask is not None
            assert self.positions is not None
            index = torch.tensor(rows, dtype=torch.long, device=self.device)
            self.cache = self.cache.select(index)
            self.key_mask = self.key_mask.index_select(0, index)
            self.positions = self.positions.index_select(0, index)
        self.active = kept


def decode_together(
    base: BaseWeights,
    adapter: Adapter | None,
    requests: Sequence[Sampling],
    done: Callable[[Sampling, SampleResponse | SampleCancelled], None],
    more: Callable[[int], Sequence[Sampling]] | None = None,
    remember: Callable[[Sampling, _Rows, int], None] | None = None,
) -> None:
    """Decode prepared requests on one model together (see the module docstring).

    ``more(left)``: requests that join between steps, each drawing at most ``left`` tokens.
    ``remember(request, batch, first_row)``: called for each request that finishes, before
    ``done`` and before its rows leave the batch (see :meth:`_Rows.row_kv`).
    Blocking; run it in a worker thread.
    """
    batch = _Rows(base.device)
    with torch.inference_mode():
        joiners = _ready(requests, done)
        if joiners:
            batch.admit(joiners)
        while batch.active:
            if more is not None:
                joiners = _ready(more(max(r.limit - r.steps for r in batch.active)), done)
                if joiners:
                    batch.admit(joiners)
            assert batch.logits is not None
            logits = batch.logits
            logprobs = F.log_softmax(tempered(batch.active, logits), dim=-1)
            # every row draws, a cancelled request's too (nobody reads those), in one batch
            chosen = choose_rows(batch.active, logits)
            # one copy to Python for the whole batch, not two per request
            ids = chosen.tolist()
            lps = logprobs.gather(-1, chosen[:, None]).squeeze(-1).tolist()
            row = 0
            kept: list[Sampling] = []
            keep_rows: list[int] = []
            for request in batch.active:
                end = row + request.rows
                if request.cancelled():
                    steps = f"{request.steps} of {request.limit}"
                    done(request, SampleCancelled(f"sampling cancelled after {steps} steps"))
                else:
                    request.record(ids[row:end], lps[row:end], logprobs[row:end])
                    if request.finished:
                        if remember is not None:
                            remember(request, batch, row)
                        done(request, request.response())
                    else:
                        kept.append(request)
                        keep_rows.extend(range(row, end))
                row = end
            batch.keep(kept, keep_rows, row)
            if not kept:
                return
            assert batch.key_mask is not None
            assert batch.positions is not None
            if len(keep_rows) < row:
                chosen = chosen.index_select(0, torch.tensor(keep_rows, device=chosen.device))
            tokens = chosen[:, None]
            mask = batch.key_mask[:, : batch.cache.length + 1]
            batch.logits = forward(
                base, adapter, tokens, batch.cache, positions=batch.positions, key_mask=mask
            )[:, -1]
            batch.positions = batch.positions + 1


def _ready(
    requests: Sequence[Sampling],
    done: Callable[[Sampling, SampleResponse | SampleCancelled], None],
) -> list[Sampling]:
    """Those of ``requests`` that have tokens to draw; the others are answered at once."""
    out = []
    for request in requests:
        if request.limit == 0:
            done(request, request.response())
        else:
            out.append(request)
    return out
