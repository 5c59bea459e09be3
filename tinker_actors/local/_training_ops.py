"""Training operations of the local server: create, forward/backward, step, save and load.

Every operation on a model goes through that model's :class:`~._ordering.Sequencer`, so it runs
after all lower ``seq_id``s and exactly once however often it is POSTed. Input that can be
checked without the model is checked before the request is accepted (the client gets a 400 at
once); what only the backend can detect fails the future with category ``user``.
"""

from __future__ import annotations

import hashlib
import logging
from functools import partial
from typing import TYPE_CHECKING, TypeVar

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._age import encrypt_directory, parse_recipients
from tinker_actors.local._backend import (
    BackendInputError,
    check_loss_config,
    input_ids,
    validate_forward_inputs,
)
from tinker_actors.local._checkpoint_saves import checkpoint_name, find_checkpoint, save_checkpoint
from tinker_actors.local._core import EngineError, _Model
from tinker_actors.local._ephemeral import ephemeral_name
from tinker_actors.local._limits import check_counter, check_stored, over_limit
from tinker_actors.local._offload import offload
from tinker_actors.local._ordering import DuplicateSeqIdError, SequencedOp, Sequencer
from tinker_actors.local._records import RunRecord
from tinker_actors.local._refusals import consume_refused, peek_proto_ids
from tinker_actors.local._staging import (
    CheckpointWriteError,
    full_disk_message,
    is_full,
)
from tinker_actors.transport.proto import (
    DecompressionLimitError,
    decode_forward_backward_request,
    encode_forward_backward_output,
)
from tinker_actors.types import (
    AdamParams,
    CreateModelResponse,
    LoadWeightsResponse,
    LoraConfig,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsResponse,
    UntypedAPIFuture,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from pathlib import Path

    from tinker_actors.local._core import EngineCore
    from tinker_actors.local._limits import ServerLimits
    from tinker_actors.local._sampling_ops import SamplingOps
    from tinker_actors.types import (
        CreateModelRequest,
        Datum,
        ForwardBackwardRequest,
        LoadWeightsRequest,
        OptimStepRequest,
        SaveWeightsExternalRequest,
        SaveWeightsForSamplerRequest,
        SaveWeightsRequest,
    )

__all__ = ["TrainingOps"]

_R = TypeVar("_R")

log = logging.getLogger("tinker_actors.local")

#: Bodies up to this size are decoded inline; larger ones (and all zstd ones) in a thread.
_INLINE_BYTES = 256 << 10
_JSON = "application/json"
_PROTO = "application/x-protobuf"


class TrainingOps:
    """The training endpoints, over the shared engine core."""

    def __init__(self, core: EngineCore, sampling: SamplingOps) -> None:
        self._core = core
        self._sampling = sampling

    # -- plumbing ---------------------------------------------------------------------------

    def _submit(
        self,
        model: _Model,
        seq_id: object,
        request_type: str,
        idempotency_key: str | None,
        fingerprint: bytes,
        work: Callable[[], Awaitable[tuple[bytes, str]]],
    ) -> UntypedAPIFuture:
        if not isinstance(seq_id, int):
            raise EngineError(
                400, f"{request_type}: seq_id is required (the model's next operation number)"
            )
        if seq_id < 1 and request_type not in ("CreateModel", "LoadWeights"):
            # 0 is the model's creation; an unset protobuf seq_id also decodes as 0
            raise EngineError(
                400,
                f"{request_type}: seq_id must be >= 1 (seq_id 0 is the model's creation), "
                f"got {seq_id}",
            )
        core = self._core
        lead = core.settings.limits.max_seq_id_lead
        if seq_id > model.sequencer.next_seq_id + lead:
            raise over_limit(
                f"{request_type}: seq_id {seq_id}, {seq_id - model.sequencer.next_seq_id} past "
                f"the model's next expected seq_id {model.sequencer.next_seq_id},",
                "max_seq_id_lead",
                lead,
            )
        record = core.futures.create(request_type, model.record.session_id)
        request_id = record.request_id

        async def run() -> None:
            try:
                payload, content_type = await work()
            except (BackendInputError, EngineError, InvalidInputError) as exc:
                message = exc.message if isinstance(exc, EngineError) else str(exc)
                core.futures.fail(request_id, message, "user")
            except CheckpointWriteError as exc:  # a full disk: the server's, not the request's
                log.warning("local server: %s %s: %s", request_type, request_id, exc)
                core.futures.fail(request_id, str(exc), "server")
            except Exception as exc:
                if is_full(exc):  # e.g. a record that could not be written
                    log.warning("local server: %s %s: %s", request_type, request_id, exc)
                    message = full_disk_message(request_type, exc, advice=True)
                    core.futures.fail(request_id, message, "server")
                else:
                    log.exception("local server: %s %s failed", request_type, request_id)
                    core.futures.fail(request_id, f"internal error: {exc!r}", "server")
            else:
                core.futures.resolve(request_id, payload, content_type)
            core.counters[f"applied:{request_type}"] += 1
            model.record.last_request_time = core.wall_time()

        op = SequencedOp(
            seq_id=seq_id,
            request_id=request_id,
            kind=request_type,
            run=run,
            fail=lambda why: core.futures.fail(request_id, why, "user"),
            fingerprint=fingerprint,
        )
        core.counters[f"received:{request_type}"] += 1
        try:
            accepted_id, is_new = model.sequencer.submit(op, idempotency_key=idempotency_key)
        except DuplicateSeqIdError as exc:
            core.futures.discard(request_id)
            raise EngineError(409, str(exc)) from None
        except RuntimeError as exc:
            core.futures.discard(request_id)
            raise EngineError(410, str(exc)) from None
        if not is_new:
            core.futures.discard(request_id)
            core.counters[f"deduplicated:{request_type}"] += 1
        return UntypedAPIFuture(request_id=accepted_id, model_id=model.record.run_id)

    def _start_model(self, record: RunRecord) -> _Model:
        core = self._core
        sequencer = Sequencer(next_seq_id=0, gap_timeout=core.settings.gap_timeout)
        model = _Model(record=record, spec=core.spec_for(record.base_model), sequencer=sequencer)
        core.models[record.run_id] = model
        core.spawn(sequencer.run)
        session = core.store.sessions[record.session_id]
        if record.run_id not in session.training_run_ids:
            session.training_run_ids.append(record.run_id)
        core.store.save_session(session)
        core.store.save_run(record)
        return model

    def _new_run(
        self, session_id: str, model_seq_id: int, base_model: str, lora: LoraConfig | None
    ) -> tuple[RunRecord, bool]:
        """Return the run for (session, model_seq_id), creating it; ``True`` if new."""
        core = self._core
        session = core.session(session_id)
        core.touch(session_id)
        run_id = f"{session_id}:train:{model_seq_id}"
        if run_id in core.models:
            return core.models[run_id].record, False
        if run_id in core.store.runs:
            # the slot holds a run that is not live here: a copy_weights destination, or a
            # model of this session from before a restart. Never overwrite its record.
            raise EngineError(
                409,
                f"model_seq_id {model_seq_id} of session {session_id} already names training run "
                f"{run_id}; use the session's next model_seq_id",
            )
        session.model_counter = max(session.model_counter, model_seq_id + 1)
        now = core.wall_time()
        record = RunRecord(
            run_id=run_id,
            session_id=session_id,
            base_model=base_model,
            created=now,
            last_request_time=now,
            lora_rank=lora.rank if lora is not None else None,
            train_mlp=lora.train_mlp if lora is not None else True,
            train_attn=lora.train_attn if lora is not None else True,
            train_unembed=lora.train_unembed if lora is not None else True,
        )
        return record, True

    # -- endpoints --------------------------------------------------------------------------

    def create_model(
        self, req: CreateModelRequest, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Create a LoRA training model; its future resolves to CreateModelResponse."""
        name, spec = self._core.resolve_model(req.base_model)
        check_stored(self._core.settings.limits, "create_model", req.user_metadata)
        check_counter("model_seq_id", req.model_seq_id)
        lora = req.lora_config if isinstance(req.lora_config, LoraConfig) else None
        if req.optimizer_config.type != "adamw":
            raise EngineError(
                400, f"the local server trains with adamw only, not {req.optimizer_config.type!r}"
            )
        record, is_new = self._new_run(req.session_id, req.model_seq_id, name, lora)
        if is_new and isinstance(req.user_metadata, dict):
            record.user_metadata = {str(k): str(v) for k, v in req.user_metadata.items()}
        model = self._start_model(record) if is_new else self._core.models[record.run_id]
        backend = self._core.backend

        async def work() -> tuple[bytes, str]:
            await backend.create_model(record.run_id, spec, lora)
            return msgspec.json.encode(CreateModelResponse(model_id=record.run_id)), _JSON

        # the content is the fingerprint: a repeat is deduplicated, a different model under
        # the same model_seq_id is refused (409)
        fingerprint = msgspec.json.encode(req)
        return self._submit(model, 0, "CreateModel", idempotency_key, fingerprint, work)

    async def forward_backward(
        self, body: bytes, content_encoding: str | None, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Run a forward or forward/backward pass; resolves to protobuf ForwardBackwardOutput.

        Decoding and checking a large body is CPU work proportional to its size: it runs in a
        worker thread, so other requests are answered meanwhile. A refusal of a body naming its
        model and seq_id consumes that id (:mod:`~tinker_actors.local._refusals`).
        """
        if not body:
            raise EngineError(
                400, "forward_backward: the body is empty; send a protobuf ForwardBackwardRequest"
            )
        heavy = len(body) > _INLINE_BYTES or (content_encoding or "").strip().lower() == "zstd"
        bounds: list[tuple[int, int] | None] = []
        try:
            req = await self._decode_fwdbwd(body, content_encoding, heavy, bounds)
        except EngineError as exc:
            model_id, seq_id = peek_proto_ids(body, content_encoding)
            consume_refused(self._core, model_id, seq_id, exc.status)
            raise
        try:
            return await self._forward_backward(req, body, heavy, bounds, idempotency_key)
        except EngineError as exc:
            consume_refused(self._core, req.model_id, req.seq_id, exc.status)
            raise

    async def _decode_fwdbwd(
        self,
        body: bytes,
        content_encoding: str | None,
        heavy: bool,
        bounds: list[tuple[int, int] | None],
    ) -> ForwardBackwardRequest:
        limits = self._core.settings.limits
        try:
            return await _maybe_in_thread(
                heavy,
                partial(
                    decode_forward_backward_request,
                    body,
                    content_encoding=content_encoding,
                    token_bounds=bounds,
                    max_decompressed_bytes=limits.max_body_bytes,
                ),
            )
        except DecompressionLimitError as exc:
            raise over_limit(
                "a zstd forward_backward body that decompresses further",
                "max_body_bytes",
                exc.limit,
                status=413,
            ) from None
        except InvalidInputError as exc:
            raise EngineError(400, f"malformed forward_backward request: {exc}") from None

    async def _forward_backward(
        self,
        req: ForwardBackwardRequest,
        body: bytes,
        heavy: bool,
        bounds: list[tuple[int, int] | None],
        idempotency_key: str | None,
    ) -> UntypedAPIFuture:
        limits = self._core.settings.limits
        if not req.model_id:
            raise EngineError(
                400, "forward_backward: the request names no model_id (protobuf field 1)"
            )
        batch = req.forward_backward_input
        _check_batch(batch.data, limits)
        model = self.model_for(req.model_id)
        backend = self._core.backend
        config = batch.loss_fn_config if isinstance(batch.loss_fn_config, dict) else {}
        data = batch.data
        try:
            await _maybe_in_thread(
                heavy,
                partial(
                    validate_forward_inputs,
                    data,
                    batch.loss_fn,
                    vocab_size=model.spec.vocab_size,
                    context_length=model.spec.context_length,
                    token_bounds=bounds,
                    supported=backend.supported_losses,
                ),
            )
            check_loss_config(batch.loss_fn, config)
            if batch.loss_fn == "stable_reinforce":
                data = self._core.stability.annotate(model.record.session_id, data)
        except (BackendInputError, InvalidInputError) as exc:
            raise EngineError(400, str(exc)) from None
        model_id = model.record.run_id
        core = self._core

        async def work() -> tuple[bytes, str]:
            out = await backend.forward_backward(
                model_id, data, batch.loss_fn, config, forward_only=req.forward_only
            )
            core.usage.trained(model.record, sum(d.model_input.length for d in data))
            return encode_forward_backward_output(out), _PROTO

        kind = "Forward" if req.forward_only else "ForwardBackward"
        digest = hashlib.sha256(body).digest()
        return self._submit(model, req.seq_id, kind, idempotency_key, digest, work)

    def optim_step(self, req: OptimStepRequest, idempotency_key: str | None) -> UntypedAPIFuture:
        """Apply accumulated gradients; resolves to OptimStepResponse."""
        model = self.model_for(req.model_id)
        params = req.params
        if not isinstance(params, AdamParams):
            raise EngineError(400, "the local server supports adam_params only")
        backend = self._core.backend

        async def work() -> tuple[bytes, str]:
            metrics = await backend.optim_step(req.model_id, params)
            return msgspec.json.encode({"metrics": metrics, "type": "optim_step"}), _JSON

        return self._submit(
            model, req.seq_id, "OptimStep", idempotency_key, msgspec.json.encode(req), work
        )

    def save_weights(
        self, req: SaveWeightsRequest, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Save resumable state as ``tinker://<run>/weights/<name>``."""
        model = self.model_for(req.model_id)
        name = checkpoint_name(req.path, req.seq_id)
        ttl = req.ttl_seconds if isinstance(req.ttl_seconds, int) else None
        metadata = req.user_metadata if isinstance(req.user_metadata, dict) else None
        check_stored(self._core.settings.limits, "save_weights", metadata)

        async def work() -> tuple[bytes, str]:
            checkpoint = await save_checkpoint(
                self._core, model, "training", name, req.overwrite, ttl, metadata, optimizer=True
            )
            return msgspec.json.encode(SaveWeightsResponse(path=checkpoint.tinker_path)), _JSON

        return self._submit(
            model, req.seq_id, "SaveWeights", idempotency_key, msgspec.json.encode(req), work
        )

    def save_weights_for_sampler(
        self, req: SaveWeightsForSamplerRequest, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Save sampler weights: named (a path) or ephemeral (a new sampling session)."""
        model = self.model_for(req.model_id)
        ttl = req.ttl_seconds if isinstance(req.ttl_seconds, int) else None
        metadata = req.user_metadata if isinstance(req.user_metadata, dict) else None
        check_stored(self._core.settings.limits, "save_weights_for_sampler", metadata)
        ephemeral_seq = req.sampling_session_seq_id
        if isinstance(ephemeral_seq, int):
            check_counter("sampling_session_seq_id", ephemeral_seq)
        if isinstance(req.path, str):
            name = checkpoint_name(req.path, req.seq_id)
        elif isinstance(ephemeral_seq, int):
            name = ephemeral_name(model.record.session_id, ephemeral_seq)
        else:  # the request type refuses this combination; keep the server honest anyway
            raise EngineError(400, "save_weights_for_sampler needs path or sampling_session_seq_id")

        async def work() -> tuple[bytes, str]:
            checkpoint = await save_checkpoint(
                self._core,
                model,
                "sampler",
                name,
                True,
                ttl,
                metadata,
                ephemeral=not isinstance(req.path, str),
            )
            if isinstance(req.path, str):
                result = SaveWeightsForSamplerResponseInternal(path=checkpoint.tinker_path)
            else:
                assert isinstance(ephemeral_seq, int)
                sampler_id = self._sampling.bind_ephemeral(model.record, ephemeral_seq, checkpoint)
                result = SaveWeightsForSamplerResponseInternal(sampling_session_id=sampler_id)
            return msgspec.json.encode(result), _JSON

        return self._submit(
            model,
            req.seq_id,
            "SaveWeightsForSampler",
            idempotency_key,
            msgspec.json.encode(req),
            work,
        )

    def save_weights_external(
        self, req: SaveWeightsExternalRequest, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Export weights as ``tinker://<run>/external_weights/<name>``."""
        model = self.model_for(req.model_id)
        name = checkpoint_name(req.path, req.seq_id)
        ttl = req.ttl_seconds if isinstance(req.ttl_seconds, int) else None
        keys = req.age_encryption_recipients
        try:
            recipients = parse_recipients(keys) if isinstance(keys, list) else None
        except InvalidInputError as exc:
            raise EngineError(400, str(exc)) from None

        async def encrypt(directory: Path) -> int:
            assert recipients is not None
            size: int = await offload(encrypt_directory, directory, recipients)
            return size

        async def work() -> tuple[bytes, str]:
            finish = encrypt if recipients is not None else None
            checkpoint = await save_checkpoint(
                self._core, model, "external", name, True, ttl, None, finish=finish
            )
            result = SaveWeightsExternalResponseInternal(
                path=checkpoint.tinker_path, size_bytes=checkpoint.size_bytes
            )
            return msgspec.json.encode(result), _JSON

        return self._submit(
            model,
            req.seq_id,
            "SaveWeightsExternal",
            idempotency_key,
            msgspec.json.encode(req),
            work,
        )

    def load_weights(
        self, req: LoadWeightsRequest, idempotency_key: str | None
    ) -> UntypedAPIFuture:
        """Load a training checkpoint into an existing model, or create a model from it."""
        core = self._core
        checkpoint, source = find_checkpoint(self._core, req.path, "training")
        if req.optimizer and not checkpoint.has_optimizer:
            raise EngineError(
                400, f"{req.path} holds no optimizer state; load it with optimizer=False"
            )
        if isinstance(req.model_id, str):
            model = self.model_for(req.model_id)
            seq_id: object = req.seq_id
        else:
            assert isinstance(req.session_id, str)
            assert isinstance(req.model_seq_id, int)
            check_stored(core.settings.limits, "load_weights", req.user_metadata)
            check_counter("model_seq_id", req.model_seq_id)
            base = req.base_model if isinstance(req.base_model, str) else source.base_model
            if core.spec_for(base).name != core.spec_for(source.base_model).name:
                raise EngineError(
                    400,
                    f"{req.path} was trained on {source.base_model}; it cannot be loaded on {base}",
                )
            lora = LoraConfig(
                rank=source.lora_rank or 1,
                train_mlp=source.train_mlp,
                train_attn=source.train_attn,
                train_unembed=source.train_unembed,
            )
            record, is_new = self._new_run(
                req.session_id, req.model_seq_id, core.resolve_model(base)[0], lora
            )
            if is_new and isinstance(req.user_metadata, dict):
                record.user_metadata = {str(k): str(v) for k, v in req.user_metadata.items()}
            model = self._start_model(record) if is_new else core.models[record.run_id]
            seq_id = 0
        directory = core.store.checkpoint_dir(checkpoint)
        backend = core.backend
        model_id = model.record.run_id

        core.usage.audit(
            "checkpoint_read", tinker_path=req.path, model_id=source.run_id, purpose="load"
        )

        async def work() -> tuple[bytes, str]:
            await backend.load_state(model_id, directory, optimizer=req.optimizer, spec=model.spec)
            return msgspec.json.encode(LoadWeightsResponse(path=req.path, model_id=model_id)), _JSON

        return self._submit(
            model, seq_id, "LoadWeights", idempotency_key, msgspec.json.encode(req), work
        )

    # -- helpers ----------------------------------------------------------------------------

    def model_for(self, model_id: str) -> _Model:
        """Return a live model (see EngineCore.model)."""
        return self._core.model(model_id)


async def _maybe_in_thread(in_thread: bool, fn: Callable[[], _R]) -> _R:
    """Run ``fn`` in a worker thread when it is heavy, else inline (a thread hop costs more)."""
    if in_thread:
        return await offload(fn)
    return fn()


def _check_batch(data: Sequence[Datum], limits: ServerLimits) -> None:
    """Refuse a forward/forward_backward batch over the datum or token limits (400)."""
    if len(data) > limits.max_datums:
        raise over_limit(f"a batch of {len(data)} datums", "max_datums", limits.max_datums)
    try:
        tokens = sum(datum.model_input.length for datum in data)
    except InvalidInputError as exc:
        # an image without expected_tokens: say which, and the count it needs
        for i, datum in enumerate(data):
            try:
                input_ids(datum.model_input, f"datum {i}")
            except BackendInputError as told:
                raise EngineError(400, str(told)) from None
        raise EngineError(400, str(exc)) from None
    if tokens > limits.max_batch_tokens:
        raise over_limit(
            f"a batch of {tokens} model-input tokens", "max_batch_tokens", limits.max_batch_tokens
        )
