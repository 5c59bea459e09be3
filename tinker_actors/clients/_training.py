"""TrainingClient: one model, one actor, one mailbox: requests reach the server in order.

Every training operation on a model carries a ``seq_id`` and the server runs them in that
order (protocol.md §8.4). The client keeps that order the actor way: the TrainingClient facade
puts each call into its actor's FIFO mailbox; the actor takes them one at a time, assigns the
next ids (one per chunk), POSTs them, hands the server's future to the poller and answers the
caller with an :class:`APIFuture`. So::

    fb = await training.forward_backward(batch, "cross_entropy")  # 1st await: accepted in order
    opt = await training.optim_step(AdamParams(learning_rate=1e-4))
    print((await fb.result()).metrics)                            # 2nd await: done

Ids are taken when the actor reaches the call, in mailbox order, which is the order of the
calls; a call whose caller gave up before the actor reached it takes no id and sends nothing.
The first operation after model creation is ``seq_id 1`` (the creation is 0).

A forward/forward_backward batch larger than the server's chunk limits is split (protocol §9.1):
chunks are POSTed concurrently with the first chunk sent last, so the server sees the whole
batch queued, and their results are merged (§9.2).

If a submission fails after its retries (or is interrupted) the server may be left waiting for
an id that will never come, and every later request would wait behind it. The actor therefore
refuses that request and every queued or later one with :class:`TrainingOrderBrokenError`,
naming the failed request, instead of letting them hang or run out of order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal, final

from tinker_actors.actors import ResultSpec, holder_retries
from tinker_actors.clients._chunking import (
    DataChunk,
    combine_outputs,
    estimate_datum_bytes,
    plan_chunks,
)
from tinker_actors.clients._reporting import reported
from tinker_actors.clients._sampling import SamplingClient
from tinker_actors.clients._training_actor import (
    Body,
    Op,
    Submit,
    TrainingActor,
    TrainingOrderBrokenError,
)
from tinker_actors.custom_loss import (
    forward_data_for_custom,
    merge_custom_metrics,
    run_custom_loss,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.tokenizer import get_tokenizer
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    Datum,
    DimuonParams,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
    GetInfoRequest,
    GetInfoResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    OptimStepRequest,
    OptimStepResponse,
    SaveWeightsExternalRequest,
    SaveWeightsExternalResponse,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.actors import SessionHandle
    from tinker_actors.backoff import RetryConfig
    from tinker_actors.clients._future import APIFuture
    from tinker_actors.clients._service import ClientContext
    from tinker_actors.custom_loss import CustomLossFn
    from tinker_actors.supervisors import ActorRef
    from tinker_actors.tokenizer import Tokenizer
    from tinker_actors.types import LossFnConfig, LossFnType

__all__ = ["TrainingClient", "TrainingOrderBrokenError", "start_training_client"]

PROTOBUF: Final = "application/x-protobuf"
_CLASS: Final = "TrainingClient"
_LOSSES: Final = frozenset(
    {
        "cross_entropy",
        "importance_sampling",
        "ppo",
        "cispo",
        "dro",
        "gspo",
        "stable_reinforce",
        "custom",
    }
)


def _check_loss(loss_fn: object, loss_fn_config: object) -> None:
    if loss_fn not in _LOSSES:
        raise InvalidInputError(
            f"loss_fn must be one of {', '.join(sorted(_LOSSES))}, got {loss_fn!r}"
        )
    if loss_fn_config is not None and not isinstance(loss_fn_config, dict):
        raise InvalidInputError(f"loss_fn_config must be a dict or None, got {loss_fn_config!r}")


def _check_ttl(ttl_seconds: object) -> None:
    if ttl_seconds is not None and (
        isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
    ):
        raise InvalidInputError(f"ttl_seconds must be a positive int or None, got {ttl_seconds!r}")


def _public_sampler_response(
    internal: SaveWeightsForSamplerResponseInternal,
) -> SaveWeightsForSamplerResponse:
    if internal.path is None:
        raise InvalidInputError("the server returned no path for a named sampler save")
    return SaveWeightsForSamplerResponse(path=internal.path)


def _public_external_response(
    internal: SaveWeightsExternalResponseInternal,
) -> SaveWeightsExternalResponse:
    if internal.path is None:
        raise InvalidInputError("the server returned no path for an external weights export")
    return SaveWeightsExternalResponse(path=internal.path)


@final
class TrainingClient:
    """Trains one model; every operation is submitted in call order (see the module doc)."""

    __slots__ = ("_actor_id", "_ctx", "_handle", "_info", "_model_id", "_ref")

    def __init__(
        self,
        ctx: ClientContext,
        handle: SessionHandle,
        actor_id: str,
        ref: ActorRef[Submit],
        model_id: str,
        info: GetInfoResponse,
    ) -> None:
        self._ctx = ctx
        self._handle = handle
        self._actor_id = actor_id
        self._ref = ref
        self._model_id = model_id
        self._info = info

    def __repr__(self) -> str:
        return f"<TrainingClient {self._model_id}>"

    @property
    def model_id(self) -> str:
        """The model (and training run) id."""
        return self._model_id

    def get_info(self) -> GetInfoResponse:
        """Return the model's info, fetched once when the client was created."""
        return self._info

    def get_tokenizer(self) -> Tokenizer:
        """Return the model's tokenizer, loaded offline (see :mod:`tinker_actors.tokenizer`).

        Raises:
            InvalidInputError: the server reported no model name.
        """
        data = self._info.model_data
        name = data.model_name or self._info.model_name
        if not name:
            raise InvalidInputError(f"the server reported no model name for {self._model_id}")
        return get_tokenizer(name, data.tokenizer_id)

    async def _submit(self, op: Op) -> APIFuture[Any]:
        return await self._ref.call(lambda reply: Submit(op, reply))

    def _fwd_op(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None,
        *,
        forward_only: bool,
        chunks: list[DataChunk] | None = None,
        sdk_method: str | None = None,
    ) -> Op:
        _check_loss(loss_fn, loss_fn_config)
        flags = self._handle.client_config
        if chunks is None:
            chunks = plan_chunks(
                data,
                max_len=flags.fwdbwd_max_chunk_len,
                max_bytes=flags.fwdbwd_max_chunk_bytes_count,
            )
        compress = flags.proto_compress_fwdbwd
        headers = {"Content-Encoding": "zstd"} if compress else None
        model_id = self._model_id

        def make(ids: Sequence[int]) -> list[Body]:
            return [
                Body(
                    content=encode_forward_backward_request(
                        ForwardBackwardRequest(
                            forward_backward_input=ForwardBackwardInput(
                                data=chunk.data, loss_fn=loss_fn, loss_fn_config=loss_fn_config
                            ),
                            model_id=model_id,
                            seq_id=seq_id,
                            forward_only=forward_only,
                        ),
                        compress=compress,
                    ),
                    content_type=PROTOBUF,
                    headers=headers,
                    nbytes=chunk.nbytes,
                )
                for seq_id, chunk in zip(ids, chunks, strict=True)
            ]

        kind = "Forward" if forward_only else "ForwardBackward"
        return Op(
            path="/api/v1/forward_backward",
            sdk_method=sdk_method
            or f"{_CLASS}.{'forward' if forward_only else 'forward_backward'}",
            spec=ResultSpec(kind, decode_proto=decode_forward_backward_output),
            make=make,
            n_ids=len(chunks),
            combine=combine_outputs if len(chunks) > 1 else None,
        )

    @reported
    async def forward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Run a forward pass (no gradients); return once accepted in order.

        Raises:
            InvalidInputError: empty data, unknown loss, or data that cannot be encoded.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self._submit(self._fwd_op(data, loss_fn, loss_fn_config, forward_only=True))

    @reported
    async def forward_backward(
        self,
        data: Sequence[Datum],
        loss_fn: LossFnType,
        loss_fn_config: LossFnConfig | None = None,
    ) -> APIFuture[ForwardBackwardOutput]:
        """Compute the loss and accumulate gradients; return once accepted in order.

        Raises:
            InvalidInputError: empty data, unknown loss, or data that cannot be encoded.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        return await self._submit(self._fwd_op(data, loss_fn, loss_fn_config, forward_only=False))

    @reported
    async def forward_backward_custom(
        self, data: Sequence[Datum], loss_fn: CustomLossFn
    ) -> APIFuture[ForwardBackwardOutput]:
        """Train on a loss computed client-side from the model's logprobs (protocol.md §9.3).

        ``loss_fn(data, logprobs_list) -> (loss, metrics)`` gets one logprobs tensor per datum
        (torch, requiring grad) and returns a scalar tensor and a dict of numbers. The call
        reserves two ids per chunk in call order: a ``forward`` (cross_entropy) now, then,
        once its logprobs are back and the loss ran in a worker thread, a ``forward_backward``
        with ``weights = -dloss/dlogprobs`` on the same chunks. Later calls of this client are
        submitted only after that second pass. The result is the second pass's output with
        ``loss:sum`` the custom loss, ``surrogate_loss:sum`` the server's, and the user's
        metrics.

        If the forward pass, the loss or the second submission fails (or the future is
        cancelled) in between, the second pass's ids are lost and the client refuses later
        requests with :class:`TrainingOrderBrokenError`.

        Raises:
            InvalidInputError: empty data or a datum without ``target_tokens``.
            TypeError: ``loss_fn`` is not callable, or an item is not a Datum.
            TrainingOrderBrokenError: an earlier request of this client failed to submit.
        """
        if not callable(loss_fn):
            raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
        user_data = list(data)
        forward_data = forward_data_for_custom(user_data)
        method = f"{_CLASS}.forward_backward_custom"
        op = self._fwd_op(forward_data, "cross_entropy", None, forward_only=True, sdk_method=method)
        flags = self._handle.client_config
        sizes = [len(chunk.data) for chunk in plan_chunks(
            forward_data,
            max_len=flags.fwdbwd_max_chunk_len,
            max_bytes=flags.fwdbwd_max_chunk_bytes_count,
        )]  # fmt: skip

        async def backward(forward: Any, ids: Sequence[int]) -> tuple[Op, list[Body]]:
            output: ForwardBackwardOutput = forward
            backward_data, loss_sum, metrics = await run_custom_loss(user_data, output, loss_fn)
            chunks: list[DataChunk] = []
            start = 0
            for size in sizes:  # the forward pass's chunk boundaries (its ids are reserved)
                part = backward_data[start : start + size]
                chunks.append(DataChunk(part, sum(estimate_datum_bytes(d) for d in part)))
                start += size
            second = self._fwd_op(
                backward_data, "cross_entropy", None, forward_only=False, chunks=chunks,
                sdk_method=method,
            )  # fmt: skip

            def finish(results: list[Any]) -> ForwardBackwardOutput:
                combined = combine_outputs(results) if len(results) > 1 else results[0]
                return merge_custom_metrics(combined, loss_sum, metrics)

            second.combine = finish
            return second, second.make(ids)

        op.follow_up = backward
        op.label = "ForwardBackward"
        return await self._submit(op)

    @reported
    async def optim_step(
        self, adam_params: AdamParams | DimuonParams
    ) -> APIFuture[OptimStepResponse]:
        """Apply the accumulated gradients; return once accepted in order."""
        if not isinstance(adam_params, AdamParams | DimuonParams):
            raise InvalidInputError(
                f"optim_step takes AdamParams (or DimuonParams), got {type(adam_params).__name__}"
            )
        model_id = self._model_id
        return await self._submit(
            Op(
                path="/api/v1/optim_step",
                sdk_method=f"{_CLASS}.optim_step",
                spec=ResultSpec("OptimStep", OptimStepResponse),
                make=lambda ids: [
                    Body(json=OptimStepRequest.for_params(model_id, adam_params, seq_id=ids[0]))
                ],
            )
        )

    @reported
    async def save_state(
        self,
        name: str,
        ttl_seconds: int | None = None,
        overwrite: bool = False,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsResponse]:
        """Save weights and optimizer state as ``tinker://<model>/weights/<name>``."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        _check_ttl(ttl_seconds)
        model_id = self._model_id
        return await self._submit(
            Op(
                path="/api/v1/save_weights",
                sdk_method=f"{_CLASS}.save_state",
                spec=ResultSpec("SaveWeights", SaveWeightsResponse),
                http_retries=0,
                make=lambda ids: [
                    Body(
                        json=SaveWeightsRequest(
                            model_id=model_id,
                            path=name,
                            seq_id=ids[0],
                            ttl_seconds=ttl_seconds,
                            overwrite=overwrite,
                            user_metadata=user_metadata,
                        )
                    )
                ],
            )
        )

    async def _load(
        self, path: str, weights_access_token: str | None, *, optimizer: bool
    ) -> APIFuture[LoadWeightsResponse]:
        model_id = self._model_id
        request = LoadWeightsRequest(  # validates the path now
            model_id=model_id,
            seq_id=0,
            path=path,
            optimizer=optimizer,
            weights_access_token=weights_access_token,
        )
        return await self._submit(
            Op(
                path="/api/v1/load_weights",
                sdk_method=f"{_CLASS}.load_state" + ("_with_optimizer" if optimizer else ""),
                spec=ResultSpec("LoadWeights", LoadWeightsResponse),
                make=lambda ids: [
                    Body(
                        json=LoadWeightsRequest(
                            model_id=model_id,
                            seq_id=ids[0],
                            path=request.path,
                            optimizer=optimizer,
                            weights_access_token=weights_access_token,
                        )
                    )
                ],
            )
        )

    @reported
    async def load_state(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights into this model (the optimizer state is not restored)."""
        return await self._load(path, weights_access_token, optimizer=False)

    @reported
    async def load_state_with_optimizer(
        self, path: str, weights_access_token: str | None = None
    ) -> APIFuture[LoadWeightsResponse]:
        """Load saved weights and optimizer state into this model."""
        return await self._load(path, weights_access_token, optimizer=True)

    @reported
    async def save_weights_for_sampler(
        self,
        name: str,
        ttl_seconds: int | None = None,
        user_metadata: dict[str, str] | None = None,
    ) -> APIFuture[SaveWeightsForSamplerResponse]:
        """Save sampler weights as ``tinker://<model>/sampler_weights/<name>``."""
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        _check_ttl(ttl_seconds)
        model_id = self._model_id
        return await self._submit(
            Op(
                path="/api/v1/save_weights_for_sampler",
                sdk_method=f"{_CLASS}.save_weights_for_sampler",
                spec=ResultSpec("SaveWeightsForSampler", SaveWeightsForSamplerResponseInternal),
                http_retries=0,
                combine=lambda results: _public_sampler_response(results[0]),
                make=lambda ids: [
                    Body(
                        json=SaveWeightsForSamplerRequest(
                            model_id=model_id,
                            path=name,
                            seq_id=ids[0],
                            ttl_seconds=ttl_seconds,
                            user_metadata=user_metadata,
                        )
                    )
                ],
            )
        )

    @reported
    async def save_weights_external(
        self,
        name: str,
        ttl_seconds: int | None = None,
        age_encryption_recipients: list[str] | None = None,
    ) -> APIFuture[SaveWeightsExternalResponse]:
        """Export downloadable weights as ``tinker://<model>/external_weights/<name>``.

        Args:
            name: the export's name.
            ttl_seconds: its lifetime (None: kept until deleted).
            age_encryption_recipients: up to 10 age or SSH public keys to encrypt the files to.

        Raises:
            InvalidInputError: an empty name, a bad ttl, or bad recipients.
        """
        if not isinstance(name, str) or not name:
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        _check_ttl(ttl_seconds)
        model_id = self._model_id
        recipients = None if age_encryption_recipients is None else list(age_encryption_recipients)
        SaveWeightsExternalRequest(  # validates the recipients now, before anything is queued
            model_id=model_id, path=name, ttl_seconds=ttl_seconds,
            age_encryption_recipients=recipients,
        )  # fmt: skip
        return await self._submit(
            Op(
                path="/api/v1/save_weights_external",
                sdk_method=f"{_CLASS}.save_weights_external",
                spec=ResultSpec("SaveWeightsExternal", SaveWeightsExternalResponseInternal),
                http_retries=0,
                combine=lambda results: _public_external_response(results[0]),
                make=lambda ids: [
                    Body(
                        json=SaveWeightsExternalRequest(
                            model_id=model_id,
                            path=name,
                            seq_id=ids[0],
                            ttl_seconds=ttl_seconds,
                            age_encryption_recipients=recipients,
                        )
                    )
                ],
            )
        )

    @reported
    async def save_weights_and_get_sampling_client(
        self,
        name: str | None = None,
        retry_config: RetryConfig | None = None,
        kind: Literal["snapshot", "inflight"] = "snapshot",
    ) -> SamplingClient:
        """Save ephemeral sampler weights and return a SamplingClient on them.

        ``name`` is ignored (as in the official client: the weights are ephemeral).
        """
        del name
        model_id = self._model_id
        handle, sampling_seq = await self._ctx.reserve("sampling")
        future: APIFuture[SaveWeightsForSamplerResponseInternal] = await self._submit(
            Op(
                path="/api/v1/save_weights_for_sampler",
                sdk_method=f"{_CLASS}.save_weights_and_get_sampling_client",
                spec=ResultSpec("SaveWeightsForSampler", SaveWeightsForSamplerResponseInternal),
                http_retries=0,
                make=lambda ids: [
                    Body(
                        json=SaveWeightsForSamplerRequest(
                            model_id=model_id,
                            sampling_session_seq_id=sampling_seq,
                            seq_id=ids[0],
                            kind=kind,
                        )
                    )
                ],
            )
        )
        saved = await future.result()
        if saved.sampling_session_id is None:
            raise InvalidInputError(
                "the server answered an ephemeral sampler save without a sampling_session_id"
            )
        base_model = self._info.model_data.model_name or self._info.model_name or ""
        return SamplingClient(
            self._ctx, handle, saved.sampling_session_id, base_model, retry_config=retry_config
        )

    async def close(self) -> None:
        """Stop this client's actor; submitted operations still finish in the poller."""
        await self._ctx.stop_actor(self._actor_id)


async def start_training_client(
    ctx: ClientContext, handle: SessionHandle, model_id: str, *, sdk_method: str
) -> TrainingClient:
    """Fetch the model's info once, start its actor, and return the facade."""
    response = await holder_retries(
        lambda: ctx.transport.request(
            "POST", "/api/v1/get_info", json=GetInfoRequest(model_id=model_id),
            sdk_method=sdk_method,
        ),
        what="get_info",
    )  # fmt: skip
    info = response.decode(GetInfoResponse)
    actor_id, ref = await ctx.start_actor("training", lambda: TrainingActor(ctx, handle, model_id))
    return TrainingClient(ctx, handle, actor_id, ref, model_id, info)
