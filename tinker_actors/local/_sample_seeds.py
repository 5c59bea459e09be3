"""Seeds for the sample requests that carry none (the torch backend).

Without a server seed, each such request draws a fresh random seed, as the service does. With
one (``TorchBackend(seed=N)``, ``tinker-actors serve --backend torch --seed N``), a request's
seed is a hash of N, of the request (prompt, sampling parameters, sample count, logprob
options) and of how many identical requests came before it on this server. A run that sends
the same requests therefore gets the same samples, in whatever order they arrive:
concurrent clients do not keep an order, so a seed drawn per arrival would not repeat. Identical
requests (an RL group sends one prompt several times) still get different samples.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import fields
from typing import TYPE_CHECKING, Final, final

import msgspec

from tinker_actors.types import json_enc_hook

if TYPE_CHECKING:
    from tinker_actors.local._backend import SampleJob

__all__ = ["SampleSeeds"]

#: Distinct requests counted for repeats; past this, new ones count as first seen (a server
#: run this long no longer repeats exactly, but every request still gets a seed).
_COUNTED: Final = 1 << 20
_SEED_BITS: Final = 62


@final
class SampleSeeds:
    """Draws the seed of each sample request that has none (see the module docstring)."""

    __slots__ = ("_random", "_seed", "_seen")

    def __init__(self, seed: int | None) -> None:
        if seed is not None and not 0 <= seed < 1 << 64:
            raise ValueError(f"the sampling seed must be in [0, 2**64), got {seed}")
        self._seed = None if seed is None else seed.to_bytes(8, "little")
        self._random = random.Random()
        self._seen: dict[bytes, int] = {}

    def draw(self, job: SampleJob) -> int:
        """A seed in ``[0, 2**62)`` for ``job``."""
        if self._seed is None:
            return self._random.randrange(1 << _SEED_BITS)
        # the request's content, field by field as the dataclass encodes (so the seeds of a
        # given --seed stay what they were), without what is not its identity (progress)
        content_fields = {f.name: getattr(job, f.name) for f in fields(job) if f.compare}
        encoded = msgspec.json.encode(content_fields, enc_hook=json_enc_hook)
        content = hashlib.blake2b(encoded, digest_size=16).digest()
        before = self._seen.get(content, 0)
        if before or len(self._seen) < _COUNTED:
            self._seen[content] = before + 1
        digest = hashlib.blake2b(
            content + before.to_bytes(8, "little"), digest_size=8, key=self._seed
        ).digest()
        return int.from_bytes(digest, "little") >> (64 - _SEED_BITS)
