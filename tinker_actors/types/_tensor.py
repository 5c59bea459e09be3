"""TensorData: a numpy array as the Tinker wire carries it (int64 or float32, dense or CSR).

The array is the source of truth. Nothing is turned into Python lists unless you ask
(:meth:`TensorData.tolist`, :attr:`TensorData.data`, or the JSON form): the protobuf codec writes
``array.tobytes()`` and reads ``np.frombuffer``.

Only two dtypes exist on the wire: ``int64`` and ``float32``. Inputs of another numeric dtype are
converted silently, as 0.38 does (float64/float16/bfloat16 → float32, other integers → int64).
A conversion that would change a value is refused with
:class:`~tinker_actors.errors.InvalidInputError` naming the value (a fraction or NaN declared
``int64``, a finite value too large for float32); so are bool, complex, strings and objects.
Those input checks live in :mod:`tinker_actors.types._tensor_checks`; this module is the
representation and its conversions.

A 2-D tensor may be stored sparse (CSR): ``array`` then holds only the listed values, row ``i``'s
values are ``array[crow[i]:crow[i+1]]`` at columns ``col[crow[i]:crow[i+1]]``, and every other cell
takes a caller-chosen integer ``pad_value`` when densified::

    >>> import numpy as np
    >>> dense = np.array([[5, -1, -1, -1], [-1, -1, 7, -1]])
    >>> t = TensorData.from_numpy(dense, sparse=True, pad_value=-1)
    >>> t.is_sparse, t.sparse_crow_indices, t.sparse_col_indices, t.data
    (True, [0, 1, 2], [0, 2], [5, 7])
    >>> t.tolist(pad_value=-1)
    [[5, -1, -1, -1], [-1, -1, 7, -1]]

JSON form (protocol §4.2; only ``SampleRequest.target_prompt_logprobs`` uses it in 0.38)::

    {"data": [1, 2, 3, 4], "dtype": "int64", "shape": [2, 2]}

TensorData is not a msgspec Struct (msgspec cannot hold an ndarray), so any msgspec JSON
encoder/decoder that may meet one must be built with :func:`json_enc_hook` / :func:`json_dec_hook`::

    msgspec.json.Encoder(enc_hook=json_enc_hook)
    msgspec.json.Decoder(SomeStruct, dec_hook=json_dec_hook)
"""

from __future__ import annotations

import importlib
import math
from typing import TYPE_CHECKING, Any, Final, final

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._tensor_checks import (
    NUMPY_DTYPE,
    TensorDtype,
    as_index_array,
    check_csr,
    check_pad,
    check_shape,
    coerce_array,
    refuse_dtype,
    shape_dense,
    values_array,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "TensorData",
    "TensorDtype",
    "json_dec_hook",
    "json_enc_hook",
]

_JSON_KEYS: Final = frozenset(
    {"data", "dtype", "shape", "sparse_crow_indices", "sparse_col_indices"}
)


