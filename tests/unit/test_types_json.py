"""JSON behaviour of the wire Structs in tinker_actors.types (protocol §3, §4, §6, §14)."""

from __future__ import annotations

import datetime as dt
import importlib
import importlib.resources
import inspect
from typing import Any

import msgspec
import numpy as np
import pytest

import tinker_actors.types as types_pkg
from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    AccessibleSearchOwner,
    ActiveSessionStatusQuery,
    AdamOptimizerConfig,
    AdamParams,
    ArchiveUrlResponse,
    AuditLogEntry,
    AuditLogResponse,
    AuthTokenRequest,
    AuthTokenResponse,
    BillingEventInfo,
    BillingUsageEvent,
    BillingUsageResponse,
    BillingUsageSession,
    CancelFutureRequest,
    CancelledSessionStatusQuery,
    Checkpoint,
    CheckpointBillingEvent,
    CheckpointsListResponse,
    ClientConfigRequest,
    ClientConfigResponse,
    ClientDynamicConfigRequest,
    ClientDynamicConfigResponse,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinished,
    ClientSessionFinishErrored,
    ClientSessionFinishInterrupted,
    ClientSessionFinishSuccess,
    CompleteMetadataResponse,
    CopyWeightsRequest,
    CopyWeightsResponse,
    CreateCustomLossRequest,
    CreateCustomLossResponse,
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    CurrentCheckpointStorageUsageItem,
    CurrentCheckpointStorageUsageResponse,
    Cursor,
    CustomLossGraph,
    CustomLossInput,
    CustomLossNode,
    DimuonParams,
    ExternalWeightsUrlsResponse,
    FailedSessionStatusQuery,
    FinishSessionRequest,
    FutureCompletion,
    FutureFailed,
    FutureFinished,
    FutureRetrieveRequest,
    FuturesRetrieveRequest,
    FuturesRetrieveResponse,
    GenericEvent,
    GetBillingUsageRequest,
    GetCurrentCheckpointStorageUsageRequest,
    GetInfoRequest,
    GetInfoResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    GetSessionResponse,
    HealthResponse,
    JoinSamplingSessionRequest,
    JoinSamplingSessionResponse,
    ListSessionsResponse,
    LoadWeightsRequest,
    LoadWeightsResponse,
    LoraConfig,
    ModelData,
    ModelInput,
    OptimizerConfig,
    OptimStepRequest,
    OptimStepResponse,
    OwnSearchOwner,
    ParsedCheckpointTinkerPath,
    QueueState,
    RequestErrorCategory,
    RequestFailedResponse,
    RequestStruct,
    ResponseStruct,
    SampleRequest,
    SamplingParams,
    SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent,
    SamplingSessionFuturesTarget,
    SaveWeightsExternalRequest,
    SaveWeightsExternalResponse,
    SaveWeightsExternalResponseInternal,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    SearchOwner,
    SessionActive,
    SessionCancelled,
    SessionEndEvent,
    SessionFailed,
    SessionFailedRequestReason,
    SessionFailedSamplingSessionReason,
    SessionFailedTrainingRunReason,
    SessionHeartbeatRequest,
    SessionHeartbeatResponse,
    SessionSearchCursor,
    SessionSearchRequest,
    SessionSearchResponse,
    SessionStartEvent,
    SessionStatus,
    SessionSummary,
    SetCheckpointTtlRequest,
    SetSessionProjectRequest,
    StorageBillingEvent,
    SupportedModel,
    TelemetryBatch,
    TelemetryEvent,
    TelemetryResponse,
    TelemetrySendRequest,
    TensorData,
    TinkerPath,
    TraceExportResponse,
    TrainingBillingEvent,
    TrainingRun,
    TrainingRunsResponse,
    TryAgainResponse,
    UnhandledExceptionEvent,
    UnloadModelRequest,
    UnloadModelResponse,
    UntypedAPIFuture,
    UserSearchOwner,
    WeightsInfoRequest,
    WeightsInfoResponse,
    WhoamiResponse,
    decode_future_answer,
    json_dec_hook,
    json_enc_hook,
)

# The modules this file covers; the chunk/tensor/datum modules have their own tests.
COVERED_MODULES = (
    "_admin",
    "_auth",
    "_checkpoints",
    "_custom_loss",
    "_futures",
    "_optimizer",
    "_sampling",
    "_service",
    "_session",
    "_telemetry",
    "_training",
)

T0 = dt.datetime(2025, 3, 4, 5, 6, 7, 890000, tzinfo=dt.UTC)
T1 = dt.datetime(2025, 3, 4, 6, 0, tzinfo=dt.UTC)
CKPT = Checkpoint(
    checkpoint_id="weights/step-10",
    checkpoint_type="training",
    time=T0,
    tinker_path="tinker://run:train:0/weights/step-10",
    size_bytes=123,
    public=True,
    user_metadata={"k": "v"},
    expires_at=T1,
)
PROMPT = ModelInput.from_ints([1, 2, 3])
EVENT_BASE: dict[str, Any] = {
    "event_id": "e",
    "event_session_index": 0,
    "severity": "INFO",
    "timestamp": T0,
}

