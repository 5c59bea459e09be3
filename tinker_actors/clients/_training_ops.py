"""Build the training operations: each public TrainingClient call as an :class:`Op`.

An :class:`~tinker_actors.clients._training_actor.Op` says how to turn the seq ids the training
actor assigns into request bodies, what the result decodes to, and how chunk results combine.
The builders here check their arguments first (so bad input raises
:class:`~tinker_actors.errors.InvalidInputError` before anything is queued) and capture only
plain values, never the client: an Op is data the actor runs in mailbox order.

The custom-loss op is the one two-pass operation (protocol.md §9.3): a forward pass whose
``follow_up`` runs the user's loss in a worker thread and builds the ``forward_backward`` pass
on the same chunk boundaries, with the ids reserved up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Literal

from tinker_actors.actors import ResultSpec
from tinker_actors.clients._checks import (
    check_checkpoint_name,
    check_load_path,
    check_optimizer_params,
)
from tinker_actors.clients._chunking import (
    DataChunk,
    combine_outputs,
    estimate_datum_bytes,
    plan_chunks,
)
from tinker_actors.clients._training_actor import Body, Op
from tinker_actors.custom_loss import (
    check_custom_loss_data,
    forward_data_for_custom,
    merge_custom_metrics,
    run_custom_loss,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    encode_forward_backward_request,
)
from tinker_actors.types import (
    AdamParams,
    DimuonParams,
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
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

    from tinker_actors.custom_loss import CustomLossFn
    from tinker_actors.transport.proto._request_fast import KnownTokens
    from tinker_actors.types import ClientConfigResponse, Datum, LossFnConfig, LossFnType

__all__ = [
    "PROTOBUF",
    "custom_loss_op",
    "ephemeral_sampler_save_op",
    "fwd_op",
    "load_op",
    "optim_step_op",
    "save_external_op",
    "save_for_sampler_op",
    "save_state_op",
]

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


def _check_name(name: object) -> None:
    check_checkpoint_name(name)


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


def fwd_op(
    model_id: str,
    flags: ClientConfigResponse,
    data: Sequence[Datum],
    loss_fn: LossFnType,
    loss_fn_config: LossFnConfig | None,
    *,
    forward_only: bool,
    chunks: list[DataChunk] | None = None,
    sdk_method: str | None = None,
    known: KnownTokens | None = None,
) -> Op:
    """Build a forward or forward_backward op, split into chunks under the server's limits.

    ``known``: the text chunks' ids the input checks packed (sent as they are, not repacked).
    """
    _check_loss(loss_fn, loss_fn_config)
    if chunks is None:
        chunks = plan_chunks(
            data,
            max_len=flags.fwdbwd_max_chunk_len,
            max_bytes=flags.fwdbwd_max_chunk_bytes_count,
        )
    compress = flags.proto_compress_fwdbwd
    headers = {"Content-Encoding": "zstd"} if compress else None

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
                    known=known,
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
        sdk_method=sdk_method or f"{_CLASS}.{'forward' if forward_only else 'forward_backward'}",
        spec=ResultSpec(kind, decode_proto=decode_forward_backward_output),
        make=make,
        n_ids=len(chunks),
        combine=combine_outputs if len(chunks) > 1 else None,
    )


def custom_loss_op(
    model_id: str,
    flags: ClientConfigResponse,
    data: Sequence[Datum],
    loss_fn: CustomLossFn,
    *,
    known: KnownTokens | None = None,
) -> Op:
    """Build the two-pass custom-loss op (see ``TrainingClient.forward_backward_custom``).

    ``known``: the text chunks' ids the input checks packed. Both passes send them as they
    are, so the second pass sends the ids the first did even if the caller's lists changed in
    between.
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    user_data = list(data)
    forward_data = forward_data_for_custom(user_data)
    check_custom_loss_data(loss_fn, user_data)
    method = f"{_CLASS}.forward_backward_custom"
    op = fwd_op(
        model_id, flags, forward_data, "cross_entropy", None, forward_only=True,
        sdk_method=method, known=known,
    )  # fmt: skip
    sizes = [len(chunk.data) for chunk in plan_chunks(
        forward_data,
        max_len=flags.fwdbwd_max_chunk_len,
        max_bytes=flags.fwdbwd_max_chunk_bytes_count,
    )]  # fmt: skip

    def chunked(pass_data: list[Datum]) -> list[DataChunk]:
        chunks: list[DataChunk] = []
        start = 0
        for size in sizes:  # the forward pass's chunk boundaries (its ids are reserved)
            part = pass_data[start : start + size]
            chunks.append(DataChunk(part, sum(estimate_datum_bytes(d) for d in part)))
            start += size
        return chunks

    async def backward(forward: Any, ids: Sequence[int]) -> tuple[Op, list[Body]]:
        output: ForwardBackwardOutput = forward
        try:
            backward_data, loss_sum, metrics = await run_custom_loss(user_data, output, loss_fn)
        except Exception as exc:
            return _filler(ids, exc)
        second = fwd_op(
            model_id, flags, backward_data, "cross_entropy", None, forward_only=False,
            chunks=chunked(backward_data), sdk_method=method, known=known,
        )  # fmt: skip

        def finish(results: list[Any]) -> ForwardBackwardOutput:
            combined = combine_outputs(results) if len(results) > 1 else results[0]
            return merge_custom_metrics(combined, loss_sum, metrics)

        second.combine = finish
        return second, second.make(ids)

    def _filler(ids: Sequence[int], error: Exception | None = None) -> tuple[Op, list[Body]]:
        """Forward passes on the second pass's ids: no gradient, nothing changes on the server.

        Used when the loss raised after the forward pass (``error``: this call then fails
        alone with it) and when the call was cancelled between its passes (the actor sends
        them). Without them the server would wait for those ids forever and the client could
        not go on (0.38, which takes them only after the loss, poisons its client here all the
        same).
        """
        filler = fwd_op(
            model_id, flags, forward_data, "cross_entropy", None, forward_only=True,
            chunks=chunked(forward_data), sdk_method=method, known=known,
        )  # fmt: skip
        if error is not None:
            failure = error

            def fail(results: list[Any]) -> ForwardBackwardOutput:
                raise failure

            filler.combine = fail
        return filler, filler.make(ids)

    op.follow_up = backward
    op.fill = _filler
    op.label = "ForwardBackward"
    return op


