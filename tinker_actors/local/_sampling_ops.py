"""Sampling operations of the local server: sampling sessions and ``asample``.

Samples are not ordered (each sampling client numbers its own attempts) but they are
deduplicated: a request carrying a (sampling session, seq_id) the server already accepted gets
the original future back, so a client's resubmission after a backpressure 429 or a lost
response is never sampled twice. At most ``sample_capacity`` samples run at once; over that, a
request with ``X-Tinker-Sampling-Backpressure: 1`` is refused with 429 (the client backs off and
resubmits with the same seq_id) and others wait their turn.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._auth import CALLER
from tinker_actors.local._backend import BackendInputError, SampleJob
from tinker_actors.local._core import EngineError, check_not_expired
from tinker_actors.local._ephemeral import EphemeralSamplers
from tinker_actors.local._images import flatten
from tinker_actors.local._limits import check_counter, over_limit
from tinker_actors.local._offload import offload
from tinker_actors.local._prompt_targets import check_targets
from tinker_actors.local._records import SamplerRecord
from tinker_actors.transport.proto import encode_sample_response
from tinker_actors.types import (
    SEQ_IDS_PER_CLONE,
    CreateSamplingSessionResponse,
    GetSamplerResponse,
    JoinSamplingSessionResponse,
    SampleRequest,
    TensorData,
    TinkerPath,
    UntypedAPIFuture,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.local._core import EngineCore
    from tinker_actors.local._limits import ServerLimits
    from tinker_actors.local._records import CheckpointRecord, RunRecord
    from tinker_actors.types import CreateSamplingSessionRequest, SampleResponse

__all__ = ["SamplingCapacityError", "SamplingOps", "sequence_id"]

#: Result cells (tokens and top-k entries) up to which a result is encoded inline.
_INLINE_CELLS = 1 << 15

log = logging.getLogger("tinker_actors.local")


class SamplingCapacityError(EngineError):
    """Every sampling slot is busy and the client asked for backpressure (HTTP 429)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(
            429, f"sampling capacity of {capacity} concurrent samples is in use; retry shortly"
        )


