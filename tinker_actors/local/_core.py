"""Shared state of the local server's engine: settings, errors, counters and session checks.

The engine is split by domain (training, sampling, REST, futures); every part holds the one
:class:`EngineCore` and goes through it for ids, session liveness, spawning background work
and counting. Errors that must become an HTTP status are :class:`EngineError`.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from tinker_actors.local._auth import CALLER
from tinker_actors.local._catalogue import BaseModelSpec, UnknownModelError, resolve_model
from tinker_actors.local._downloads import DownloadLinks
from tinker_actors.local._futures import FutureStore
from tinker_actors.local._limits import ServerLimits
from tinker_actors.local._offload import offload
from tinker_actors.local._stability import StabilityRecords
from tinker_actors.local._usage import UsageLedger
from tinker_actors.types import ClientConfigResponse, ClientDynamicConfigResponse

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from tinker_actors.local._backend import Backend
    from tinker_actors.local._ordering import Sequencer, SequencerStatistics
    from tinker_actors.local._records import (
        CheckpointRecord,
        RecordStore,
        RunRecord,
        SessionRecord,
    )

__all__ = ["EngineCore", "EngineError", "ServerSettings", "default_cache_dir"]


def default_cache_dir() -> Path:
    """The per-user cache of built artefacts (tokenizers), shared by every local server."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinker-actors"


class EngineError(Exception):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_not_expired(checkpoint: CheckpointRecord, now: float) -> None:
    """Refuse a checkpoint whose ttl has passed (it is gone, as the REST lists show).

    Raises:
        EngineError: 404.
    """
    if checkpoint.expires_at is not None and checkpoint.expires_at <= now:
        raise EngineError(
            404, f"checkpoint {checkpoint.tinker_path} expired (its ttl_seconds passed)"
        )


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """How the local server behaves.

    Attributes:
        long_poll_seconds: how long retrieve_future holds a pending poll before try_again
            (well under the client's 45 s read timeout).
        metadata_threshold: results larger than this (bytes) answer a first poll with
            ``complete_metadata`` when the client allows it.
        session_timeout: seconds without a heartbeat after which a session expires.
        sample_capacity: samples run at once; over it, requests carrying the backpressure
            header get 429 and others queue.
        gap_timeout: seconds a model waits for a missing seq_id before failing what queued.
        result_ttl: seconds a settled result stays retrievable.
        client_config / dynamic_config: the feature flags clients receive.
        jwt_auth: answer ``/auth/token`` and require the JWTs it issues.
        jwt_lifetime: seconds an issued JWT is valid.
        api_keys: if set, only these keys are accepted (otherwise any ``tml-`` key).
        admin_keys: if set, the ``/_local/*`` debug routes accept only these keys (otherwise
            any accepted key).
        limits: what one request may ask of the server (sizes, counts, time); see
            :class:`~._limits.ServerLimits`.
        data_dir: where sessions, runs and checkpoints persist (None = a temporary dir).
        cache_dir: where tokenizers are built; by default the user cache
            (``$XDG_CACHE_HOME/tinker-actors`` or ``~/.cache/tinker-actors``). Entries are named
            by a digest of what built them, so every server on the machine can share them.
        wall_clock: POSIX time for user-visible timestamps and checkpoint expiry (injectable
            so tests can move it; durations such as long polls use trio time instead).
        ephemeral_samplers: per training run, how many of the samplers made by
            ``save_weights_and_get_sampling_client`` keep their weights (the most recently
            used; None keeps all); see :mod:`~._ephemeral`.
        model_aliases: other names for catalogue models (``{"Qwen/Qwen3.5-9B-Base":
            "local/tiny"}``), so code written for a real model runs unchanged; checked by
            :func:`~._catalogue.check_aliases` when the server opens.
    """

    long_poll_seconds: float = 25.0
    metadata_threshold: int = 1 << 20
    session_timeout: float = 300.0
    sample_capacity: int = 512
    gap_timeout: float = 600.0
    result_ttl: float = 3600.0
    client_config: ClientConfigResponse = field(default_factory=ClientConfigResponse)
    dynamic_config: ClientDynamicConfigResponse = field(default_factory=ClientDynamicConfigResponse)
    jwt_auth: bool = False
    jwt_lifetime: float = 3600.0
    api_keys: frozenset[str] | None = None
    admin_keys: frozenset[str] | None = None
    limits: ServerLimits = field(default_factory=ServerLimits)
    data_dir: Path | None = None
    cache_dir: Path | None = None
    wall_clock: Callable[[], float] = time.time
    model_aliases: Mapping[str, str] = field(default_factory=dict)
    ephemeral_samplers: int | None = 32

    def __post_init__(self) -> None:
        if self.ephemeral_samplers is not None and self.ephemeral_samplers < 1:
            raise ValueError(
                f"ephemeral_samplers must be at least 1 (None keeps all), got "
                f"{self.ephemeral_samplers}"
            )
        announced = self.client_config.fwdbwd_max_chunk_len
        if announced > self.limits.max_datums:
            raise ValueError(
                f"client_config.fwdbwd_max_chunk_len ({announced}) tells clients to send more "
                f"datums per request than limits.max_datums ({self.limits.max_datums}) accepts"
            )


