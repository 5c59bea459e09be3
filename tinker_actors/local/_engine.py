"""The local server's protocol engine: everything the HTTP app does, minus HTTP.

``async with open_engine(settings, backend) as engine`` starts the engine's background work
(per-model sequencers, running samples, the session-expiry sweeper) in a nursery that lives
exactly as long as the ``async with``. The HTTP app (:mod:`._app`) decodes requests, calls
the engine and encodes what it returns; :class:`~._core.EngineError` becomes an HTTP status.

The future protocol's answers (protocol.md §6.2) are built here: a pending future is held for
``long_poll_seconds`` and then answered ``try_again``; a large result answers a first poll
with ``complete_metadata``; a failure answers a RequestFailedResponse; an expired promise 410.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import trio

from tinker_actors.local._auth import CALLER
from tinker_actors.local._catalogue import CATALOGUE
from tinker_actors.local._core import EngineCore, EngineError, ServerSettings
from tinker_actors.local._futures import UnknownFutureError
from tinker_actors.local._limits import check_stored
from tinker_actors.local._records import RecordStore, SessionRecord
from tinker_actors.local._rest_extra import RestExtraOps
from tinker_actors.local._rest_ops import RestOps
from tinker_actors.local._sampling_ops import SamplingOps
from tinker_actors.local._training_ops import TrainingOps
from tinker_actors.types import (
    CompleteMetadataResponse,
    CreateSessionResponse,
    FutureFailed,
    FutureFinished,
    FuturesRetrieveResponse,
    GetInfoResponse,
    GetServerCapabilitiesResponse,
    ModelData,
    RequestFailedResponse,
    SupportedModel,
    TryAgainResponse,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tinker_actors.local._backend import Backend
    from tinker_actors.types import (
        CreateSessionRequest,
        FinishSessionRequest,
        FuturesRetrieveRequest,
    )

__all__ = ["FutureAnswer", "LocalEngine", "open_engine"]

_SWEEP_INTERVAL = 5.0


@dataclass(frozen=True)
class FutureAnswer:
    """What to send back for one retrieve_future poll."""

    status: int
    body: bytes
    content_type: str = "application/json"


class LocalEngine:
    """The protocol engine; obtained from :func:`open_engine`."""

    def __init__(self, core: EngineCore) -> None:
        self.core = core
        self.sampling = SamplingOps(core)
        self.training = TrainingOps(core, self.sampling)
        self.rest = RestOps(core)
        self.rest_extra = RestExtraOps(core)

    @property
    def settings(self) -> ServerSettings:
        """The settings in force."""
        return self.core.settings

    # -- service --------------------------------------------------------------------------

    def capabilities(self) -> GetServerCapabilitiesResponse:
        """List the catalogue's models, then each alias (with its model's limits)."""
        names = [(spec.name, spec) for spec in CATALOGUE.values()]
        names += [
            (alias, CATALOGUE[target]) for alias, target in self.settings.model_aliases.items()
        ]
        return GetServerCapabilitiesResponse(
            supported_models=[
                SupportedModel(
                    model_name=name,
                    max_context_length=spec.context_length,
                    trainable=True,
                    sampleable=True,
                )
                for name, spec in names
            ]
        )

    # -- sessions -------------------------------------------------------------------------

    def create_session(
        self, req: CreateSessionRequest, idempotency_key: str | None
    ) -> CreateSessionResponse:
        """Open a session (an idempotency key already seen returns the same session)."""
        core = self.core
        key = (
            core.caller_key("create_session", idempotency_key)
            if idempotency_key is not None
            else None
        )
        if key is not None and key in core.dedupe:
            return CreateSessionResponse(session_id=core.dedupe[key])
        metadata = req.user_metadata if isinstance(req.user_metadata, dict) else {}
        check_stored(
            core.settings.limits,
            "create_session",
            req.tags,
            metadata,
            req.project_id,
            req.display_name,
            req.sdk_version,
        )
        session_id = core.new_id("session")
        record = SessionRecord(
            session_id=session_id,
            created=core.wall_time(),
            tags=list(req.tags),
            user_metadata=dict(metadata),
            project_id=req.project_id if isinstance(req.project_id, str) else None,
            display_name=req.display_name if isinstance(req.display_name, str) else None,
            sdk_version=req.sdk_version,
            owner=CALLER.get(),
            last_seen=core.wall_time(),
        )
        core.store.save_session(record)
        core.touch(session_id)
        if key is not None:
            core.remember(key, session_id)
        core.counters["applied:CreateSession"] += 1
        return CreateSessionResponse(
            session_id=session_id, info_message="connected to a local tinker_actors server"
        )

    def heartbeat(self, session_id: str) -> None:
        """Keep a session alive (410 once it finished or expired)."""
        self.core.session(session_id)
        self.core.touch(session_id)
        self.core.counters["heartbeats"] += 1

    async def finish_session(self, session_id: str, req: FinishSessionRequest) -> None:
        """Finish a session; the first reason wins and later finishes are no-ops."""
        record = self.core.store.sessions.get(session_id)
        if record is None or not self.core.visible(record):
            raise EngineError(404, f"unknown session {session_id!r}")
        if record.finished is None:
            reason = type(req.reason).__struct_config__.tag
            await self._end_session(record, str(reason), req.detail)

    async def _end_session(self, record: SessionRecord, reason: str, detail: str | None) -> None:
        core = self.core
        record.finished = reason
        record.finish_detail = detail
        core.store.save_session(record)
        core.heartbeats.pop(record.session_id, None)
        for run_id in record.training_run_ids:
            model = core.models.pop(run_id, None)
            if model is not None:
                model.sequencer.close(f"session {record.session_id} ended ({reason})")
                core.ended_models[run_id] = model.sequencer.stats
                await core.backend.drop_model(run_id)
        core.counters[f"sessions:{reason}"] += 1

    async def sweep_sessions(self) -> None:
        """Expire sessions without a heartbeat for ``session_timeout`` seconds, forget results
        older than ``result_ttl`` and delete checkpoints whose ttl passed (forever)."""
        while True:
            await trio.sleep(_SWEEP_INTERVAL)
            self.core.prune()
            expired = self.rest.remove_expired()
            if expired:
                self.core.counters["checkpoints_expired"] += expired
            deadline = trio.current_time() - self.settings.session_timeout
            for session_id, seen in list(self.core.heartbeats.items()):
                record = self.core.store.sessions.get(session_id)
                if seen < deadline and record is not None and record.finished is None:
                    await self._end_session(record, "expired", "no heartbeat")

    # -- models ---------------------------------------------------------------------------

    async def get_info(self, model_id: str) -> GetInfoResponse:
        """Describe a training model, including an offline-loadable tokenizer directory."""
        model = self.core.model(model_id)
        tokenizer = await self.core.tokenizer_dir(model.spec)
        record = model.record
        return GetInfoResponse(
            model_data=ModelData(
                arch=model.spec.arch,
                model_name=record.base_model,
                tokenizer_id=str(tokenizer) if tokenizer is not None else None,
                vocab_size=model.spec.vocab_size,
                max_context_length=model.spec.context_length,
            ),
            model_id=model_id,
            is_lora=record.lora_rank is not None,
            lora_rank=record.lora_rank,
            model_name=record.base_model,
        )

    # -- futures --------------------------------------------------------------------------

    async def retrieve_future(
        self, request_id: str, *, allow_metadata_only: bool, accepts_protobuf: bool
    ) -> FutureAnswer:
        """Answer one long-poll of a future (protocol.md §6.2)."""
        core = self.core
        core.counters["polls"] += 1
        session_id = request_id.rpartition(":req:")[0]
        if not core.visible_session(session_id):
            return _json(404, {"detail": f"unknown request_id {request_id!r}"})
        try:
            record = await core.futures.wait(request_id, hold=self.settings.long_poll_seconds)
        except UnknownFutureError as exc:
            if core.futures.was_issued(request_id):
                detail = f"the result of {request_id} expired (result_ttl) or was delivered"
                return _json(410, {"detail": detail})
            return _json(404, {"detail": str(exc)})
        core.touch(record.session_id)
        if record.state == "pending":
            queue_state = (
                "paused_capacity"
                if record.request_type == "Sample" and self.sampling.is_waiting(request_id)
                else "active"
            )
            body = TryAgainResponse(request_id=request_id, queue_state=queue_state)
            return FutureAnswer(200, msgspec.json.encode(body))
        if record.state == "expired":
            return _json(410, {"detail": f"the result of {request_id} expired or was delivered"})
        if record.state in ("failed", "cancelled"):
            failed = RequestFailedResponse(error=record.error or "failed", category=record.category)
            return FutureAnswer(200, msgspec.json.encode(failed))
        if allow_metadata_only and record.payload_size > self.settings.metadata_threshold:
            meta = CompleteMetadataResponse(response_payload_size=record.payload_size)
            return FutureAnswer(200, msgspec.json.encode(meta))
        assert record.payload is not None
        if record.content_type == "application/x-protobuf" and not accepts_protobuf:
            return _json(
                406,
                {
                    "detail": f"{record.request_type} results are protobuf; send "
                    "Accept: application/x-protobuf"
                },
            )
        core.counters["results_delivered"] += 1
        return FutureAnswer(200, record.payload, record.content_type)

    async def retrieve_futures(self, req: FuturesRetrieveRequest) -> FuturesRetrieveResponse:
        """Answer a batched completion poll (protocol.md §6.4).

        A finished session still takes acknowledgements (``timeout`` 0, as a client's last poll
        on shutdown sends them after the finish) so the server can drop what was delivered;
        waiting for new completions needs a live session.
        """
        record = self.core.store.samplers.get(req.target.sampling_session_id)
        ack_only = req.timeout == 0
        if ack_only and record is not None and self.core.visible_session(record.session_id):
            sampler = record
        else:
            sampler = self.sampling.sampler(req.target.sampling_session_id)
        hold = (
            req.timeout if isinstance(req.timeout, int | float) else self.settings.long_poll_seconds
        )
        events, cursor = await self.core.futures.completions(
            (sampler.sampling_session_id, req.target.cloned_sampler_id),
            prev_cursor=req.prev_cursor,
            hold=min(float(hold), self.settings.long_poll_seconds),
            # only this session's results: another key's ids must not drop its payloads
            retrieved=[
                request_id
                for request_id in req.retrieved_request_ids
                if request_id.rpartition(":req:")[0] == sampler.session_id
            ],
        )
        completions: list[FutureFinished | FutureFailed] = [
            FutureFinished(
                request_id=e.request_id, response_payload_uncompressed_size=e.payload_size
            )
            if e.state == "finished"
            else FutureFailed(request_id=e.request_id)
            for e in events
        ]
        return FuturesRetrieveResponse(completions=completions, cursor=cursor)

    def cancel_future(self, request_id: str) -> None:
        """Cancel a pending sample and stop its work.

        Unknown ids and settled futures are ignored. So are training operations: they sit in
        their model's seq_id order and run regardless, so reporting them cancelled would hide
        a state change that happens anyway (protocol.md §6.5 cancels abandoned samples only).
        """
        try:
            record = self.core.futures.get(request_id)
        except UnknownFutureError:
            return
        if not self.core.visible_session(record.session_id):
            return  # another key's future: as unknown as one never issued
        if record.request_type != "Sample":
            self.core.counters["cancel_ignored"] += 1
            return
        if self.core.futures.cancel(request_id):
            self.core.counters["cancelled"] += 1

    # -- introspection --------------------------------------------------------------------

    def counters(self) -> dict[str, object]:
        """Everything received, applied, deduplicated and failed, plus per-model order."""
        every = dict(self.core.ended_models)
        every.update((model_id, m.sequencer.stats) for model_id, m in self.core.models.items())
        models = {
            model_id: {
                "live": model_id in self.core.models,
                "received": stats.received,
                "applied": stats.applied,
                "deduplicated": stats.deduplicated,
                "failed": stats.failed,
                "refused": stats.refused,
                "applied_seq_ids": list(stats.applied_seq_ids),
                "applied_kinds": list(stats.applied_kinds),
            }
            for model_id, stats in every.items()
        }
        return {"totals": dict(self.core.counters), "models": models}


def _json(status: int, obj: object) -> FutureAnswer:
    return FutureAnswer(status, msgspec.json.encode(obj))


@asynccontextmanager
async def open_engine(settings: ServerSettings, backend: Backend) -> AsyncIterator[LocalEngine]:
    """Start the engine; everything it started stops when the block exits."""
    temp: Path | None = None
    data_dir = settings.data_dir
    if data_dir is None:
        temp = data_dir = Path(tempfile.mkdtemp(prefix="tinker-actors-server-"))
    try:
        store = RecordStore(data_dir)
        async with trio.open_nursery() as nursery:
            engine = LocalEngine(EngineCore(settings, backend, store, nursery))
            # sessions that survived a restart expire unless their client comes back
            for record in store.sessions.values():
                if record.finished is None:
                    engine.core.touch(record.session_id)
            nursery.start_soon(engine.sweep_sessions)
            try:
                yield engine
            finally:
                nursery.cancel_scope.cancel()
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