# One or more representative instances of every Struct in COVERED_MODULES (checked below).
EXAMPLES: list[msgspec.Struct] = [
    AuthTokenRequest(),
    AuthTokenResponse(jwt="eyJabc"),
    ClientConfigRequest(sdk_version="0.38.0"),
    ClientDynamicConfigRequest(sdk_version="0.38.0"),
    ClientConfigResponse(pjwt_auth_enabled=True, fwdbwd_max_chunk_len=7),
    ClientDynamicConfigResponse(sample_cancel_enabled=True),
    GetServerCapabilitiesResponse(
        supported_models=[SupportedModel(model_name="m", max_context_length=4096, trainable=True)]
    ),
    SupportedModel(),
    HealthResponse(status="ok"),
    CreateSessionRequest(tags=["a"], sdk_version="0.38.0", project_id="p", display_name="d"),
    CreateSessionResponse(session_id="s", warning_message="w"),
    SessionHeartbeatRequest(session_id="s"),
    SessionHeartbeatResponse(),
    FinishSessionRequest(reason=ClientSessionFinishInterrupted(), detail="ctrl-c"),
    ClientSessionFinishSuccess(),
    ClientSessionFinishErrored(),
    ClientSessionFinishInterrupted(),
    CreateSamplingSessionRequest(session_id="s", sampling_session_seq_id=1, base_model="m"),
    CreateSamplingSessionResponse(sampling_session_id="s:sample:1"),
    JoinSamplingSessionRequest(sampling_session_id="s:sample:1"),
    JoinSamplingSessionResponse(client_counter=3),
    GetSamplerResponse(sampler_id="x", base_model="m", model_path="tinker://r/sampler_weights/a"),
    GetSessionResponse(training_run_ids=["r"], sampler_ids=["x"], display_name="d"),
    ListSessionsResponse(sessions=["a", "b"]),
    SetSessionProjectRequest(project_id="p"),
    TraceExportResponse(status="ready", url="https://x"),
    SessionFailedRequestReason(request_id="r", request_type="Sample"),
    SessionFailedTrainingRunReason(training_run_id="r"),
    SessionFailedSamplingSessionReason(sampling_session_id="x"),
    SessionFailed(
        category="user", reason=SessionFailedTrainingRunReason(training_run_id="r"), message="m"
    ),
    SessionCancelled(detail="console"),
    ClientSessionFinished(reason=ClientSessionFinishErrored(), detail="boom"),
    SessionActive(),
    OwnSearchOwner(),
    AccessibleSearchOwner(),
    UserSearchOwner(owner_urns=["u1", "u2"]),
    ActiveSessionStatusQuery(),
    CancelledSessionStatusQuery(),
    FailedSessionStatusQuery(),
    ClientFinishedSessionStatusQuery(reasons=["success", "interrupted"]),
    SessionSearchCursor(last_created_at=T0, last_session_id="s"),
    SessionSearchRequest(
        session_id="s",
        project_ids=["p"],
        user_metadata={"a": "b"},
        display_name="run",
        owner=UserSearchOwner(owner_urns=["u"]),
        statuses=[ActiveSessionStatusQuery(), ClientFinishedSessionStatusQuery()],
        limit=200,
        cursor=SessionSearchCursor(last_created_at=T0, last_session_id="s"),
    ),
    SessionSummary(
        session_id="s",
        created_at=T0,
        owner="u",
        project_id="p",
        status=SessionCancelled(),
        checkpoints_count=2,
        checkpoint_storage_bytes=5,
    ),
    SessionSearchResponse(
        sessions=[
            SessionSummary(
                session_id="s", created_at=T0, owner="u", project_id="p", checkpoints_count=0
            )
        ],
        next_cursor=SessionSearchCursor(last_created_at=T0, last_session_id="s"),
    ),
    LoraConfig(rank=8, seed=3, train_mlp=False),
    OptimizerConfig.dimuon(),
    AdamOptimizerConfig(),
    OptimizerConfig(type="some_future_family", version=3),
    AdamParams(learning_rate=3e-4, grad_clip_norm=1.0),
    DimuonParams(learning_rate=0.02),
    CreateModelRequest(
        session_id="s",
        model_seq_id=1,
        base_model="m",
        user_metadata={"x": [1, 2]},
        lora_config=LoraConfig(rank=4),
        optimizer_config=OptimizerConfig.dimuon(),
    ),
    CreateModelResponse(model_id="s:train:1"),
    GetInfoRequest(model_id="m"),
    ModelData(arch="qwen3", tokenizer_id="Qwen/Qwen3-8B"),
    GetInfoResponse(
        model_data=ModelData(model_name="m"),
        model_id="m",
        is_lora=True,
        lora_rank=8,
        model_name="m",
    ),
    OptimStepRequest.for_params("m", AdamParams(), seq_id=2),
    OptimStepRequest.for_params("m", DimuonParams(learning_rate=0.5)),
    OptimStepResponse(metrics={"grad_norm:mean": 1.5}),
    SaveWeightsRequest(model_id="m", path="step-1", seq_id=3, ttl_seconds=7200, overwrite=True),
    SaveWeightsResponse(path="tinker://r/weights/step-1"),
    SaveWeightsForSamplerRequest(
        model_id="m", sampling_session_seq_id=0, kind="inflight", seq_id=4
    ),
    SaveWeightsForSamplerResponseInternal(sampling_session_id="s:sample:0"),
    SaveWeightsForSamplerResponse(path="tinker://r/sampler_weights/a"),
    SaveWeightsExternalRequest(model_id="m", path="e", age_encryption_recipients=["age1x"]),
    SaveWeightsExternalResponseInternal(path="tinker://r/external_weights/e", size_bytes=10),
    SaveWeightsExternalResponse(path="tinker://r/external_weights/e"),
    LoadWeightsRequest(model_id="m", seq_id=1, path="tinker://r/weights/x", optimizer=False),
    LoadWeightsRequest(
        session_id="s",
        model_seq_id=0,
        base_model="m",
        user_metadata={"a": 1},
        path="tinker://r/weights/x",
        optimizer=False,
        optimizer_config=OptimizerConfig.adamw(),
        weights_access_token="tok",
    ),
    LoadWeightsResponse(path="tinker://r/weights/x", model_id="s:train:0"),
    CopyWeightsRequest(destination_project_id="p", source_path="tinker://r/weights/x"),
    CopyWeightsRequest(
        session_id="s", model_seq_id=2, source_path="tinker://r/weights/x", ttl_seconds=3600
    ),
    CopyWeightsResponse(tinker_path="tinker://c/weights/x"),
    WeightsInfoRequest(tinker_path="tinker://r/weights/x"),
    WeightsInfoResponse(base_model="m", is_lora=True, lora_rank=8, train_attn=False),
    UnloadModelRequest(model_id="m"),
    UnloadModelResponse(model_id="m"),
    SamplingParams(max_tokens=5, seed=1, stop=[13, 14], temperature=0.7, top_k=40, top_p=0.9),
    SamplingParams(stop="\n"),
    SampleRequest(
        num_samples=2,
        prompt=PROMPT,
        sampling_params=SamplingParams(max_tokens=5, stop=["\n"]),
        sampling_session_id="s:sample:0",
        seq_id=0,
        prompt_logprobs=True,
        topk_prompt_logprobs=2,
        target_prompt_logprobs=TensorData.from_numpy(np.array([[4, -1], [-1, 5]], dtype=np.int64)),
        prompt_logprobs_last_n=2,
        record_stability_info=True,
    ),
    CKPT,
    Cursor(offset=0, limit=20, total_count=1),
    CheckpointsListResponse(checkpoints=[CKPT], cursor=Cursor(offset=0, limit=20, total_count=1)),
    TrainingRun(
        training_run_id="r",
        base_model="m",
        model_owner="o",
        is_lora=True,
        lora_rank=8,
        last_request_time=T0,
        last_checkpoint=CKPT,
    ),
    TrainingRunsResponse(
        training_runs=[
            TrainingRun(
                training_run_id="r",
                base_model="m",
                model_owner="o",
                is_lora=False,
                last_request_time=T0,
            )
        ],
        cursor=Cursor(offset=20, limit=20, total_count=21),
    ),
    ExternalWeightsUrlsResponse(urls={"model.safetensors": "https://u"}, expires=T1),
    ArchiveUrlResponse(url="https://u", expires=T1),
    SetCheckpointTtlRequest(ttl_seconds=86400),
    TinkerPath.parse("tinker://r/external_weights/e"),
    UntypedAPIFuture(request_id="r", model_id="m", sample_sequence_ids=["q0", "q1"]),
    FutureRetrieveRequest(request_id="r", allow_metadata_only=True),
    TryAgainResponse(request_id="r", queue_state="paused_capacity", queue_state_reason="busy"),
    CompleteMetadataResponse(response_payload_size=99),
    RequestFailedResponse(error="bad", category="user"),
    CancelFutureRequest(request_id="r"),
    SamplingSessionFuturesTarget(sampling_session_id="x", cloned_sampler_id=2),
    FuturesRetrieveRequest(
        target=SamplingSessionFuturesTarget(sampling_session_id="x"),
        prev_cursor=4,
        timeout=0.0,
        retrieved_request_ids=["a"],
    ),
    FutureFinished(request_id="a", response_payload_uncompressed_size=5),
    FutureFailed(request_id="b"),
    FuturesRetrieveResponse(
        completions=[FutureFinished(request_id="a"), FutureFailed(request_id="b")], cursor=9
    ),
    SessionStartEvent(**EVENT_BASE),
    SessionEndEvent(**EVENT_BASE, duration="0:00:05.500000"),
    UnhandledExceptionEvent(
        **EVENT_BASE, error_type="ValueError", error_message="x", traceback="tb"
    ),
    GenericEvent(
        **EVENT_BASE, event_name="user_error", event_data={"status_code": 400, "body": None}
    ),
    TelemetrySendRequest(
        events=[SessionStartEvent(**EVENT_BASE), GenericEvent(**EVENT_BASE, event_name="n")],
        platform="Linux",
        sdk_version="0.1.0",
        session_id="sessionless-1",
        process_uuid="p",
    ),
    TelemetryBatch(
        events=[GenericEvent(**EVENT_BASE, event_name="n")],
        platform="Linux",
        sdk_version="0.38.0",
        session_id="s",
        process_uuid="p",
    ),
    TelemetryResponse(status="accepted"),
    GetBillingUsageRequest(starting_on=T1, ending_before=T1 + dt.timedelta(days=1)),
    GetCurrentCheckpointStorageUsageRequest(project_id="p"),
    ParsedCheckpointTinkerPath.from_tinker_path("tinker://run:train:0/sampler_weights/s"),
    AuditLogEntry(timestamp=T0, event="checkpoint_read", event_details={"who": "u"}, purpose="p"),
    AuditLogResponse(entries=[AuditLogEntry(timestamp=T0, event="project_grant_set")]),
    TrainingBillingEvent(token_count=1),
    SamplingPrefillBillingEvent(cached=True, token_count=2),
    SamplingSampleBillingEvent(token_count=3),
    CheckpointBillingEvent(count=4),
    StorageBillingEvent(free=True, gigabyte_hours=1.5),
    BillingUsageEvent(
        bucket_start=T0,
        bucket_end=T1,
        session_id="s",
        estimated_cost_usd=0.25,
        event_info=SamplingPrefillBillingEvent(cached=False, token_count=10),
    ),
    BillingUsageSession(user_metadata={"a": "b"}),
    BillingUsageResponse(
        data=[
            BillingUsageEvent(
                bucket_start=T0, bucket_end=T1, event_info=StorageBillingEvent(gigabyte_hours=2.0)
            )
        ],
        sessions={"s": BillingUsageSession()},
        cost_data_through=T1,
    ),
    CurrentCheckpointStorageUsageItem(checkpoint_count=1, size_bytes=10, size_gigabytes=1e-8),
    CurrentCheckpointStorageUsageResponse(
        data=[
            CurrentCheckpointStorageUsageItem(
                checkpoint_count=1, size_bytes=10, size_gigabytes=1e-8
            )
        ]
    ),
    WhoamiResponse(user_urn="u", org_urn="o", email="a@b"),
    CustomLossInput(name="logprobs", rank=1),
    CustomLossNode(op="call_function", name="exp", target="torch.exp", args=[{"ref": "logprobs"}]),
    CustomLossGraph(
        nodes=[
            CustomLossNode(op="placeholder", name="logprobs", target="logprobs"),
            CustomLossNode(op="output", name="output", target="output", args=[{"ref": "logprobs"}]),
        ]
    ),
    CreateCustomLossRequest(
        session_id="s",
        custom_loss_seq_id=0,
        name="my_loss",
        inputs=[CustomLossInput(name="logprobs", rank=2), CustomLossInput(name="weights", rank=1)],
        graph=CustomLossGraph(nodes=[CustomLossNode(op="output", name="output", target="output")]),
    ),
    CreateCustomLossResponse(loss_id="loss-1"),
]