@final
class TensorData:
    """An int64 or float32 tensor, dense or 2-D sparse CSR, backed by a numpy array.

    Build one with :meth:`from_numpy` / :meth:`from_torch`, or from values::

        TensorData(data=[1, 2, 3, 4], dtype="int64", shape=[2, 2])

    The array is shared, not copied: do not mutate an array after handing it over.

    Args:
        data: the values, flattened row-major (a list or an array); for CSR only the listed ones.
        dtype: ``"int64"`` or ``"float32"``.
        shape: the dense shape; ``None`` means 1-D. Required for CSR.
        sparse_crow_indices: CSR row pointers (``rows + 1`` entries, first 0, last ``nnz``).
        sparse_col_indices: CSR column of each listed value (``nnz`` entries).

    Raises:
        TypeError: no dtype.
        InvalidInputError: unknown dtype, data that does not fit the shape, inconsistent CSR
            indices, non-numeric data, or values the declared dtype would change (a fraction,
            NaN or a value beyond int64 declared int64; a value float32 cannot hold declared
            float32), named in the message.
    """

    __slots__ = ("_array", "_col", "_crow", "_dtype", "_shape")

    _array: npt.NDArray[Any]
    _dtype: TensorDtype
    _shape: tuple[int, ...] | None
    _crow: npt.NDArray[np.int64] | None
    _col: npt.NDArray[np.int64] | None

    def __init__(
        self,
        data: Sequence[int] | Sequence[float] | npt.NDArray[Any] | None = None,
        dtype: TensorDtype | None = None,
        shape: Sequence[int] | None = None,
        sparse_crow_indices: Sequence[int] | npt.NDArray[Any] | None = None,
        sparse_col_indices: Sequence[int] | npt.NDArray[Any] | None = None,
        *,
        field: str = "TensorData",
    ) -> None:
        if dtype is None:
            raise TypeError(f"{field} requires dtype='int64' or dtype='float32'")
        if dtype not in NUMPY_DTYPE:
            raise InvalidInputError(f"{field}: dtype must be 'int64' or 'float32', got {dtype!r}")
        values = values_array([] if data is None else data, dtype, field)
        dims = check_shape(shape, field)
        if (sparse_crow_indices is None) != (sparse_col_indices is None):
            raise InvalidInputError(
                f"{field}: sparse_crow_indices and sparse_col_indices must be given together"
            )
        self._dtype = dtype
        self._shape = dims
        if sparse_crow_indices is None or sparse_col_indices is None:
            self._crow = self._col = None
            self._array = shape_dense(values, dims, field)
            return
        crow = as_index_array(sparse_crow_indices, f"{field}: sparse_crow_indices")
        col = as_index_array(sparse_col_indices, f"{field}: sparse_col_indices")
        flat = values.reshape(-1)
        check_csr(dims, crow, col, flat.size, field)
        self._array, self._crow, self._col = flat, crow, col

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def from_numpy(
        cls,
        array: npt.NDArray[Any],
        *,
        sparse: bool = False,
        pad_value: int = 0,
        field: str = "TensorData",
    ) -> TensorData:
        """Wrap a numpy array (shared, not copied), converting its dtype to the wire's.

        Args:
            array: any numeric array.
            sparse: store a 2-D array as CSR, leaving out ``pad_value`` cells, when that is
                smaller (``rows + 1 + 2·nnz < rows·cols``); otherwise it stays dense.
            pad_value: the integer value of cells CSR leaves out.
            field: the name used in errors.

        Raises:
            InvalidInputError: non-numeric dtype, or finite values beyond float32.
        """
        if not isinstance(array, np.ndarray):
            raise TypeError(
                f"{field}: from_numpy expects a numpy array, got {type(array).__name__}"
            )
        arr, dtype = coerce_array(array, field)
        if sparse and arr.ndim == 2:
            return _to_csr(arr, dtype, check_pad(pad_value), field)
        return cls._trusted(arr, dtype, tuple(int(d) for d in arr.shape))

    @classmethod
    def from_torch(
        cls,
        tensor: Any,
        *,
        sparse: bool = False,
        pad_value: int = 0,
        field: str = "TensorData",
    ) -> TensorData:
        """Copy a torch tensor to the host and wrap it (see :meth:`from_numpy` for the options).

        bfloat16, float16 and float64 become float32, other integer types int64.
        """
        return cls.from_numpy(
            torch_to_numpy(tensor, field), sparse=sparse, pad_value=pad_value, field=field
        )

    @classmethod
    def from_torch_sparse(cls, tensor: Any, pad_value: int = 0) -> TensorData:
        """Wrap a 2-D torch tensor as CSR when that is smaller, leaving out ``pad_value`` cells.

        0.38's spelling of ``from_torch(tensor, sparse=True, pad_value=pad_value)``: other
        shapes, and tensors too dense to gain from CSR, stay dense.

        Raises:
            TypeError: ``pad_value`` is not an integer.
        """
        return cls.from_torch(tensor, sparse=True, pad_value=check_pad(pad_value))

    @classmethod
    def _trusted(
        cls,
        array: npt.NDArray[Any],
        dtype: TensorDtype,
        shape: tuple[int, ...] | None,
        crow: npt.NDArray[np.int64] | None = None,
        col: npt.NDArray[np.int64] | None = None,
    ) -> TensorData:
        """Build without validation: for codecs that have already checked their input."""
        self = object.__new__(cls)
        self._array, self._dtype, self._shape, self._crow, self._col = (
            array,
            dtype,
            shape,
            crow,
            col,
        )
        return self

    # -- accessors ----------------------------------------------------------------------------

    @property
    def dtype(self) -> TensorDtype:
        """The wire dtype, ``"int64"`` or ``"float32"``."""
        return self._dtype

    @property
    def shape(self) -> list[int] | None:
        """The dense shape as given (``None``: 1-D, length ``numel``)."""
        return None if self._shape is None else list(self._shape)

    @property
    def dims(self) -> tuple[int, ...] | None:
        """:attr:`shape` as a tuple, without copying it (``None``: 1-D, length ``numel``)."""
        return self._shape

    @property
    def is_sparse(self) -> bool:
        """Whether the tensor is stored as CSR."""
        return self._crow is not None

    @property
    def array(self) -> npt.NDArray[Any]:
        """The stored values: the dense array (in ``shape``), or the CSR values (1-D)."""
        return self._array

    @property
    def sparse_crow_indices(self) -> list[int] | None:
        """CSR row pointers, or ``None`` when dense."""
        return None if self._crow is None else self._crow.tolist()

    @property
    def sparse_col_indices(self) -> list[int] | None:
        """CSR column indices, or ``None`` when dense."""
        return None if self._col is None else self._col.tolist()

    @property
    def crow_array(self) -> npt.NDArray[np.int64] | None:
        """CSR row pointers as an int64 array, or ``None`` when dense."""
        return self._crow

    @property
    def col_array(self) -> npt.NDArray[np.int64] | None:
        """CSR column indices as an int64 array, or ``None`` when dense."""
        return self._col

    @property
    def data(self) -> list[Any]:
        """The stored values, flattened, as a Python list (for CSR: only the listed ones)."""
        out: list[Any] = self._array.reshape(-1).tolist()
        return out

    @property
    def numel(self) -> int:
        """Number of elements of the dense tensor."""
        if self._shape is None:
            return int(self._array.size)
        return math.prod(self._shape)

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes on the protobuf wire (values plus CSR indices)."""
        if self._crow is None or self._col is None:
            return self._array.nbytes
        return self._array.nbytes + 8 * (self._crow.size + self._col.size)

    # -- conversion ---------------------------------------------------------------------------

    def to_numpy(self, pad_value: int = 0) -> npt.NDArray[Any]:
        """Return the dense array (shared when dense; built, with ``pad_value`` cells, for CSR)."""
        if self._crow is None or self._col is None:
            return self._array
        assert self._shape is not None  # CSR always has a 2-D shape (checked on construction)
        pad = check_pad(pad_value)
        dense = np.full(self._shape, pad, dtype=self._array.dtype)
        rows = np.repeat(np.arange(self._shape[0]), np.diff(self._crow))
        dense[rows, self._col] = self._array
        return dense

    def to_dense(self, pad_value: int = 0) -> TensorData:
        """Return a dense TensorData (``self`` when already dense)."""
        if self._crow is None:
            return self
        dense = self.to_numpy(pad_value)
        return TensorData._trusted(dense, self._dtype, tuple(dense.shape))

    def to_torch(self, pad_value: int = 0) -> Any:
        """Return the dense tensor as a ``torch.Tensor`` (torch imported on first use)."""
        torch = importlib.import_module("torch")
        arr = self.to_numpy(pad_value)
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr).copy()
        return torch.from_numpy(arr)

    def tolist(self, pad_value: int = 0) -> list[Any]:
        """Return the dense tensor as nested Python lists."""
        out = self.to_numpy(pad_value).tolist()
        return out if isinstance(out, list) else [out]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form of protocol §4.2 (``shape`` and CSR keys only when set)."""
        out: dict[str, Any] = {"data": self.data, "dtype": self._dtype}
        if self._shape is not None:
            out["shape"] = list(self._shape)
        if self._crow is not None and self._col is not None:
            out["sparse_crow_indices"] = self._crow.tolist()
            out["sparse_col_indices"] = self._col.tolist()
        return out

    @classmethod
    def from_json(cls, obj: object, *, field: str = "TensorData") -> TensorData:
        """Build from the JSON form of protocol §4.2, refusing unknown keys."""
        if not isinstance(obj, dict):
            raise InvalidInputError(f"{field}: expected a JSON object, got {type(obj).__name__}")
        unknown = set(obj) - _JSON_KEYS
        if unknown:
            raise InvalidInputError(f"{field}: unknown keys {sorted(unknown)}")
        if "data" not in obj or "dtype" not in obj:
            raise InvalidInputError(f"{field}: 'data' and 'dtype' are required")
        data = obj["data"]
        if not isinstance(data, list):
            raise InvalidInputError(f"{field}: 'data' must be a list of numbers")
        return cls(
            data=data,
            dtype=obj["dtype"],
            shape=obj.get("shape"),
            sparse_crow_indices=obj.get("sparse_crow_indices"),
            sparse_col_indices=obj.get("sparse_col_indices"),
            field=field,
        )

    # -- value semantics ----------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TensorData):
            return NotImplemented
        # A missing shape means 1-D, so shape=None and shape=[n] describe the same tensor.
        if self._dtype != other._dtype or self._dense_shape() != other._dense_shape():
            return False
        if (self._crow is None) != (other._crow is None):
            return False
        if not (_same(self._crow, other._crow) and _same(self._col, other._col)):
            return False
        return bool(
            np.array_equal(
                self._array.reshape(-1),
                other._array.reshape(-1),
                equal_nan=self._dtype == "float32",
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def _dense_shape(self) -> tuple[int, ...]:
        return self._shape if self._shape is not None else (int(self._array.size),)

    def __repr__(self) -> str:
        layout = f", nnz={self._array.size}" if self._crow is not None else ""
        preview = np.array2string(self._array.reshape(-1), threshold=8, separator=", ")
        return f"TensorData(dtype={self._dtype!r}, shape={self.shape}{layout}, data={preview})"


def torch_to_numpy(tensor: Any, field: str) -> npt.NDArray[Any]:
    """Return a host numpy array of ``tensor`` (detached; bfloat16 widened to float32).

    Raises:
        TypeError: ``tensor`` is not a ``torch.Tensor``.
        InvalidInputError: its dtype has no numpy counterpart.
    """
    torch = importlib.import_module("torch")
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{field}: from_torch expects a torch.Tensor, got {type(tensor).__name__}")
    t = tensor.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        t = t.float()  # exact: every bfloat16 is a float32
    try:
        arr: npt.NDArray[Any] = t.numpy()
    except TypeError as exc:
        raise refuse_dtype(field, t.dtype) from exc
    return arr


def _same(a: npt.NDArray[Any] | None, b: npt.NDArray[Any] | None) -> bool:
    if a is None or b is None:
        return a is b
    return bool(np.array_equal(a, b))


def _to_csr(array: npt.NDArray[Any], dtype: TensorDtype, pad: int, field: str) -> TensorData:
    rows, cols = (int(d) for d in array.shape)
    mask = array != pad
    nnz = int(np.count_nonzero(mask))
    if (rows + 1) + 2 * nnz >= rows * cols:
        return TensorData._trusted(array, dtype, (rows, cols))
    crow = np.zeros(rows + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(mask, axis=1), out=crow[1:])
    col = np.nonzero(mask)[1].astype(np.int64)
    return TensorData._trusted(np.ascontiguousarray(array[mask]), dtype, (rows, cols), crow, col)


def json_enc_hook(obj: object) -> object:
    """msgspec ``enc_hook``: encode TensorData (and stray numpy values) in their JSON form."""
    if isinstance(obj, TensorData):
        return obj.to_json()
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    raise NotImplementedError(f"cannot JSON-encode {type(obj).__name__}")


def json_dec_hook(tp: type, obj: object) -> object:
    """msgspec ``dec_hook``: decode the JSON form of TensorData."""
    if tp is TensorData:
        return TensorData.from_json(obj)
    raise NotImplementedError(f"cannot JSON-decode {tp!r}")
