"""Wire types of the Tinker API as msgspec Structs, grouped by domain in private modules.

Requests send their defaults and omit unset fields; responses ignore unknown fields; tagged
unions appear exactly where the wire has a discriminator. The conventions are explained in
:mod:`tinker_actors.types._model_input` and applied by :mod:`tinker_actors.types._base`.
Structs that can hold a :class:`TensorData` need :func:`json_enc_hook` / :func:`json_dec_hook`
on their msgspec encoder/decoder.

Every public name of ``tinker.types`` 0.38 is here, with the same fields, defaults and (for its
dataclasses) positional order, and the helpers real code uses behave alike
(``tests/interop/test_types_surface.py`` and ``test_types_behaviour.py`` check both against the
official package). Deliberate differences:

* values 0.38 changes silently or lets through to a server that refuses them are refused where
  they are built, naming the value: token ids that are bools, fractions, NaN, strings or
  outside int32; fractional, NaN or out-of-range tensor values for an int64 tensor; finite
  values beyond float32; NaN/inf, strings and out-of-range optimizer and sampling parameters;
* well-known ``loss_fn_inputs`` keys get their wire dtype from arrays and tensors too (float
  token ids become int64, integer weights float32), not only from lists;
* unknown keyword arguments raise (0.38's response-style models ignore them);
* ``TensorData`` and ``Datum`` compare by value (0.38's TensorData by identity), and TensorData
  is not hashable;
* ``ModelInput.append_int`` extends a trailing text chunk instead of adding a one-token chunk;
* Datum and the other dataclasses of 0.38 are msgspec Structs that the ``dataclasses`` module
  still takes for dataclasses (``replace``, ``fields``, ``asdict``: tinker-cookbook's RL loop
  calls ``dataclasses.replace`` on Datum and on provenance spans; see ``_dataclass.py``);
* the types that are pydantic models in 0.38 are not pydantic models, but have the pydantic
  methods code calls on them (``model_dump``, ``model_dump_json``, ``model_validate``,
  ``model_validate_json``, ``model_copy``, ``model_fields``; see ``_pydantic.py`` for the
  approximations). An unset optional field reads ``None``, as in 0.38, while held as
  ``msgspec.UNSET`` (which keeps it off the wire).
"""

from __future__ import annotations

