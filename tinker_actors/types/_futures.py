"""The futures protocol's bodies, and the two-stage decode of a ``retrieve_future`` answer.

Submitting a long operation returns an :class:`UntypedAPIFuture`; the client then polls
``POST /api/v1/retrieve_future`` (:class:`FutureRetrieveRequest`) until the answer is final.
A JSON answer is one of four things, recognised in this order (protocol §6.2):

1. ``{"type": "try_again", ...}``: not ready yet (:class:`TryAgainResponse`); poll again;
2. ``{"status": "complete_metadata", ...}``: ready but large (:class:`CompleteMetadataResponse`);
   poll again with ``allow_metadata_only=false``;
3. any object with an ``"error"`` key: the request failed (:class:`RequestFailedResponse`);
4. anything else: the result, of the type the future was created expecting.

The wire has no single discriminator for these, so :func:`decode_future_answer` first peeks at
just those three keys (without materialising the rest of the body) and only then decodes the
whole body into the one type that applies::

    >>> decode_future_answer(b'{"type":"try_again","request_id":"r","queue_state":"active"}',
    ...                      OptimStepResponse)
    TryAgainResponse(request_id='r', queue_state='active', queue_state_reason=None)

``/api/v1/retrieve_futures`` (batched completion polling for sampling) reports
:data:`FutureCompletion` values, a tagged union on ``state``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct
from tinker_actors.types._forward_backward import ForwardBackwardOutput
from tinker_actors.types._training import CreateModelResponse, OptimStepResponse
from tinker_actors.types._weights import (
    LoadWeightsResponse,
    SaveWeightsExternalResponse,
    SaveWeightsForSamplerResponse,
    SaveWeightsResponse,
    UnloadModelResponse,
)

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "CancelFutureRequest",
    "CompleteMetadataResponse",
    "FutureAnswer",
    "FutureCompletion",
    "FutureFailed",
    "FutureFinished",
    "FutureRetrieveRequest",
    "FutureRetrieveResponse",
    "FuturesRetrieveRequest",
    "FuturesRetrieveResponse",
    "QueueState",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "RequestID",
    "SamplingSessionFuturesTarget",
    "TryAgainResponse",
    "UntypedAPIFuture",
    "decode_future_answer",
]

T = TypeVar("T")

RequestID: TypeAlias = str
"""The id of a submitted request, which its future is polled by."""


class QueueState(enum.StrEnum):
    """Why a pending request is waiting. Values the client does not know map to UNKNOWN."""

    ACTIVE = "active"
    """Queued or running normally."""
    PAUSED_CAPACITY = "paused_capacity"
    """Held back: the service is short on capacity."""
    PAUSED_RATE_LIMIT = "paused_rate_limit"
    """Held back: a concurrency limit of the caller was hit."""
    UNKNOWN = "unknown"
    """A state this client does not know."""


class RequestErrorCategory(enum.StrEnum):
    """Who caused a failed request. Values the client does not know map to UNKNOWN."""

    UNKNOWN = "unknown"
    SERVER = "server"
    USER = "user"
    """The caller's input caused the failure."""
    # 0.38's member names, as aliases of the same members.
    Unknown = "unknown"
    Server = "server"
    User = "user"


class UntypedAPIFuture(ResponseStruct, kw_only=True, frozen=True):
    """The immediate answer to a submission: a handle to poll for the result."""

    request_id: str
    """The id to pass to ``retrieve_future``."""
    model_id: str | None = None
    """The model the request belongs to, for training operations."""
    sample_sequence_ids: list[str] | None = None
    """Sampling only: one id per requested sample, in the order of the result's sequences."""


class FutureRetrieveRequest(RequestStruct, kw_only=True, frozen=True):
    """Poll one future (``POST /api/v1/retrieve_future``)."""

    request_id: str
    allow_metadata_only: bool = False
    """Let the server answer a large result with its size only (first poll of every future)."""


class TryAgainResponse(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="try_again"
):
    """The result is not ready; poll again at once (the server long-polls)."""

    request_id: str
    """The pending request."""
    queue_state: str
    """Why it waits: ``active``, ``paused_capacity`` or ``paused_rate_limit``; see :attr:`state`."""
    queue_state_reason: str | None = None
    """Human-readable explanation of a paused state."""

    @property
    def state(self) -> QueueState:
        """``queue_state`` as a :class:`QueueState`; unknown strings become ``UNKNOWN``."""
        try:
            return QueueState(self.queue_state)
        except ValueError:
            return QueueState.UNKNOWN


class CompleteMetadataResponse(
    ResponseStruct, kw_only=True, frozen=True, tag_field="status", tag="complete_metadata"
):
    """The result is ready but large; fetch it with ``allow_metadata_only=false``."""

    response_payload_size: int
    """Uncompressed size of the result payload, in bytes (reserve this much before fetching)."""


class RequestFailedResponse(ResponseStruct, kw_only=True, frozen=True):
    """The request failed on the server; the client raises ``RequestFailedError``."""

    error: str
    """What went wrong."""
    category: str = RequestErrorCategory.UNKNOWN
    """``unknown``, ``server`` or ``user``; see :attr:`error_category`."""

    @property
    def error_category(self) -> RequestErrorCategory:
        """``category`` as a :class:`RequestErrorCategory`; unknown strings become ``UNKNOWN``."""
        try:
            return RequestErrorCategory(self.category)
        except ValueError:
            return RequestErrorCategory.UNKNOWN