def encode(obj: object) -> bytes:
    return msgspec.json.encode(obj, enc_hook=json_enc_hook)


def decode(data: bytes, typ: Any) -> Any:
    return msgspec.json.decode(data, type=typ, dec_hook=json_dec_hook)


def _covered_struct_types() -> set[type]:
    found: set[type] = set()
    for name in COVERED_MODULES:
        module = importlib.import_module(f"tinker_actors.types.{name}")
        for export in module.__all__:
            obj = getattr(module, export)
            if inspect.isclass(obj) and issubclass(obj, msgspec.Struct):
                found.add(obj)
    return found


def test_every_struct_has_an_example() -> None:
    missing = _covered_struct_types() - {type(e) for e in EXAMPLES}
    assert not missing, f"no example for {sorted(t.__name__ for t in missing)}"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: type(e).__name__)
def test_round_trip(example: msgspec.Struct) -> None:
    assert decode(encode(example), type(example)) == example


REQUEST_EXAMPLES = [e for e in EXAMPLES if isinstance(e, RequestStruct)]
RESPONSE_EXAMPLES = [e for e in EXAMPLES if isinstance(e, ResponseStruct)]


def _with_extra_field(data: bytes) -> bytes:
    obj = msgspec.json.decode(data)
    obj["surprise_field"] = 1
    return msgspec.json.encode(obj)


