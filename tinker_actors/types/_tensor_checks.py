"""Input checks for TensorData: the two wire dtypes, dtype coercion, shape and CSR validation.

The Tinker wire knows exactly two element types, ``int64`` and ``float32``
(:data:`TensorDtype`). Everything a caller hands to :class:`~tinker_actors.types.TensorData` passes
through the functions here before a tensor is built, so a bad tensor is refused on the caller's
side with a message that names the field and says what to do:

* :func:`coerce_array` brings any numeric array to its wire dtype. Widening or narrowing is
  allowed but never silent: it warns with :class:`DtypeConversionWarning`. Non-numeric dtypes
  (bool, complex, strings, objects, dates) and uint64 values above ``2**63-1`` are refused.
* :func:`values_array` converts values given together with a declared dtype, refusing lossy
  casts (a float that is not integral declared ``int64``).
* :func:`check_shape`, :func:`shape_dense` and :func:`check_csr` check that the values fit the
  declared dense shape or, for a sparse tensor, that the CSR row pointers and column indices
  are consistent with it::

      >>> import numpy as np
      >>> check_csr((2, 4), np.array([0, 1]), np.array([3]), 1, "mask")
      Traceback (most recent call last):
      ...
      tinker_actors.errors.InvalidInputError: mask: sparse_crow_indices has 2 entries, shape [2, 4] needs rows + 1 = 3

These are pure functions of their arguments; they never build a TensorData themselves, which
keeps the class in :mod:`tinker_actors.types._tensor` about representation and conversion only.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

# Only the public names: tinker_actors.types re-exports every name of its modules' __all__. The
# checks below are for TensorData (in _tensor) and stay internal to the package.
__all__ = ["DtypeConversionWarning", "TensorDtype"]

TensorDtype: TypeAlias = Literal["int64", "float32"]
"""The only element types the wire knows."""

NUMPY_DTYPE: Final[dict[str, np.dtype[Any]]] = {
    "int64": np.dtype(np.int64),
    "float32": np.dtype(np.float32),
}
INT64_MAX: Final = np.iinfo(np.int64).max


class DtypeConversionWarning(UserWarning):
    """An input array was converted to one of the two wire dtypes (int64, float32)."""


def refuse_dtype(field: str, dtype: object) -> InvalidInputError:
    """Return the error for a dtype the wire cannot carry (the caller raises it)."""
    return InvalidInputError(
        f"{field}: dtype {dtype} cannot be sent; pass an integer array (sent as int64) or a "
        "floating-point array (sent as float32)"
    )


def coerce_array(array: npt.NDArray[Any], field: str) -> tuple[npt.NDArray[Any], TensorDtype]:
    """Return ``array`` in its wire dtype, warning when a conversion was needed.

    Args:
        array: any numpy array.
        field: the name used in warnings and errors (e.g. ``"loss_fn_inputs['weights']"``).

    Raises:
        InvalidInputError: the dtype is not numeric (bool, complex, strings, objects, dates) or
            unsigned values do not fit int64.
    """
    dt = array.dtype
    if dt == np.float32:
        return array, "float32"
    if dt == np.int64:
        return array, "int64"
    if dt.kind == "f" or dt.name == "bfloat16":
        target: TensorDtype = "float32"
    elif dt.kind in "iu":
        if dt.kind == "u" and dt.itemsize == 8 and array.size and int(array.max()) > INT64_MAX:
            raise InvalidInputError(f"{field}: uint64 values above 2**63-1 do not fit int64")
        target = "int64"
    else:
        raise refuse_dtype(field, dt)
    warnings.warn(
        f"{field}: converted {dt} to {target} (the wire carries only int64 and float32); "
        f"pass a {target} array to avoid this warning",
        DtypeConversionWarning,
        stacklevel=3,
    )
    return array.astype(NUMPY_DTYPE[target]), target


def as_index_array(values: Sequence[int] | npt.NDArray[Any], what: str) -> npt.NDArray[np.int64]:
    """Return CSR indices as a flat int64 array, refusing anything but flat integers."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise InvalidInputError(f"{what} must be a flat list of integers") from exc
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InvalidInputError(
            f"{what} must be a flat list of integers, got {arr.dtype} {arr.shape}"
        )
    return arr.astype(np.int64, copy=False)


