"""TensorData: dtype rules, shape/CSR validation, conversions and the JSON form."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest
from hypothesis import assume, given
from strategies_wire import tensors

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._tensor import (
    TensorData,
    json_dec_hook,
    json_enc_hook,
)


class Holder(msgspec.Struct, forbid_unknown_fields=True):
    t: TensorData | None = None


ENC = msgspec.json.Encoder(enc_hook=json_enc_hook)
DEC = msgspec.json.Decoder(Holder, dec_hook=json_dec_hook)


def test_from_numpy_keeps_wire_dtypes_without_copy() -> None:
    a = np.arange(6, dtype=np.int64).reshape(2, 3)
    t = TensorData.from_numpy(a)
    assert t.dtype == "int64"
    assert t.shape == [2, 3]
    assert t.to_numpy() is a
    f = TensorData.from_numpy(np.ones(3, dtype=np.float32))
    assert f.dtype == "float32"
    assert f.data == [1.0, 1.0, 1.0]


@pytest.mark.parametrize(
    ("dtype", "wire"),
    [
        (np.float64, "float32"),
        (np.float16, "float32"),
        (np.int32, "int64"),
        (np.int16, "int64"),
        (np.int8, "int64"),
        (np.uint8, "int64"),
        (np.uint32, "int64"),
        (np.uint64, "int64"),
    ],
)
def test_other_numeric_dtypes_convert_silently_as_in_0_38(dtype: type, wire: str) -> None:
    # filterwarnings=error: a warning here would fail the test.
    t = TensorData.from_numpy(np.array([1, 2], dtype=dtype), field="loss_fn_inputs['w']")
    assert t.dtype == wire
    assert t.to_numpy().dtype == np.dtype(wire)
    assert t.tolist() == [1, 2]


@pytest.mark.parametrize(
    "array",
    [
        np.array([True, False]),
        np.array([1 + 2j]),
        np.array(["a"]),
        np.array([object()], dtype=object),
        np.array(["2020-01-01"], dtype="datetime64[D]"),
    ],
)
def test_non_numeric_dtypes_are_refused_naming_field_and_accepted_dtypes(
    array: np.ndarray,
) -> None:
    with pytest.raises(InvalidInputError, match=r"advantages.*int.*float"):
        TensorData.from_numpy(array, field="advantages")


def test_uint64_beyond_int64_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="int64"):
        TensorData.from_numpy(np.array([2**64 - 1], dtype=np.uint64))


def test_constructor_validates_dtype_shape_and_values() -> None:
    with pytest.raises(InvalidInputError, match="dtype must be"):
        TensorData(data=[1], dtype="float64")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="3 elements but shape \\[2, 2\\] needs 4"):
        TensorData(data=[1, 2, 3], dtype="int64", shape=[2, 2])
    with pytest.raises(InvalidInputError, match=r"1\.5 at index 0 is not an integer"):
        TensorData(data=[1.5], dtype="int64")
    with pytest.raises(InvalidInputError, match="rectangular"):
        TensorData(data=[[1, 2], [3]], dtype="int64")
    with pytest.raises(InvalidInputError, match="non-negative"):
        TensorData(data=[], dtype="int64", shape=[-1])
    with pytest.raises(InvalidInputError, match="cannot be sent"):
        TensorData(data=["x"], dtype="float32")
    t = TensorData(data=[1.0, 2.0], dtype="int64")
    assert t.dtype == "int64"
    assert t.data == [1, 2]
    assert t.shape is None
    assert t.numel == 2


def test_csr_round_trip_with_pad_value() -> None:
    dense = np.full((3, 5), -1, dtype=np.int64)
    dense[0, 1] = 7
    dense[2, 4] = 9
    t = TensorData.from_numpy(dense, sparse=True, pad_value=-1)
    assert t.is_sparse
    assert t.sparse_crow_indices == [0, 1, 1, 2]
    assert t.sparse_col_indices == [1, 4]
    assert t.data == [7, 9]
    assert t.numel == 15
    np.testing.assert_array_equal(t.to_numpy(pad_value=-1), dense)
    assert t.to_dense(pad_value=-1) == TensorData.from_numpy(dense)
    assert t.nbytes == 2 * 8 + 8 * (4 + 2)


def test_csr_only_when_smaller_and_only_2d() -> None:
    full = np.ones((2, 2), dtype=np.float32)
    assert not TensorData.from_numpy(full, sparse=True).is_sparse
    assert not TensorData.from_numpy(np.zeros(9, dtype=np.float32), sparse=True).is_sparse


@pytest.mark.parametrize(
    ("crow", "col", "shape", "match"),
    [
        ([0, 1], [0], [2, 2], "rows \\+ 1 = 3"),
        ([1, 1, 1], [0], [2, 2], "start at 0"),
        ([0, 2, 1], [0], [2, 2], "never decrease"),
        ([0, 1, 2], [0], [2, 2], "end at the number of values"),
        ([0, 0, 1], [5], [2, 2], "\\[0, 2\\)"),
        ([0, 0, 1], [0], None, "2-D shape"),
        ([0, 0, 1], [0], [2], "2-D shape"),
    ],
)
def test_csr_validation(
    crow: list[int], col: list[int], shape: list[int] | None, match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        TensorData(
            data=[1.0],
            dtype="float32",
            shape=shape,
            sparse_crow_indices=crow,
            sparse_col_indices=col,
        )


def test_csr_indices_come_in_pairs() -> None:
    with pytest.raises(InvalidInputError, match="together"):
        TensorData(data=[1], dtype="int64", shape=[1, 1], sparse_crow_indices=[0, 1])


def test_pad_value_must_be_an_integer() -> None:
    with pytest.raises(TypeError, match="pad_value"):
        TensorData.from_numpy(np.zeros((2, 9), np.float32), sparse=True, pad_value=0.5)  # type: ignore[arg-type]


def test_from_numpy_rejects_non_arrays() -> None:
    with pytest.raises(TypeError, match="numpy array"):
        TensorData.from_numpy([1, 2])  # type: ignore[arg-type]


def test_json_form_matches_protocol() -> None:
    t = TensorData(data=[1, 2, 3, 4], dtype="int64", shape=[2, 2])
    assert ENC.encode(Holder(t=t)) == b'{"t":{"data":[1,2,3,4],"dtype":"int64","shape":[2,2]}}'
    one_d = TensorData(data=[0.5], dtype="float32")
    assert ENC.encode(one_d) == b'{"data":[0.5],"dtype":"float32"}'
    csr = TensorData.from_numpy(np.array([[0, 0, 0, 3, 0]], dtype=np.int64), sparse=True)
    assert msgspec.json.decode(ENC.encode(csr)) == {
        "data": [3],
        "dtype": "int64",
        "shape": [1, 5],
        "sparse_crow_indices": [0, 1],
        "sparse_col_indices": [3],
    }


def test_json_decode_validates() -> None:
    assert DEC.decode(b'{"t":{"data":[1,2],"dtype":"float32"}}').t == TensorData(
        data=[1.0, 2.0], dtype="float32"
    )
    with pytest.raises(msgspec.ValidationError, match="unknown keys"):
        DEC.decode(b'{"t":{"data":[1],"dtype":"int64","extra":1}}')
    with pytest.raises(msgspec.ValidationError, match="needs 3"):
        DEC.decode(b'{"t":{"data":[1],"dtype":"int64","shape":[3]}}')
    with pytest.raises(msgspec.ValidationError, match="required"):
        DEC.decode(b'{"t":{"data":[1]}}')


@given(tensors())
def test_json_round_trip(t: TensorData) -> None:
    assume(bool(np.all(np.isfinite(t.array))))  # JSON has no inf/NaN
    back = DEC.decode(ENC.encode(Holder(t=t))).t
    assert back == t
    assert back is not None
    assert back.is_sparse == t.is_sparse


@given(tensors())
def test_dense_view_agrees_with_sparse(t: TensorData) -> None:
    dense = t.to_numpy()
    assert list(dense.shape) == (t.shape if t.shape is not None else [t.numel])
    assert t.to_dense() == TensorData.from_numpy(dense)


def test_equality_covers_dtype_shape_layout_and_nan() -> None:
    a = TensorData(data=[1.0, float("nan")], dtype="float32")
    assert a == TensorData(data=[1.0, float("nan")], dtype="float32", shape=[2])
    assert a != TensorData(data=[1.0, 2.0], dtype="float32")
    assert a != TensorData(data=[1, 2], dtype="int64")
    assert a != TensorData(data=[1.0, float("nan")], dtype="float32", shape=[1, 2])
    assert a != "not a tensor"
    assert "TensorData(dtype='float32'" in repr(a)


def test_torch_round_trip() -> None:
    torch = pytest.importorskip("torch")
    t = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 2]], dtype=torch.int64)
    td = TensorData.from_torch(t, sparse=True)
    assert td.is_sparse
    assert torch.equal(td.to_torch(), t)
    bf = TensorData.from_torch(torch.ones(3, dtype=torch.bfloat16))  # widened silently
    assert bf.dtype == "float32"
    with pytest.raises(InvalidInputError):
        TensorData.from_torch(torch.tensor([True]))