@pytest.mark.parametrize("example", REQUEST_EXAMPLES, ids=lambda e: type(e).__name__)
def test_requests_reject_unknown_fields(example: msgspec.Struct) -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `surprise_field`"):
        decode(_with_extra_field(encode(example)), type(example))


@pytest.mark.parametrize("example", RESPONSE_EXAMPLES, ids=lambda e: type(e).__name__)
def test_responses_ignore_unknown_fields(example: msgspec.Struct) -> None:
    assert decode(_with_extra_field(encode(example)), type(example)) == example


# -- byte-exact protocol examples (§3, §4, §6, §14) -----------------------------------------------

PROMPT_JSON = encode(PROMPT).decode()
PROTOCOL_EXAMPLES: list[tuple[msgspec.Struct, str]] = [
    (AuthTokenRequest(), "{}"),
    (ClientConfigRequest(sdk_version="0.38.0"), '{"sdk_version":"0.38.0"}'),
    (
        CreateSessionRequest(tags=["a"], user_metadata={}, sdk_version="0.38.0"),
        '{"tags":["a"],"user_metadata":{},"sdk_version":"0.38.0","type":"create_session"}',
    ),
    (SessionHeartbeatRequest(session_id="s"), '{"session_id":"s","type":"session_heartbeat"}'),
    (SessionHeartbeatResponse(), '{"type":"session_heartbeat"}'),
    (FinishSessionRequest.for_status("success"), '{"reason":{"type":"success"},"detail":null}'),
    (
        JoinSamplingSessionRequest(sampling_session_id="x"),
        '{"sampling_session_id":"x","type":"join_sampling_session"}',
    ),
    (
        JoinSamplingSessionResponse(client_counter=1),
        '{"type":"join_sampling_session","client_counter":1}',
    ),
    (
        CreateModelRequest(
            session_id="s",
            model_seq_id=0,
            base_model="Qwen/Qwen3-8B",
            lora_config=LoraConfig(rank=32),
        ),
        '{"session_id":"s","model_seq_id":0,"base_model":"Qwen/Qwen3-8B","lora_config":{"rank":32,'
        '"train_unembed":true,"train_mlp":true,"train_attn":true},"optimizer_config":{"type":"adamw"},'
        '"type":"create_model"}',
    ),
    (GetInfoRequest(model_id="m"), '{"model_id":"m","type":"get_info"}'),
    (
        OptimStepRequest.for_params("m", AdamParams(), seq_id=3),
        '{"model_id":"m","seq_id":3,"type":"optim_step","adam_params":{"learning_rate":0.0001,'
        '"beta1":0.9,"beta2":0.95,"eps":1e-12,"weight_decay":0.0,"grad_clip_norm":0.0}}',
    ),
    (
        OptimStepRequest.for_params("m", DimuonParams(learning_rate=0.01), seq_id=3),
        '{"model_id":"m","seq_id":3,"type":"optim_step","optimizer_params":{"type":"dimuon",'
        '"learning_rate":0.01,"grad_clip_norm":0.0,"beta1":0.9}}',
    ),
    (OptimizerConfig.dimuon(), '{"type":"dimuon","version":1}'),
    (
        LoadWeightsRequest(
            session_id="s", model_seq_id=0, path="tinker://r/weights/x", optimizer=True
        ),
        '{"session_id":"s","model_seq_id":0,"path":"tinker://r/weights/x","optimizer":true,'
        '"type":"load_weights"}',
    ),
    (
        SaveWeightsForSamplerRequest(model_id="m", path="p", seq_id=2),
        '{"model_id":"m","path":"p","kind":"snapshot","seq_id":2,"type":"save_weights_for_sampler"}',
    ),
    (
        SaveWeightsRequest(model_id="m", path="p", seq_id=1),
        '{"model_id":"m","path":"p","seq_id":1,"overwrite":false,"type":"save_weights"}',
    ),
    (UnloadModelRequest(model_id="m"), '{"model_id":"m","type":"unload_model"}'),
    (SessionSearchRequest(), '{"user_metadata":{},"owner":{"type":"own"},"limit":50}'),
    (
        SampleRequest(
            num_samples=2,
            prompt=PROMPT,
            sampling_params=SamplingParams(max_tokens=5, stop=["\n"], temperature=1.0),
            sampling_session_id="sess:sample:0",
            seq_id=0,
            prompt_logprobs=True,
            record_stability_info=False,
        ),
        '{"num_samples":2,"prompt":' + PROMPT_JSON + ',"sampling_params":{"max_tokens":5,'
        '"stop":["\\n"],"temperature":1.0,"top_k":-1,"top_p":1.0},"sampling_session_id":"sess:sample:0",'
        '"seq_id":0,"prompt_logprobs":true,"topk_prompt_logprobs":0,"topk_sample_logprobs":0,'
        '"prompt_alt_tokens_k":0,"record_stability_info":false,"type":"sample"}',
    ),
    (
        FutureRetrieveRequest(request_id="r", allow_metadata_only=True),
        '{"request_id":"r","allow_metadata_only":true}',
    ),
    (CancelFutureRequest(request_id="r"), '{"request_id":"r"}'),
    (
        FuturesRetrieveRequest(target=SamplingSessionFuturesTarget(sampling_session_id="x")),
        '{"target":{"type":"sampling_session","sampling_session_id":"x","cloned_sampler_id":0},'
        '"prev_cursor":0,"retrieved_request_ids":[]}',
    ),
    (
        TryAgainResponse(request_id="r", queue_state="active"),
        '{"type":"try_again","request_id":"r","queue_state":"active","queue_state_reason":null}',
    ),
    (
        CompleteMetadataResponse(response_payload_size=5),
        '{"status":"complete_metadata","response_payload_size":5}',
    ),
    (SetCheckpointTtlRequest(ttl_seconds=None), '{"ttl_seconds":null}'),
    (
        WeightsInfoRequest(tinker_path="tinker://r/weights/x"),
        '{"tinker_path":"tinker://r/weights/x"}',
    ),
    (HealthResponse(status="ok"), '{"status":"ok"}'),
    (TelemetryResponse(status="accepted"), '{"status":"accepted"}'),
    (AuthTokenResponse(jwt="j"), '{"jwt":"j"}'),
]


