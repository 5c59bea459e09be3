"""Chunking of forward_backward batches and merging of chunk results (protocol.md §9.1-§9.2)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.clients._chunking import (
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_CHUNK_LEN,
    chunk_data,
    combine_metrics,
    combine_outputs,
    estimate_datum_bytes,
    estimate_sample_bytes,
    plan_chunks,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    Datum,
    DmelChunk,
    ForwardBackwardOutput,
    ImageAssetPointerChunk,
    ImageChunk,
    ModelInput,
    TensorData,
)


def _datum(n_tokens: int, *, tag: int = 0) -> Datum:
    tokens = [tag % 1000 + i for i in range(n_tokens)]
    return Datum(
        model_input=ModelInput.from_ints(tokens),
        loss_fn_inputs={"target_tokens": tokens, "weights": [1.0] * n_tokens},
    )


def _output(n: int, metrics: dict[str, float], kind: str = "ArrayRecord") -> ForwardBackwardOutput:
    records = [
        {"logprobs": TensorData(data=[float(i)], dtype="float32", shape=[1])} for i in range(n)
    ]
    return ForwardBackwardOutput(loss_fn_output_type=kind, loss_fn_outputs=records, metrics=metrics)


# -- estimates ----------------------------------------------------------------------------------


def test_datum_estimate_counts_tokens_as_int32_and_tensors_by_bytes() -> None:
    d = _datum(10)
    # 10 tokens * 4 B + target_tokens int64 (80 B) + weights float32 (40 B)
    assert estimate_datum_bytes(d) == 40 + 80 + 40


def test_datum_estimate_counts_images_pointers_and_dmel() -> None:
    mi = (
        ModelInput.from_ints([1, 2])
        .append(ImageChunk(data=b"x" * 100, format="png", expected_tokens=3))
        .append(
            ImageAssetPointerChunk(format="jpeg", location="s3://bucket/img", expected_tokens=2)
        )
        .append(DmelChunk(dmel=bytes([3, 1, 4]) + b"\0" * 13))
    )
    d = Datum(model_input=mi)
    assert estimate_datum_bytes(d) == 2 * 4 + 100 + len("s3://bucket/img") + 16


def test_datum_estimate_counts_sparse_indices() -> None:
    dense = np.zeros((4, 50), dtype=np.int64)
    dense[0, 3] = 7
    sparse = TensorData.from_numpy(dense, sparse=True)
    assert sparse.is_sparse
    d = Datum(model_input=ModelInput.from_ints([1]), loss_fn_inputs={"target_tokens": sparse})
    # one int64 value + (5 row pointers + 1 column index) * 8 B, plus 1 token * 4 B
    assert estimate_datum_bytes(d) == 4 + 8 + 6 * 8


def test_sample_estimate_is_ten_bytes_per_token() -> None:
    prompt = ModelInput.from_ints(range(7)).append(ImageChunk(data=b"abc", format="png"))
    assert estimate_sample_bytes(prompt) == 70 + 3


def test_estimates_refuse_wrong_types() -> None:
    with pytest.raises(TypeError, match="Datum"):
        estimate_datum_bytes(ModelInput.from_ints([1]))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ModelInput"):
        estimate_sample_bytes([1, 2])  # type: ignore[arg-type]


# -- chunking -----------------------------------------------------------------------------------


def test_defaults_are_the_protocol_flag_defaults() -> None:
    assert (DEFAULT_MAX_CHUNK_LEN, DEFAULT_MAX_CHUNK_BYTES) == (1024, 5_000_000)


def test_empty_data_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="No data provided"):
        chunk_data([])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, None])
def test_limits_must_be_positive_ints(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="max_len"):
        chunk_data([_datum(1)], max_len=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_bytes"):
        chunk_data([_datum(1)], max_bytes=bad)  # type: ignore[arg-type]


def test_non_datum_items_are_refused() -> None:
    with pytest.raises(TypeError, match=r"data\[1\]"):
        chunk_data([_datum(1), "oops"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="list of Datum"):
        chunk_data(_datum(1))  # type: ignore[arg-type]


def test_length_limit_splits_exactly() -> None:
    data = [_datum(1, tag=i) for i in range(10)]
    assert [len(c) for c in chunk_data(data, max_len=4)] == [4, 4, 2]


def test_byte_limit_splits_before_overflow_and_oversize_travels_alone() -> None:
    small = _datum(1)  # 4 + 8 + 4 = 16 bytes
    big = _datum(100)  # 400 + 800 + 400 = 1600 bytes
    assert estimate_datum_bytes(small) == 16
    chunks = plan_chunks([small, small, big, small, small, small], max_bytes=48)
    assert [len(c.data) for c in chunks] == [2, 1, 3]
    assert [c.nbytes for c in chunks] == [32, 1600, 48]
    # a chunk may reach the limit exactly
    assert [len(c) for c in chunk_data([small] * 6, max_bytes=48)] == [3, 3]


def test_default_limits_keep_a_typical_batch_in_one_chunk() -> None:
    data = [_datum(64, tag=i) for i in range(128)]
    assert len(chunk_data(data)) == 1


datums = st.builds(lambda n, tag: _datum(n, tag=tag), st.integers(0, 40), st.integers(0, 10_000))


@settings(max_examples=150, deadline=None)
@given(
    data=st.lists(datums, min_size=1, max_size=40),
    max_len=st.integers(1, 12),
    max_bytes=st.integers(1, 3000),
)
def test_chunks_preserve_order_and_respect_limits(
    data: list[Datum], max_len: int, max_bytes: int
) -> None:
    chunks = plan_chunks(data, max_len=max_len, max_bytes=max_bytes)
    flat = [d for c in chunks for d in c.data]
    assert len(flat) == len(data)
    assert all(a is b for a, b in zip(flat, data, strict=True))
    for chunk in chunks:
        assert 1 <= len(chunk.data) <= max_len
        assert chunk.nbytes == sum(estimate_datum_bytes(d) for d in chunk.data)
        if len(chunk.data) > 1:
            assert chunk.nbytes <= max_bytes
    # greedy: a chunk closed early only because the next datum did not fit
    for this, nxt in itertools.pairwise(chunks):
        if len(this.data) < max_len:
            assert this.nbytes + estimate_datum_bytes(nxt.data[0]) > max_bytes


# -- combining ----------------------------------------------------------------------------------


def test_outputs_concatenate_in_chunk_order_and_type_comes_from_first() -> None:
    a, b = _output(2, {}, "A"), _output(3, {}, "B")
    merged = combine_outputs([a, b])
    assert merged.loss_fn_output_type == "A"
    assert merged.loss_fn_outputs == [*a.loss_fn_outputs, *b.loss_fn_outputs]


def test_combine_refuses_no_chunks() -> None:
    with pytest.raises(InvalidInputError):
        combine_outputs([])
    with pytest.raises(InvalidInputError, match="weights"):
        combine_metrics([{"a:sum": 1.0}], [1, 2])


def test_reductions() -> None:
    first = {
        "loss:mean": 1.0,
        "loss:sum": 10.0,
        "lr:min": 3.0,
        "lr:max": 3.0,
        "gap:slack": 2.0,
        "h:hash2": float(2**63),
        "tag:unique": 7.0,
        "x:median": 1.0,
        "nocolon": 5.0,
        "only_first:sum": 1.0,
    }
    second = {
        "loss:mean": 4.0,
        "loss:sum": 5.0,
        "lr:min": 1.0,
        "lr:max": 9.0,
        "gap:slack": 8.0,
        "h:hash2": float(2**63 + 2**12),
        "tag:unique": 8.0,
        "x:median": 2.0,
        "nocolon": 5.0,
        "only_second:sum": 1.0,
    }
    third = {**second, "tag:unique": 9.0, "only_first:sum": 2.0}
    merged = combine_outputs([_output(1, first), _output(3, second), _output(0, third)]).metrics
    assert merged["loss:mean"] == pytest.approx((1.0 * 1 + 4.0 * 3 + 4.0 * 0) / 4)
    assert merged["loss:sum"] == 20.0
    assert merged["lr:min"] == 1.0
    assert merged["lr:max"] == 9.0
    assert merged["gap:slack"] == pytest.approx(8.0 - (2.0 + 8.0 * 3) / 4)
    # (2**63) + 2 * (2**63 + 2**12) wraps modulo 2**64
    assert merged["h:hash2"] == (2**63 + 2 * (2**63 + 2**12)) % 2**64
    assert (merged["tag:unique"], merged["tag:unique_2"], merged["tag:unique_3"]) == (7.0, 8.0, 9.0)
    assert "x:median" not in merged
    assert "nocolon" not in merged
    assert "only_first:sum" not in merged  # missing from the second chunk
    assert "only_second:sum" not in merged  # not in the first chunk


def test_mean_of_empty_chunks_falls_back_to_plain_mean() -> None:
    merged = combine_metrics([{"a:mean": 1.0}, {"a:mean": 3.0}], [0, 0])
    assert merged == {"a:mean": 2.0}


def test_hash2_with_non_finite_value_is_dropped() -> None:
    assert combine_metrics([{"h:hash2": 1.0}, {"h:hash2": math.nan}], [1, 1]) == {}


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(0, 5),
    values=st.dictionaries(
        st.sampled_from(["a", "b:c", "loss"]).flatmap(
            lambda name: st.sampled_from(
                [f"{name}:{r}" for r in ("mean", "sum", "min", "max", "slack", "unique")]
            )
        ),
        finite,
        max_size=6,
    ),
)
def test_combine_of_one_chunk_is_identity(n: int, values: dict[str, float]) -> None:
    out = _output(n, values)
    merged = combine_outputs([out])
    assert merged == out


@settings(max_examples=100, deadline=None)
@given(chunks=st.lists(st.tuples(st.integers(1, 50), finite), min_size=1, max_size=8))
def test_mean_is_weighted_by_outputs_per_chunk(chunks: list[tuple[int, float]]) -> None:
    outputs = [_output(n, {"m:mean": v}) for n, v in chunks]
    merged = combine_outputs(outputs).metrics["m:mean"]
    # the same as the plain mean over datums, each chunk's value repeated per datum
    per_datum = [v for n, v in chunks for _ in range(n)]
    assert merged == pytest.approx(math.fsum(per_datum) / len(per_datum), rel=1e-9, abs=1e-9)
    assert min(v for _, v in chunks) - 1e-9 <= merged <= max(v for _, v in chunks) + 1e-9
