"""The protobuf codec on its own: round trips, protocol §5.2/§5.3 rules, malformed input."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies_wire import outputs, requests, sample_responses

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto import (
    ProtobufDecodeError,
    decode_forward_backward_output,
    decode_forward_backward_request,
    decode_sample_response,
    encode_forward_backward_output,
    encode_forward_backward_request,
    encode_sample_response,
)
from tinker_actors.transport.proto._wire import (
    FIXED64,
    LEN,
    VARINT,
    MessageWriter,
    array_view,
    iter_fields,
    key,
    packed_varints,
    varint,
)
from tinker_actors.types._datum import Datum
from tinker_actors.types._forward_backward import (
    ForwardBackwardInput,
    ForwardBackwardOutput,
    ForwardBackwardRequest,
)
from tinker_actors.types._model_input import (
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ModelInput,
)
from tinker_actors.types._sample_result import SampledSequence, SampleResponse, TopkLogprobs
from tinker_actors.types._tensor import TensorData


def _request(data: list[Datum], **kw: object) -> ForwardBackwardRequest:
    config = kw.pop("loss_fn_config", None)
    return ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data,
            loss_fn="cross_entropy",
            loss_fn_config=config,  # type: ignore[arg-type]
        ),
        model_id="m",
        seq_id=1,
        **kw,  # type: ignore[arg-type]
    )


def _fields(body: bytes) -> list[tuple[int, int, int, int]]:
    return list(iter_fields(body, 0, len(body)))


@settings(max_examples=60)
@given(requests, st.booleans())
def test_request_round_trip(req: ForwardBackwardRequest, compress: bool) -> None:
    body = encode_forward_backward_request(req, compress=compress)
    back = decode_forward_backward_request(body, content_encoding="zstd" if compress else None)
    assert back == req


@settings(max_examples=60)
@given(requests)
def test_token_bounds_are_each_datums_min_and_max(req: ForwardBackwardRequest) -> None:
    bounds: list[tuple[int, int] | None] = []
    body = encode_forward_backward_request(req, compress=False)
    assert decode_forward_backward_request(body, content_encoding=None, token_bounds=bounds) == req
    expected = []
    for datum in req.forward_backward_input.data:
        ids = [
            t for c in datum.model_input.chunks if isinstance(c, EncodedTextChunk) for t in c.tokens
        ]
        expected.append((min(ids), max(ids)) if ids else None)
    assert bounds == expected


def test_zstd_is_a_standard_level_3_frame() -> None:
    req = _request([Datum(model_input=ModelInput.from_ints(list(range(1000))))])
    plain = encode_forward_backward_request(req, compress=False)
    packed = encode_forward_backward_request(req, compress=True)
    assert packed[:4] == b"\x28\xb5\x2f\xfd"  # zstd magic
    assert zstandard.ZstdDecompressor().decompress(packed) == plain
    assert zstandard.ZstdCompressor(level=3).compress(plain) == packed
    assert len(packed) < len(plain)


def test_tokens_are_int32_little_endian() -> None:
    body = encode_forward_backward_request(
        _request([Datum(model_input=ModelInput.from_ints([1, -2, 2**31 - 1]))]), compress=False
    )
    assert np.array([1, -2, 2**31 - 1], dtype="<i4").tobytes() in body


def _mutated_tokens(bad: object) -> Datum:
    # Constructors refuse bad ids; the encoder checks again, for a list mutated afterwards.
    datum = Datum(model_input=ModelInput.from_ints([1]))
    tokens: list[object] = datum.model_input.chunks[0].tokens  # type: ignore[union-attr,assignment]
    tokens[0] = bad
    return datum


@pytest.mark.parametrize(
    ("datum", "match"),
    [
        (
            Datum(
                model_input=ModelInput(chunks=[ImageAssetPointerChunk(format="png", location="x")])
            ),
            "ImageAssetPointerChunk",
        ),
        (_mutated_tokens(2**31), "int32"),
        (_mutated_tokens("a"), "integers"),
    ],
)
def test_request_bad_input(datum: Datum, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        encode_forward_backward_request(_request([datum]), compress=False)


def test_request_bad_config_and_seq_id() -> None:
    with pytest.raises(InvalidInputError, match="number or a string"):
        encode_forward_backward_request(_request([], loss_fn_config={"a": [1]}), compress=False)
    with pytest.raises(InvalidInputError, match="seq_id"):
        encode_forward_backward_request(
            ForwardBackwardRequest(
                forward_backward_input=ForwardBackwardInput(data=[], loss_fn="ppo"),
                model_id="m",
                seq_id=2**31,
            ),
            compress=False,
        )


def test_loss_config_dual_write_and_v2_preference() -> None:
    body = encode_forward_backward_request(
        _request([], loss_fn_config={"clip": 0.2, "loss_id": "abc"}), compress=False
    )
    numbers = [n for n, *_ in _fields(body)]
    assert numbers.count(5) == 1  # legacy map: numbers only
    assert numbers.count(7) == 2  # v2: both
    # A server that sent different values in the two maps: v2 wins.
    w = MessageWriter()
    legacy = MessageWriter()
    legacy.string(key(1, LEN), "clip")
    legacy.double(key(2, FIXED64), 9.0)
    w.message(key(5, LEN), legacy)
    value = MessageWriter()
    value.double(key(1, FIXED64), 0.25)
    entry = MessageWriter()
    entry.string(key(1, LEN), "clip")
    entry.message(key(2, LEN), value)
    w.message(key(7, LEN), entry)
    only_legacy = MessageWriter()
    only_legacy.message(key(5, LEN), legacy)
    decoded = decode_forward_backward_request(w.getvalue(), content_encoding=None)
    assert decoded.forward_backward_input.loss_fn_config == {"clip": 0.25}
    decoded = decode_forward_backward_request(only_legacy.getvalue(), content_encoding="identity")
    assert decoded.forward_backward_input.loss_fn_config == {"clip": 9.0}
    empty = decode_forward_backward_request(b"", content_encoding=None)
    assert empty.forward_backward_input.loss_fn_config is None
    assert empty.seq_id == 0


@pytest.mark.parametrize(
    ("body", "encoding", "match"),
    [
        (b"\x0a\x05ab", None, "truncated"),
        (b"\x08" + b"\xff" * 11, None, "varint"),
        (b"\x0b", None, "wire type 3"),
        (b"\x10\x01\x00", None, "field number 0"),
        (b"\x0a\x02\xff\xfe", None, "UTF-8"),
        (b"\x10\x01", "br", "Content-Encoding"),
        (b"not zstd", "zstd", "zstd"),
        (b"\x12\x01x", None, "wire type"),  # seq_id as LEN
    ],
)
def test_request_decode_errors(body: bytes, encoding: str | None, match: str) -> None:
    with pytest.raises(ProtobufDecodeError, match=match):
        decode_forward_backward_request(body, content_encoding=encoding)


def test_request_decode_rejects_bad_tensors_and_chunks() -> None:
    def datum_body(datum_fields: MessageWriter) -> bytes:
        w = MessageWriter()
        w.message(key(3, LEN), datum_fields)
        return w.getvalue()

    bad_tensor = MessageWriter()
    bad_tensor.blob(key(1, LEN), b"\x00" * 5)  # not a whole number of float32
    bad_tensor.uint(key(3, VARINT), 1)
    entry = MessageWriter()
    entry.string(key(1, LEN), "weights")
    entry.message(key(2, LEN), bad_tensor)
    d = MessageWriter()
    d.message(key(2, LEN), entry)
    with pytest.raises(ProtobufDecodeError, match="whole number"):
        decode_forward_backward_request(datum_body(d), content_encoding=None)

    image = MessageWriter()
    image.string(key(2, LEN), "gif")
    chunk = MessageWriter()
    chunk.message(key(2, LEN), image)
    d = MessageWriter()
    d.message(key(1, LEN), chunk)
    with pytest.raises(ProtobufDecodeError, match="png or jpeg"):
        decode_forward_backward_request(datum_body(d), content_encoding=None)

    d = MessageWriter()
    d.message(key(1, LEN), MessageWriter())
    with pytest.raises(ProtobufDecodeError, match="empty Chunk"):
        decode_forward_backward_request(datum_body(d), content_encoding=None)

    unknown_dtype = MessageWriter()
    unknown_dtype.uint(key(3, VARINT), 9)
    entry = MessageWriter()
    entry.string(key(1, LEN), "x")
    entry.message(key(2, LEN), unknown_dtype)
    d = MessageWriter()
    d.message(key(2, LEN), entry)
    with pytest.raises(ProtobufDecodeError, match="DType 9"):
        decode_forward_backward_request(datum_body(d), content_encoding=None)


def test_unknown_fields_are_skipped() -> None:
    w = MessageWriter()
    w.string(key(1, LEN), "model")
    w.uint(key(99, VARINT), 5)
    w.raw(key(98, FIXED64) + b"\x00" * 8)
    w.raw(key(97, 5) + b"\x00" * 4)
    w.blob(key(96, LEN), b"whatever")
    assert decode_forward_backward_request(w.getvalue(), content_encoding=None).model_id == "model"


# -- ForwardBackwardOutput -------------------------------------------------------------------------


@settings(max_examples=60)
@given(outputs())
def test_output_round_trip(out: ForwardBackwardOutput) -> None:
    assert decode_forward_backward_output(encode_forward_backward_output(out)) == out


def test_ragged_outputs_split_into_records() -> None:
    out = ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[
            {"topk": TensorData.from_numpy(np.zeros((2, 3), np.float32))},
            {"topk": TensorData.from_numpy(np.zeros((4, 3), np.float32))},
            {"topk": TensorData.from_numpy(np.zeros((1, 5), np.float32))},
        ],
    )
    body = encode_forward_backward_output(out)
    assert [n for n, *_ in _fields(body)].count(2) == 2
    assert decode_forward_backward_output(body) == out


def _batched(data: bytes, offsets: list[int], dtype: int, trailing: list[int]) -> MessageWriter:
    bt = MessageWriter()
    bt.blob(key(1, LEN), data)
    bt.blob(key(2, LEN), np.array(offsets, dtype="<i8").tobytes())
    bt.uint(key(3, VARINT), dtype)
    if trailing:
        bt.blob(key(4, LEN), packed_varints(trailing))
    return bt


def _output_body(
    fields: dict[str, MessageWriter], num_datums: int, output_type: str = "mod:ArrayRecord"
) -> bytes:
    rec = MessageWriter()
    for name, bt in fields.items():
        entry = MessageWriter()
        entry.string(key(1, LEN), name)
        entry.message(key(2, LEN), bt)
        rec.message(key(2, LEN), entry)
    if num_datums:
        rec.uint(key(3, VARINT), num_datums)
    w = MessageWriter()
    w.string(key(1, LEN), output_type)
    w.message(key(2, LEN), rec)
    metric = MessageWriter()
    metric.string(key(1, LEN), "loss:sum")
    metric.double(key(2, FIXED64), 2.5)
    w.message(key(3, LEN), metric)
    return w.getvalue()


def test_output_bfloat16_int32_widening_suffix_and_num_datums_fallback() -> None:
    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    bf16 = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    ints = np.array([7, -8, 9, 10], dtype="<i4").tobytes()
    body = _output_body(
        {
            "lp": _batched(bf16, [0, 2, 6], 4, []),
            "ids": _batched(ints, [0, 8, 16], 3, [2]),
        },
        num_datums=0,  # a pre-num_datums encoder: the first field's count stands in
    )
    out = decode_forward_backward_output(body)
    assert out.loss_fn_output_type == "ArrayRecord"
    assert out.metrics == {"loss:sum": 2.5}
    assert len(out.loss_fn_outputs) == 2
    assert out.loss_fn_outputs[0]["lp"] == TensorData(data=[1.5], dtype="float32", shape=[1])
    assert out.loss_fn_outputs[1]["lp"] == TensorData(data=[-2.0, 3.25], dtype="float32")
    assert out.loss_fn_outputs[0]["ids"] == TensorData(data=[7, -8], dtype="int64", shape=[1, 2])
    assert out.loss_fn_outputs[1]["ids"].to_numpy().dtype == np.int64


def test_output_num_datums_survives_dropped_fields() -> None:
    out = decode_forward_backward_output(_output_body({}, num_datums=3))
    assert out.loss_fn_outputs == [{}, {}, {}]
    empty = decode_forward_backward_output(b"")
    assert empty.loss_fn_output_type == "ArrayRecord"
    assert empty.loss_fn_outputs == []


@pytest.mark.parametrize(
    ("fields", "num", "match"),
    [
        ({"a": _batched(b"\x00" * 8, [0, 4, 12], 1, [])}, 2, "within the 8 data"),
        ({"a": _batched(b"\x00" * 8, [0, 6, 8], 1, [])}, 2, "boundaries"),
        ({"a": _batched(b"\x00" * 8, [4, 8], 1, [])}, 1, "start at 0"),
        ({"a": _batched(b"\x00" * 12, [0, 12], 1, [2])}, 1, "rows of shape"),
        ({"a": _batched(b"\x00" * 8, [0, 8], 7, [])}, 1, "DType 7"),
        ({"a": _batched(b"\x00" * 8, [0, 8], 1, [])}, 2, "num_datums"),
    ],
)
def test_output_decode_errors(fields: dict[str, MessageWriter], num: int, match: str) -> None:
    with pytest.raises(ProtobufDecodeError, match=match):
        decode_forward_backward_output(_output_body(fields, num))


# -- SampleResponse --------------------------------------------------------------------------------


@settings(max_examples=60)
@given(sample_responses())
def test_sample_round_trip(resp: SampleResponse) -> None:
    assert decode_sample_response(encode_sample_response(resp), sequence_ids=None) == resp


@settings(max_examples=30)
@given(sample_responses())
def test_decoded_samples_behave_like_built_ones(resp: SampleResponse) -> None:
    # the decoder builds its results without __post_init__: they must be indistinguishable
    back = decode_sample_response(encode_sample_response(resp), sequence_ids=None)
    for built, decoded in [(resp, back), *zip(resp.sequences, back.sequences, strict=True)]:
        assert type(decoded) is type(built)
        assert vars(decoded).keys() == vars(built).keys()
        assert dataclasses.replace(decoded) == built
        assert pickle.loads(pickle.dumps(decoded)) == built
        with pytest.raises(dataclasses.FrozenInstanceError):
            decoded.sequence_id = "x"  # type: ignore[misc,union-attr]
    for seq in back.sequences:
        assert seq.tokens_np.dtype == np.int32
        assert seq.tokens_np.ndim == 1
        assert seq.tokens == seq.tokens_np.tolist()
        assert seq.logprobs_np is None or seq.logprobs_np.dtype == np.float32
    assert back.prompt_logprobs == resp.prompt_logprobs


def test_sample_lists_nan_topk_trimming_and_sequence_ids() -> None:
    topk = TopkLogprobs.from_lists([None, [(5, -0.5)], [(1, -0.1), (2, -0.2)]], k=2)
    resp = SampleResponse.with_prompt_logprobs(
        [
            SampledSequence(
                stop_reason="length", tokens_np=np.array([3, 4]), topk_logprobs_np=topk
            ),
            SampledSequence(
                stop_reason="stop", tokens_np=np.array([5]), logprobs_np=np.array([-1.0])
            ),
        ],
        [None, -0.25, -1.5],
        topk_prompt_logprobs_np=topk,
        prompt_cache_hit_tokens=2,
    )
    back = decode_sample_response(encode_sample_response(resp), sequence_ids=["s0", "s1"])
    assert back.prompt_logprobs == [None, -0.25, -1.5]
    assert back.prompt_cache_hit_tokens == 2
    assert [s.sequence_id for s in back.sequences] == ["s0", "s1"]
    assert back.sequences[0].tokens == [3, 4]
    assert back.sequences[0].stop_reason == "length"
    assert back.sequences[0].logprobs is None
    assert back.sequences[1].logprobs == [-1.0]
    expected_rows = [None, [(5, -0.5)], [(1, pytest.approx(-0.1)), (2, pytest.approx(-0.2))]]
    assert back.topk_prompt_logprobs == expected_rows
    assert back.sequences[0].topk_logprobs == expected_rows
    assert back.target_prompt_logprobs is None
    assert back.prompt_alt_tokens is None
    with pytest.raises(ProtobufDecodeError, match="2 sequences but the submission named 1"):
        decode_sample_response(encode_sample_response(resp), sequence_ids=["s0"])


def test_sample_unknown_stop_reason_and_bad_sizes() -> None:
    seq = MessageWriter()
    seq.uint(key(1, VARINT), 7)
    w = MessageWriter()
    w.message(key(1, LEN), seq)
    with pytest.raises(ProtobufDecodeError, match="stop_reason 7"):
        decode_sample_response(w.getvalue(), sequence_ids=None)
    seq = MessageWriter()
    seq.blob(key(2, LEN), array_view(np.array([1, 2], dtype=np.int32)))
    seq.blob(key(3, LEN), array_view(np.array([1.0], dtype=np.float32)))
    w = MessageWriter()
    w.message(key(1, LEN), seq)
    with pytest.raises(ProtobufDecodeError, match="1 logprobs for 2 tokens"):
        decode_sample_response(w.getvalue(), sequence_ids=None)
    topk = MessageWriter()
    topk.blob(key(1, LEN), b"\x00" * 4)
    topk.uint(key(3, VARINT), 2)
    topk.uint(key(4, VARINT), 2)
    w = MessageWriter()
    w.message(key(3, LEN), topk)
    with pytest.raises(ProtobufDecodeError, match="2x2 cells"):
        decode_sample_response(w.getvalue(), sequence_ids=None)


def test_topk_with_zero_length_or_k_is_absent() -> None:
    topk = MessageWriter()
    topk.uint(key(3, VARINT), 4)
    w = MessageWriter()
    w.message(key(3, LEN), topk)
    assert decode_sample_response(w.getvalue(), sequence_ids=None).topk_prompt_logprobs is None


def test_varint_encoding_of_negatives_and_large_values() -> None:
    assert varint(0) == b"\x00"
    assert varint(300) == b"\xac\x02"
    assert varint(-1) == b"\xff" * 9 + b"\x01"
    assert len(varint(2**63)) == 10