@pytest.mark.parametrize(("obj", "expected"), PROTOCOL_EXAMPLES, ids=lambda v: type(v).__name__)
def test_protocol_examples_byte_exact(obj: msgspec.Struct, expected: str) -> None:
    assert encode(obj) == expected.encode()
    assert decode(expected.encode(), type(obj)) == obj


# -- defaults sent, nulls dropped --------------------------------------------------------------------


def test_none_in_optional_request_field_is_omitted() -> None:
    params = SamplingParams(max_tokens=None, seed=None, stop=None)
    assert encode(params) == b'{"temperature":1.0,"top_k":-1,"top_p":1.0}'
    # held as UNSET (so never encoded), read as None (as 0.38's models read an unset field)
    assert msgspec.structs.asdict(params)["seed"] is msgspec.UNSET
    assert params.seed is None
    assert repr(params) == (
        "SamplingParams(max_tokens=None, seed=None, stop=None, temperature=1.0, top_k=-1, "
        "top_p=1.0)"
    )


def test_decoded_null_in_optional_request_field_becomes_unset() -> None:
    params = decode(b'{"seed":null,"temperature":0.5}', SamplingParams)
    assert msgspec.structs.asdict(params)["seed"] is msgspec.UNSET
    assert params.seed is None
    assert params == SamplingParams(temperature=0.5)
    assert encode(params) == b'{"temperature":0.5,"top_k":-1,"top_p":1.0}'


def test_empty_stop_list_is_sent() -> None:
    assert b'"stop":[]' in encode(SamplingParams(stop=[]))


