"""The REST surface of the local server: training runs, checkpoints, sessions, weights info.

These read and edit the persisted records directly (no futures, no ordering). Checkpoint ids in
paths are ``<segment>/<name>`` (``weights/step-10``); run ids contain ``:``; both arrive
unescaped, as the official client sends them (protocol.md §3.5).

Lists show the caller's own records only; another key's run, session or checkpoint is a 404,
except that a public checkpoint can be read (weights info, download URLs) by any key.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._core import EngineError
from tinker_actors.types import (
    Checkpoint,
    CheckpointsListResponse,
    Cursor,
    ExternalWeightsUrlsResponse,
    GetSessionResponse,
    ListSessionsResponse,
    TinkerPath,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoResponse,
)
from tinker_actors.types._ttl import MAX_TTL_SECONDS, MIN_TTL_SECONDS

if TYPE_CHECKING:
    from tinker_actors.local._core import EngineCore
    from tinker_actors.local._records import CheckpointRecord, RunRecord

__all__ = ["EXTERNAL_URL_LIFETIME", "RestOps"]

_MAX_LIMIT = 1000
#: How long external-weights download URLs stay valid.
EXTERNAL_URL_LIFETIME = timedelta(hours=1)


def _when(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, tz=UTC)


def _page(limit: int, offset: int) -> None:
    if not 0 <= limit <= _MAX_LIMIT:
        raise EngineError(400, f"limit must be between 0 and {_MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise EngineError(400, f"offset must be >= 0, got {offset}")


def checkpoint_view(record: CheckpointRecord) -> Checkpoint:
    """The wire form of a stored checkpoint."""
    return Checkpoint(
        checkpoint_id=record.checkpoint_id,
        checkpoint_type=record.kind,
        time=_when(record.created),
        tinker_path=record.tinker_path,
        size_bytes=record.size_bytes,
        public=record.public,
        user_metadata=record.user_metadata,
        expires_at=_when(record.expires_at) if record.expires_at is not None else None,
    )


class RestOps:
    """REST reads and edits over the record store."""

    def __init__(self, core: EngineCore) -> None:
        self._core = core

    def _live(self, run: RunRecord) -> list[CheckpointRecord]:
        now = self._core.wall_time()
        return [
            c
            for c in run.checkpoints
            if not c.ephemeral and (c.expires_at is None or c.expires_at > now)
        ]

    def _run(self, run_id: str, *, read: bool = False) -> RunRecord:
        """The caller's run (with ``read``, also another key's run that has public checkpoints)."""
        run = self._core.store.runs.get(run_id)
        core = self._core
        if run is None or not (
            core.readable_run(run) if read else core.visible_session(run.session_id)
        ):
            raise EngineError(404, f"no training run {run_id!r}")
        return run

    def _checkpoint(
        self, run_id: str, checkpoint_id: str, *, read: bool = False
    ) -> tuple[RunRecord, CheckpointRecord]:
        """A live checkpoint: the caller's, or with ``read`` also a public one of another key."""
        run = self._run(run_id, read=read)
        for checkpoint in self._live(run):
            if checkpoint.checkpoint_id == checkpoint_id and (
                not read or self._core.readable(run, checkpoint)
            ):
                return run, checkpoint
        raise EngineError(404, f"no checkpoint {checkpoint_id!r} in training run {run_id!r}")

    def _path(self, tinker_path: str) -> tuple[RunRecord, CheckpointRecord]:
        try:
            parsed = TinkerPath.parse(tinker_path)
        except InvalidInputError as exc:
            raise EngineError(400, str(exc)) from None
        return self._checkpoint(parsed.training_run_id, parsed.checkpoint_id, read=True)

    def training_run(self, run_id: str) -> TrainingRun:
        """One training run with its latest checkpoints."""
        run = self._run(run_id)
        live = self._live(run)
        training = [c for c in live if c.kind == "training"]
        sampler = [c for c in live if c.kind == "sampler"]
        return TrainingRun(
            training_run_id=run.run_id,
            base_model=run.base_model,
            model_owner=run.owner,
            is_lora=run.lora_rank is not None,
            lora_rank=run.lora_rank,
            last_request_time=_when(run.last_request_time),
            last_checkpoint=checkpoint_view(training[-1]) if training else None,
            last_sampler_checkpoint=checkpoint_view(sampler[-1]) if sampler else None,
            user_metadata=run.user_metadata,
        )

    def training_runs(
        self, limit: int, offset: int, project_id: str | None
    ) -> TrainingRunsResponse:
        """Training runs, newest first, with offset pagination."""
        _page(limit, offset)
        visible = self._core.visible_session
        runs = sorted(
            (r for r in self._core.store.runs.values() if visible(r.session_id)),
            key=lambda r: r.created,
            reverse=True,
        )
        if project_id is not None:
            sessions = self._core.store.sessions
            runs = [
                r
                for r in runs
                if getattr(sessions.get(r.session_id), "project_id", None) == project_id
            ]
        window = runs[offset : offset + limit]
        return TrainingRunsResponse(
            training_runs=[self.training_run(r.run_id) for r in window],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(runs)),
        )

    def checkpoints(self, run_id: str) -> CheckpointsListResponse:
        """A run's live checkpoints, oldest first."""
        return CheckpointsListResponse(
            checkpoints=[checkpoint_view(c) for c in self._live(self._run(run_id))]
        )

    def user_checkpoints(self, limit: int, offset: int) -> CheckpointsListResponse:
        """Every live checkpoint, newest first."""
        _page(limit, offset)
        visible = self._core.visible_session
        every = [
            c
            for run in self._core.store.runs.values()
            if visible(run.session_id)
            for c in self._live(run)
        ]
        every.sort(key=lambda c: c.created, reverse=True)
        return CheckpointsListResponse(
            checkpoints=[checkpoint_view(c) for c in every[offset : offset + limit]],
            cursor=Cursor(offset=offset, limit=limit, total_count=len(every)),
        )

    def delete_checkpoint(self, run_id: str, checkpoint_id: str) -> None:
        """Delete a checkpoint and its files."""
        run, checkpoint = self._checkpoint(run_id, checkpoint_id)
        self._remove(run, [checkpoint])
        self._core.usage.audit(
            "checkpoint_delete", tinker_path=checkpoint.tinker_path, model_id=run.run_id
        )

    def remove_expired(self) -> int:
        """Delete the records and files of checkpoints whose ttl passed; return how many.

        Every answer already treats them as gone (404, unlisted); this frees their disk.
        """
        now = self._core.wall_time()
        removed = 0
        for run in list(self._core.store.runs.values()):
            # ephemeral saves go with their sampling sessions (see _ephemeral)
            expired = [
                c
                for c in run.checkpoints
                if not c.ephemeral and c.expires_at is not None and c.expires_at <= now
            ]
            if expired:
                self._remove(run, expired)
                removed += len(expired)
        return removed

    def _remove(self, run: RunRecord, checkpoints: list[CheckpointRecord]) -> None:
        gone = {id(c) for c in checkpoints}
        run.checkpoints = [c for c in run.checkpoints if id(c) not in gone]
        self._core.store.save_run(run)
        for checkpoint in checkpoints:
            shutil.rmtree(self._core.store.checkpoint_dir(checkpoint), ignore_errors=True)
            self._core.usage.storage_ended(checkpoint, run.base_model, run.session_id)

    def set_public(self, run_id: str, checkpoint_id: str, public: bool) -> None:
        """Publish or unpublish; 409 when it already is what was asked."""
        run, checkpoint = self._checkpoint(run_id, checkpoint_id)
        if checkpoint.public == public:
            state = "public" if public else "private"
            raise EngineError(409, f"checkpoint {checkpoint.tinker_path} is already {state}")
        checkpoint.public = public
        self._core.store.save_run(run)
        self._core.usage.audit(
            "checkpoint_publish" if public else "checkpoint_unpublish",
            tinker_path=checkpoint.tinker_path,
            model_id=run.run_id,
        )

    def set_ttl(self, run_id: str, checkpoint_id: str, ttl_seconds: int | None) -> None:
        """Set (or with None remove) a checkpoint's expiry, counted from now."""
        if ttl_seconds is not None and not MIN_TTL_SECONDS <= ttl_seconds <= MAX_TTL_SECONDS:
            raise EngineError(
                400,
                f"ttl_seconds must be between {MIN_TTL_SECONDS} (1 hour) and {MAX_TTL_SECONDS} "
                f"(10 years), got {ttl_seconds}",
            )
        run, checkpoint = self._checkpoint(run_id, checkpoint_id)
        checkpoint.expires_at = (
            None if ttl_seconds is None else self._core.wall_time() + ttl_seconds
        )
        self._core.store.save_run(run)
        self._core.usage.audit(
            "checkpoint_ttl_set",
            tinker_path=checkpoint.tinker_path,
            model_id=run.run_id,
            ttl_seconds=ttl_seconds,
        )

    def external_weights_urls(
        self, run_id: str, checkpoint_id: str, base_url: str
    ) -> ExternalWeightsUrlsResponse:
        """Signed URLs (served by this server under ``base_url``) of an export's files."""
        _, checkpoint = self._checkpoint(run_id, checkpoint_id, read=True)
        if checkpoint.kind != "external":
            raise EngineError(
                400, f"{checkpoint.tinker_path} is not an external_weights checkpoint"
            )
        directory = self._core.store.checkpoint_dir(checkpoint)
        self._core.usage.audit(
            "checkpoint_read",
            tinker_path=checkpoint.tinker_path,
            model_id=run_id,
            purpose="download",
        )
        urls = {}
        expires = _when(self._core.wall_time()) + EXTERNAL_URL_LIFETIME
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                url, expires = self._core.links.sign(base_url, path, EXTERNAL_URL_LIFETIME)
                urls[str(path.relative_to(directory))] = url
        return ExternalWeightsUrlsResponse(urls=urls, expires=expires)

    def weights_info(self, tinker_path: str) -> WeightsInfoResponse:
        """What a checkpoint holds and what it was trained on."""
        run, _ = self._path(tinker_path)
        return WeightsInfoResponse(
            base_model=run.base_model,
            is_lora=run.lora_rank is not None,
            lora_rank=run.lora_rank,
            train_unembed=run.train_unembed,
            train_mlp=run.train_mlp,
            train_attn=run.train_attn,
        )

    def sessions(self, limit: int, offset: int) -> ListSessionsResponse:
        """Session ids, newest first."""
        _page(limit, offset)
        visible = self._core.visible
        ordered = sorted(
            (s for s in self._core.store.sessions.values() if visible(s)),
            key=lambda s: s.created,
            reverse=True,
        )
        return ListSessionsResponse(
            sessions=[s.session_id for s in ordered[offset : offset + limit]]
        )

    def session(self, session_id: str) -> GetSessionResponse:
        """A session's training runs and samplers."""
        record = self._core.store.sessions.get(session_id)
        if record is None or not self._core.visible(record):
            raise EngineError(404, f"unknown session {session_id!r}")
        return GetSessionResponse(
            training_run_ids=list(record.training_run_ids),
            sampler_ids=list(record.sampler_ids),
            user_metadata={str(k): str(v) for k, v in record.user_metadata.items()},
            display_name=record.display_name,
        )