def _all_integral(arr: npt.NDArray[Any]) -> bool:
    return bool(np.all(np.isfinite(arr))) and bool(np.all(arr == np.round(arr)))


def values_array(data: object, dtype: TensorDtype, field: str) -> npt.NDArray[Any]:
    """Convert user-given ``data`` to an array of the declared dtype, refusing lossy casts."""
    np_dtype = NUMPY_DTYPE[dtype]
    if isinstance(data, np.ndarray):
        arr = data
    else:
        try:
            arr = np.asarray(data)
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(
                f"{field}: data must be a rectangular numeric array ({exc})"
            ) from exc
    if arr.dtype == np_dtype:
        return arr
    if arr.size == 0:
        return arr.astype(np_dtype)
    if arr.dtype.kind not in "iuf" and arr.dtype.name != "bfloat16":
        raise refuse_dtype(field, arr.dtype)
    if dtype == "int64" and arr.dtype.kind == "f" and not _all_integral(arr):
        raise InvalidInputError(
            f"{field}: dtype is int64 but data holds non-integer values; "
            "round them or declare dtype='float32'"
        )
    if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and int(arr.max()) > INT64_MAX:
        raise InvalidInputError(f"{field}: uint64 values above 2**63-1 do not fit int64")
    return arr.astype(np_dtype)


def check_pad(pad_value: object) -> int:
    """Return ``pad_value`` as an int, raising TypeError for bools and non-integers."""
    if isinstance(pad_value, bool) or not isinstance(pad_value, int | np.integer):
        raise TypeError(f"pad_value must be an integer, got {type(pad_value).__name__}")
    return int(pad_value)


def check_shape(shape: Sequence[int] | None, field: str) -> tuple[int, ...] | None:
    """Return the declared shape as a tuple of non-negative ints (``None`` stays ``None``)."""
    if shape is None:
        return None
    try:
        dims = tuple(int(d) for d in shape)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{field}: shape must be a list of integers, got {shape!r}"
        ) from exc
    if any(d < 0 for d in dims) or any(
        isinstance(d, bool) or not isinstance(d, int | np.integer) for d in shape
    ):
        raise InvalidInputError(f"{field}: shape must be non-negative integers, got {list(shape)}")
    return dims


def shape_dense(
    values: npt.NDArray[Any], dims: tuple[int, ...] | None, field: str
) -> npt.NDArray[Any]:
    """Return the values in the dense shape ``dims`` (1-D when ``None``), checking the size."""
    if dims is None:
        return values.reshape(-1)
    if values.shape == dims:
        return values
    if values.size != math.prod(dims):
        raise InvalidInputError(
            f"{field}: data has {values.size} elements but shape {list(dims)} needs "
            f"{math.prod(dims)}"
        )
    return values.reshape(dims)


def check_csr(
    dims: tuple[int, ...] | None,
    crow: npt.NDArray[np.int64],
    col: npt.NDArray[np.int64],
    nnz: int,
    field: str,
) -> None:
    """Raise unless ``crow``/``col`` describe ``nnz`` values of a 2-D ``dims`` tensor as CSR."""
    if dims is None or len(dims) != 2:
        raise InvalidInputError(f"{field}: a sparse CSR tensor needs a 2-D shape, got {dims}")
    rows, cols = dims
    if crow.size != rows + 1:
        raise InvalidInputError(
            f"{field}: sparse_crow_indices has {crow.size} entries, shape {list(dims)} needs "
            f"rows + 1 = {rows + 1}"
        )
    if crow[0] != 0 or crow[-1] != nnz or bool(np.any(np.diff(crow) < 0)):
        raise InvalidInputError(
            f"{field}: sparse_crow_indices must start at 0, never decrease, and end at the "
            f"number of values ({nnz}); got first={int(crow[0])}, last={int(crow[-1])}"
        )
    if col.size != nnz:
        raise InvalidInputError(
            f"{field}: sparse_col_indices has {col.size} entries but there are {nnz} values"
        )
    if col.size and (int(col.min()) < 0 or int(col.max()) >= cols):
        raise InvalidInputError(f"{field}: sparse_col_indices must lie in [0, {cols})")
