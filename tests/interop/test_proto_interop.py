"""Our protobuf codec against the official SDK's schema, pb2 classes and converters.

* the schema file matches the official descriptor (names, numbers, types, labels, oneofs);
* bytes we encode parse with the official ``tinker_public_pb2`` into the same values;
* bytes the official converters (or official pb2 messages built server-style) produce decode
  with ours into the same values, and the official response decoders agree with ours.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

import tinker
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_wire import outputs, requests, sample_responses
from tinker.proto import request_conv, response_conv
from tinker.proto import tinker_public_pb2 as pb

import tinker_actors.transport.proto as codec
from tinker_actors.transport.proto import (
    decode_forward_backward_output,
    decode_forward_backward_request,
    decode_sample_response,
    encode_forward_backward_output,
    encode_forward_backward_request,
    encode_sample_response,
)
from tinker_actors.types._datum import Datum, PromptProvenanceSpan, SampledProvenanceSpan
from tinker_actors.types._forward_backward import (
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
)
from tinker_actors.types._model_input import DmelChunk, EncodedTextChunk, ImageChunk, ModelInput
from tinker_actors.types._sample_result import (
    PromptAltTokens,
    SampledSequence,
    SampleResponse,
    TopkLogprobs,
)
from tinker_actors.types._tensor import TensorData

pytestmark = pytest.mark.interop

PROTO = Path(codec.__file__).with_name("tinker_public.proto")
_SCALARS = {
    "double": "TYPE_DOUBLE",
    "float": "TYPE_FLOAT",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "bool": "TYPE_BOOL",
    "string": "TYPE_STRING",
    "bytes": "TYPE_BYTES",
}


# -- schema ----------------------------------------------------------------------------------------


def _parse_proto(
    text: str,
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, tuple[Any, ...]]]]:
    """Parse our (regular, hand-written) .proto: enums and message fields."""
    text = re.sub(r"//[^\n]*", "", text)
    enums = {
        name: {v: int(n) for v, n in re.findall(r"(\w+)\s*=\s*(\d+);", body)}
        for name, body in re.findall(r"enum\s+(\w+)\s*\{([^}]*)\}", text)
    }
    messages: dict[str, dict[str, tuple[Any, ...]]] = {}
    for name, body in re.findall(r"message\s+(\w+)\s*\{((?:[^{}]|\{[^{}]*\})*)\}", text):
        fields: dict[str, tuple[Any, ...]] = {}
        oneofs = {
            f: oneof
            for oneof, inner in re.findall(r"oneof\s+(\w+)\s*\{([^}]*)\}", body)
            for f in re.findall(r"(\w+)\s*=\s*\d+;", inner)
        }
        for label, ftype, fname, num in re.findall(
            r"(repeated\s+|optional\s+)?(map<\s*\w+\s*,\s*\w+\s*>|[\w.]+)\s+(\w+)\s*=\s*(\d+);",
            body,
        ):
            label = label.strip()
            if ftype.startswith("map<"):
                entry = "".join(p.capitalize() for p in fname.split("_")) + "Entry"
                fields[fname] = (
                    int(num),
                    "TYPE_MESSAGE",
                    "LABEL_REPEATED",
                    f".tinker_public.{name}.{entry}",
                    None,
                    False,
                )
                continue
            if ftype in _SCALARS:
                type_name, type_kind = "", _SCALARS[ftype]
            else:
                type_name = f".tinker_public.{ftype}"
                type_kind = "TYPE_ENUM" if ftype in enums else "TYPE_MESSAGE"
            fields[fname] = (
                int(num),
                type_kind,
                "LABEL_REPEATED" if label == "repeated" else "LABEL_OPTIONAL",
                type_name,
                f"_{fname}" if label == "optional" else oneofs.get(fname),
                label == "optional",
            )
        messages[name] = fields
    return enums, messages


def test_schema_matches_the_official_descriptor() -> None:
    from google.protobuf import descriptor_pb2

    fd = descriptor_pb2.FileDescriptorProto()
    pb.DESCRIPTOR.CopyToProto(fd)
    field_type = descriptor_pb2.FieldDescriptorProto.Type.Name
    label = descriptor_pb2.FieldDescriptorProto.Label.Name
    official_enums = {e.name: {v.name: v.number for v in e.value} for e in fd.enum_type}
    official: dict[str, dict[str, tuple[Any, ...]]] = {}
    for m in fd.message_type:
        official[m.name] = {
            f.name: (
                f.number,
                field_type(f.type),
                label(f.label),
                f.type_name,
                m.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None,
                f.proto3_optional,
            )
            for f in m.field
        }
    text = PROTO.read_text()
    assert re.search(r"^package tinker_public;", text, re.M)
    assert re.search(r'^syntax = "proto3";', text, re.M)
    enums, messages = _parse_proto(text)
    assert enums == official_enums
    assert messages == official


# -- conversions between our types and the official ones --------------------------------------------


def _official_tensor(td: TensorData) -> tinker.types.TensorData:
    return tinker.types.TensorData(
        data=np.asarray(td.array).reshape(-1),
        dtype=td.dtype,
        shape=td.shape if td.shape is not None else [td.numel],  # as from_numpy always sets it
        sparse_crow_indices=td.sparse_crow_indices,
        sparse_col_indices=td.sparse_col_indices,
    )


def _official_chunk(chunk: Any) -> Any:
    if isinstance(chunk, EncodedTextChunk):
        return tinker.types.EncodedTextChunk(tokens=chunk.tokens)
    if isinstance(chunk, ImageChunk):
        expected = chunk.expected_tokens if isinstance(chunk.expected_tokens, int) else None
        return tinker.types.ImageChunk(
            data=chunk.data, format=chunk.format, expected_tokens=expected
        )
    assert isinstance(chunk, DmelChunk)
    return tinker.types.DmelChunk(dmel=chunk.dmel)


def _official_span(span: Any) -> Any:
    cls = (
        tinker.types.PromptProvenanceSpan
        if isinstance(span, PromptProvenanceSpan)
        else tinker.types.SampledProvenanceSpan
    )
    return cls(sequence_id=span.sequence_id, offset=span.offset, length=span.length)


def _official_request(req: ForwardBackwardRequest) -> tinker.types.ForwardBackwardRequest:
    fb = req.forward_backward_input
    data = []
    for d in fb.data:
        spans = {}
        if isinstance(d.model_input_spans, list) and isinstance(d.loss_fn_input_spans, list):
            spans = {
                "model_input_spans": [_official_span(s) for s in d.model_input_spans],
                "loss_fn_input_spans": [_official_span(s) for s in d.loss_fn_input_spans],
            }
        data.append(
            tinker.types.Datum(
                model_input=tinker.types.ModelInput(
                    chunks=[_official_chunk(c) for c in d.model_input.chunks]
                ),
                loss_fn_inputs={k: _official_tensor(v) for k, v in d.loss_fn_inputs.items()},
                **spans,
            )
        )
    config = fb.loss_fn_config if isinstance(fb.loss_fn_config, dict) else None
    return tinker.types.ForwardBackwardRequest(
        forward_backward_input=tinker.types.ForwardBackwardInput(
            data=data, loss_fn=fb.loss_fn, loss_fn_config=config
        ),
        model_id=req.model_id,
        seq_id=req.seq_id,
    )


def _tensor_from_pb(msg: pb.Tensor) -> TensorData:
    """Independent reading of an official-parsed Tensor (our test-side reference)."""
    dtype = {pb.DTYPE_FLOAT32: "float32", pb.DTYPE_INT64: "int64"}[msg.dtype]
    shape = list(msg.shape) or None
    if msg.HasField("sparse_csr"):
        csr = msg.sparse_csr
        return TensorData(
            data=np.frombuffer(csr.values, dtype=dtype),
            dtype=dtype,  # type: ignore[arg-type]
            shape=shape,
            sparse_crow_indices=np.frombuffer(csr.crow_indices, dtype="<i8").tolist(),
            sparse_col_indices=np.frombuffer(csr.col_indices, dtype="<i8").tolist(),
        )
    return TensorData(data=np.frombuffer(msg.dense, dtype=dtype), dtype=dtype, shape=shape)  # type: ignore[arg-type]


def _span_from_pb(msg: pb.ProvenanceSpan) -> Any:
    if msg.HasField("prompt_tokens"):
        s = msg.prompt_tokens
        return PromptProvenanceSpan(sequence_id=s.sequence_id, offset=s.offset, length=s.length)
    s = msg.sampled_tokens
    return SampledProvenanceSpan(sequence_id=s.sequence_id, offset=s.offset, length=s.length)


def _request_from_pb(body: bytes) -> ForwardBackwardRequest:
    msg = pb.ForwardBackwardRequest()
    msg.ParseFromString(body)
    data = []
    for d in msg.data:
        chunks: list[Any] = []
        for c in d.model_input:
            kind = c.WhichOneof("chunk")
            if kind == "encoded_text":
                chunks.append(
                    EncodedTextChunk(tokens=np.frombuffer(c.encoded_text.tokens, "<i4").tolist())
                )
            elif kind == "image":
                expected = c.image.expected_tokens if c.image.HasField("expected_tokens") else None
                chunks.append(
                    ImageChunk(data=c.image.data, format=c.image.format, expected_tokens=expected)
                )  # type: ignore[arg-type]
            else:
                chunks.append(DmelChunk(dmel=c.dmel.dmel))
        has_spans = bool(len(d.model_input_spans) or len(d.loss_fn_input_spans))
        data.append(
            Datum(
                model_input=ModelInput(chunks=chunks),
                loss_fn_inputs={k: _tensor_from_pb(v) for k, v in d.loss_fn_inputs.items()},
                model_input_spans=[_span_from_pb(s) for s in d.model_input_spans]
                if has_spans
                else None,
                loss_fn_input_spans=[_span_from_pb(s) for s in d.loss_fn_input_spans]
                if has_spans
                else None,
            )
        )
    config: dict[str, float | str] = {}
    for k, v in msg.loss_fn_config_v2.items():
        config[k] = v.number if v.WhichOneof("value") == "number" else v.text
        if v.WhichOneof("value") == "number":
            assert msg.loss_fn_config[k] == v.number  # numbers are dual-written
    assert set(msg.loss_fn_config) <= set(msg.loss_fn_config_v2)
    return ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data,
            loss_fn=msg.loss_fn,  # type: ignore[arg-type]
            loss_fn_config=config or None,
        ),
        model_id=msg.model_id,
        seq_id=msg.seq_id,
        forward_only=msg.forward_only,
    )


# -- requests --------------------------------------------------------------------------------------


def _dmel() -> bytes:
    return bytes([254, 3, 2, 0x90, 0x01, 80]) + b"\x00" * 16  # constant tensor, shape (144, 80)


def _examples() -> list[ForwardBackwardRequest]:
    rng = np.random.default_rng(0)
    csr = np.full((6, 10), -1, dtype=np.int64)
    csr[1, 3], csr[4, 9] = 42, 7
    weights = np.zeros((6, 10), dtype=np.float32)
    weights[2, 2] = 0.5
    dense = Datum(
        model_input=ModelInput.from_ints(rng.integers(0, 2**31 - 1, 64).tolist()),
        loss_fn_inputs={
            "target_tokens": rng.integers(0, 2**40, 64),
            "weights": rng.random(64).astype(np.float32),
            "advantages": TensorData.from_numpy(rng.random((4, 16)).astype(np.float32)),
        },
    )
    sparse = Datum(
        model_input=ModelInput.from_ints([1, 2]),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(csr, sparse=True, pad_value=-1),
            "weights": TensorData.from_numpy(weights, sparse=True),
        },
    )
    assert sparse.loss_fn_inputs["target_tokens"].is_sparse
    multimodal = Datum(
        model_input=ModelInput.from_ints([5])
        .append(ImageChunk(data=b"\x89PNG\r\n", format="png", expected_tokens=12))
        .append(ImageChunk(data=b"\xff\xd8", format="jpeg"))  # no expected_tokens: absent
        .append(DmelChunk(dmel=_dmel()))
        .append_int(6),
        loss_fn_inputs={"target_tokens": [1] * 158, "weights": [1.0] * 158},
        model_input_spans=[
            PromptProvenanceSpan(sequence_id="sess:sample:0:1", length=150),
            SampledProvenanceSpan(sequence_id="sess:sample:0:2", offset=3, length=8),
        ],
        loss_fn_input_spans=[SampledProvenanceSpan(sequence_id="sess:sample:0:2", length=158)],
    )
    assert DmelChunk(dmel=_dmel()).length == 144

    def req(
        data: list[Datum], loss_fn: Any, config: Any = None, fwd: bool = False
    ) -> ForwardBackwardRequest:
        return ForwardBackwardRequest(
            forward_backward_input=ForwardBackwardInput(
                data=data, loss_fn=loss_fn, loss_fn_config=config
            ),
            model_id="tinker://run-1/model",
            seq_id=7,
            forward_only=fwd,
        )

    return [
        req([dense], "cross_entropy"),
        req([sparse, dense], "ppo", {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}),
        req([multimodal], "custom", {"loss_id": "loss-abc", "kl_coeff": 0.1}),
        req([dense], "cross_entropy", fwd=True),
        req([], "importance_sampling"),
    ]


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("compress", [False, True])
def test_our_request_bytes_parse_with_official_pb2(index: int, compress: bool) -> None:
    req = _examples()[index]
    body = encode_forward_backward_request(req, compress=compress)
    if compress:
        import zstandard

        body = zstandard.ZstdDecompressor().decompress(body)
    assert _request_from_pb(body) == req


@pytest.mark.parametrize("index", range(5))
def test_official_request_bytes_decode_with_ours(index: int) -> None:
    req = _examples()[index]
    official = request_conv.forward_backward_request_to_proto(_official_request(req))
    official.forward_only = req.forward_only  # the official resource layer sets it
    assert (
        decode_forward_backward_request(official.SerializeToString(), content_encoding=None) == req
    )


@settings(max_examples=40, deadline=None)
@given(requests)
def test_random_requests_both_ways(req: ForwardBackwardRequest) -> None:
    assert _request_from_pb(encode_forward_backward_request(req, compress=False)) == req
    official = request_conv.forward_backward_request_to_proto(_official_request(req))
    official.forward_only = req.forward_only
    assert (
        decode_forward_backward_request(official.SerializeToString(), content_encoding=None) == req
    )


# -- ForwardBackwardOutput ---------------------------------------------------------------------------


def _assert_same_output(ours: ForwardBackwardOutput, official: Any) -> None:
    assert ours.loss_fn_output_type == official.loss_fn_output_type
    assert ours.metrics == dict(official.metrics)
    assert len(ours.loss_fn_outputs) == len(official.loss_fn_outputs)
    for mine, theirs in zip(ours.loss_fn_outputs, official.loss_fn_outputs, strict=True):
        assert set(mine) == set(theirs)
        for name, td in mine.items():
            assert td.dtype == theirs[name].dtype
            assert td.shape == theirs[name].shape
            np.testing.assert_array_equal(td.to_numpy(), theirs[name].to_numpy())


def _official_output_message(out: ForwardBackwardOutput, type_name: str) -> bytes:
    """Build the server-style message with the official pb2: one ArrayRecord for all datums."""
    msg = pb.ForwardBackwardOutput(loss_fn_output_type=type_name)
    for k, v in out.metrics.items():
        msg.metrics[k] = v
    record = msg.loss_fn_outputs.add()
    record.num_datums = len(out.loss_fn_outputs)
    names = list(out.loss_fn_outputs[0]) if out.loss_fn_outputs else []
    for name in names:
        arrays = [r[name].to_numpy() for r in out.loss_fn_outputs]
        bt = record.fields[name]
        bt.dtype = pb.DTYPE_FLOAT32 if arrays[0].dtype == np.float32 else pb.DTYPE_INT64
        bt.data = b"".join(a.tobytes() for a in arrays)
        bt.offsets = np.cumsum([0] + [a.nbytes for a in arrays]).astype("<i8").tobytes()
        bt.trailing_shape.extend(arrays[0].shape[1:])
    return msg.SerializeToString()


@settings(max_examples=40, deadline=None)
@given(outputs())
def test_outputs_both_ways(out: ForwardBackwardOutput) -> None:
    ours_body = encode_forward_backward_output(out)
    _assert_same_output(out, response_conv.deserialize_forward_backward_output(ours_body))
    first = out.loss_fn_outputs[0] if out.loss_fn_outputs else {}
    rectangular = all(
        r[n].shape[1:] == first[n].shape[1:] and r[n].dtype == first[n].dtype
        for r in out.loss_fn_outputs
        for n in r
    )
    if rectangular:
        official_body = _official_output_message(out, "tinker.losses:" + out.loss_fn_output_type)
        mine = decode_forward_backward_output(official_body)
        assert mine == out
        _assert_same_output(mine, response_conv.deserialize_forward_backward_output(official_body))


def test_official_output_with_bfloat16_and_int32() -> None:
    msg = pb.ForwardBackwardOutput(loss_fn_output_type="x:ArrayRecord")
    record = msg.loss_fn_outputs.add()
    values = np.array([0.5, -1.25, 8.0, 3.0], dtype=np.float32)
    bt = record.fields["logprobs"]
    bt.dtype = pb.DTYPE_BFLOAT16
    bt.data = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    bt.offsets = np.array([0, 2, 8], dtype="<i8").tobytes()
    ids = record.fields["ids"]
    ids.dtype = pb.DTYPE_INT32
    ids.data = np.array([1, 2, 3, 4], dtype="<i4").tobytes()
    ids.offsets = np.array([0, 4, 16], dtype="<i8").tobytes()
    body = msg.SerializeToString()  # no num_datums: the first field's count is used
    _assert_same_output(
        decode_forward_backward_output(body),
        response_conv.deserialize_forward_backward_output(body),
    )


# -- SampleResponse -------------------------------------------------------------------------------------


def _assert_same_sample(ours: SampleResponse, official: Any) -> None:
    assert len(ours.sequences) == len(official.sequences)
    for mine, theirs in zip(ours.sequences, official.sequences, strict=True):
        assert mine.stop_reason == theirs.stop_reason
        assert mine.tokens == theirs.tokens
        assert mine.logprobs == theirs.logprobs
        assert mine.topk_logprobs == theirs.topk_logprobs
    assert ours.prompt_logprobs == official.prompt_logprobs
    assert ours.topk_prompt_logprobs == official.topk_prompt_logprobs
    assert ours.prompt_cache_hit_tokens == official.prompt_cache_hit_tokens
    for mine_t, theirs_t in (
        (ours.target_prompt_logprobs, official.target_prompt_logprobs),
        *(
            (
                (ours.prompt_alt_tokens.tokens, official.prompt_alt_tokens.tokens),
                (ours.prompt_alt_tokens.logprobs, official.prompt_alt_tokens.logprobs),
            )
            if ours.prompt_alt_tokens is not None
            else ()
        ),
    ):
        if mine_t is None:
            assert theirs_t is None
            continue
        assert mine_t.dtype == theirs_t.dtype
        assert mine_t.sparse_crow_indices == theirs_t.sparse_crow_indices
        assert mine_t.sparse_col_indices == theirs_t.sparse_col_indices
        # the official to_numpy() needs torch for CSR: compare the stored values instead
        np.testing.assert_array_equal(np.asarray(mine_t.data), np.asarray(theirs_t.data))
        assert (mine_t.shape or [mine_t.numel]) == (theirs_t.shape or [len(theirs_t.data)])
    assert (ours.prompt_alt_tokens is None) == (official.prompt_alt_tokens is None)


def _pb_topk(msg: pb.TopkLogprobs, topk: TopkLogprobs) -> None:
    msg.length, msg.k = topk.token_ids.shape
    msg.token_ids = topk.token_ids.astype("<i4").tobytes()
    msg.logprobs = topk.logprobs.astype("<f4").tobytes()


def _pb_tensor(msg: pb.Tensor, td: TensorData) -> None:
    msg.CopyFrom(request_conv._tensor_data_to_proto(_official_tensor(td)))


def _official_sample_message(resp: SampleResponse) -> bytes:
    msg = pb.SampleResponse(prompt_cache_hit_tokens=resp.prompt_cache_hit_tokens)
    for seq in resp.sequences:
        s = msg.sequences.add(
            stop_reason=pb.STOP_REASON_LENGTH
            if seq.stop_reason == "length"
            else pb.STOP_REASON_STOP,
            tokens=seq.tokens_np.astype("<i4").tobytes(),
        )
        if seq.logprobs_np is not None:
            s.logprobs = seq.logprobs_np.astype("<f4").tobytes()
        if seq.topk_logprobs_np is not None:
            _pb_topk(s.topk_sampled_logprobs, seq.topk_logprobs_np)
    if resp.prompt_logprobs_np is not None:
        msg.prompt_logprobs = resp.prompt_logprobs_np.astype("<f4").tobytes()
    if resp.topk_prompt_logprobs_np is not None:
        _pb_topk(msg.topk_prompt_logprobs, resp.topk_prompt_logprobs_np)
    if resp.target_prompt_logprobs is not None:
        _pb_tensor(msg.target_prompt_logprobs, resp.target_prompt_logprobs)
    if resp.prompt_alt_tokens is not None:
        _pb_tensor(msg.prompt_alt_tokens.tokens, resp.prompt_alt_tokens.tokens)
        _pb_tensor(msg.prompt_alt_tokens.logprobs, resp.prompt_alt_tokens.logprobs)
    return msg.SerializeToString()


@settings(max_examples=40, deadline=None)
@given(sample_responses(), st.booleans())
def test_sample_responses_both_ways(resp: SampleResponse, official_encoder: bool) -> None:
    body = _official_sample_message(resp) if official_encoder else encode_sample_response(resp)
    ids = [f"s{i}" for i in range(len(resp.sequences))]
    mine = decode_sample_response(body, sequence_ids=ids)
    assert [s.sequence_id for s in mine.sequences] == ids
    stripped = SampleResponse(
        sequences=[
            SampledSequence(
                stop_reason=s.stop_reason,
                tokens_np=s.tokens_np,
                logprobs_np=s.logprobs_np,
                topk_logprobs_np=s.topk_logprobs_np,
            )
            for s in mine.sequences
        ],
        prompt_logprobs_np=mine.prompt_logprobs_np,
        topk_prompt_logprobs_np=mine.topk_prompt_logprobs_np,
        target_prompt_logprobs=mine.target_prompt_logprobs,
        prompt_cache_hit_tokens=mine.prompt_cache_hit_tokens,
        prompt_alt_tokens=mine.prompt_alt_tokens,
    )
    assert stripped == resp
    _assert_same_sample(mine, response_conv.deserialize_sample_response(body))


def test_sample_nan_prompt_logprobs_and_padding_match_official() -> None:
    resp = SampleResponse.with_prompt_logprobs(
        [
            SampledSequence(
                stop_reason="stop", tokens_np=np.array([9, 8]), logprobs_np=np.array([-0.5, -1.0])
            )
        ],
        [None, None, -0.75],
        topk_prompt_logprobs_np=TopkLogprobs.from_lists([None, None, [(3, -0.75), (4, -2.0)]], k=3),
        prompt_alt_tokens=PromptAltTokens(
            tokens=TensorData.from_numpy(np.array([[1, 2], [3, 4]], dtype=np.int64)),
            logprobs=TensorData.from_numpy(np.array([[-1, -2], [-3, -4]], dtype=np.float32)),
        ),
    )
    body = encode_sample_response(resp)
    official = response_conv.deserialize_sample_response(body)
    assert official.prompt_logprobs == [None, None, -0.75]
    assert official.topk_prompt_logprobs == [None, None, [(3, -0.75), (4, -2.0)]]
    _assert_same_sample(decode_sample_response(body, sequence_ids=None), official)


def test_official_output_type_suffix_and_empty() -> None:
    msg = pb.ForwardBackwardOutput()
    body = msg.SerializeToString()
    assert decode_forward_backward_output(body).loss_fn_output_type == (
        response_conv.deserialize_forward_backward_output(body).loss_fn_output_type
    )