class CancelFutureRequest(RequestStruct, kw_only=True, frozen=True):
    """Ask the server to stop an abandoned request (``POST /api/v1/cancel_future``)."""

    request_id: str


# -- batched completion polling (0.38) -----------------------------------------------------------


class SamplingSessionFuturesTarget(
    RequestStruct, kw_only=True, frozen=True, tag_field="type", tag="sampling_session"
):
    """Poll the completions of one (possibly cloned) sampling session."""

    sampling_session_id: str
    cloned_sampler_id: int = 0
    """``seq_id // 1_000_000_000`` for cloned sampling clients; 0 for the original."""


class FuturesRetrieveRequest(RequestStruct, kw_only=True, frozen=True):
    """Long-poll a sampling session's completions (``POST /api/v1/retrieve_futures``)."""

    target: SamplingSessionFuturesTarget
    prev_cursor: int = 0
    """The previous response's ``cursor``: events at or before it are acknowledged."""
    timeout: float | UnsetType | None = UNSET
    """Seconds the server may hold the poll; unset = server default, 0 = answer at once."""
    retrieved_request_ids: list[str] = msgspec.field(default_factory=list)
    """Requests whose results were fully fetched, so the server may delete their payloads."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.timeout, int | float) and self.timeout < 0:
            raise InvalidInputError(f"timeout must be >= 0 seconds, got {self.timeout}")


class FutureFinished(ResponseStruct, kw_only=True, frozen=True, tag_field="state", tag="finished"):
    """A request finished; fetch its result with ``retrieve_future``."""

    request_id: str
    response_payload_uncompressed_size: int | None = None
    """Uncompressed result size in bytes, so the client can reserve its budget up front."""


class FutureFailed(ResponseStruct, kw_only=True, frozen=True, tag_field="state", tag="failed"):
    """A request failed; ``retrieve_future`` returns the error."""

    request_id: str


FutureCompletion: TypeAlias = FutureFinished | FutureFailed
"""A completion reported by ``retrieve_futures``, tagged on ``state``."""


class FuturesRetrieveResponse(ResponseStruct, kw_only=True, frozen=True):
    """Completions after the request's ``prev_cursor``."""

    completions: list[FutureCompletion]
    cursor: int
    """Opaque; pass back as the next ``prev_cursor``."""


# -- two-stage decode of a retrieve_future answer ------------------------------------------------


class _Envelope(msgspec.Struct):
    """Just the keys that classify an answer; the other fields are skipped unparsed."""

    type: msgspec.Raw | UnsetType = UNSET
    status: msgspec.Raw | UnsetType = UNSET
    error: msgspec.Raw | UnsetType = UNSET


_ENVELOPE_DECODER: Final = msgspec.json.Decoder(_Envelope)
_TRY_AGAIN: Final = b'"try_again"'
_COMPLETE_METADATA: Final = b'"complete_metadata"'
_DECODERS: dict[tuple[Any, Any], msgspec.json.Decoder[Any]] = {}


def _decoder(
    result_type: type[T], dec_hook: Callable[[type, Any], Any] | None
) -> msgspec.json.Decoder[T]:
    key = (result_type, dec_hook)
    decoder = _DECODERS.get(key)
    if decoder is None:
        decoder = msgspec.json.Decoder(result_type, dec_hook=dec_hook)
        _DECODERS[key] = decoder
    return decoder


FutureAnswer: TypeAlias = TryAgainResponse | CompleteMetadataResponse | RequestFailedResponse
"""The non-result answers of ``retrieve_future``."""

FutureRetrieveResponse: TypeAlias = (
    TryAgainResponse
    | ForwardBackwardOutput
    | OptimStepResponse
    | SaveWeightsResponse
    | LoadWeightsResponse
    | SaveWeightsForSamplerResponse
    | SaveWeightsExternalResponse
    | CreateModelResponse
    | UnloadModelResponse
    | RequestFailedResponse
)
"""What ``retrieve_future`` may answer for a training operation (0.38's union, for annotations;
:func:`decode_future_answer` decodes an answer into the type the future expects)."""


def decode_future_answer(
    body: bytes,
    result_type: type[T],
    *,
    dec_hook: Callable[[type, Any], Any] | None = None,
) -> FutureAnswer | T:
    """Classify a JSON ``retrieve_future`` answer and decode it (protocol §6.2).

    Args:
        body: the JSON response body.
        result_type: what the future expects on success, e.g. ``OptimStepResponse``.
        dec_hook: msgspec decode hook for custom types inside ``result_type`` (e.g. TensorData).

    Returns:
        A :class:`TryAgainResponse`, :class:`CompleteMetadataResponse` or
        :class:`RequestFailedResponse`, or else the body decoded as ``result_type``.

    Raises:
        msgspec.DecodeError: ``body`` is not a JSON object.
        msgspec.ValidationError: the body does not match the type it was classified as.
    """
    envelope = _ENVELOPE_DECODER.decode(body)
    if isinstance(envelope.type, msgspec.Raw) and bytes(envelope.type) == _TRY_AGAIN:
        return _decoder(TryAgainResponse, None).decode(body)
    if isinstance(envelope.status, msgspec.Raw) and bytes(envelope.status) == _COMPLETE_METADATA:
        return _decoder(CompleteMetadataResponse, None).decode(body)
    if envelope.error is not UNSET:
        return _decoder(RequestFailedResponse, None).decode(body)
    return _decoder(result_type, dec_hook).decode(body)
