"""ModelInput chunks (JSON shape, lengths, conveniences) and Datum input conversion."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies_wire import chunks

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._datum import Datum, PromptProvenanceSpan, SampledProvenanceSpan
from tinker_actors.types._model_input import (
    DmelChunk,
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    tensor_container_shape,
)
from tinker_actors.types._tensor import TensorData

PROTOCOL_EXAMPLE = (
    b'{"chunks":[{"tokens":[1,2,3],"type":"encoded_text"},'
    b'{"data":"iVBORw==","format":"png","expected_tokens":4,"type":"image"}]}'
)


def test_decodes_the_protocol_example_and_re_encodes_equivalently() -> None:
    mi = msgspec.json.decode(PROTOCOL_EXAMPLE, type=ModelInput)
    assert mi.chunks == [
        EncodedTextChunk(tokens=[1, 2, 3]),
        ImageChunk(data=b"\x89PNG", format="png", expected_tokens=4),
    ]
    assert msgspec.json.decode(msgspec.json.encode(mi)) == msgspec.json.decode(PROTOCOL_EXAMPLE)
    assert mi.length == 7


def test_none_fields_are_dropped_and_defaults_sent() -> None:
    chunk = ImageChunk(data=b"ab", format="jpeg", expected_tokens=None)
    assert chunk.expected_tokens is None  # reads as in 0.38, and is left out of the JSON
    assert msgspec.json.encode(chunk) == b'{"type":"image","data":"YWI=","format":"jpeg"}'
    decoded = msgspec.json.decode(
        b'{"type":"image","data":"","format":"png","expected_tokens":null}', type=ImageChunk
    )
    assert decoded.expected_tokens is None
    pointer = ImageAssetPointerChunk(format="png", location="s3://x.png")
    assert msgspec.json.encode(pointer) == (
        b'{"type":"image_asset_pointer","format":"png","location":"s3://x.png"}'
    )


@pytest.mark.parametrize(
    "body",
    [
        b'{"chunks":[{"tokens":[1],"type":"encoded_text","extra":1}]}',
        b'{"chunks":[{"tokens":[1],"type":"nope"}]}',
        b'{"chunks":[],"extra":1}',
        b'{"chunks":[{"data":"","format":"gif","type":"image"}]}',
    ],
)
def test_requests_reject_unknown_fields_tags_and_values(body: bytes) -> None:
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(body, type=ModelInput)


@given(st.lists(chunks, max_size=4))
def test_json_round_trip(chunk_list: list[EncodedTextChunk | ImageChunk | DmelChunk]) -> None:
    mi = ModelInput(chunks=chunk_list)
    assert msgspec.json.decode(msgspec.json.encode(mi), type=ModelInput) == mi


def test_conveniences() -> None:
    mi = ModelInput.from_ints([1, 2])
    assert mi.to_ints() == [1, 2]
    assert mi.append_int(3).to_ints() == [1, 2, 3]
    assert len(mi.append_int(3).chunks) == 1  # extends the trailing text chunk
    assert mi.to_ints() == [1, 2]  # immutable
    assert ModelInput.empty().length == 0
    assert ModelInput.from_ints(np.array([4, 5])).to_ints() == [4, 5]
    with_image = mi.append(ImageChunk(data=b"", format="png", expected_tokens=3)).append_int(9)
    assert with_image.length == 6
    assert len(with_image.chunks) == 3
    with pytest.raises(InvalidInputError, match="text-only"):
        with_image.to_ints()


def test_image_length_needs_expected_tokens() -> None:
    mi = ModelInput(chunks=[ImageChunk(data=b"x", format="png")])
    with pytest.raises(InvalidInputError, match="expected_tokens"):
        _ = mi.length
    with pytest.raises(InvalidInputError, match="expected_tokens"):
        _ = ImageAssetPointerChunk(format="png", location="x").length
    assert ImageAssetPointerChunk(format="png", location="x", expected_tokens=2).length == 2


def _container(dims: list[int], *, constant: bool = False) -> bytes:
    out = bytearray([254] if constant else [])
    out += bytes([2, len(dims)])
    for d in dims:
        while d > 0x7F:
            out.append((d & 0x7F) | 0x80)
            d >>= 7
        out.append(d)
    return bytes(out) + b"\x00" * 8


@given(st.lists(st.integers(0, 2**40), min_size=1, max_size=4), st.booleans())
def test_dmel_length_reads_dim_zero_of_the_container(dims: list[int], constant: bool) -> None:
    blob = _container(dims, constant=constant)
    assert tensor_container_shape(blob) == tuple(dims)
    assert DmelChunk(dmel=blob).length == dims[0]


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (b"", "empty"),
        (b"\xfe", "truncated"),
        (b"\x09\x01\x01", "dtype byte"),
        (b"\x01\x02\x05", "truncated"),
        (b"\x01\x01" + b"\xff" * 11, "too long"),
        (b"\x01\x00", "0-D"),
    ],
)
def test_dmel_header_errors(blob: bytes, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        _ = DmelChunk(dmel=blob).length


def test_dmel_is_base64_in_json() -> None:
    assert msgspec.json.encode(DmelChunk(dmel=b"\x01\x00")) == b'{"type":"dmel","dmel":"AQA="}'


# -- Datum ---------------------------------------------------------------------------------------


def test_datum_infers_dtypes_from_keys_for_plain_lists() -> None:
    d = Datum(
        model_input=ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={
            "target_tokens": [2, 3, 4],
            "weights": [0, 1, 1],
            "advantages": [0.5, 0.5, 0.5],
            "logprobs": [],
            "clip_low_threshold": [[0.1, 0.2, 0.3]],
        },
    )
    inputs = d.loss_fn_inputs
    assert inputs["target_tokens"] == TensorData(data=[2, 3, 4], dtype="int64", shape=[3])
    assert inputs["weights"].dtype == "float32"
    assert inputs["advantages"].dtype == "float32"
    assert inputs["logprobs"].numel == 0
    assert inputs["clip_low_threshold"].shape == [1, 3]


def test_datum_errors() -> None:
    mi = ModelInput.from_ints([1])
    with pytest.raises(InvalidInputError, match=r"'mask'.*TensorData.*dtype"):
        Datum(model_input=mi, loss_fn_inputs={"mask": [1, 0]})
    with pytest.raises(InvalidInputError, match="ragged"):
        Datum(model_input=mi, loss_fn_inputs={"weights": [[1.0], [1.0, 2.0]]})
    with pytest.raises(InvalidInputError, match=r"1\.5 at index 0 is not an integer"):
        Datum(model_input=mi, loss_fn_inputs={"target_tokens": [1.5]})
    with pytest.raises(InvalidInputError, match="numbers"):
        Datum(model_input=mi, loss_fn_inputs={"weights": ["a"]})
    with pytest.raises(TypeError, match="unsupported value"):
        Datum(model_input=mi, loss_fn_inputs={"weights": {1, 2}})
    with pytest.raises(TypeError, match="ModelInput"):
        Datum(model_input=[1, 2], loss_fn_inputs={})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pair"):
        Datum(model_input=mi, model_input_spans=[PromptProvenanceSpan(sequence_id="s", length=1)])


def test_datum_arrays_take_their_keys_dtype_and_other_keys_keep_their_kind() -> None:
    mi = ModelInput.from_ints([1])
    d = Datum(model_input=mi, loss_fn_inputs={"weights": np.ones(1)})  # float64: silently
    assert d.loss_fn_inputs["weights"].dtype == "float32"
    mask = np.array([1, 0], dtype=np.int64)
    assert Datum(model_input=mi, loss_fn_inputs={"mask": mask}).loss_fn_inputs["mask"].dtype == (
        "int64"
    )


def test_spans_validate_and_tile() -> None:
    with pytest.raises(InvalidInputError, match="non-empty"):
        PromptProvenanceSpan(sequence_id="", length=1)
    with pytest.raises(InvalidInputError, match=">= 0"):
        SampledProvenanceSpan(sequence_id="s", offset=-1, length=1)
    d = Datum(
        model_input=ModelInput.from_ints([1, 2, 3]), loss_fn_inputs={"target_tokens": [1, 2, 3]}
    )
    spans = [
        PromptProvenanceSpan(sequence_id="p", length=2),
        SampledProvenanceSpan(sequence_id="s", length=1),
    ]
    with_spans = d.with_provenance(spans, [SampledProvenanceSpan(sequence_id="s", length=3)])
    assert with_spans.model_input_spans == spans
    assert d.model_input_spans is None
    with pytest.raises(InvalidInputError, match="cover 2 positions but the field has 3"):
        d.with_provenance(spans[:1], spans)
    with pytest.raises(InvalidInputError, match="loss_fn_inputs spans cover"):
        d.with_provenance(spans, spans[:1])
