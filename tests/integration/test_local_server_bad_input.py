"""Bad input to the local server: the right status, a ``detail`` that says what was wrong, and a
server that keeps serving.

Every case is one bad request against a server holding a live session, model, sampler and
checkpoints. Each checks the status and a fragment of the JSON ``detail`` naming the fault,
then proves the server unharmed: a heartbeat, the model's next training operation (so its
seq_id order was not disturbed) and a sample all succeed.
"""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import msgspec
import pytest
import trio

from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.transport.proto import encode_forward_backward_request
from tinker_actors.types import (
    AdamParams,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    Datum,
    EncodedTextChunk,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    ImageChunk,
    LoraConfig,
    ModelInput,
    OptimStepRequest,
    SampleRequest,
    SamplingParams,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
    SessionHeartbeatRequest,
    TensorData,
)

KEY = "tml-bad-input-test"
BASE = "http://local"
PROTO = "application/x-protobuf"
JSON = "application/json"


@dataclass
class World:
    """Live ids on the server under test."""

    session_id: str
    model_id: str
    sampler_id: str
    weights_path: str
    sampler_path: str
    next_seq: int = 1
    sample_seq: int = 0
    refused: list[int] = field(default_factory=list)
    """seq_ids consumed by requests the server refused (issue 14: they fail alone)."""


@dataclass(frozen=True)
class Call:
    """One HTTP request."""

    method: str
    path: str
    content: bytes | None = None
    content_type: str | None = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


def j(obj: object) -> bytes:
    return msgspec.json.encode(obj)


def post(path: str, body: object, **kwargs: Any) -> Call:
    content = body if isinstance(body, bytes) else j(body)
    return Call("POST", f"/api/v1/{path}", content, **kwargs)


def get(path: str) -> Call:
    return Call("GET", f"/api/v1/{path}", None, None)


def tokens_datum(tokens: list[int], targets: TensorData, **more: TensorData) -> Datum:
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": targets, **more},
    )


def good_datum(n: int = 4) -> Datum:
    return tokens_datum(
        list(range(10, 10 + n)), TensorData(data=list(range(11, 11 + n)), dtype="int64")
    )


