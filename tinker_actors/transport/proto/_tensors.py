"""``tinker_public.Tensor`` and ``BatchedTensor`` <-> :class:`TensorData`.

Wire dtypes (``DType``): FLOAT32 = 1, INT64 = 2, INT32 = 3, BFLOAT16 = 4. We write only FLOAT32
and INT64; on read INT32 widens to int64 and BFLOAT16 (uint16 words, the top half of a float32)
widens to float32 — public tensors are only ever int64 or float32.
"""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto._wire import (
    LEN,
    VARINT,
    MessageWriter,
    ProtobufDecodeError,
    array_view,
    expect,
    iter_fields,
    key,
    packed_varints,
    read_array,
    read_packed_int64,
)
from tinker_actors.types._tensor import TensorData, TensorDtype

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = [
    "DTYPE_BFLOAT16",
    "DTYPE_FLOAT32",
    "DTYPE_INT32",
    "DTYPE_INT64",
    "decode_batched_tensor",
    "decode_tensor",
    "encode_batched_tensor",
    "encode_tensor",
]

DTYPE_FLOAT32: Final = 1
DTYPE_INT64: Final = 2
DTYPE_INT32: Final = 3
DTYPE_BFLOAT16: Final = 4

_TO_WIRE: Final[dict[str, int]] = {"float32": DTYPE_FLOAT32, "int64": DTYPE_INT64}
_WIRE_NUMPY: Final[dict[int, np.dtype[Any]]] = {
    DTYPE_FLOAT32: np.dtype(np.float32),
    DTYPE_INT64: np.dtype(np.int64),
    DTYPE_INT32: np.dtype(np.int32),
    DTYPE_BFLOAT16: np.dtype(np.uint16),
}
_PUBLIC: Final[dict[int, TensorDtype]] = {
    DTYPE_FLOAT32: "float32",
    DTYPE_BFLOAT16: "float32",
    DTYPE_INT64: "int64",
    DTYPE_INT32: "int64",
}

# Tensor: dense = 1 | sparse_csr = 2 (oneof), dtype = 3, shape = 4 (packed int64)
_T_DENSE = key(1, LEN)
_T_CSR = key(2, LEN)
_T_DTYPE = key(3, VARINT)
_T_SHAPE = key(4, LEN)
# SparseCsr: values = 1, crow_indices = 2, col_indices = 3
_C_VALUES = key(1, LEN)
_C_CROW = key(2, LEN)
_C_COL = key(3, LEN)
# BatchedTensor: data = 1, offsets = 2, dtype = 3, trailing_shape = 4
_B_DATA = key(1, LEN)
_B_OFFSETS = key(2, LEN)
_B_DTYPE = key(3, VARINT)
_B_TRAILING = key(4, LEN)


def _shape_field(w: MessageWriter, tag: bytes, dims: list[int] | tuple[int, ...]) -> None:
    if dims:
        w.blob(tag, packed_varints(dims))


def encode_tensor(td: TensorData, what: str) -> MessageWriter:
    """Encode ``td`` as a ``Tensor`` message (dense bytes, or CSR with int64 indices)."""
    wire_dtype = _TO_WIRE.get(td.dtype)
    if wire_dtype is None:  # TensorData guarantees this; a defence against hand-built objects
        raise InvalidInputError(f"{what}: unsupported dtype {td.dtype!r}")
    w = MessageWriter()
    crow, col = td.crow_array, td.col_array
    if crow is None or col is None:
        w.blob(_T_DENSE, array_view(td.array))
    else:
        csr = MessageWriter()
        for tag, arr in ((_C_VALUES, td.array), (_C_CROW, crow), (_C_COL, col)):
            if arr.size:
                csr.blob(tag, array_view(arr))
        w.message(_T_CSR, csr)
    w.uint(_T_DTYPE, wire_dtype)
    # Always send the shape: a missing one means 1-D to us, but the official decoder reshapes
    # to ``[]`` and fails, so 1-D tensors without a declared shape go out as ``[numel]``.
    shape = td.shape
    _shape_field(w, _T_SHAPE, shape if shape is not None else [td.numel])
    return w


def _widen(array: npt.NDArray[Any], wire_dtype: int) -> npt.NDArray[Any]:
    if wire_dtype == DTYPE_BFLOAT16:
        return (array.astype(np.uint32) << 16).view(np.float32)
    if wire_dtype == DTYPE_INT32:
        return array.astype(np.int64)
    return array


def _wire_dtype(value: int, what: str) -> np.dtype[Any]:
    np_dtype = _WIRE_NUMPY.get(value)
    if np_dtype is None:
        raise ProtobufDecodeError(f"{what}: unsupported DType {value}")
    return np_dtype