from tinker_actors.types._admin import AuditLogEntry as AuditLogEntry
from tinker_actors.types._admin import AuditLogResponse as AuditLogResponse
from tinker_actors.types._admin import BillingEventInfo as BillingEventInfo
from tinker_actors.types._admin import BillingUsageEvent as BillingUsageEvent
from tinker_actors.types._admin import BillingUsageResponse as BillingUsageResponse
from tinker_actors.types._admin import BillingUsageSession as BillingUsageSession
from tinker_actors.types._admin import CheckpointBillingEvent as CheckpointBillingEvent
from tinker_actors.types._admin import (
    CurrentCheckpointStorageUsageItem as CurrentCheckpointStorageUsageItem,
)
from tinker_actors.types._admin import (
    CurrentCheckpointStorageUsageResponse as CurrentCheckpointStorageUsageResponse,
)
from tinker_actors.types._admin import GetBillingUsageRequest as GetBillingUsageRequest
from tinker_actors.types._admin import (
    GetCurrentCheckpointStorageUsageRequest as GetCurrentCheckpointStorageUsageRequest,
)
from tinker_actors.types._admin import SamplingPrefillBillingEvent as SamplingPrefillBillingEvent
from tinker_actors.types._admin import SamplingSampleBillingEvent as SamplingSampleBillingEvent
from tinker_actors.types._admin import StorageBillingEvent as StorageBillingEvent
from tinker_actors.types._admin import TrainingBillingEvent as TrainingBillingEvent
from tinker_actors.types._admin import WhoamiResponse as WhoamiResponse
from tinker_actors.types._auth import AuthTokenRequest as AuthTokenRequest
from tinker_actors.types._auth import AuthTokenResponse as AuthTokenResponse
from tinker_actors.types._base import RequestStruct as RequestStruct
from tinker_actors.types._base import ResponseStruct as ResponseStruct
from tinker_actors.types._checkpoints import ArchiveUrlResponse as ArchiveUrlResponse
from tinker_actors.types._checkpoints import Checkpoint as Checkpoint
from tinker_actors.types._checkpoints import CheckpointsListResponse as CheckpointsListResponse
from tinker_actors.types._checkpoints import CheckpointType as CheckpointType
from tinker_actors.types._checkpoints import Cursor as Cursor
from tinker_actors.types._checkpoints import (
    ExternalWeightsUrlsResponse as ExternalWeightsUrlsResponse,
)
from tinker_actors.types._checkpoints import (
    ParsedCheckpointTinkerPath as ParsedCheckpointTinkerPath,
)
from tinker_actors.types._checkpoints import SetCheckpointTtlRequest as SetCheckpointTtlRequest
from tinker_actors.types._checkpoints import TinkerPath as TinkerPath
from tinker_actors.types._checkpoints import TrainingRun as TrainingRun
from tinker_actors.types._checkpoints import TrainingRunsResponse as TrainingRunsResponse
from tinker_actors.types._custom_loss import CreateCustomLossRequest as CreateCustomLossRequest
from tinker_actors.types._custom_loss import CreateCustomLossResponse as CreateCustomLossResponse
from tinker_actors.types._custom_loss import CustomLossGraph as CustomLossGraph
from tinker_actors.types._custom_loss import CustomLossInput as CustomLossInput
from tinker_actors.types._custom_loss import CustomLossInputRank as CustomLossInputRank
from tinker_actors.types._custom_loss import CustomLossNode as CustomLossNode
from tinker_actors.types._custom_loss import CustomLossNodeOp as CustomLossNodeOp
from tinker_actors.types._datum import Datum as Datum
from tinker_actors.types._datum import LossFnConfig as LossFnConfig
from tinker_actors.types._datum import LossFnInputs as LossFnInputs
from tinker_actors.types._datum import LossFnType as LossFnType
from tinker_actors.types._datum import PromptProvenanceSpan as PromptProvenanceSpan
from tinker_actors.types._datum import ProvenanceSpan as ProvenanceSpan
from tinker_actors.types._datum import ProvenanceSpans as ProvenanceSpans
from tinker_actors.types._datum import SampledProvenanceSpan as SampledProvenanceSpan
from tinker_actors.types._forward_backward import ForwardBackwardInput as ForwardBackwardInput
from tinker_actors.types._forward_backward import ForwardBackwardOutput as ForwardBackwardOutput
from tinker_actors.types._forward_backward import ForwardBackwardRequest as ForwardBackwardRequest
from tinker_actors.types._forward_backward import ForwardRequest as ForwardRequest
from tinker_actors.types._forward_backward import LossFnOutput as LossFnOutput
from tinker_actors.types._futures import CancelFutureRequest as CancelFutureRequest
from tinker_actors.types._futures import CompleteMetadataResponse as CompleteMetadataResponse
from tinker_actors.types._futures import FutureAnswer as FutureAnswer
from tinker_actors.types._futures import FutureCompletion as FutureCompletion
from tinker_actors.types._futures import FutureFailed as FutureFailed
from tinker_actors.types._futures import FutureFinished as FutureFinished
from tinker_actors.types._futures import FutureRetrieveRequest as FutureRetrieveRequest
from tinker_actors.types._futures import FutureRetrieveResponse as FutureRetrieveResponse
from tinker_actors.types._futures import FuturesRetrieveRequest as FuturesRetrieveRequest
from tinker_actors.types._futures import FuturesRetrieveResponse as FuturesRetrieveResponse
from tinker_actors.types._futures import QueueState as QueueState
from tinker_actors.types._futures import RequestErrorCategory as RequestErrorCategory
from tinker_actors.types._futures import RequestFailedResponse as RequestFailedResponse
from tinker_actors.types._futures import RequestID as RequestID
from tinker_actors.types._futures import (
    SamplingSessionFuturesTarget as SamplingSessionFuturesTarget,
)
from tinker_actors.types._futures import TryAgainResponse as TryAgainResponse
from tinker_actors.types._futures import UntypedAPIFuture as UntypedAPIFuture
from tinker_actors.types._futures import decode_future_answer as decode_future_answer
from tinker_actors.types._model_input import DmelChunk as DmelChunk
from tinker_actors.types._model_input import EncodedTextChunk as EncodedTextChunk
from tinker_actors.types._model_input import ImageAssetPointerChunk as ImageAssetPointerChunk
from tinker_actors.types._model_input import ImageChunk as ImageChunk
from tinker_actors.types._model_input import ImageFormat as ImageFormat
from tinker_actors.types._model_input import ModelInput as ModelInput
from tinker_actors.types._model_input import ModelInputChunk as ModelInputChunk
from tinker_actors.types._model_input import none_to_unset as none_to_unset
from tinker_actors.types._model_input import tensor_container_shape as tensor_container_shape
from tinker_actors.types._optimizer import AdamOptimizerConfig as AdamOptimizerConfig
from tinker_actors.types._optimizer import AdamParams as AdamParams
from tinker_actors.types._optimizer import DimuonOptimizerConfig as DimuonOptimizerConfig
from tinker_actors.types._optimizer import DimuonParams as DimuonParams
from tinker_actors.types._optimizer import OptimizerConfig as OptimizerConfig
from tinker_actors.types._optimizer import OptimizerParams as OptimizerParams
from tinker_actors.types._optimizer import OptimParams as OptimParams
from tinker_actors.types._pydantic import ModelMethods as ModelMethods
from tinker_actors.types._sample_result import TOPK_MASK_LOGPROB as TOPK_MASK_LOGPROB
from tinker_actors.types._sample_result import PromptAltTokens as PromptAltTokens
from tinker_actors.types._sample_result import SampledSequence as SampledSequence
from tinker_actors.types._sample_result import SampleResponse as SampleResponse
from tinker_actors.types._sample_result import StopReason as StopReason
from tinker_actors.types._sample_result import TopkLogprobs as TopkLogprobs
from tinker_actors.types._sampling import SEQ_IDS_PER_CLONE as SEQ_IDS_PER_CLONE
from tinker_actors.types._sampling import SampleRequest as SampleRequest
from tinker_actors.types._sampling import SamplingParams as SamplingParams
from tinker_actors.types._service import ClientConfigRequest as ClientConfigRequest
from tinker_actors.types._service import ClientConfigResponse as ClientConfigResponse
from tinker_actors.types._service import ClientDynamicConfigRequest as ClientDynamicConfigRequest
from tinker_actors.types._service import ClientDynamicConfigResponse as ClientDynamicConfigResponse
from tinker_actors.types._service import (
    GetServerCapabilitiesResponse as GetServerCapabilitiesResponse,
)
from tinker_actors.types._service import HealthResponse as HealthResponse
from tinker_actors.types._service import SupportedModel as SupportedModel
from tinker_actors.types._session import AccessibleSearchOwner as AccessibleSearchOwner
from tinker_actors.types._session import ActiveSessionStatusQuery as ActiveSessionStatusQuery
from tinker_actors.types._session import CancelledSessionStatusQuery as CancelledSessionStatusQuery
from tinker_actors.types._session import (
    ClientFinishedSessionStatusQuery as ClientFinishedSessionStatusQuery,
)
from tinker_actors.types._session import ClientSessionFinished as ClientSessionFinished
from tinker_actors.types._session import ClientSessionFinishErrored as ClientSessionFinishErrored
from tinker_actors.types._session import (
    ClientSessionFinishInterrupted as ClientSessionFinishInterrupted,
)
from tinker_actors.types._session import ClientSessionFinishReason as ClientSessionFinishReason
from tinker_actors.types._session import (
    ClientSessionFinishReasonType as ClientSessionFinishReasonType,
)
from tinker_actors.types._session import ClientSessionFinishSuccess as ClientSessionFinishSuccess
from tinker_actors.types._session import (
    CreateSamplingSessionRequest as CreateSamplingSessionRequest,
)
from tinker_actors.types._session import (
    CreateSamplingSessionResponse as CreateSamplingSessionResponse,
)
from tinker_actors.types._session import CreateSessionRequest as CreateSessionRequest
from tinker_actors.types._session import CreateSessionResponse as CreateSessionResponse
from tinker_actors.types._session import FailedSessionStatusQuery as FailedSessionStatusQuery
from tinker_actors.types._session import FinishSessionRequest as FinishSessionRequest
from tinker_actors.types._session import GetSamplerResponse as GetSamplerResponse
from tinker_actors.types._session import GetSessionResponse as GetSessionResponse
from tinker_actors.types._session import JoinSamplingSessionRequest as JoinSamplingSessionRequest
from tinker_actors.types._session import JoinSamplingSessionResponse as JoinSamplingSessionResponse
from tinker_actors.types._session import ListSessionsResponse as ListSessionsResponse
from tinker_actors.types._session import OwnSearchOwner as OwnSearchOwner
from tinker_actors.types._session import SearchOwner as SearchOwner
from tinker_actors.types._session import SessionActive as SessionActive
from tinker_actors.types._session import SessionCancelled as SessionCancelled
from tinker_actors.types._session import SessionFailed as SessionFailed
from tinker_actors.types._session import SessionFailedReason as SessionFailedReason
from tinker_actors.types._session import SessionFailedRequestReason as SessionFailedRequestReason
from tinker_actors.types._session import (
    SessionFailedSamplingSessionReason as SessionFailedSamplingSessionReason,
)
from tinker_actors.types._session import (
    SessionFailedTrainingRunReason as SessionFailedTrainingRunReason,
)
from tinker_actors.types._session import SessionHeartbeatRequest as SessionHeartbeatRequest
from tinker_actors.types._session import SessionHeartbeatResponse as SessionHeartbeatResponse
from tinker_actors.types._session import SessionSearchCursor as SessionSearchCursor
from tinker_actors.types._session import SessionSearchRequest as SessionSearchRequest
from tinker_actors.types._session import SessionSearchResponse as SessionSearchResponse
from tinker_actors.types._session import SessionStatus as SessionStatus
from tinker_actors.types._session import SessionStatusQuery as SessionStatusQuery
from tinker_actors.types._session import SessionSummary as SessionSummary
from tinker_actors.types._session import SetSessionProjectRequest as SetSessionProjectRequest
from tinker_actors.types._session import TraceExportResponse as TraceExportResponse
from tinker_actors.types._session import UserSearchOwner as UserSearchOwner
from tinker_actors.types._telemetry import EventType as EventType
from tinker_actors.types._telemetry import GenericEvent as GenericEvent
from tinker_actors.types._telemetry import SessionEndEvent as SessionEndEvent
from tinker_actors.types._telemetry import SessionStartEvent as SessionStartEvent
from tinker_actors.types._telemetry import Severity as Severity
from tinker_actors.types._telemetry import TelemetryBatch as TelemetryBatch
from tinker_actors.types._telemetry import TelemetryEvent as TelemetryEvent
from tinker_actors.types._telemetry import TelemetryResponse as TelemetryResponse
from tinker_actors.types._telemetry import TelemetrySendRequest as TelemetrySendRequest
from tinker_actors.types._telemetry import UnhandledExceptionEvent as UnhandledExceptionEvent
from tinker_actors.types._tensor import TensorData as TensorData
from tinker_actors.types._tensor import json_dec_hook as json_dec_hook
from tinker_actors.types._tensor import json_enc_hook as json_enc_hook
from tinker_actors.types._tensor_checks import TensorDtype as TensorDtype
from tinker_actors.types._training import CreateModelRequest as CreateModelRequest
from tinker_actors.types._training import CreateModelResponse as CreateModelResponse
from tinker_actors.types._training import GetInfoRequest as GetInfoRequest
from tinker_actors.types._training import GetInfoResponse as GetInfoResponse
from tinker_actors.types._training import LoraConfig as LoraConfig
from tinker_actors.types._training import ModelData as ModelData
from tinker_actors.types._training import ModelID as ModelID
from tinker_actors.types._training import OptimStepRequest as OptimStepRequest
from tinker_actors.types._training import OptimStepResponse as OptimStepResponse
from tinker_actors.types._training import SamplingClientKind as SamplingClientKind
from tinker_actors.types._ttl import MAX_TTL_SECONDS as MAX_TTL_SECONDS
from tinker_actors.types._ttl import MIN_TTL_SECONDS as MIN_TTL_SECONDS
from tinker_actors.types._ttl import check_ttl_seconds as check_ttl_seconds
from tinker_actors.types._weights import CopyWeightsRequest as CopyWeightsRequest
from tinker_actors.types._weights import CopyWeightsResponse as CopyWeightsResponse
from tinker_actors.types._weights import LoadWeightsRequest as LoadWeightsRequest
from tinker_actors.types._weights import LoadWeightsResponse as LoadWeightsResponse
from tinker_actors.types._weights import SaveWeightsExternalRequest as SaveWeightsExternalRequest
from tinker_actors.types._weights import SaveWeightsExternalResponse as SaveWeightsExternalResponse
from tinker_actors.types._weights import (
    SaveWeightsExternalResponseInternal as SaveWeightsExternalResponseInternal,
)
from tinker_actors.types._weights import (
    SaveWeightsForSamplerRequest as SaveWeightsForSamplerRequest,
)
from tinker_actors.types._weights import (
    SaveWeightsForSamplerResponse as SaveWeightsForSamplerResponse,
)
from tinker_actors.types._weights import (
    SaveWeightsForSamplerResponseInternal as SaveWeightsForSamplerResponseInternal,
)
from tinker_actors.types._weights import SaveWeightsRequest as SaveWeightsRequest
from tinker_actors.types._weights import SaveWeightsResponse as SaveWeightsResponse
from tinker_actors.types._weights import UnloadModelRequest as UnloadModelRequest
from tinker_actors.types._weights import UnloadModelResponse as UnloadModelResponse
from tinker_actors.types._weights import WeightsInfoRequest as WeightsInfoRequest
from tinker_actors.types._weights import WeightsInfoResponse as WeightsInfoResponse

