"""What the local server remembers across restarts: sessions, training runs, samplers, checkpoints.

Records are msgspec Structs persisted as one JSON file each under the data directory::

    <data_dir>/sessions/<session_id>.json
    <data_dir>/runs/<run>/run.json
    <data_dir>/runs/<run>/checkpoints/<segment>/<name>/checkpoint.json   (+ backend files)
    <data_dir>/samplers/<sampling_session_id>.json

Ids contain ``:`` (``<session>:train:0``); file names replace it with ``~`` (path safe and
reversible, since server-issued ids never contain ``~``). Writes go to a temporary file that is
renamed into place, so a crash leaves the old or the new record, never half of one. A server
started without a data directory gives the store a temporary one that it removes on exit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeAlias, TypeVar

import msgspec

from tinker_actors.local._staging import recover
from tinker_actors.types import CheckpointType, TinkerPath

__all__ = [
    "CheckpointRecord",
    "RecordStore",
    "RunRecord",
    "SamplerRecord",
    "SessionRecord",
]

CheckpointKind: TypeAlias = CheckpointType


class SessionRecord(msgspec.Struct, kw_only=True):
    """A client session."""

    session_id: str
    created: float
    tags: list[str] = msgspec.field(default_factory=list)
    user_metadata: dict[str, object] = msgspec.field(default_factory=dict)
    project_id: str | None = None
    display_name: str | None = None
    sdk_version: str = ""
    #: the principal (a digest of the API key) that created it: only that key sees the session
    #: and everything in it; None for sessions stored before owners were recorded (everyone's)
    owner: str | None = None
    #: wall-clock time (POSIX) of the last heartbeat or request
    last_seen: float = 0.0
    #: set once: "success" / "errored" / "interrupted" (client finished) or "expired"
    finished: str | None = None
    finish_detail: str | None = None
    model_counter: int = 0
    sampling_counter: int = 0
    training_run_ids: list[str] = msgspec.field(default_factory=list)
    sampler_ids: list[str] = msgspec.field(default_factory=list)


class CheckpointRecord(msgspec.Struct, kw_only=True):
    """A saved checkpoint of a training run."""

    run_id: str
    kind: CheckpointKind
    name: str
    created: float
    size_bytes: int = 0
    public: bool = False
    expires_at: float | None = None
    user_metadata: dict[str, str] | None = None
    #: the optimizer state was saved with it (training checkpoints)
    has_optimizer: bool = False
    #: weights behind an ephemeral sampling session: not listed, not addressable by path
    ephemeral: bool = False

    @property
    def path(self) -> TinkerPath:
        """The checkpoint's parsed ``tinker://`` path."""
        return TinkerPath(training_run_id=self.run_id, checkpoint_type=self.kind, name=self.name)

    @property
    def checkpoint_id(self) -> str:
        """``<segment>/<name>``, e.g. ``weights/step-10``."""
        return self.path.checkpoint_id

    @property
    def tinker_path(self) -> str:
        """``tinker://<run>/<segment>/<name>``."""
        return str(self.path)


class RunRecord(msgspec.Struct, kw_only=True):
    """A training run (= a training model id)."""

    run_id: str
    session_id: str
    base_model: str
    created: float
    last_request_time: float
    lora_rank: int | None = None
    train_mlp: bool = True
    train_attn: bool = True
    train_unembed: bool = True
    user_metadata: dict[str, str] | None = None
    optimizer_type: str = "adamw"
    owner: str = "local-user"
    trainable: bool = True
    checkpoints: list[CheckpointRecord] = msgspec.field(default_factory=list)
    #: the tinker:// path this run's one checkpoint was copied from (copy_weights), if any
    copied_from: str | None = None
    #: the X-Idempotency-Key of the copy_weights request that made this run, so a retried
    #: request finds the same copy even after a restart
    copy_key: str | None = None


class SamplerRecord(msgspec.Struct, kw_only=True):
    """A sampling session: a base model, or frozen weights of a training run."""

    sampling_session_id: str
    session_id: str
    base_model: str
    created: float
    model_path: str | None = None
    #: directory of the sampler weights relative to the data dir (None = base model)
    weights: str | None = None
    clone_counter: int = 0


_R = TypeVar("_R", SessionRecord, RunRecord, SamplerRecord)


def _file_name(record_id: str) -> str:
    return record_id.replace(":", "~").replace("/", "^")


class RecordStore:
    """Records held in memory and mirrored to ``data_dir``; loads what is there on start."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        recover(data_dir / "runs")  # checkpoint writes a crash interrupted (see _staging)
        self.sessions: dict[str, SessionRecord] = {}
        self.runs: dict[str, RunRecord] = {}
        self.samplers: dict[str, SamplerRecord] = {}
        for session in self._read_all(self.data_dir / "sessions", "*.json", SessionRecord):
            self.sessions[session.session_id] = session
        for run in self._read_all(self.data_dir / "runs", "*/run.json", RunRecord):
            self.runs[run.run_id] = run
        for sampler in self._read_all(self.data_dir / "samplers", "*.json", SamplerRecord):
            self.samplers[sampler.sampling_session_id] = sampler

    @staticmethod
    def _read_all(folder: Path, pattern: str, kind: type[_R]) -> list[_R]:
        if not folder.is_dir():
            return []
        return [
            msgspec.json.decode(p.read_bytes(), type=kind) for p in sorted(folder.glob(pattern))
        ]

    def run_dir(self, run_id: str) -> Path:
        """Directory of a run's files."""
        return self.data_dir / "runs" / _file_name(run_id)

    def checkpoint_dir(self, checkpoint: CheckpointRecord) -> Path:
        """Directory holding a checkpoint's backend files."""
        return (
            self.run_dir(checkpoint.run_id)
            / "checkpoints"
            / checkpoint.path.segment
            / checkpoint.name
        )

    def save_session(self, record: SessionRecord) -> None:
        """Keep and persist a session."""
        self.sessions[record.session_id] = record
        _atomic_write(self.data_dir / "sessions" / f"{_file_name(record.session_id)}.json", record)

    def save_run(self, record: RunRecord) -> None:
        """Keep and persist a training run with its checkpoint list."""
        self.runs[record.run_id] = record
        _atomic_write(self.run_dir(record.run_id) / "run.json", record)

    def save_sampler(self, record: SamplerRecord) -> None:
        """Keep and persist a sampling session."""
        self.samplers[record.sampling_session_id] = record
        _atomic_write(self._sampler_file(record.sampling_session_id), record)

    def forget_sampler(self, sampling_session_id: str) -> None:
        """Drop a sampling session's record, in memory and on disk."""
        self.samplers.pop(sampling_session_id, None)
        self._sampler_file(sampling_session_id).unlink(missing_ok=True)

    def _sampler_file(self, sampling_session_id: str) -> Path:
        return self.data_dir / "samplers" / f"{_file_name(sampling_session_id)}.json"


def _atomic_write(path: Path, record: msgspec.Struct) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.encode(record))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
