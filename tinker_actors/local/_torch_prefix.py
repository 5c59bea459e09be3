"""Keys and values of sequences already run, kept per weights, so a prompt that starts with
one of them computes only the rest: a multi-turn conversation's history (the last turn's
prompt and completion), a recipe's fixed preamble, a group's prompt sampled again in a later
batch.

An entry holds one sequence's keys and values per layer (``[kv_heads, n, head_dim]``, its own
memory, never written again) and the ids and pictures they were computed from. Entries are
indexed by chained hashes of their whole ``BLOCK``-token blocks, seeded with the weights' key:
a lookup walks the prompt's blocks, one dict probe each, down to the deepest block an entry
shares, then compares the prompt with the few most recent entries there token by token. A hit
is checked against the entry's ids and pictures, so a hash collision can only cost a miss.

A match is cut before a picture it would split or that the entry does not hold the same, and
leaves at least the prompt's last token to compute (its logits are the first draw's, and
logits are not kept). An entry may also carry what its positions scored
(:class:`~._torch_prompt.Scores`, for prompts that ask for their logprobs); a sequence put
again with richer scores than its entry holds gives them to the entry. Matches shorter than one block are not worth a separate pass and are
not taken, and sequences under ``SHORTEST`` positions are not kept: running them again costs
less than copying them out and indexing them (64 one-sample requests of 55-74-token prompts
took 5 % longer when they were kept). The store holds at most ``budget`` bytes of tensors,
evicting the least recently used entries; an entry over a quarter of the budget is not kept. Every method is thread-safe
(sampling batches run in worker threads).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence

    import numpy.typing as npt
    import torch

    from tinker_actors.local._images import ImageSpan
    from tinker_actors.local._torch_prompt import Scores

__all__ = ["BLOCK", "SHORTEST", "PrefixEntry", "PrefixStore", "PrefixView", "shared_prefixes"]

#: Tokens per indexed block; also the shortest match taken.
BLOCK = 32

#: The shortest sequence kept: a shorter one costs less to run again than to keep.
SHORTEST = 4 * BLOCK

#: Entries compared token by token at the deepest shared block (the most recent first).
_COMPARED = 8


@dataclass(eq=False)
class PrefixEntry:
    """One stored sequence: ``ids`` (and ``images``), their keys and values per layer, and
    what its first positions scored (``scores``, replaced whole, never written into)."""

    ids: npt.NDArray[np.int64]
    images: tuple[ImageSpan, ...]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    hashes: list[int] = field(default_factory=list)
    nbytes: int = 0
    scores: Scores | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _chain(
    weights: Hashable, ids: npt.NDArray[np.int64], images: Sequence[ImageSpan]
) -> Iterator[int]:
    """The chained hash of each whole block of ``ids``: its ids, the pictures that touch it,
    and every block before it."""
    h = hash(weights)
    for k in range(len(ids) // BLOCK):
        lo, hi = k * BLOCK, (k + 1) * BLOCK
        seen = tuple(s for s in images if s.offset < hi and s.offset + s.tokens > lo)
        h = hash((h, ids[lo:hi].tobytes(), seen))
        yield h


def _common(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> int:
    """The length of the longest common prefix of ``a`` and ``b``."""
    n = min(a.shape[0], b.shape[0])
    differs = np.flatnonzero(a[:n] != b[:n])
    return int(differs[0]) if differs.size else n


def _cut(matched: int, ours: Sequence[ImageSpan], theirs: Sequence[ImageSpan]) -> int:
    """``matched`` cut before any picture in it that the two do not share, or that it splits."""
    for span in (*ours, *theirs):
        if span.offset >= matched:
            continue
        if span not in ours or span not in theirs or span.offset + span.tokens > matched:
            matched = span.offset
    return matched


def shared_prefixes(
    prompts: Sequence[tuple[Hashable, Sequence[int]]], shortest: int
) -> list[tuple[int, list[int]]]:
    """Which of ``prompts`` (``(caller, ids)``, none with pictures) share a prefix of whole
    blocks at least ``shortest`` long with another of the same caller, leaving each at least
    one token past it: ``(length, indices)`` per shared prefix, each prompt in the group of
    the deepest prefix it shares (a prompt alone at its deepest is in none). Running each
    such prefix once and keeping it lets the prompts resume from it (a group's scores of one
    context's continuations, several samples of one preamble)."""
    least = -(-shortest // BLOCK)  # blocks
    chains: list[list[int]] = []
    holders: dict[int, int] = {}
    for caller, ids in prompts:
        array = np.asarray(ids, dtype=np.int64)
        blocks = (len(array) - 1) // BLOCK
        chain = list(_chain(caller, array[: blocks * BLOCK], ()))
        chains.append(chain)
        for h in chain[least - 1 :]:
            holders[h] = holders.get(h, 0) + 1
    groups: dict[int, tuple[int, list[int]]] = {}
    for i, chain in enumerate(chains):
        for depth in range(len(chain), least - 1, -1):
            h = chain[depth - 1]
            if holders[h] > 1:
                groups.setdefault(h, (depth * BLOCK, []))[1].append(i)
                break
    return [group for group in groups.values() if len(group[1]) > 1]


class PrefixStore:
    """Sequences' keys and values by weights, least recently used out first (see the module
    docstring). ``budget``: the most bytes of tensors held; ``shortest``: the fewest positions
    a kept sequence has."""

    def __init__(self, budget: int, shortest: int = SHORTEST) -> None:
        if shortest < BLOCK:
            raise ValueError(f"shortest must be at least a block ({BLOCK}), got {shortest}")
        self.budget = budget
        self.shortest = shortest
        self._lock = threading.Lock()
        self._entries: OrderedDict[PrefixEntry, None] = OrderedDict()  # oldest first
        self._index: dict[int, OrderedDict[PrefixEntry, None]] = {}
        self._held = 0

    @property
    def nbytes(self) -> int:
        """Bytes of tensors held."""
        return self._held

    def __len__(self) -> int:
        return len(self._entries)

    def keeps(self, tokens: int, nbytes: int) -> bool:
        """Whether a sequence of ``tokens`` positions taking ``nbytes`` would be kept (ask
        before copying its keys and values out)."""
        return tokens >= self.shortest and nbytes * 4 <= self.budget

    def view(self, weights: Hashable) -> PrefixView:
        """This store seen from one set of weights."""
        return PrefixView(self, weights)

    def find(
        self,
        weights: Hashable,
        ids: Sequence[int],
        images: Sequence[ImageSpan] = (),
        usable: Callable[[PrefixEntry], int] | None = None,
    ) -> tuple[PrefixEntry, int] | None:
        """The entry sharing the longest prefix with the prompt ``ids`` (and ``images``) on
        ``weights``, and how many of its positions to reuse: whole blocks (so that prompts
        resumed together share a length and run as one batch) or up to a picture's start,
        at most ``len(ids) - 1``; None when nothing is worth reusing. ``usable``: how many
        of an entry's leading positions may be reused at most (say, those it holds scores
        for), when not all."""
        array = np.asarray(ids, dtype=np.int64)
        with self._lock:
            hashes = _chain(weights, array, images)
            found = self._match(hashes, array, images, len(array) - 1, usable)
            if found is None:
                return None
            entry, matched = found
            matched = _cut(matched - matched % BLOCK, images, entry.images)
            if matched < BLOCK:
                return None
            self._entries.move_to_end(entry)
        return entry, matched

    def _match(
        self,
        hashes: Iterable[int],
        ids: npt.NDArray[np.int64],
        images: Sequence[ImageSpan],
        most: int,
        usable: Callable[[PrefixEntry], int] | None = None,
    ) -> tuple[PrefixEntry, int] | None:
        """The entry that matches the most of ``ids`` (at most ``most``, and at most what
        ``usable`` allows of it) among the few most recent of each block of ``hashes`` (the
        chain of ``ids``), deepest block first: every entry of a block shares it whole, so
        the walk stops at the first block no deeper than the best match."""
        if most < BLOCK or not self._entries:
            return None
        buckets = []
        for h in hashes:
            bucket = self._index.get(h)
            if bucket is None:
                break
            buckets.append(bucket)
        best: tuple[PrefixEntry, int] | None = None
        for depth in range(len(buckets), 0, -1):
            if best is not None and best[1] >= depth * BLOCK:
                break
            for entry, _ in zip(reversed(buckets[depth - 1]), range(_COMPARED), strict=False):
                matched = min(_common(entry.ids, ids), most)
                if usable is not None:
                    matched = min(matched, usable(entry))
                matched = _cut(matched, images, entry.images)
                if matched >= BLOCK and (best is None or matched > best[1]):
                    best = (entry, matched)
        return best

    def put(
        self,
        weights: Hashable,
        ids: Sequence[int],
        images: Sequence[ImageSpan],
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        scores: Scores | None = None,
    ) -> PrefixEntry | None:
        """Keep ``keys`` and ``values`` (per layer ``[kv_heads, len(ids), head_dim]``, not
        written again by the caller) and ``scores`` of ``ids`` on ``weights``. Returns the
        entry that holds them, which is an older one when it already held the whole sequence
        (it takes ``scores`` if they answer more than its own); None when the sequence is
        shorter than ``shortest`` or larger than a quarter of the budget."""
        nbytes = sum(t.numel() * t.element_size() for t in (*keys, *values))
        if not self.keeps(len(ids), nbytes):
            return None
        array = np.asarray(ids, dtype=np.int64)
        hashes = list(_chain(weights, array, images))
        with self._lock:
            held = self._match(hashes, array, images, len(array))
            if held is not None and held[1] == len(array):
                if scores is not None and scores.richer(held[0].scores):
                    held[0].scores = scores
                self._entries.move_to_end(held[0])
                return held[0]
            entry = PrefixEntry(array, tuple(images), keys, values, hashes, nbytes, scores)
            for h in hashes:
                self._index.setdefault(h, OrderedDict())[entry] = None
            self._entries[entry] = None
            self._held += nbytes
            while self._held > self.budget:
                self._forget(next(iter(self._entries)))
        return entry

    def drop(self, entry: PrefixEntry) -> None:
        """Forget ``entry`` (no matter if it is already gone)."""
        with self._lock:
            if entry in self._entries:
                self._forget(entry)

    def _forget(self, entry: PrefixEntry) -> None:
        del self._entries[entry]
        self._held -= entry.nbytes
        for h in entry.hashes:
            bucket = self._index[h]
            bucket.pop(entry, None)
            if not bucket:
                del self._index[h]


@dataclass(frozen=True)
class PrefixView:
    """A :class:`PrefixStore` for one set of weights (what a sampling batch runs on). Each
    caller (``salt``: ``SampleJob.cache_salt``) has its own entries: one that found another's
    would learn what it sent (a reported cache hit is an answer to "did someone send this?")."""

    store: PrefixStore
    weights: Hashable

    def find(
        self,
        salt: str | None,
        ids: Sequence[int],
        images: Sequence[ImageSpan] = (),
        usable: Callable[[PrefixEntry], int] | None = None,
    ) -> tuple[PrefixEntry, int] | None:
        """See :meth:`PrefixStore.find`."""
        return self.store.find((self.weights, salt), ids, images, usable)

    def put(
        self,
        salt: str | None,
        ids: Sequence[int],
        images: Sequence[ImageSpan],
        keys: list[torch.Tensor],
        values: list[torch.Tensor],
        scores: Scores | None = None,
    ) -> PrefixEntry | None:
        """See :meth:`PrefixStore.put`."""
        return self.store.put((self.weights, salt), ids, images, keys, values, scores)

    def drop(self, entry: PrefixEntry) -> None:
        """See :meth:`PrefixStore.drop`."""
        self.store.drop(entry)

    def keeps(self, tokens: int, nbytes: int) -> bool:
        """See :meth:`PrefixStore.keeps`."""
        return self.store.keeps(tokens, nbytes)

    @property
    def shortest(self) -> int:
        """See :class:`PrefixStore`."""
        return self.store.shortest