__all__ = [
    "MAX_TTL_SECONDS",
    "MIN_TTL_SECONDS",
    "SEQ_IDS_PER_CLONE",
    "TOPK_MASK_LOGPROB",
    "AccessibleSearchOwner",
    "ActiveSessionStatusQuery",
    "AdamOptimizerConfig",
    "AdamParams",
    "ArchiveUrlResponse",
    "AuditLogEntry",
    "AuditLogResponse",
    "AuthTokenRequest",
    "AuthTokenResponse",
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageResponse",
    "BillingUsageSession",
    "CancelFutureRequest",
    "CancelledSessionStatusQuery",
    "Checkpoint",
    "CheckpointBillingEvent",
    "CheckpointType",
    "CheckpointsListResponse",
    "ClientConfigRequest",
    "ClientConfigResponse",
    "ClientDynamicConfigRequest",
    "ClientDynamicConfigResponse",
    "ClientFinishedSessionStatusQuery",
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinishReasonType",
    "ClientSessionFinishSuccess",
    "ClientSessionFinished",
    "CompleteMetadataResponse",
    "CopyWeightsRequest",
    "CopyWeightsResponse",
    "CreateCustomLossRequest",
    "CreateCustomLossResponse",
    "CreateModelRequest",
    "CreateModelResponse",
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "Cursor",
    "CustomLossGraph",
    "CustomLossInput",
    "CustomLossInputRank",
    "CustomLossNode",
    "CustomLossNodeOp",
    "Datum",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "DmelChunk",
    "EncodedTextChunk",
    "EventType",
    "ExternalWeightsUrlsResponse",
    "FailedSessionStatusQuery",
    "FinishSessionRequest",
    "ForwardBackwardInput",
    "ForwardBackwardOutput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "FutureAnswer",
    "FutureCompletion",
    "FutureFailed",
    "FutureFinished",
    "FutureRetrieveRequest",
    "FutureRetrieveResponse",
    "FuturesRetrieveRequest",
    "FuturesRetrieveResponse",
    "GenericEvent",
    "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest",
    "GetInfoRequest",
    "GetInfoResponse",
    "GetSamplerResponse",
    "GetServerCapabilitiesResponse",
    "GetSessionResponse",
    "HealthResponse",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ImageFormat",
    "JoinSamplingSessionRequest",
    "JoinSamplingSessionResponse",
    "ListSessionsResponse",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "LoraConfig",
    "LossFnConfig",
    "LossFnInputs",
    "LossFnOutput",
    "LossFnType",
    "ModelData",
    "ModelID",
    "ModelInput",
    "ModelInputChunk",
    "ModelMethods",
    "OptimParams",
    "OptimStepRequest",
    "OptimStepResponse",
    "OptimizerConfig",
    "OptimizerParams",
    "OwnSearchOwner",
    "ParsedCheckpointTinkerPath",
    "PromptAltTokens",
    "PromptProvenanceSpan",
    "ProvenanceSpan",
    "ProvenanceSpans",
    "QueueState",
    "RequestErrorCategory",
    "RequestFailedResponse",
    "RequestID",
    "RequestStruct",
    "ResponseStruct",
    "SampleRequest",
    "SampleResponse",
    "SampledProvenanceSpan",
    "SampledSequence",
    "SamplingClientKind",
    "SamplingParams",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "SamplingSessionFuturesTarget",
    "SaveWeightsExternalRequest",
    "SaveWeightsExternalResponse",
    "SaveWeightsExternalResponseInternal",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "SearchOwner",
    "SessionActive",
    "SessionCancelled",
    "SessionEndEvent",
    "SessionFailed",
    "SessionFailedReason",
    "SessionFailedRequestReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedTrainingRunReason",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SessionSearchCursor",
    "SessionSearchRequest",
    "SessionSearchResponse",
    "SessionStartEvent",
    "SessionStatus",
    "SessionStatusQuery",
    "SessionSummary",
    "SetCheckpointTtlRequest",
    "SetSessionProjectRequest",
    "Severity",
    "StopReason",
    "StorageBillingEvent",
    "SupportedModel",
    "TelemetryBatch",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "TensorData",
    "TensorDtype",
    "TinkerPath",
    "TopkLogprobs",
    "TraceExportResponse",
    "TrainingBillingEvent",
    "TrainingRun",
    "TrainingRunsResponse",
    "TryAgainResponse",
    "UnhandledExceptionEvent",
    "UnloadModelRequest",
    "UnloadModelResponse",
    "UntypedAPIFuture",
    "UserSearchOwner",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
    "WhoamiResponse",
    "check_ttl_seconds",
    "decode_future_answer",
    "json_dec_hook",
    "json_enc_hook",
    "none_to_unset",
    "tensor_container_shape",
]