class SamplingOps:
    """The sampling endpoints, over the shared engine core."""

    def __init__(self, core: EngineCore) -> None:
        self._core = core
        self._slots = trio.Semaphore(core.settings.sample_capacity)
        # Counted when a sample is accepted, not when its task first runs: requests that
        # arrive in the same instant must see each other, or all of them pass the
        # backpressure check before any takes a slot.
        self._accepted = 0
        self._waiting: set[str] = set()
        self.ephemeral = EphemeralSamplers(core, core.settings.ephemeral_samplers)

    @property
    def in_flight(self) -> int:
        """Samples running or waiting for a slot."""
        return self._accepted

    def is_waiting(self, request_id: str) -> bool:
        """Whether an accepted sample is still queued for a slot (capacity is in use)."""
        return request_id in self._waiting

    # -- sampling sessions ----------------------------------------------------------------

    def create_sampling_session(
        self, req: CreateSamplingSessionRequest
    ) -> CreateSamplingSessionResponse:
        """Open a sampling session on a base model or on saved sampler weights."""
        core = self._core
        core.session(req.session_id)
        core.touch(req.session_id)
        check_counter("sampling_session_seq_id", req.sampling_session_seq_id)
        sampler_id = f"{req.session_id}:sample:{req.sampling_session_seq_id}"
        existing = core.store.samplers.get(sampler_id)
        if existing is not None:
            # a repeat of the same request gets the same session; other weights under the same
            # number would silently sample the wrong model
            wanted_path = req.model_path if isinstance(req.model_path, str) else None
            same = existing.model_path == wanted_path and (
                wanted_path is not None
                or core.resolve_model(str(req.base_model))[0] == existing.base_model
            )
            if not same:
                raise _seq_in_use(req.sampling_session_seq_id, existing)
            return CreateSamplingSessionResponse(sampling_session_id=sampler_id)
        if isinstance(req.model_path, str):
            checkpoint, base_model = self._sampler_checkpoint(req.model_path)
            self.bind_sampler(req.session_id, req.sampling_session_seq_id, base_model, checkpoint)
        else:
            assert isinstance(req.base_model, str)
            name, _ = core.resolve_model(req.base_model)
            self._register(req.session_id, sampler_id, name, None, None)
        return CreateSamplingSessionResponse(sampling_session_id=sampler_id)

    def bind_sampler(
        self,
        session_id: str,
        sampling_session_seq_id: int,
        base_model: str,
        checkpoint: CheckpointRecord,
    ) -> str:
        """Create (or return) the sampling session over a sampler checkpoint."""
        sampler_id = f"{session_id}:sample:{sampling_session_seq_id}"
        existing = self._core.store.samplers.get(sampler_id)
        if existing is None:
            weights = self._core.store.checkpoint_dir(checkpoint)
            self._register(session_id, sampler_id, base_model, checkpoint.tinker_path, str(weights))
        elif existing.model_path != checkpoint.tinker_path:
            raise _seq_in_use(sampling_session_seq_id, existing)
        return sampler_id

    def bind_ephemeral(
        self, run: RunRecord, sampling_session_seq_id: int, checkpoint: CheckpointRecord
    ) -> str:
        """Open the sampling session over an ephemeral save of ``run``; retire old ones."""
        sampler_id = self.bind_sampler(
            run.session_id, sampling_session_seq_id, run.base_model, checkpoint
        )
        self.ephemeral.use(sampler_id)
        self.ephemeral.retire_beyond_keep(run)
        return sampler_id

    def _register(
        self,
        session_id: str,
        sampler_id: str,
        base_model: str,
        model_path: str | None,
        weights: str | None,
    ) -> None:
        core = self._core
        session = core.store.sessions[session_id]
        record = SamplerRecord(
            sampling_session_id=sampler_id,
            session_id=session_id,
            base_model=base_model,
            created=core.wall_time(),
            model_path=model_path,
            weights=weights,
        )
        core.store.save_sampler(record)
        session.sampler_ids.append(sampler_id)
        session.sampling_counter += 1
        core.store.save_session(session)

    def _sampler_checkpoint(self, model_path: str) -> tuple[CheckpointRecord, str]:
        try:
            parsed = TinkerPath.parse(model_path)
        except InvalidInputError as exc:
            raise EngineError(400, str(exc)) from None
        run = self._core.store.runs.get(parsed.training_run_id)
        if run is not None and not self._core.readable_run(run):
            run = None
        if parsed.checkpoint_type != "sampler":
            raise EngineError(
                400,
                f"{model_path} is a {parsed.checkpoint_type} checkpoint; sampling needs sampler "
                "weights (save them with save_weights_for_sampler)",
            )
        if run is not None:
            for checkpoint in run.checkpoints:
                if (
                    checkpoint.kind == "sampler"
                    and checkpoint.name == parsed.name
                    and not checkpoint.ephemeral
                    and self._core.readable(run, checkpoint)
                ):
                    check_not_expired(checkpoint, self._core.wall_time())
                    self._core.usage.audit(
                        "checkpoint_read",
                        tinker_path=model_path,
                        model_id=run.run_id,
                        purpose="sample",
                    )
                    return checkpoint, run.base_model
        raise EngineError(404, f"no sampler checkpoint {model_path}")

    def join_sampling_session(self, sampling_session_id: str) -> JoinSamplingSessionResponse:
        """Give a cloned sampling client its clone number (original = 0)."""
        record = self.sampler(sampling_session_id)
        record.clone_counter += 1
        self._core.store.save_sampler(record)
        return JoinSamplingSessionResponse(client_counter=record.clone_counter)

    def sampler(self, sampling_session_id: str) -> SamplerRecord:
        """Return a sampling session whose client session is live.

        Raises:
            EngineError: 404 unknown, 410 its session ended.
        """
        record = self._core.store.samplers.get(sampling_session_id)
        if record is None or not self._core.visible_session(record.session_id):
            raise self.ephemeral.unknown(sampling_session_id)
        self._core.session(record.session_id)
        self._core.touch(record.session_id)
        return record

    def get_sampler(self, sampler_id: str) -> GetSamplerResponse:
        """Describe a sampling session (REST)."""
        record = self._core.store.samplers.get(sampler_id)
        if record is None or not self._core.visible_session(record.session_id):
            raise self.ephemeral.unknown(sampler_id, "sampler")
        return GetSamplerResponse(
            sampler_id=sampler_id, base_model=record.base_model, model_path=record.model_path
        )

    # -- asample ----------------------------------------------------------------------------

    def asample(
        self,
        req: SampleRequest,
        *,
        backpressure: bool,
        idempotency_key: str | None,
        progress: Callable[[list[list[int]]], None] | None = None,
    ) -> UntypedAPIFuture:
        """Accept a sample request; its future resolves to a protobuf SampleResponse.
        ``progress``: see :attr:`._backend.SampleJob.progress` (the streamed answers of the
        OpenAI-compatible routes)."""
        core = self._core
        limits = core.settings.limits
        sampler = self._resolve_sampler(req)
        seq_id = req.seq_id if isinstance(req.seq_id, int) else None
        if seq_id is not None:
            check_counter("seq_id", seq_id)
        _check_counts(req, limits)
        keys = []
        if seq_id is not None:
            keys.append(("asample", f"{sampler.sampling_session_id}#{seq_id}"))
        if idempotency_key is not None:
            keys.append(core.caller_key("asample-key", idempotency_key))
        core.counters["received:Sample"] += 1
        for key in keys:
            known = core.dedupe.get(key)
            if known is not None:
                core.counters["deduplicated:Sample"] += 1
                return self._future(known, req.num_samples)
        if backpressure and self._accepted >= core.settings.sample_capacity:
            core.counters["backpressure:Sample"] += 1
            raise SamplingCapacityError(core.settings.sample_capacity)
        if self._accepted >= limits.max_queued_samples:
            core.counters["backpressure:Sample"] += 1
            raise over_limit(
                f"a sample beyond {self._accepted} accepted and unfinished ones",
                "max_queued_samples",
                limits.max_queued_samples,
                status=429,
            )
        weights = None if sampler.weights is None else core.store.data_dir.joinpath(sampler.weights)
        if weights is not None and not weights.is_dir():
            raise EngineError(
                404,
                f"the weights of sampling session {sampler.sampling_session_id!r} "
                f"({sampler.model_path}) are gone: that checkpoint was deleted or its ttl passed; "
                "save sampler weights again and open a sampling client on them",
            )
        spec = core.spec_for(sampler.base_model)
        try:
            # images first: an unset or wrong expected_tokens is told with the right count
            tokens = flatten(req.prompt, "the prompt").ids
        except BackendInputError as exc:
            raise EngineError(400, str(exc)) from None
        _check_length(req, spec.name, spec.context_length, limits)
        if tokens and (min(tokens) < 0 or max(tokens) >= spec.vocab_size):
            raise EngineError(400, f"prompt token ids must be in [0, {spec.vocab_size})")
        target = req.target_prompt_logprobs
        target = target if isinstance(target, TensorData) else None
        if target is not None:
            try:
                check_targets(target, len(tokens), spec.vocab_size, limits.max_logprobs_k)
            except BackendInputError as exc:
                raise EngineError(400, str(exc)) from None
        clone = seq_id // SEQ_IDS_PER_CLONE if seq_id is not None else 0
        record = core.futures.create(
            "Sample", sampler.session_id, completion_target=(sampler.sampling_session_id, clone)
        )
        for key in keys:
            core.remember(key, record.request_id)
        job = SampleJob(
            prompt=req.prompt,
            num_samples=req.num_samples,
            params=req.sampling_params,
            prompt_logprobs=req.prompt_logprobs is True,
            topk_prompt_logprobs=req.topk_prompt_logprobs,
            topk_sample_logprobs=req.topk_sample_logprobs,
            prompt_logprobs_last_n=(
                req.prompt_logprobs_last_n if isinstance(req.prompt_logprobs_last_n, int) else None
            ),
            target_prompt_logprobs=target,
            prompt_alt_tokens_k=req.prompt_alt_tokens_k,
            progress=progress,
            cache_salt=CALLER.get(),
        )
        request_id = record.request_id
        record_stability = req.record_stability_info is True
        scope = trio.CancelScope()
        record.cancel_scope = scope
        # the weights stay on disk until this sample is done, however long it queues
        ephemeral, sampler_id = self.ephemeral, sampler.sampling_session_id

        async def run() -> None:
            try:
                with scope:
                    async with self._slots:
                        self._waiting.discard(request_id)
                        try:
                            response = await core.backend.sample(spec, weights, job)
                        except (BackendInputError, InvalidInputError) as exc:
                            core.futures.fail(request_id, str(exc), "user")
                        except Exception as exc:
                            log.exception("local server: sample %s failed", request_id)
                            core.futures.fail(request_id, f"internal error: {exc!r}", "server")
                        else:
                            if record_stability:
                                self._record(sampler.session_id, request_id, tokens, response)
                            self._bill(sampler, len(tokens), response)
                            core.futures.resolve(
                                request_id, await _encode(response), "application/x-protobuf"
                            )
                        core.counters["applied:Sample"] += 1
            finally:
                self._accepted -= 1
                self._waiting.discard(request_id)
                ephemeral.release(sampler_id)

        self._accepted += 1
        self._waiting.add(request_id)
        ephemeral.acquire(sampler_id)
        core.spawn(run)
        return self._future(request_id, req.num_samples)

    def _record(
        self, session_id: str, request_id: str, prompt: list[int], response: SampleResponse
    ) -> None:
        """Keep each sequence for stable_reinforce under the id the client was given."""
        for i, sequence in enumerate(response.sequences):
            self._core.stability.record(
                session_id,
                sequence_id(request_id, i),
                prompt,
                sequence.tokens_np,
                sequence.logprobs_np,
            )

    def _bill(self, sampler: SamplerRecord, prompt: int, response: SampleResponse) -> None:
        """Note the prompt (prefilled once per request; tokens the backend reused from another
        request's prefill as cached) and the sampled tokens."""
        usage, where = self._core.usage, (sampler.base_model, sampler.session_id)
        hits = min(max(response.prompt_cache_hit_tokens, 0), prompt)
        usage.used("sampling_prefill", prompt - hits, base_model=where[0], session_id=where[1])
        usage.used("sampling_prefill", hits, base_model=where[0], session_id=where[1], cached=True)
        sampled = sum(int(s.tokens_np.size) for s in response.sequences)
        usage.used("sampling_sample", sampled, base_model=where[0], session_id=where[1])
        # the server's own view of the same: how much prefill its prefix reuse saves
        counters = self._core.counters
        counters["sample_prompt_tokens"] += prompt
        counters["sample_prompt_tokens_cached"] += hits
        counters["sampled_tokens"] += sampled

    def _resolve_sampler(self, req: SampleRequest) -> SamplerRecord:
        if isinstance(req.sampling_session_id, str):
            return self.sampler(req.sampling_session_id)
        raise EngineError(
            400,
            "asample needs sampling_session_id (create one with create_sampling_session); the "
            "local server does not support legacy base_model/model_path addressing",
        )

    @staticmethod
    def _future(request_id: str, num_samples: int) -> UntypedAPIFuture:
        return UntypedAPIFuture(
            request_id=request_id,
            sample_sequence_ids=[sequence_id(request_id, i) for i in range(num_samples)],
        )