def decode_tensor(buf: bytes, start: int, end: int, what: str) -> TensorData:
    """Decode a ``Tensor`` message in ``buf[start:end]`` (CSR stays CSR).

    An absent shape means 1-D. Raises :class:`ProtobufDecodeError` on bad data.
    """
    wire_dtype = 0
    dense: tuple[int, int] | None = None
    csr: tuple[int, int] | None = None
    shape: list[int] = []
    for number, wt, a, b in iter_fields(buf, start, end):
        if number == 1:
            expect(wt, LEN, f"{what}.dense")
            dense, csr = (a, b), None
        elif number == 2:
            expect(wt, LEN, f"{what}.sparse_csr")
            csr, dense = (a, b), None
        elif number == 3:
            expect(wt, VARINT, f"{what}.dtype")
            wire_dtype = a
        elif number == 4:
            read_packed_int64(buf, wt, a, b, shape, f"{what}.shape")
    np_dtype = _wire_dtype(wire_dtype, what)
    public = _PUBLIC[wire_dtype]
    if csr is None:
        lo, hi = dense if dense is not None else (0, 0)
        values = _widen(read_array(buf, lo, hi, np_dtype, f"{what}.dense"), wire_dtype)
        if not shape:
            return TensorData._trusted(values, public, None)
        if any(d < 0 for d in shape) or math.prod(shape) != values.size:
            raise ProtobufDecodeError(f"{what}: {values.size} values do not fill shape {shape}")
        return TensorData._trusted(values.reshape(shape), public, tuple(shape))
    parts: dict[int, tuple[int, int]] = {}
    for number, wt, a, b in iter_fields(buf, *csr):
        if number in (1, 2, 3):
            expect(wt, LEN, f"{what}.sparse_csr")
            parts[number] = (a, b)
    empty = (0, 0)
    values = _widen(
        read_array(buf, *parts.get(1, empty), np_dtype, f"{what}.sparse_csr.values"), wire_dtype
    )
    i64 = np.dtype(np.int64)
    crow = read_array(buf, *parts.get(2, empty), i64, f"{what}.sparse_csr.crow_indices")
    col = read_array(buf, *parts.get(3, empty), i64, f"{what}.sparse_csr.col_indices")
    try:
        return TensorData(values, public, shape, crow, col, field=what)
    except InvalidInputError as exc:
        raise ProtobufDecodeError(str(exc)) from exc


def encode_batched_tensor(tensors: list[TensorData]) -> MessageWriter:
    """Encode same-dtype, same-trailing-shape per-datum tensors as one ``BatchedTensor``."""
    first = tensors[0]
    arrays = [td.to_numpy().reshape(-1) for td in tensors]
    data = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([a.nbytes for a in arrays], out=offsets[1:])
    w = MessageWriter()
    if data.size:
        w.blob(_B_DATA, array_view(data))
    w.blob(_B_OFFSETS, array_view(offsets))
    w.uint(_B_DTYPE, _TO_WIRE[first.dtype])
    _shape_field(w, _B_TRAILING, trailing_shape(first))
    return w


def trailing_shape(td: TensorData) -> tuple[int, ...]:
    """Return every dimension but the first (empty for 1-D and 0-D tensors)."""
    shape = td.shape
    return tuple(shape[1:]) if shape else ()


def decode_batched_tensor(
    buf: bytes, start: int, end: int, what: str
) -> tuple[list[npt.NDArray[Any]], TensorDtype, list[int]]:
    """Decode a ``BatchedTensor``: per-datum arrays (shaped), public dtype, trailing shape."""
    wire_dtype = 0
    data = offsets_span = (0, 0)
    trailing: list[int] = []
    for number, wt, a, b in iter_fields(buf, start, end):
        if number == 1:
            expect(wt, LEN, f"{what}.data")
            data = (a, b)
        elif number == 2:
            expect(wt, LEN, f"{what}.offsets")
            offsets_span = (a, b)
        elif number == 3:
            expect(wt, VARINT, f"{what}.dtype")
            wire_dtype = a
        elif number == 4:
            read_packed_int64(buf, wt, a, b, trailing, f"{what}.trailing_shape")
    np_dtype = _wire_dtype(wire_dtype, what)
    offsets = read_array(buf, *offsets_span, np.dtype(np.int64), f"{what}.offsets")
    nbytes = data[1] - data[0]
    size = np_dtype.itemsize
    if offsets.size and (
        offsets[0] != 0
        or int(offsets[-1]) > nbytes
        or bool(np.any(np.diff(offsets) < 0))
        or bool(np.any(offsets % size))
    ):
        raise ProtobufDecodeError(
            f"{what}: offsets must start at 0, never decrease, stay within the {nbytes} data "
            f"bytes and fall on {np_dtype.name} boundaries"
        )
    if any(d < 0 for d in trailing):
        raise ProtobufDecodeError(f"{what}: negative trailing_shape {trailing}")
    flat = _widen(read_array(buf, *data, np_dtype, f"{what}.data"), wire_dtype)
    bounds = (offsets // size).tolist()
    if not trailing:  # per-datum vectors (logprobs, losses): each piece is its array as it is
        return [flat[lo:hi] for lo, hi in itertools.pairwise(bounds)], _PUBLIC[wire_dtype], []
    inner = math.prod(trailing)
    out: list[npt.NDArray[Any]] = []
    for lo, hi in itertools.pairwise(bounds):
        piece = flat[lo:hi]
        if inner == 0:
            lead = 0
            if piece.size:
                raise ProtobufDecodeError(f"{what}: values present but trailing_shape {trailing}")
        elif piece.size % inner:
            raise ProtobufDecodeError(
                f"{what}: {piece.size} values do not divide into rows of shape {trailing}"
            )
        else:
            lead = piece.size // inner
        out.append(piece.reshape(lead, *trailing))
    return out, _PUBLIC[wire_dtype], trailing