def test_finish_detail_is_explicit_null() -> None:
    assert (
        encode(FinishSessionRequest.for_status("errored"))
        == b'{"reason":{"type":"errored"},"detail":null}'
    )


def test_response_defaults_fill_in_missing_fields() -> None:
    assert decode(b"{}", ClientConfigResponse) == ClientConfigResponse()
    info = decode(b'{"model_data":{},"model_id":"m"}', GetInfoResponse)
    assert info.optimizer_config == OptimizerConfig.adamw()
    assert decode(b'{"path":"tinker://r/weights/a"}', SaveWeightsResponse).path.endswith("/a")


def test_client_config_defaults_match_protocol() -> None:
    cfg = ClientConfigResponse()
    assert cfg.sample_dispatch_bytes_semaphore_size == 10_485_760
    assert cfg.inflight_response_bytes_semaphore_size == 52_428_800
    assert (cfg.fwdbwd_max_chunk_len, cfg.fwdbwd_max_chunk_bytes_count) == (1024, 5_000_000)
    assert cfg.fwdbwd_dispatch_bytes_semaphore_size == 50_000_000
    assert cfg.billing_exception_max_pause_duration_sec == 3600
    assert cfg.sample_max_concurrent_requests == 2000
    assert cfg.parallel_fwdbwd_chunks
    assert cfg.sample_enable_stuck_detection
    dyn = ClientDynamicConfigResponse()
    assert (
        dyn.refresh_interval_sec,
        dyn.sample_cancel_enabled,
        dyn.sample_cancel_max_batch_size,
    ) == (
        300,
        False,
        64,
    )


def test_unknown_optimizer_family_decodes_in_responses() -> None:
    info = decode(
        b'{"model_data":{},"model_id":"m","optimizer_config":{"type":"lion","beta":0.9}}',
        GetInfoResponse,
    )
    assert info.optimizer_config.type == "lion"


def test_response_with_wrong_type_tag_is_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value 'save_weights'"):
        decode(b'{"type":"save_weights","model_id":"m"}', CreateModelResponse)


# -- tagged unions -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("union", "data", "expected"),
    [
        (SessionStatus, b'{"type":"active"}', SessionActive()),
        (SessionStatus, b'{"type":"cancelled"}', SessionCancelled()),
        (
            SessionStatus,
            b'{"type":"failed","category":"internal","reason":{"type":"request","request_id":"r",'
            b'"request_type":"Sample"},"message":"m"}',
            SessionFailed(
                category="internal",
                reason=SessionFailedRequestReason(request_id="r", request_type="Sample"),
                message="m",
            ),
        ),
        (
            SessionStatus,
            b'{"type":"client_finished","reason":{"type":"success"}}',
            ClientSessionFinished(reason=ClientSessionFinishSuccess()),
        ),
        (FutureCompletion, b'{"state":"failed","request_id":"r"}', FutureFailed(request_id="r")),
        (
            FutureCompletion,
            b'{"state":"finished","request_id":"r"}',
            FutureFinished(request_id="r"),
        ),
        (SearchOwner, b'{"type":"accessible"}', AccessibleSearchOwner()),
        (BillingEventInfo, b'{"type":"checkpoint","count":2}', CheckpointBillingEvent(count=2)),
        (
            TelemetryEvent,
            b'{"event":"SESSION_END","event_id":"e","event_session_index":0,"severity":"INFO",'
            b'"timestamp":"2025-03-04T05:06:07.89Z","duration":"0:00:01"}',
            SessionEndEvent(**EVENT_BASE, duration="0:00:01"),
        ),
    ],
)
def test_tagged_unions_pick_the_right_class(union: Any, data: bytes, expected: object) -> None:
    assert decode(data, union) == expected


@pytest.mark.parametrize(
    ("union", "data"),
    [
        (SessionStatus, b'{"type":"exploded"}'),
        (FutureCompletion, b'{"state":"pending","request_id":"r"}'),
        (TelemetryEvent, b'{"event":"NOPE","event_id":"e"}'),
    ],
)
def test_tagged_unions_reject_unknown_tags(union: Any, data: bytes) -> None:
    with pytest.raises(msgspec.ValidationError, match="Invalid value"):
        decode(data, union)


def test_telemetry_event_tag_is_the_event_field() -> None:
    data = msgspec.json.decode(
        encode(UnhandledExceptionEvent(**EVENT_BASE, error_type="E", error_message="m"))
    )
    assert data["event"] == "UNHANDLED_EXCEPTION"
    assert "traceback" not in data


# -- validation ------------------------------------------------------------------------------------------


def _prompt_request(**kw: Any) -> SampleRequest:
    return SampleRequest(prompt=PROMPT, sampling_params=SamplingParams(), **kw)


