"""The local server's less common REST operations: archives, weight copies, projects, traces.

* ``GET .../checkpoints/{segment}/{name}/archive`` builds a ``.tar.gz`` of a checkpoint's files
  once and answers a signed URL the server itself serves (``_local/files/<token>/<name>``, see
  :mod:`._downloads`; the stand-in for a signed storage URL, valid 15 minutes). The
  archive is cached next to the checkpoint directory under a name that carries a digest of the
  checkpoint's content, so a checkpoint saved again under the same name gets a new archive and
  a URL handed out earlier never silently changes meaning.
* ``POST /api/v1/copy_weights`` copies a checkpoint (its files and its record) into a new,
  non-trainable training run: in the given session's ``model_seq_id`` slot, or in a new session
  of ``destination_project_id`` that the server creates to hold it (as the official SDK
  documents) and finishes at once, since no client will ever drive it. The
  ``X-Idempotency-Key`` is stored on the copy's run record, so a retried request returns the
  same copy even after a restart.
* ``PUT /api/v1/sessions/{id}/project`` moves a session (and so its runs) into a project.
* ``GET /api/v1/sessions/{id}/trace_export`` writes a JSON export of the session and its runs
  and samplers under the data directory and answers a signed URL to it (valid an hour). The
  local export is built synchronously, so the answer is always ``ready``.

Session search lives in :mod:`._session_search`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._auth import CALLER
from tinker_actors.local._core import EngineError
from tinker_actors.local._limits import check_counter, check_stored
from tinker_actors.local._offload import offload
from tinker_actors.local._records import (
    CheckpointRecord,
    RunRecord,
    SamplerRecord,
    SessionRecord,
    _atomic_write,
    _file_name,
)
from tinker_actors.local._session_search import search_sessions
from tinker_actors.local._staging import commit, failure, staging_dir
from tinker_actors.types import (
    ArchiveUrlResponse,
    CopyWeightsResponse,
    TinkerPath,
    TraceExportResponse,
)

if TYPE_CHECKING:
    from tinker_actors.local._core import EngineCore
    from tinker_actors.types import CopyWeightsRequest, SessionSearchRequest, SessionSearchResponse

__all__ = ["RestExtraOps", "TraceExport"]

#: how long an archive URL is announced as valid (the 0.25 client's default, protocol.md §3.5)
ARCHIVE_URL_LIFETIME = timedelta(minutes=15)
TRACE_URL_LIFETIME = timedelta(hours=1)
_DIGEST_CHARS = 16


class TraceExport(msgspec.Struct, kw_only=True):
    """What a trace export holds: the session and everything it created."""

    exported_at: datetime
    session: SessionRecord
    training_runs: list[RunRecord]
    samplers: list[SamplerRecord]


def _when(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, tz=UTC)


def _checkpoint_digest(checkpoint: CheckpointRecord, directory: Path) -> str:
    """A digest that changes whenever the checkpoint is saved again or its files change."""
    h = hashlib.sha256()
    h.update(f"{checkpoint.created!r}|{checkpoint.size_bytes}".encode())
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            stat = path.stat()
            h.update(f"|{path.relative_to(directory)}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return h.hexdigest()[:_DIGEST_CHARS]


def _archive_pattern(name: str) -> re.Pattern[str]:
    # checkpoint names never start with '.', so these files cannot collide with checkpoints
    return re.compile(rf"^\.{re.escape(name)}\.[0-9a-f]{{{_DIGEST_CHARS}}}\.tar\.gz$")


def _remove_archives(directory: Path, keep: Path | None = None) -> None:
    """Remove the cached archives of the checkpoint stored in ``directory`` (except ``keep``)."""
    pattern = _archive_pattern(directory.name)
    if not directory.parent.is_dir():
        return
    for path in directory.parent.iterdir():
        if pattern.match(path.name) and path != keep:
            path.unlink(missing_ok=True)


def _build_archive(directory: Path, target: Path) -> None:
    """Write a ``.tar.gz`` of ``directory``'s files (paths relative to it) atomically."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-archive-", dir=target.parent)
    try:
        with open(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy_files(source: Path, target: Path) -> None:
    """Copy a checkpoint directory aside, then move it into place (see ``_staging``)."""
    staging = staging_dir(target)
    try:
        shutil.copytree(source, staging)
        commit(staging, target)
    except Exception as exc:
        raise failure(staging, f"copying {source.name}", exc) from exc


class RestExtraOps:
    """Archive URLs, weight copies, session projects, session search and trace exports."""

    def __init__(self, core: EngineCore) -> None:
        self._core = core
        # copies are few and slow (file copies): one at a time keeps idempotency keys and
        # model_seq_id slots free of races
        self._copy_lock = trio.Lock()

    # -- lookups ----------------------------------------------------------------------------

    def _session(self, session_id: str) -> SessionRecord:
        record = self._core.store.sessions.get(session_id)
        if record is None or not self._core.visible(record):
            raise EngineError(404, f"unknown session {session_id!r}")
        return record

    def _checkpoint(self, run_id: str, checkpoint_id: str) -> CheckpointRecord:
        """A listed (not ephemeral, not expired) checkpoint the caller may read, or 404."""
        core = self._core
        run = core.store.runs.get(run_id)
        if run is None or not core.readable_run(run):
            raise EngineError(404, f"no training run {run_id!r}")
        now = core.wall_time()
        for checkpoint in run.checkpoints:
            if (
                checkpoint.checkpoint_id == checkpoint_id
                and not checkpoint.ephemeral
                and (checkpoint.expires_at is None or checkpoint.expires_at > now)
                and core.readable(run, checkpoint)
            ):
                return checkpoint
        raise EngineError(404, f"no checkpoint {checkpoint_id!r} in training run {run_id!r}")

    # -- archives ---------------------------------------------------------------------------

    async def archive_url(
        self, run_id: str, checkpoint_id: str, base_url: str
    ) -> ArchiveUrlResponse:
        """Build (or reuse) a checkpoint's ``.tar.gz`` and return a signed URL to it.

        Raises:
            EngineError: 404 unknown run or checkpoint, 400 a sampler checkpoint.
        """
        checkpoint = self._checkpoint(run_id, checkpoint_id)
        if checkpoint.kind == "sampler":
            raise EngineError(
                400,
                f"{checkpoint.tinker_path} holds sampler weights, which cannot be downloaded; "
                "download a training checkpoint (weights/...) instead",
            )
        directory = self._core.store.checkpoint_dir(checkpoint)
        if not directory.is_dir():
            raise EngineError(404, f"the files of {checkpoint.tinker_path} are missing")
        digest = await offload(_checkpoint_digest, checkpoint, directory)
        target = directory.with_name(f".{checkpoint.name}.{digest}.tar.gz")
        if not target.is_file():
            await offload(_build_archive, directory, target)
            self._core.counters["archives_built"] += 1
        _remove_archives(directory, keep=target)
        self._core.usage.audit(
            "checkpoint_read",
            tinker_path=checkpoint.tinker_path,
            model_id=run_id,
            purpose="archive",
        )
        url, expires = self._core.links.sign(base_url, target, ARCHIVE_URL_LIFETIME)
        return ArchiveUrlResponse(url=url, expires=expires)

    def forget_archives(self, run_id: str, checkpoint_id: str) -> None:
        """Remove the cached archives of a checkpoint that was deleted."""
        try:
            parsed = TinkerPath.parse(f"tinker://{run_id}/{checkpoint_id}")
        except InvalidInputError:
            return
        store = self._core.store
        probe = CheckpointRecord(
            run_id=run_id, kind=parsed.checkpoint_type, name=parsed.name, created=0.0
        )
        _remove_archives(store.checkpoint_dir(probe))

    # -- copies -----------------------------------------------------------------------------

    async def copy_weights(
        self,
        req: CopyWeightsRequest,
        idempotency_key: str | None,
        header_token: str | None,
    ) -> CopyWeightsResponse:
        """Copy a checkpoint into a new, non-trainable training run.

        Raises:
            EngineError: 400 malformed path, an external checkpoint, a destination that
            contradicts itself or two different access tokens; 404 unknown source or session;
            409 an idempotency key reused for another source, or a model_seq_id in use;
            410 a finished session.
        """
        body_token = req.weights_access_token
        if isinstance(body_token, str) and header_token is not None and body_token != header_token:
            raise EngineError(
                400,
                "weights_access_token differs from the X-Tinker-Weights-Access-Token header; "
                "send the token once",
            )
        # every checkpoint on a local server belongs to its one user, so any token (or none)
        # grants access; it is neither checked nor stored
        async with self._copy_lock:
            if idempotency_key is not None:
                done = self._copy_with_key(idempotency_key, req.source_path)
                if done is not None:
                    self._core.counters["deduplicated:CopyWeights"] += 1
                    return CopyWeightsResponse(tinker_path=done)
            source = self._source(req.source_path)
            session, run_id = self._destination(req)
            return await self._copy(req, source, session, run_id, idempotency_key)

    def _copy_with_key(self, key: str, source_path: str) -> str | None:
        for run in self._core.store.runs.values():
            if run.copy_key != key or run.copied_from is None:
                continue
            if not self._core.visible_session(run.session_id):
                continue  # another key's idempotency keys are not this caller's
            if run.copied_from != source_path:
                raise EngineError(
                    409,
                    f"X-Idempotency-Key {key!r} was used to copy {run.copied_from}, not "
                    f"{source_path}; use a fresh key for a different copy",
                )
            # the same answer as the first time, even if the copy was deleted since
            parsed = TinkerPath.parse(run.copied_from)
            return f"tinker://{run.run_id}/{parsed.segment}/{parsed.name}"
        return None

    def _source(self, source_path: str) -> tuple[RunRecord, CheckpointRecord]:
        try:
            parsed = TinkerPath.parse(source_path)
        except InvalidInputError as exc:
            raise EngineError(400, str(exc)) from None
        if parsed.checkpoint_type == "external":
            raise EngineError(
                400,
                f"{source_path} is an external_weights export; copy_weights copies training "
                "(weights/...) or sampler (sampler_weights/...) checkpoints",
            )
        run = self._core.store.runs.get(parsed.training_run_id)
        checkpoint = self._checkpoint(parsed.training_run_id, parsed.checkpoint_id)
        assert run is not None  # _checkpoint found the run
        return run, checkpoint

    def _destination(self, req: CopyWeightsRequest) -> tuple[SessionRecord, str]:
        """The session that will own the copy (a new one for a project) and the copy's run id."""
        core = self._core
        project = req.destination_project_id
        if isinstance(req.session_id, str) and isinstance(req.model_seq_id, int):
            session = core.session(req.session_id)
            core.touch(session.session_id)
            if isinstance(project, str) and session.project_id != project:
                raise EngineError(
                    400,
                    f"session {req.session_id!r} belongs to project {session.project_id!r}, not "
                    f"destination_project_id {project!r}; the copy joins the session's project, "
                    "so send one of the two",
                )
            check_counter("model_seq_id", req.model_seq_id)
            run_id = f"{session.session_id}:train:{req.model_seq_id}"
            if run_id in core.store.runs or run_id in core.models:
                raise EngineError(
                    409,
                    f"model_seq_id {req.model_seq_id} of session {session.session_id!r} already "
                    "holds a training run; use the next free model_seq_id",
                )
            return session, run_id
        assert isinstance(project, str)  # the request type requires one destination
        if not project.strip():
            raise EngineError(400, "destination_project_id must not be empty")
        check_stored(core.settings.limits, "copy_weights", project, req.source_path)
        now = core.wall_time()
        session = SessionRecord(
            session_id=core.new_id("session"),
            created=now,
            owner=CALLER.get(),
            project_id=project,
            display_name=f"copy of {req.source_path}",
            last_seen=now,
            # no client will ever drive this session: it only holds the copy
            finished="success",
            finish_detail=f"created by copy_weights to hold a copy of {req.source_path}",
        )
        return session, f"{session.session_id}:train:0"

    async def _copy(
        self,
        req: CopyWeightsRequest,
        source: tuple[RunRecord, CheckpointRecord],
        session: SessionRecord,
        run_id: str,
        idempotency_key: str | None,
    ) -> CopyWeightsResponse:
        core = self._core
        store = core.store
        source_run, source_checkpoint = source
        now = core.wall_time()
        ttl = req.ttl_seconds if isinstance(req.ttl_seconds, int) else None
        copy = CheckpointRecord(
            run_id=run_id,
            kind=source_checkpoint.kind,
            name=source_checkpoint.name,
            created=now,
            size_bytes=source_checkpoint.size_bytes,
            # the source's expiry is not inherited (CopyWeightsRequest.ttl_seconds)
            expires_at=now + ttl if ttl is not None else None,
            user_metadata=source_checkpoint.user_metadata,
            has_optimizer=source_checkpoint.has_optimizer,
        )
        run = RunRecord(
            run_id=run_id,
            session_id=session.session_id,
            base_model=source_run.base_model,
            created=now,
            last_request_time=now,
            lora_rank=source_run.lora_rank,
            train_mlp=source_run.train_mlp,
            train_attn=source_run.train_attn,
            train_unembed=source_run.train_unembed,
            user_metadata=source_run.user_metadata,
            optimizer_type=source_run.optimizer_type,
            owner=source_run.owner,
            trainable=False,
            checkpoints=[copy],
            copied_from=source_checkpoint.tinker_path,
            copy_key=idempotency_key,
        )
        # files first, then records: a crash in between leaves unreferenced files, never a
        # record whose files are missing
        await offload(
            _copy_files, store.checkpoint_dir(source_checkpoint), store.checkpoint_dir(copy)
        )
        store.save_run(run)
        session.training_run_ids.append(run_id)
        seq = int(run_id.rsplit(":", 1)[1])
        session.model_counter = max(session.model_counter, seq + 1)
        store.save_session(session)
        core.counters["applied:CopyWeights"] += 1
        core.usage.used("checkpoint", 1, base_model=run.base_model, session_id=run.session_id)
        core.usage.audit(
            "checkpoint_create",
            tinker_path=copy.tinker_path,
            model_id=run_id,
            checkpoint_type=copy.kind,
            size_bytes=copy.size_bytes,
            copied_from=source_checkpoint.tinker_path,
        )
        return CopyWeightsResponse(tinker_path=copy.tinker_path)

    # -- sessions ---------------------------------------------------------------------------

    def set_session_project(self, session_id: str, project_id: str) -> None:
        """Move a session (with its training runs and samplers) into a project.

        Raises:
            EngineError: 400 an empty project id, 404 unknown session.
        """
        if not project_id.strip():
            raise EngineError(
                400, "project_id must name a project; sessions cannot be moved out of a project"
            )
        check_stored(self._core.settings.limits, "set_session_project", project_id)
        record = self._session(session_id)
        record.project_id = project_id
        self._core.store.save_session(record)
        self._core.usage.audit("project_session_set", session_id=session_id, project_id=project_id)

    def search_sessions(self, req: SessionSearchRequest) -> SessionSearchResponse:
        """One page of sessions matching ``req``, newest first (see :mod:`._session_search`)."""
        return search_sessions(
            self._core.store, req, self._core.wall_time(), visible=self._core.visible
        )

    def trace_export(self, session_id: str, base_url: str) -> TraceExportResponse:
        """Write a JSON export of a session, its runs and its samplers; return a signed URL.

        Raises:
            EngineError: 404 unknown session.
        """
        store = self._core.store
        record = self._session(session_id)
        export = TraceExport(
            exported_at=_when(self._core.wall_time()),
            session=record,
            training_runs=[store.runs[r] for r in record.training_run_ids if r in store.runs],
            samplers=[store.samplers[s] for s in record.sampler_ids if s in store.samplers],
        )
        path = store.data_dir / "trace_exports" / f"{_file_name(session_id)}.json"
        _atomic_write(path, export)
        url, _ = self._core.links.sign(base_url, path, TRACE_URL_LIFETIME)
        return TraceExportResponse(status="ready", url=url)