def sequence_id(request_id: str, index: int) -> str:
    """The ``sequence_id`` of a sample request's ``index``-th sequence (what clients are given)."""
    return f"{request_id}:seq:{index}"


def _seq_in_use(sampling_session_seq_id: int, existing: SamplerRecord) -> EngineError:
    what = existing.model_path or f"base model {existing.base_model}"
    return EngineError(
        409,
        f"sampling_session_seq_id {sampling_session_seq_id} is already used by sampling session "
        f"{existing.sampling_session_id} over {what}; each sampling session needs the next "
        "sampling_session_seq_id",
    )


async def _encode(response: SampleResponse) -> bytes:
    """Encode a sample result: inline when small, in a worker thread when large."""
    cells = 0
    for sequence in response.sequences:
        topk = sequence.topk_logprobs_np
        cells += sequence.tokens_np.size * (1 + (topk.token_ids.shape[-1] if topk else 0))
    if cells > _INLINE_CELLS:
        return await offload(encode_sample_response, response)
    return encode_sample_response(response)


def _check_counts(req: SampleRequest, limits: ServerLimits) -> None:
    """Refuse counts over the limits: samples, top-k widths, stop sequences (400)."""
    if req.num_samples > limits.max_num_samples:
        raise over_limit(
            f"num_samples {req.num_samples}", "max_num_samples", limits.max_num_samples
        )
    for name in ("topk_prompt_logprobs", "topk_sample_logprobs", "prompt_alt_tokens_k"):
        value = getattr(req, name)
        if value > limits.max_logprobs_k:
            raise over_limit(f"{name} {value}", "max_logprobs_k", limits.max_logprobs_k)
    stop = req.sampling_params.stop
    if isinstance(stop, list | tuple) and len(stop) > limits.max_stop_sequences:
        raise over_limit(
            f"{len(stop)} stop sequences", "max_stop_sequences", limits.max_stop_sequences
        )