INVALID: list[tuple[Any, str]] = [
    (lambda: LoraConfig(rank=0), "rank must be >= 1"),
    (lambda: SessionSearchRequest(limit=0), "limit must be between 1 and 200"),
    (lambda: SessionSearchRequest(limit=201), "limit must be between 1 and 200"),
    (lambda: SessionSearchRequest(display_name=""), "display_name must not be empty"),
    (lambda: SessionSearchRequest(statuses=[]), "statuses must list at least one"),
    (lambda: UserSearchOwner(owner_urns=[]), "owner_urns must list 1 to 10"),
    (
        lambda: UserSearchOwner(owner_urns=[str(i) for i in range(11)]),
        "owner_urns must list 1 to 10",
    ),
    (lambda: ClientFinishedSessionStatusQuery(reasons=[]), "reasons must list at least one"),
    (
        lambda: SaveWeightsRequest(model_id="m", ttl_seconds=3599),
        "ttl_seconds must be between 3600",
    ),
    (
        lambda: SaveWeightsRequest(model_id="m", ttl_seconds=11 * 365 * 86400),
        "ttl_seconds must be between",
    ),
    (lambda: SetCheckpointTtlRequest(ttl_seconds=60), "ttl_seconds must be between"),
    (lambda: SaveWeightsForSamplerRequest(model_id="m"), "needs path"),
    (
        lambda: SaveWeightsExternalRequest(model_id="m", path="p", age_encryption_recipients=[]),
        "1 to 10",
    ),
    (lambda: _prompt_request(prompt_logprobs_last_n=1), "needs prompt_logprobs=True"),
    (lambda: _prompt_request(prompt_logprobs=True, prompt_logprobs_last_n=3), "between 1 and len"),
    (lambda: _prompt_request(prompt_logprobs=True, prompt_logprobs_last_n=0), "between 1 and len"),
    (lambda: _prompt_request(num_samples=0), "num_samples must be >= 1"),
    (lambda: _prompt_request(topk_prompt_logprobs=-1), "topk_prompt_logprobs must be >= 0"),
    (lambda: SamplingParams(top_p=0.0), "top_p must be in"),
    (lambda: SamplingParams(top_k=0), "top_k must be -1"),
    (lambda: SamplingParams(temperature=-1.0), "temperature must be >= 0"),
    (lambda: SamplingParams(stop=["a", 1]), "do not mix strings and token ids"),
    (lambda: OptimStepRequest(model_id="m"), "exactly one of adam_params"),
    (
        lambda: OptimStepRequest(
            model_id="m", adam_params=AdamParams(), optimizer_params=DimuonParams(learning_rate=1)
        ),
        "exactly one of adam_params",
    ),
    (lambda: DimuonParams(learning_rate=-1.0), "learning_rate must be >= 0"),
    (lambda: DimuonParams(learning_rate=1.0, beta1=1.0), r"beta1 must be in \[0, 1\)"),
    (lambda: DimuonParams(learning_rate=float("nan")), "must be a finite number"),
    (
        lambda: LoadWeightsRequest(path="tinker://r/weights/x", optimizer=True),
        "needs both model_id and seq_id",
    ),
    (
        lambda: LoadWeightsRequest(model_id="m", path="tinker://r/weights/x", optimizer=True),
        "needs both",
    ),
    (
        lambda: LoadWeightsRequest(
            model_id="m", seq_id=1, session_id="s", path="tinker://r/w/x", optimizer=True
        ),
        "not both",
    ),
    (
        lambda: LoadWeightsRequest(
            model_id="m", seq_id=1, base_model="b", path="tinker://r/weights/x", optimizer=True
        ),
        "only apply when creating",
    ),
    (
        lambda: LoadWeightsRequest(model_id="m", seq_id=1, path="/tmp/x", optimizer=True),
        "tinker:// checkpoint path",
    ),
    (lambda: CopyWeightsRequest(source_path="tinker://r/weights/x"), "needs a destination"),
    (
        lambda: CopyWeightsRequest(session_id="s", source_path="tinker://r/weights/x"),
        "given together",
    ),
    (
        lambda: CreateSamplingSessionRequest(session_id="s", sampling_session_seq_id=0),
        "needs base_model",
    ),
    (
        lambda: CreateSamplingSessionRequest(
            session_id="s", sampling_session_seq_id=0, model_path="s3://x"
        ),
        "must be a tinker:// path",
    ),
    (lambda: FinishSessionRequest.for_status("done"), "unknown session finish status"),  # type: ignore[arg-type]
    (
        lambda: FuturesRetrieveRequest(
            target=SamplingSessionFuturesTarget(sampling_session_id="x"), timeout=-1
        ),
        ">= 0",
    ),
    (lambda: CustomLossInput(name="Bad", rank=1), "is invalid"),
    (lambda: CustomLossInput(name="x" * 65, rank=1), "is invalid"),
    (lambda: CustomLossInput(name="ok", rank=3), "rank must be 0, 1 or 2"),  # type: ignore[arg-type]
    (
        lambda: CreateCustomLossRequest(
            session_id="s",
            custom_loss_seq_id=0,
            name="f",
            inputs=[CustomLossInput(name="weights", rank=1)],
            graph=CustomLossGraph(nodes=[]),
        ),
        "first input must be 'logprobs'",
    ),
    (
        lambda: CreateCustomLossRequest(
            session_id="s",
            custom_loss_seq_id=0,
            name="f",
            inputs=[CustomLossInput(name="logprobs", rank=0)],
            graph=CustomLossGraph(nodes=[]),
        ),
        "first input must be 'logprobs'",
    ),
    (
        lambda: CreateCustomLossRequest(
            session_id="s",
            custom_loss_seq_id=0,
            name="f",
            inputs=[CustomLossInput(name="logprobs", rank=1)]
            + [CustomLossInput(name=f"x{i}", rank=1) for i in range(16)],
            graph=CustomLossGraph(nodes=[]),
        ),
        "at most 16 inputs",
    ),
    (
        lambda: CreateCustomLossRequest(
            session_id="s",
            custom_loss_seq_id=0,
            name="f",
            inputs=[
                CustomLossInput(name="logprobs", rank=1),
                CustomLossInput(name="logprobs", rank=1),
            ],
            graph=CustomLossGraph(nodes=[]),
        ),
        "must be distinct",
    ),
]