@dataclass
class _Model:
    record: RunRecord
    spec: BaseModelSpec
    sequencer: Sequencer


class EngineCore:
    """State and helpers shared by every part of the engine."""

    def __init__(
        self,
        settings: ServerSettings,
        backend: Backend,
        store: RecordStore,
        nursery: trio.Nursery,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.store = store
        self.futures = FutureStore(result_ttl=settings.result_ttl)
        self.nursery = nursery
        self.models: dict[str, _Model] = {}
        #: the sequencer statistics of models whose session ended, kept for the counters
        self.ended_models: dict[str, SequencerStatistics] = {}
        #: (scope, key) -> request id, for operations deduplicated outside a Sequencer; an
        #: entry lives as long as a result does (``result_ttl``), see :meth:`prune`
        self.dedupe: dict[tuple[str, str], str] = {}
        self._dedupe_added: deque[tuple[float, tuple[str, str]]] = deque()
        #: every counter the debug endpoint reports
        self.counters: Counter[str] = Counter()
        self.heartbeats: dict[str, float] = {}
        #: sampled sequences recorded for stable_reinforce (record_stability_info)
        self.stability = StabilityRecords(self.wall_time)
        #: signed download links (archives, external weights, trace exports)
        self.links = DownloadLinks(self.wall_time)
        #: billable quantities and audited events (billing and audit endpoints)
        self.usage = UsageLedger(store.data_dir, self.wall_time)
        self.cache_dir = settings.cache_dir or default_cache_dir()
        self._tokenizer_dirs: dict[str, Path] = {}
        self._tokenizer_lock = trio.Lock()

    # -- ids and time ---------------------------------------------------------------------

    @staticmethod
    def new_id(prefix: str) -> str:
        """Return a fresh opaque id."""
        return f"{prefix}-{uuid.uuid4().hex[:16]}"

    def wall_time(self) -> float:
        """POSIX time for records shown to users (REST timestamps, checkpoint expiry)."""
        return self.settings.wall_clock()

    # -- deduplication ----------------------------------------------------------------------

    @staticmethod
    def caller_key(scope: str, key: str) -> tuple[str, str]:
        """A dedupe key private to the caller: another key's idempotency keys never collide."""
        return (scope, f"{CALLER.get() or ''}|{key}")

    def remember(self, key: tuple[str, str], value: str) -> None:
        """Record a deduplication entry (forgotten ``result_ttl`` seconds later)."""
        self.dedupe[key] = value
        self._dedupe_added.append((trio.current_time(), key))

    def prune(self) -> None:
        """Forget results, and the dedupe entries pointing at them, older than ``result_ttl``.

        A repeat of a request after that is a new request; its result would have expired (410)
        anyway. Without this every request would cost memory for the server's lifetime.
        """
        horizon = trio.current_time() - self.settings.result_ttl
        added = self._dedupe_added
        while added and added[0][0] < horizon:
            self.dedupe.pop(added.popleft()[1], None)
        pruned = self.futures.prune()
        if pruned:
            self.counters["futures_pruned"] += pruned
            for model in self.models.values():
                model.sequencer.prune(self.futures.known)

    # -- ownership --------------------------------------------------------------------------

    @staticmethod
    def visible(record: SessionRecord) -> bool:
        """Whether the caller may see a session (and everything in it).

        Sessions from before owners were recorded (``owner`` None) are everyone's.
        """
        caller = CALLER.get()
        return caller is None or record.owner is None or record.owner == caller

    def visible_session(self, session_id: str) -> bool:
        """Whether the caller may see a session: it exists and is theirs (or no caller)."""
        if CALLER.get() is None:
            return True
        record = self.store.sessions.get(session_id)
        return record is not None and self.visible(record)

    def readable_run(self, run: RunRecord) -> bool:
        """Whether the caller may address a run: its own, or one with a public checkpoint."""
        return self.visible_session(run.session_id) or any(c.public for c in run.checkpoints)

    def readable(self, run: RunRecord, checkpoint: CheckpointRecord) -> bool:
        """Whether the caller may read (load, sample, copy, download) a checkpoint of ``run``."""
        return checkpoint.public or self.visible_session(run.session_id)

    # -- sessions -------------------------------------------------------------------------

    def session(self, session_id: str) -> SessionRecord:
        """Return a live session.

        Raises:
            EngineError: 404 unknown, 410 finished or expired.
        """
        record = self.store.sessions.get(session_id)
        if record is None or not self.visible(record):
            raise EngineError(404, f"unknown session {session_id!r}; create a session first")
        if record.finished is not None:
            raise EngineError(
                410,
                f"session {session_id!r} has {'expired' if record.finished == 'expired' else 'finished'}"
                f" ({record.finished}); create a new session",
            )
        return record

    def touch(self, session_id: str) -> None:
        """Note activity on a session (a heartbeat or any request)."""
        self.heartbeats[session_id] = trio.current_time()

    # -- models ---------------------------------------------------------------------------

    def model(self, model_id: str) -> _Model:
        """Return a live training model and check its session.

        Raises:
            EngineError: 404 unknown model, 410 session gone.
        """
        model = self.models.get(model_id)
        if model is not None and not self.visible_session(model.record.session_id):
            model = None
        if model is None:
            known = self.store.runs.get(model_id)
            if known is not None and not self.visible_session(known.session_id):
                known = None
            if known is not None:
                # a model of a finished or expired session: say so (410), as for its session
                self.session(known.session_id)
            hint = (
                "; it is not loaded (the server restarted), load a checkpoint into a new "
                "training client"
                if known is not None
                else ""
            )
            raise EngineError(404, f"unknown model {model_id!r}{hint}")
        self.session(model.record.session_id)
        self.touch(model.record.session_id)
        return model

    def spec_for(self, base_model: str) -> BaseModelSpec:
        """Look a base model (or an alias of one) up in the catalogue.

        Raises:
            EngineError: 400 with the list of available models.
        """
        return self.resolve_model(base_model)[1]

    def resolve_model(self, base_model: str) -> tuple[str, BaseModelSpec]:
        """Return the name to report (an alias stays an alias) and the catalogue spec.

        Raises:
            EngineError: 400 with the list of available models and aliases.
        """
        try:
            return resolve_model(base_model, self.settings.model_aliases)
        except UnknownModelError as exc:
            raise EngineError(400, str(exc)) from None

    # -- background work ------------------------------------------------------------------

    def spawn(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run ``fn`` in the engine's nursery (it must not raise: it settles its future)."""
        self.nursery.start_soon(fn)

    # -- tokenizers -----------------------------------------------------------------------

    async def tokenizer_dir(self, spec: BaseModelSpec) -> Path | None:
        """Return the directory of the model's tokenizer, building it once (in a thread).

        None when the ``tokenizers`` package is not installed.
        """
        async with self._tokenizer_lock:
            found = self._tokenizer_dirs.get(spec.name)
            if found is not None:
                return found
            try:
                import tokenizers  # noqa: F401  (probe for the optional dependency)

                from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir
            except ImportError:
                return None
            path = await offload(ensure_model_tokenizer_dir, self.cache_dir / "tokenizers", spec)
            self._tokenizer_dirs[spec.name] = path
            return path