def _check_length(req: SampleRequest, model: str, context: int, limits: ServerLimits) -> None:
    """Refuse a prompt + max_tokens past the context, or too many tokens to generate (400)."""
    try:
        prompt = req.prompt.length
    except InvalidInputError as exc:
        raise EngineError(400, str(exc)) from None
    max_tokens = req.sampling_params.max_tokens
    if prompt + (max_tokens if isinstance(max_tokens, int) else 0) > context:
        raise EngineError(
            400,
            f"prompt ({prompt} tokens) + max_tokens exceeds the context of {model} "
            f"({context} tokens)",
        )
    # an unset max_tokens may run to the end of the context; each top-k entry costs a token
    each = max_tokens if isinstance(max_tokens, int) else context - prompt
    width = 1 + req.topk_sample_logprobs
    total = req.num_samples * each * width
    if total > limits.max_sample_tokens:
        unset = (
            "" if isinstance(max_tokens, int) else " (max_tokens unset: the rest of the context)"
        )
        topk = f" x {width} (1 + topk_sample_logprobs)" if width > 1 else ""
        raise over_limit(
            f"num_samples {req.num_samples} x {each} tokens{unset}{topk} = {total} tokens "
            "to generate",
            "max_sample_tokens",
            limits.max_sample_tokens,
        )
