"""How long the local server keeps the weights behind ``save_weights_and_get_sampling_client``.

Every such call (an *ephemeral* sampler save) writes a copy of the model's sampler weights and
opens a sampling session over it. RL loops, tinker-cookbook's among them, make one every step,
and nothing in the protocol says a client is done with one, so a server that kept them all would
grow by a full copy of the adapter per step: about 1 MB for ``local/tiny``, 44 MB for
SmolLM2 at rank 32, hundreds of GB over a long run, plus a run record that lists them all and
is rewritten at every save.

:class:`EphemeralSamplers` keeps, per training run, the ``keep`` most recently *used* ones (a
save and each sample accepted on it count as a use), and retires the rest when a new one is
saved: their weights directory, their checkpoint entry in the run record and their sampling
session are deleted. Invariants:

* the ``keep`` most recently used are never retired (the one just saved among them);
* nor is a sampler with a sample accepted and not finished (it goes at the first save after it
  is idle), so the weights a sample was accepted on are there when it runs;
* only ephemeral saves are retired: named checkpoints and base-model sessions are what the
  user asked to keep;
* a retired session answers 404 with what happened and what to do, for the most recent
  :data:`_REMEMBERED` retirements (older ones get the plain unknown-session answer).
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING

from tinker_actors.local._core import EngineError

if TYPE_CHECKING:
    from tinker_actors.local._core import EngineCore
    from tinker_actors.local._records import CheckpointRecord, RunRecord

__all__ = ["EphemeralSamplers", "ephemeral_name"]

#: Retired session ids remembered for a precise 404 (a bound on the server's memory).
_REMEMBERED = 4096


def ephemeral_name(session_id: str, sampling_session_seq_id: int) -> str:
    """The checkpoint name of an ephemeral save; :func:`_sampler_id` reads it back."""
    return f"ephemeral-{sampling_session_seq_id}-{session_id[-8:]}"


def _sampler_id(run: RunRecord, checkpoint: CheckpointRecord) -> str | None:
    """The sampling session opened over an ephemeral checkpoint of ``run`` (None: not one)."""
    parts = checkpoint.name.split("-", 2)
    if len(parts) != 3 or parts[0] != "ephemeral" or not parts[1].isdigit():
        return None
    return f"{run.session_id}:sample:{parts[1]}"


class EphemeralSamplers:
    """Least-recently-used retirement of ephemeral sampler weights, per training run."""

    def __init__(self, core: EngineCore, keep: int | None) -> None:
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be at least 1 (None keeps all), got {keep}")
        self._core = core
        self._keep = keep
        self._ticks = itertools.count(1)
        #: sampler id -> tick of its last use (absent: not used since the server started)
        self._used: dict[str, int] = {}
        #: sampler id -> samples accepted on it and not finished
        self._busy: Counter[str] = Counter()
        self._retired: OrderedDict[str, None] = OrderedDict()

    @property
    def keep(self) -> int | None:
        """Ephemeral samplers kept per training run (None: all)."""
        return self._keep

    def use(self, sampler_id: str) -> None:
        """Note a use of a sampling session (any kind; only ephemeral ones are ever retired)."""
        self._used[sampler_id] = next(self._ticks)

    def acquire(self, sampler_id: str) -> None:
        """A sample was accepted on ``sampler_id``: keep its weights until :meth:`release`."""
        self.use(sampler_id)
        self._busy[sampler_id] += 1

    def release(self, sampler_id: str) -> None:
        """A sample accepted on ``sampler_id`` finished (however it ended)."""
        left = self._busy[sampler_id] - 1
        if left > 0:
            self._busy[sampler_id] = left
        else:
            del self._busy[sampler_id]

    def retire_beyond_keep(self, run: RunRecord) -> list[str]:
        """Retire ``run``'s ephemeral samplers other than the ``keep`` most recently used.

        Returns the retired sampling session ids (oldest first).
        """
        keep = self._keep
        if keep is None:
            return []
        owned = [
            (sampler_id, checkpoint)
            for checkpoint in run.checkpoints
            if checkpoint.ephemeral and (sampler_id := _sampler_id(run, checkpoint)) is not None
        ]
        excess = len(owned) - keep
        if excess <= 0:
            return []
        # oldest use first; samplers not used since a restart are older than any used one
        owned.sort(key=lambda pair: (self._used.get(pair[0], 0), pair[1].created))
        # the keep most recent stay whatever else happens; a busy one among the rest stays too
        victims = [pair for pair in owned[:excess] if pair[0] not in self._busy]
        if victims:
            self._retire(run, victims)
        return [sampler_id for sampler_id, _ in victims]

    def _retire(self, run: RunRecord, victims: list[tuple[str, CheckpointRecord]]) -> None:
        store = self._core.store
        gone = {id(checkpoint) for _, checkpoint in victims}
        run.checkpoints = [c for c in run.checkpoints if id(c) not in gone]
        store.save_run(run)
        session = store.sessions.get(run.session_id)
        for sampler_id, checkpoint in victims:
            shutil.rmtree(store.checkpoint_dir(checkpoint), ignore_errors=True)
            store.forget_sampler(sampler_id)
            self._used.pop(sampler_id, None)
            self._retired[sampler_id] = None
            if len(self._retired) > _REMEMBERED:
                self._retired.popitem(last=False)
        if session is not None:
            ids = {sampler_id for sampler_id, _ in victims}
            session.sampler_ids = [s for s in session.sampler_ids if s not in ids]
            store.save_session(session)
        self._core.counters["ephemeral_samplers_retired"] += len(victims)

    def unknown(self, sampler_id: str, what: str = "sampling session") -> EngineError:
        """The 404 for a sampling session that is not there (retired, or never was)."""
        if sampler_id in self._retired:
            return EngineError(
                404,
                f"sampling session {sampler_id!r} was retired: this local server keeps the "
                f"{self._keep} most recently used samplers from "
                "save_weights_and_get_sampling_client per training run, and deleted its "
                "weights; sample from a newer one, or start the server with "
                "--ephemeral-samplers N (0 keeps all)",
            )
        return EngineError(404, f"unknown {what} {sampler_id!r}")