def optim_step_op(model_id: str, adam_params: AdamParams | DimuonParams) -> Op:
    """Build an optim_step op."""
    if not isinstance(adam_params, AdamParams | DimuonParams):
        raise InvalidInputError(
            f"optim_step takes AdamParams (or DimuonParams), got {type(adam_params).__name__}"
        )
    check_optimizer_params(adam_params)
    return Op(
        path="/api/v1/optim_step",
        sdk_method=f"{_CLASS}.optim_step",
        spec=ResultSpec("OptimStep", OptimStepResponse),
        make=lambda ids: [
            Body(json=OptimStepRequest.for_params(model_id, adam_params, seq_id=ids[0]))
        ],
    )


def save_state_op(
    model_id: str,
    name: str,
    ttl_seconds: int | None,
    overwrite: bool,
    user_metadata: dict[str, str] | None,
) -> Op:
    """Build a save_state op (weights and optimizer state, never retried over HTTP)."""
    _check_name(name)
    _check_ttl(ttl_seconds)
    return Op(
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


def load_op(model_id: str, path: str, weights_access_token: str | None, *, optimizer: bool) -> Op:
    """Build a load_state / load_state_with_optimizer op (the path is validated now)."""
    check_load_path(path)
    request = LoadWeightsRequest(  # validates the path now
        model_id=model_id,
        seq_id=0,
        path=path,
        optimizer=optimizer,
        weights_access_token=weights_access_token,
    )
    return Op(
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


def save_for_sampler_op(
    model_id: str, name: str, ttl_seconds: int | None, user_metadata: dict[str, str] | None
) -> Op:
    """Build a named save_weights_for_sampler op; it resolves to the public response."""
    _check_name(name)
    _check_ttl(ttl_seconds)
    return Op(
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


def save_external_op(
    model_id: str,
    name: str,
    ttl_seconds: int | None,
    age_encryption_recipients: list[str] | None,
) -> Op:
    """Build a save_weights_external op; the recipients are validated now."""
    _check_name(name)
    _check_ttl(ttl_seconds)
    recipients = None if age_encryption_recipients is None else list(age_encryption_recipients)
    SaveWeightsExternalRequest(  # validates the recipients now, before anything is queued
        model_id=model_id, path=name, ttl_seconds=ttl_seconds,
        age_encryption_recipients=recipients,
    )  # fmt: skip
    return Op(
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


def ephemeral_sampler_save_op(
    model_id: str, sampling_seq: int, kind: Literal["snapshot", "inflight"]
) -> Op:
    """Build the ephemeral sampler save behind ``save_weights_and_get_sampling_client``."""
    return Op(
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