@pytest.mark.parametrize(("build", "message"), INVALID, ids=[m for _, m in INVALID])
def test_invalid_input_is_refused_with_a_clear_error(build: Any, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        build()


def test_ttl_bounds_are_inclusive() -> None:
    assert SaveWeightsRequest(model_id="m", ttl_seconds=3600).ttl_seconds == 3600
    assert SetCheckpointTtlRequest(ttl_seconds=315_576_000).ttl_seconds == 315_576_000


def test_invalid_request_body_fails_to_decode() -> None:
    with pytest.raises(msgspec.ValidationError, match="limit must be between 1 and 200"):
        decode(b'{"limit":500}', SessionSearchRequest)
    with pytest.raises(msgspec.ValidationError, match="exactly one of adam_params"):
        decode(b'{"model_id":"m","type":"optim_step"}', OptimStepRequest)


def test_optim_step_params_property() -> None:
    dimuon = DimuonParams(learning_rate=0.1)
    assert OptimStepRequest.for_params("m", dimuon).params == dimuon
    assert OptimStepRequest.for_params("m", AdamParams()).params == AdamParams()


# -- futures: envelope peek ------------------------------------------------------------------------------


def test_envelope_classifies_try_again_with_unknown_queue_state() -> None:
    answer = decode_future_answer(
        b'{"type":"try_again","request_id":"r","queue_state":"paused_cosmic_rays"}',
        OptimStepResponse,
    )
    assert isinstance(answer, TryAgainResponse)
    assert answer.state is QueueState.UNKNOWN
    known = TryAgainResponse(request_id="r", queue_state="paused_rate_limit")
    assert known.state is QueueState.PAUSED_RATE_LIMIT


def test_envelope_classifies_metadata_error_and_result() -> None:
    meta = decode_future_answer(
        b'{"status":"complete_metadata","response_payload_size":7}', OptimStepResponse
    )
    assert meta == CompleteMetadataResponse(response_payload_size=7)
    failed = decode_future_answer(
        b'{"error":"oom","category":"server","metrics":{}}', OptimStepResponse
    )
    assert failed == RequestFailedResponse(error="oom", category="server")
    assert failed.error_category is RequestErrorCategory.SERVER
    result = decode_future_answer(b'{"metrics":{"loss":1.0},"type":"whatever"}', OptimStepResponse)
    assert result == OptimStepResponse(metrics={"loss": 1.0})


def test_envelope_error_category_defaults_and_unknowns() -> None:
    failed = decode_future_answer(b'{"error":"x"}', CreateModelResponse)
    assert isinstance(failed, RequestFailedResponse)
    assert failed.error_category is RequestErrorCategory.UNKNOWN
    odd = RequestFailedResponse(error="x", category="gremlins")
    assert odd.error_category is RequestErrorCategory.UNKNOWN


def test_envelope_status_other_than_metadata_is_a_result() -> None:
    # A result type that itself has a "status" field is not mistaken for metadata.
    answer = decode_future_answer(b'{"status":"accepted"}', TelemetryResponse)
    assert answer == TelemetryResponse(status="accepted")


def test_envelope_decodes_the_expected_type_strictly() -> None:
    with pytest.raises(msgspec.ValidationError, match="model_id"):
        decode_future_answer(b'{"type":"create_model"}', CreateModelResponse)
    with pytest.raises(msgspec.DecodeError):
        decode_future_answer(b"not json", CreateModelResponse)
    with pytest.raises(msgspec.ValidationError):
        decode_future_answer(b"[1, 2]", CreateModelResponse)


# -- tinker:// paths -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "checkpoint_id"),
    [
        ("tinker://s:train:0/weights/step-10", "training", "weights/step-10"),
        ("tinker://r/sampler_weights/a", "sampler", "sampler_weights/a"),
        ("tinker://r/external_weights/final", "external", "external_weights/final"),
    ],
)
def test_tinker_path_parse_and_format(path: str, kind: str, checkpoint_id: str) -> None:
    parsed = TinkerPath.parse(path)
    assert (parsed.checkpoint_type, parsed.checkpoint_id) == (kind, checkpoint_id)
    assert str(parsed) == path


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("s3://r/weights/x", "not a tinker:// path"),
        ("tinker://r/weights", "exactly three parts"),
        ("tinker://r/weights/x/y", "exactly three parts"),
        ("tinker://r//x", "unknown checkpoint segment ''"),
        ("tinker:///weights/x", "must not be empty"),
        ("tinker://r/weights/", "must not be empty"),
        ("tinker://r/checkpoints/x", "unknown checkpoint segment 'checkpoints'"),
    ],
)
def test_tinker_path_errors(path: str, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        TinkerPath.parse(path)


# -- the package surface -------------------------------------------------------------------------------------


def test_package_reexports_every_module_name() -> None:
    # The order of __all__ is ruff's isort-style sort (RUF022), checked by the linter.
    assert len(set(types_pkg.__all__)) == len(types_pkg.__all__)
    for module_info in sorted(
        p.name for p in importlib.resources.files("tinker_actors.types").iterdir()
    ):
        if (
            not module_info.startswith("_")
            or not module_info.endswith(".py")
            or module_info == "__init__.py"
        ):
            continue
        module = importlib.import_module(f"tinker_actors.types.{module_info[:-3]}")
        for name in module.__all__:
            assert name in types_pkg.__all__, f"{module.__name__}.{name} is not re-exported"
            assert getattr(types_pkg, name) is getattr(module, name)