def png(width: int, height: int) -> bytes:
    """A real (grey) PNG file: the server reads its size from the header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"".join(b"\x00" + bytes(width) for _ in range(height)))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_datum(data: bytes, expected_tokens: int | None) -> Datum:
    """Two tokens, an image, one token: targets for every position the image claims."""
    n = 3 + (expected_tokens or 4)
    return Datum(
        model_input=ModelInput(
            chunks=[
                EncodedTextChunk(tokens=[10, 11]),
                ImageChunk(data=data, format="png", expected_tokens=expected_tokens),
                EncodedTextChunk(tokens=[12]),
            ]
        ),
        loss_fn_inputs={"target_tokens": TensorData(data=[11] * n, dtype="int64")},
    )


def fb(
    model_id: str,
    seq_id: int,
    data: list[Datum] | None = None,
    loss_fn: str = "cross_entropy",
    compress: bool = False,
) -> bytes:
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data if data is not None else [good_datum()],
            loss_fn=loss_fn,  # type: ignore[arg-type]
        ),
        model_id=model_id,
        seq_id=seq_id,
    )
    return encode_forward_backward_request(request, compress=compress)


def fwdbwd(body: bytes, **headers: str) -> Call:
    return Call(
        "POST",
        "/api/v1/forward_backward",
        body,
        PROTO,
        {k.replace("_", "-"): v for k, v in headers.items()},
    )


def sample(
    w: World,
    prompt: list[int] | None = None,
    prompt_chunks: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Call:
    chunks = prompt_chunks or [{"type": "encoded_text", "tokens": prompt or [5, 6, 7]}]
    body: dict[str, Any] = {
        "prompt": {"chunks": chunks},
        "sampling_params": {"max_tokens": 4},
        "sampling_session_id": w.sampler_id,
        "seq_id": 999,
        "type": "sample",
    }
    body.update(fields)
    return post("asample", {k: v for k, v in body.items() if v is not None})


@dataclass(frozen=True)
class Case:
    """A bad request, the status it must get and a fragment its ``detail`` must contain."""

    id: str
    call: Callable[[World], Call]
    status: int
    detail: str | Callable[[World], str]


F32: Literal["float32"] = "float32"
CASES: list[Case] = [
    # -- session / service ------------------------------------------------------------------------
    Case(
        "config-malformed",
        lambda w: post("client/config", b'{"sdk_version":'),
        400,
        "malformed JSON body",
    ),
    Case(
        "config-unknown-field",
        lambda w: post("client/config", {"sdk_version": "x", "bogus": 1}),
        422,
        "unknown field `bogus`",
    ),
    Case(
        "config-wrong-type",
        lambda w: post("client/config", {"sdk_version": 5}),
        422,
        "Expected `str`, got `int` - at `$.sdk_version`",
    ),
    Case(
        "dynamic-config-malformed",
        lambda w: post("client/dynamic_config", b"{nope"),
        400,
        "malformed JSON body",
    ),
    Case(
        "dynamic-config-unknown-field",
        lambda w: post("client/dynamic_config", {"sdk_version": "x", "extra": True}),
        422,
        "unknown field `extra`",
    ),
    Case("session-empty-body", lambda w: post("create_session", b""), 400, "malformed JSON body"),
    Case(
        "session-missing-field",
        lambda w: post("create_session", {"tags": []}),
        422,
        "missing required field `sdk_version`",
    ),
    Case(
        "session-tags-not-list",
        lambda w: post("create_session", {"sdk_version": "x", "tags": "a"}),
        422,
        "Expected `array`, got `str` - at `$.tags`",
    ),
    Case(
        "heartbeat-unknown-session",
        lambda w: post("session_heartbeat", SessionHeartbeatRequest(session_id="nope")),
        404,
        "unknown session 'nope'",
    ),
    Case(
        "finish-unknown-session",
        lambda w: post("sessions/nope/finish", {"reason": {"type": "success"}, "detail": None}),
        404,
        "unknown session 'nope'",
    ),
    Case(
        "finish-bad-reason",
        lambda w: post(f"sessions/{w.session_id}/finish", {"reason": {"type": "bored"}}),
        422,
        "bored",
    ),
    Case(
        "not-json-object",
        lambda w: post("create_session", [1, 2]),
        422,
        "Expected `object`, got `array`",
    ),
    # -- training (JSON) --------------------------------------------------------------------------
    Case(
        "create-model-malformed",
        lambda w: post("create_model", b'{"session_id"'),
        400,
        "malformed JSON",
    ),
    Case(
        "create-model-unknown-field",
        lambda w: post(
            "create_model",
            {"session_id": w.session_id, "model_seq_id": 5, "base_model": "local/tiny", "lr": 1},
        ),
        422,
        "unknown field `lr`",
    ),
    Case(
        "create-model-rank-type",
        lambda w: post(
            "create_model",
            {
                "session_id": w.session_id,
                "model_seq_id": 5,
                "base_model": "local/tiny",
                "lora_config": {"rank": "big"},
            },
        ),
        422,
        "Expected `int`, got `str` - at `$.lora_config.rank`",
    ),
    Case(
        "create-model-unknown-base",
        lambda w: post(
            "create_model",
            CreateModelRequest(session_id=w.session_id, model_seq_id=5, base_model="Qwen/Qwen3-8B"),
        ),
        400,
        "unknown base model 'Qwen/Qwen3-8B'; the local server has: ",
    ),
    Case(
        "create-model-unknown-session",
        lambda w: post(
            "create_model",
            CreateModelRequest(session_id="nope", model_seq_id=0, base_model="local/tiny"),
        ),
        404,
        "unknown session 'nope'",
    ),
    Case(
        "create-model-optimizer",
        lambda w: post(
            "create_model",
            {
                "session_id": w.session_id,
                "model_seq_id": 5,
                "base_model": "local/tiny",
                "optimizer_config": {"type": "dimuon", "version": 1},
            },
        ),
        400,
        "adamw only, not 'dimuon'",
    ),
    Case(
        "get-info-unknown-model",
        lambda w: post("get_info", {"model_id": "nope:train:0", "type": "get_info"}),
        404,
        "unknown model 'nope:train:0'",
    ),
    Case(
        "optim-unknown-model",
        lambda w: post(
            "optim_step", OptimStepRequest(model_id="m:train:9", seq_id=1, adam_params=AdamParams())
        ),
        404,
        "unknown model 'm:train:9'",
    ),
    Case(
        "optim-no-seq-id",
        lambda w: post(
            "optim_step", OptimStepRequest(model_id=w.model_id, adam_params=AdamParams())
        ),
        400,
        "seq_id is required",
    ),
    Case(
        "optim-seq-id-zero",
        lambda w: post(
            "optim_step", OptimStepRequest(model_id=w.model_id, seq_id=0, adam_params=AdamParams())
        ),
        400,
        "seq_id must be >= 1",
    ),
    Case(
        "optim-lr-type",
        lambda w: post(
            "optim_step",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "adam_params": {"learning_rate": "fast"},
            },
        ),
        422,
        "Expected `float`, got `str` - at `$.adam_params.learning_rate`",
    ),
    Case(
        "save-bad-name",
        lambda w: post(
            "save_weights", SaveWeightsRequest(model_id=w.model_id, path="a/b", seq_id=w.next_seq)
        ),
        400,
        "invalid checkpoint name 'a/b'",
    ),
    Case(
        "save-ttl-too-short",
        lambda w: post(
            "save_weights",
            {"model_id": w.model_id, "path": "t", "seq_id": w.next_seq, "ttl_seconds": 5},
        ),
        422,
        "ttl_seconds must be between 3600",
    ),
    Case(
        "save-for-sampler-neither",
        lambda w: post("save_weights_for_sampler", {"model_id": w.model_id, "seq_id": w.next_seq}),
        422,
        "needs path",
    ),
    Case(
        "load-not-tinker-path",
        lambda w: post(
            "load_weights",
            {"model_id": w.model_id, "seq_id": w.next_seq, "path": "s3://x", "optimizer": False},
        ),
        422,
        "path must be a tinker:// checkpoint path",
    ),
    Case(
        "load-malformed-tinker-path",
        lambda w: post(
            "load_weights",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "path": "tinker://a/b",
                "optimizer": False,
            },
        ),
        400,
        "malformed tinker path",
    ),
    Case(
        "load-unknown-run",
        lambda w: post(
            "load_weights",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "path": "tinker://nope/weights/x",
                "optimizer": False,
            },
        ),
        404,
        "no training run 'nope'",
    ),
    Case(
        "load-unknown-checkpoint",
        lambda w: post(
            "load_weights",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "path": f"tinker://{w.model_id}/weights/missing",
                "optimizer": False,
            },
        ),
        404,
        "no checkpoint tinker://",
    ),
    Case(
        "load-sampler-checkpoint",
        lambda w: post(
            "load_weights",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "path": w.sampler_path,
                "optimizer": False,
            },
        ),
        400,
        "is a sampler checkpoint; this operation needs a training one",
    ),
    Case(
        "load-both-modes",
        lambda w: post(
            "load_weights",
            {
                "model_id": w.model_id,
                "seq_id": w.next_seq,
                "session_id": w.session_id,
                "path": w.weights_path,
                "optimizer": False,
            },
        ),
        422,
        "either model_id + seq_id",
    ),
    Case(
        "load-incompatible-base",
        lambda w: post(
            "load_weights",
            {
                "session_id": w.session_id,
                "model_seq_id": 7,
                "base_model": "local/small",
                "path": w.weights_path,
                "optimizer": False,
            },
        ),
        400,
        "cannot be loaded on local/small",
    ),
    # -- forward_backward (protobuf) ----------------------------------------------------------------
    Case(
        "fb-json-body",
        lambda w: post("forward_backward", {"model_id": w.model_id}),
        415,
        "forward_backward bodies are protobuf",
    ),
    Case(
        "fb-truncated",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq)[:-3]),
        400,
        "malformed forward_backward request",
    ),
    Case(
        "fb-garbage",
        lambda w: fwdbwd(b"\xff\xff\xff\xff"),
        400,
        "malformed forward_backward request",
    ),
    Case(
        "fb-float-targets",
        lambda w: fwdbwd(
            fb(
                w.model_id,
                w.next_seq,
                [tokens_datum([1, 2, 3], TensorData(data=[2.0, 3.0, 4.0], dtype=F32))],
            )
        ),
        400,
        "datum 0: target_tokens must be int64, got float32",
    ),
    Case(
        "fb-int-weights",
        lambda w: fwdbwd(
            fb(
                w.model_id,
                w.next_seq,
                [
                    tokens_datum(
                        [1, 2, 3],
                        TensorData(data=[2, 3, 4], dtype="int64"),
                        weights=TensorData(data=[1, 1, 1], dtype="int64"),
                    )
                ],
            )
        ),
        400,
        "datum 0: weights must be float32, got int64",
    ),
    Case(
        "fb-rows-mismatch",
        lambda w: fwdbwd(
            fb(
                w.model_id,
                w.next_seq,
                [tokens_datum([1, 2, 3], TensorData(data=[2], dtype="int64"))],
            )
        ),
        400,
        "target_tokens has 1 rows but model_input has 3 tokens",
    ),
    Case(
        "fb-token-out-of-vocab",
        lambda w: fwdbwd(
            fb(
                w.model_id,
                w.next_seq,
                [tokens_datum([1, 5000], TensorData(data=[2, 3], dtype="int64"))],
            )
        ),
        400,
        "token ids must be in [0, 4096)",
    ),
    Case(
        "fb-missing-targets",
        lambda w: fwdbwd(
            fb(
                w.model_id,
                w.next_seq,
                [Datum(model_input=ModelInput.from_ints([1, 2]), loss_fn_inputs={})],
            )
        ),
        400,
        "missing ['target_tokens']",
    ),
    Case(
        "fb-empty-batch",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, [])),
        400,
        "at least one datum",
    ),
    Case(
        "fb-unknown-loss",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, loss_fn="mystery")),
        400,
        "unknown loss_fn 'mystery'",
    ),
    Case(
        "fb-unknown-model",
        lambda w: fwdbwd(fb("nope:train:0", 1)),
        404,
        "unknown model 'nope:train:0'",
    ),
    Case("fb-no-seq-id", lambda w: fwdbwd(fb(w.model_id, 0)), 400, "seq_id must be >= 1"),
    Case(
        "fb-bad-zstd",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq), content_encoding="zstd"),
        400,
        "not a valid zstd frame",
    ),
    Case(
        "fb-unsupported-encoding",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq), content_encoding="br"),
        400,
        "unsupported Content-Encoding 'br'",
    ),
    Case(
        "fb-image-tokens-unset",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, [image_datum(png(8, 8), None)])),
        400,
        "datum 0, chunk 1: expected_tokens is unset, but this model reads a 8x8 image as 4 tokens",
    ),
    Case(
        "fb-image-tokens-wrong",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, [image_datum(png(300, 100), 4)])),
        400,
        "expected_tokens is 4, but this model reads a 300x100 image as 27 tokens (3 x 9 squares",
    ),
    Case(
        "fb-image-not-png",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, [image_datum(b"GIF89a" + bytes(30), 4)])),
        400,
        "the image says format 'png' but its 36 bytes are not a PNG file",
    ),
    Case(
        "fb-image-too-narrow",
        lambda w: fwdbwd(fb(w.model_id, w.next_seq, [image_datum(png(1, 500), 4)])),
        400,
        "an image of 1x500 pixels is too narrow",
    ),
    # -- sampling -----------------------------------------------------------------------------------
    Case(
        "sample-malformed",
        lambda w: post("asample", b'{"num_samples": 1,'),
        400,
        "malformed JSON body",
    ),
    Case(
        "sample-unknown-field",
        lambda w: sample(w, temperature=0.5),
        422,
        "unknown field `temperature`",
    ),
    Case("sample-num-samples", lambda w: sample(w, num_samples=0), 422, "num_samples must be >= 1"),
    Case(
        "sample-max-tokens-type",
        lambda w: sample(w, sampling_params={"max_tokens": "many"}),
        422,
        "Expected `int | null`, got `str` - at `$.sampling_params.max_tokens`",
    ),
    Case(
        "sample-unknown-sampler",
        lambda w: sample(w, sampling_session_id="nope:sample:0"),
        404,
        "unknown sampling session 'nope:sample:0'",
    ),
    Case(
        "sample-legacy-addressing",
        lambda w: sample(w, sampling_session_id=None, base_model="local/tiny"),
        400,
        "asample needs sampling_session_id",
    ),
    Case(
        "sample-image-pointer",
        lambda w: sample(
            w,
            prompt_chunks=[
                {"type": "encoded_text", "tokens": [5, 6]},
                {"type": "image_asset_pointer", "format": "png", "location": "/etc/passwd"},
            ],
        ),
        400,
        "the prompt, chunk 1: the local models read text and inline images (ImageChunk) only, "
        "not ImageAssetPointerChunk",
    ),
    Case(
        "sample-image-tokens-wrong",
        lambda w: sample(
            w,
            prompt_chunks=[
                {"type": "image", "format": "png", "data": b64(png(64, 64)), "expected_tokens": 5}
            ],
        ),
        400,
        "the prompt, chunk 0: expected_tokens is 5, but this model reads a 64x64 image as 4",
    ),
    Case(
        "sample-token-range",
        lambda w: sample(w, prompt=[1, 99999]),
        400,
        "prompt token ids must be in [0, 4096)",
    ),
    Case(
        "sample-target-dtype",
        lambda w: sample(w, target_prompt_logprobs={"data": [1.0, 2.0], "dtype": "float32"}),
        400,
        "target_prompt_logprobs must hold int64 token ids, got float32",
    ),
    Case(
        "sample-target-shape",
        # a 3-token prompt scores 2 positions: [2, K]
        lambda w: sample(
            w, target_prompt_logprobs={"data": [1, 2, 3], "dtype": "int64", "shape": [3, 1]}
        ),
        400,
        "must be [len(prompt) - 1, K] = [2, K] for this 3-token prompt, got shape [3, 1]",
    ),
    Case(
        "sample-target-ids",
        lambda w: sample(
            w, target_prompt_logprobs={"data": [-1, 5000], "dtype": "int64", "shape": [2, 1]}
        ),
        400,
        "ids must be in [0, 4096), or -1 for no request",
    ),
    Case(
        "sample-target-width",
        lambda w: sample(
            w, target_prompt_logprobs={"data": [1] * 130, "dtype": "int64", "shape": [2, 65]}
        ),
        400,
        "has 65 columns; at most 64 token ids a position",
    ),
    Case(
        "sample-too-long",
        lambda w: sample(w, prompt=[5] * 8000, sampling_params={"max_tokens": 200}),
        400,
        "exceeds the context of local/tiny (8192 tokens)",
    ),
    Case(
        "sampler-unknown-base",
        lambda w: post(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=w.session_id, sampling_session_seq_id=50, base_model="gpt-9"
            ),
        ),
        400,
        "unknown base model 'gpt-9'; the local server has: ",
    ),
    Case(
        "sampler-training-path",
        lambda w: post(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=w.session_id, sampling_session_seq_id=50, model_path=w.weights_path
            ),
        ),
        400,
        "sampling needs sampler weights",
    ),
    Case(
        "sampler-missing-checkpoint",
        lambda w: post(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=w.session_id,
                sampling_session_seq_id=50,
                model_path=f"tinker://{w.model_id}/sampler_weights/none",
            ),
        ),
        404,
        "no sampler checkpoint",
    ),
    Case(
        "sampler-not-tinker",
        lambda w: post(
            "create_sampling_session",
            {"session_id": w.session_id, "sampling_session_seq_id": 50, "model_path": "http://x"},
        ),
        422,
        "model_path must be a tinker:// path",
    ),
    Case("get-unknown-sampler", lambda w: get("samplers/nope"), 404, "unknown sampler 'nope'"),
    Case(
        "join-unknown-sampler",
        lambda w: post("join_sampling_session", {"sampling_session_id": "nope"}),
        404,
        "unknown sampling session 'nope'",
    ),
    # -- futures ------------------------------------------------------------------------------------
    Case("retrieve-malformed", lambda w: post("retrieve_future", b"{"), 400, "malformed JSON body"),
    Case(
        "retrieve-unknown-field",
        lambda w: post("retrieve_future", {"request_id": "x", "wait": 1}),
        422,
        "unknown field `wait`",
    ),
    Case(
        "retrieve-id-type",
        lambda w: post("retrieve_future", {"request_id": 5}),
        422,
        "Expected `str`, got `int` - at `$.request_id`",
    ),
    Case(
        "retrieve-unknown-id",
        lambda w: post("retrieve_future", {"request_id": "r-1"}),
        404,
        "unknown request_id 'r-1'",
    ),
    Case(
        "retrieve-futures-unknown-sampler",
        lambda w: post(
            "retrieve_futures",
            {"target": {"type": "sampling_session", "sampling_session_id": "nope"}},
        ),
        404,
        "unknown sampling session 'nope'",
    ),
    Case(
        "retrieve-futures-bad-target",
        lambda w: post("retrieve_futures", {"target": {"type": "model", "model_id": "m"}}),
        422,
        "Invalid value 'model'",
    ),
    Case("cancel-malformed", lambda w: post("cancel_future", b"]"), 400, "malformed JSON body"),
    # -- REST ---------------------------------------------------------------------------------------
    Case(
        "runs-limit-text",
        lambda w: get("training_runs?limit=abc"),
        400,
        "limit must be an integer, got 'abc'",
    ),
    Case(
        "runs-limit-negative",
        lambda w: get("training_runs?limit=-1"),
        400,
        "limit must be between 0 and 1000",
    ),
    Case(
        "checkpoints-offset-negative",
        lambda w: get("checkpoints?offset=-5"),
        400,
        "offset must be >= 0",
    ),
    Case(
        "run-unknown",
        lambda w: get("training_runs/nope:train:0"),
        404,
        "no training run 'nope:train:0'",
    ),
    Case(
        "run-checkpoints-unknown",
        lambda w: get("training_runs/nope/checkpoints"),
        404,
        "no training run 'nope'",
    ),
    Case(
        "delete-unknown-checkpoint",
        lambda w: Call(
            "DELETE", f"/api/v1/training_runs/{w.model_id}/checkpoints/weights/none", None, None
        ),
        404,
        "no checkpoint 'weights/none'",
    ),
    Case(
        "publish-unknown-checkpoint",
        lambda w: post(
            f"training_runs/{w.model_id}/checkpoints/weights/none/publish", b"", content_type=None
        ),
        404,
        "no checkpoint 'weights/none'",
    ),
    Case(
        "ttl-malformed",
        lambda w: Call(
            "PUT", f"/api/v1/training_runs/{w.model_id}/checkpoints/weights/w/ttl", b"{"
        ),
        400,
        "malformed JSON body",
    ),
    Case(
        "ttl-wrong-type",
        lambda w: Call(
            "PUT",
            f"/api/v1/training_runs/{w.model_id}/checkpoints/weights/w/ttl",
            j({"ttl_seconds": "soon"}),
        ),
        422,
        "Expected `int | null`, got `str` - at `$.ttl_seconds`",
    ),
    Case(
        "ttl-too-short",
        lambda w: Call(
            "PUT",
            f"/api/v1/training_runs/{w.model_id}/checkpoints/weights/w/ttl",
            j({"ttl_seconds": 60}),
        ),
        422,
        "ttl_seconds must be between 3600",
    ),
    Case(
        "weights-info-bad-path",
        lambda w: post("weights_info", {"tinker_path": "tinker://x"}),
        400,
        "malformed tinker path",
    ),
    Case(
        "weights-info-unknown",
        lambda w: post("weights_info", {"tinker_path": f"tinker://{w.model_id}/weights/none"}),
        404,
        "no checkpoint 'weights/none'",
    ),
    Case("session-unknown", lambda w: get("sessions/nope"), 404, "unknown session 'nope'"),
    Case(
        "unknown-route",
        lambda w: get("no_such_endpoint"),
        404,
        "no endpoint /api/v1/no_such_endpoint",
    ),
    Case("wrong-method", lambda w: get("create_session"), 405, "Method Not Allowed: GET"),
    # -- authentication -----------------------------------------------------------------------------
    Case(
        "no-api-key",
        lambda w: post(
            "create_session", CreateSessionRequest(sdk_version="x"), headers={"X-API-Key": ""}
        ),
        401,
        "missing X-API-Key header",
    ),
    Case(
        "bad-api-key-prefix",
        lambda w: post(
            "create_session",
            CreateSessionRequest(sdk_version="x"),
            headers={"X-API-Key": "sk-SECRET-123"},
        ),
        401,
        "must start with 'tml-'",
    ),
    Case(
        "auth-token-without-jwt-mode",
        lambda w: post("auth/token", {}),
        401,
        "runs without JWT auth",
    ),
]


@pytest.fixture
async def served() -> AsyncIterator[tuple[LocalServer, httpx.AsyncClient, World]]:
    async with open_local_server() as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, headers={"X-API-Key": KEY}
        ) as client:
            yield server, client, await build_world(client)


async def send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    headers = dict(call.headers)
    if call.content_type is not None:
        headers.setdefault("Content-Type", call.content_type)
    return await client.request(call.method, call.path, content=call.content, headers=headers)


async def ok(client: httpx.AsyncClient, path: str, body: object, **headers: str) -> Any:
    response = await send(client, post(path, body, headers=headers))
    assert response.status_code == 200, response.text
    return response.json()


async def settle(
    client: httpx.AsyncClient, request_id: str, *, proto: bool = False
) -> httpx.Response:
    while True:
        response = await send(
            client,
            post(
                "retrieve_future",
                {"request_id": request_id},
                headers={"Accept": PROTO} if proto else {},
            ),
        )
        if response.headers["content-type"].startswith(PROTO):
            return response
        if response.json().get("type") != "try_again":
            assert response.status_code == 200, response.text
            assert "error" not in response.json(), response.text
            return response


async def build_world(client: httpx.AsyncClient) -> World:
    session_id = (await ok(client, "create_session", CreateSessionRequest(sdk_version="x")))[
        "session_id"
    ]
    created = await ok(
        client,
        "create_model",
        CreateModelRequest(
            session_id=session_id,
            model_seq_id=0,
            base_model="local/tiny",
            lora_config=LoraConfig(rank=4),
        ),
    )
    await settle(client, created["request_id"])
    model_id = created["model_id"]
    saved = await ok(
        client, "save_weights", SaveWeightsRequest(model_id=model_id, path="w", seq_id=1)
    )
    weights_path = (await settle(client, saved["request_id"])).json()["path"]
    saved = await ok(
        client,
        "save_weights_for_sampler",
        SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=2),
    )
    sampler_path = (await settle(client, saved["request_id"])).json()["path"]
    sampler = await ok(
        client,
        "create_sampling_session",
        CreateSamplingSessionRequest(
            session_id=session_id, sampling_session_seq_id=0, base_model="local/tiny"
        ),
    )
    return World(
        session_id=session_id,
        model_id=model_id,
        sampler_id=sampler["sampling_session_id"],
        weights_path=weights_path,
        sampler_path=sampler_path,
        next_seq=3,
    )


async def still_serving(client: httpx.AsyncClient, w: World) -> None:
    """A heartbeat, the model's next operation, a forward pass and a sample all succeed."""
    await ok(client, "session_heartbeat", SessionHeartbeatRequest(session_id=w.session_id))
    step = await ok(
        client,
        "optim_step",
        OptimStepRequest(model_id=w.model_id, seq_id=w.next_seq, adam_params=AdamParams()),
    )
    assert "metrics" in (await settle(client, step["request_id"])).json()
    submitted = await send(client, fwdbwd(fb(w.model_id, w.next_seq + 1)))
    assert submitted.status_code == 200, submitted.text
    await settle(client, submitted.json()["request_id"], proto=True)
    w.next_seq += 2
    request = SampleRequest(
        prompt=ModelInput.from_ints([5, 6, 7]),
        sampling_params=SamplingParams(max_tokens=3),
        sampling_session_id=w.sampler_id,
        seq_id=w.sample_seq,
    )
    w.sample_seq += 1
    future = await ok(client, "asample", request)
    await settle(client, future["request_id"], proto=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_bad_request_is_refused_clearly_and_harmlessly(
    served: tuple[LocalServer, httpx.AsyncClient, World], case: Case
) -> None:
    server, client, world = served
    with trio.fail_after(30):
        before = _refused(server, world)
        response = await send(client, case.call(world))
        assert response.status_code == case.status, response.text
        if _refused(server, world) > before:
            # a refusal of a request naming the model and its next seq_id consumes that id
            assert response.status_code in (400, 404, 422)
            world.refused.append(world.next_seq)
            world.next_seq += 1
        assert response.headers["content-type"] == JSON
        detail = response.json()["detail"]
        assert isinstance(detail, str)
        expected = case.detail if isinstance(case.detail, str) else case.detail(world)
        assert expected in detail
        assert KEY not in response.text
        assert "SECRET" not in response.text
        await still_serving(client, world)
    counters = server.counters()["models"]
    assert isinstance(counters, dict)
    model = counters[world.model_id]
    # the bad request never became an operation: the model ran exactly its seq_ids in order
    expected = [n for n in range(world.next_seq) if n not in world.refused]
    assert model["applied_seq_ids"] == expected
    assert model["refused"] == len(world.refused)
    assert model["failed"] == 0


def _refused(server: LocalServer, world: World) -> int:
    """seq_ids consumed by refusals so far (counted as the refusal is answered)."""
    del world  # one model per test
    totals = server.counters()["totals"]
    assert isinstance(totals, dict)
    count: int = totals.get("refused_seq_ids", 0)
    return count


async def test_key_list_refuses_other_keys_without_echoing_them() -> None:
    async with open_local_server(api_keys=frozenset({"tml-good"})) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            body = j(CreateSessionRequest(sdk_version="x"))
            for key in ("tml-wrong-SECRET", "tml-good"):
                response = await client.post(
                    "/api/v1/create_session", content=body, headers={"X-API-Key": key}
                )
                if key == "tml-good":
                    assert response.status_code == 200
                else:
                    assert response.status_code == 401
                    assert response.json() == {
                        "detail": "this API key is not accepted by the local server"
                    }
                    assert "SECRET" not in response.text
            health = await client.get("/api/v1/healthz")  # the one public endpoint
            assert health.json() == {"status": "ok"}


async def test_same_seq_id_for_a_create_model_with_different_content_is_409() -> None:
    async with open_local_server() as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, headers={"X-API-Key": KEY}
        ) as client:
            world = await build_world(client)
            again = CreateModelRequest(
                session_id=world.session_id, model_seq_id=0, base_model="local/small"
            )
            response = await send(client, post("create_model", again))
            assert response.status_code == 409
            assert "seq_id 0 was already used" in response.json()["detail"]
            # the identical request is a duplicate: the original future
            same = CreateModelRequest(
                session_id=world.session_id,
                model_seq_id=0,
                base_model="local/tiny",
                lora_config=LoraConfig(rank=4),
            )
            dup = await ok(client, "create_model", same)
            assert dup["model_id"] == world.model_id
            await still_serving(client, world)


async def test_ttl_bounds_agree_with_the_request_type() -> None:
    # the request type admits 10 years of 365.25 days; the REST op must not refuse what it admits
    async with open_local_server() as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(
            transport=transport, base_url=BASE, headers={"X-API-Key": KEY}
        ) as client:
            world = await build_world(client)
            ttl = f"/api/v1/training_runs/{world.model_id}/checkpoints/weights/w/ttl"
            for seconds, status in ((315_576_000, 200), (315_576_001, 422), (3600, 200)):
                response = await send(client, Call("PUT", ttl, j({"ttl_seconds": seconds})))
                assert response.status_code == status, response.text
