"""Input checks for TensorData: the two wire dtypes, dtype coercion, shape and CSR validation.

The Tinker wire knows exactly two element types, ``int64`` and ``float32``
(:data:`TensorDtype`). Everything a caller hands to :class:`~tinker_actors.types.TensorData` passes
through the functions here before a tensor is built, so a bad tensor is refused on the caller's
side with a message that names the field and says what to do:

* :func:`coerce_array` brings any numeric array to its wire dtype, silently as 0.38 does: any
  floating type becomes float32, any integer type int64 (the wire has no other). What would
  change a value beyond float32 rounding is refused: a finite value too large for float32, and
  uint64 values above ``2**63-1``; so are non-numeric dtypes (bool, complex, strings, objects,
  dates).
* :func:`values_array` converts values given together with a declared dtype, refusing lossy
  casts (a float that is not integral, or outside int64, declared ``int64``; an integer that
  float32 cannot hold exactly declared ``float32``).
* :func:`keyed_array` converts an array to the dtype a well-known ``loss_fn_inputs`` key needs
  (``target_tokens`` int64, the rest float32) under the same rules.
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
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from tinker_actors.errors import InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Sequence

# Only the public names: tinker_actors.types re-exports every name of its modules' __all__. The
# checks below are for TensorData (in _tensor) and stay internal to the package.
__all__ = ["TensorDtype"]

TensorDtype: TypeAlias = Literal["int64", "float32"]
"""The only element types the wire knows."""

NUMPY_DTYPE: Final[dict[str, np.dtype[Any]]] = {
    "int64": np.dtype(np.int64),
    "float32": np.dtype(np.float32),
}
INT64_MAX: Final = np.iinfo(np.int64).max
# Floats in [-2**63, 2**63) convert to int64 exactly; 2**63 itself is the first that does not.
_INT64_FLOAT_BOUND: Final = 2.0**63
# Integers with magnitude up to 2**24 are exact in float32.
_FLOAT32_EXACT_INT: Final = 2**24


def refuse_dtype(field: str, dtype: object) -> InvalidInputError:
    """Return the error for a dtype the wire cannot carry (the caller raises it)."""
    return InvalidInputError(
        f"{field}: dtype {dtype} cannot be sent; pass an integer array (sent as int64) or a "
        "floating-point array (sent as float32)"
    )


def coerce_array(array: npt.NDArray[Any], field: str) -> tuple[npt.NDArray[Any], TensorDtype]:
    """Return ``array`` in its wire dtype: floats as float32, integers as int64.

    Args:
        array: any numpy array.
        field: the name used in errors (e.g. ``"loss_fn_inputs['weights']"``).

    Raises:
        InvalidInputError: the dtype is not numeric (bool, complex, strings, objects, dates),
            unsigned values do not fit int64, or finite values do not fit float32.
    """
    dt = array.dtype
    if dt == np.float32:
        return array, "float32"
    if dt == np.int64:
        return array, "int64"
    if dt.kind == "f" or dt.name == "bfloat16":
        return to_float32(array, field), "float32"
    if dt.kind in "iu":
        if dt.kind == "u" and dt.itemsize == 8 and array.size and int(array.max()) > INT64_MAX:
            raise InvalidInputError(f"{field}: uint64 values above 2**63-1 do not fit int64")
        return array.astype(np.int64), "int64"
    raise refuse_dtype(field, dt)


def _first_bad(arr: npt.NDArray[Any], bad: npt.NDArray[np.bool_]) -> str:
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    where = index[0] if len(index) == 1 else list(index)
    return f"{arr[index].item()!r} at index {where}"


def to_float32(arr: npt.NDArray[Any], field: str) -> npt.NDArray[np.float32]:
    """Cast a numeric array to float32, refusing values float32 would change beyond rounding.

    Raises:
        InvalidInputError: a finite value overflows float32, or an integer is beyond
            ``+-2**24`` (float32 holds every integer only up to there).
    """
    with np.errstate(over="ignore"):  # an overflow to inf is reported below, by value
        out = arr.astype(np.float32)
    if arr.size == 0:
        return out
    if arr.dtype.kind in "iu":
        big = (arr > _FLOAT32_EXACT_INT) | (arr < -_FLOAT32_EXACT_INT)
        if bool(np.any(big)):
            raise InvalidInputError(
                f"{field}: {_first_bad(arr, big)} is beyond +-2**24, where float32 no longer "
                "holds every integer; pass float32 values"
            )
        return out
    overflow = np.isinf(out) & np.isfinite(arr)
    if bool(np.any(overflow)):
        raise InvalidInputError(
            f"{field}: {_first_bad(arr, overflow)} does not fit float32 (max about 3.4e38)"
        )
    return out


def to_int64(arr: npt.NDArray[Any], field: str) -> npt.NDArray[np.int64]:
    """Cast a numeric array to int64, refusing fractions, NaN, infinities and overflow.

    Raises:
        InvalidInputError: naming the first value that is not an integer in int64.
    """
    if arr.dtype.kind in "iu":
        unsigned64 = arr.dtype.kind == "u" and arr.dtype.itemsize == 8
        if unsigned64 and arr.size and int(arr.max()) > INT64_MAX:
            raise InvalidInputError(f"{field}: uint64 values above 2**63-1 do not fit int64")
        return arr.astype(np.int64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        bad |= (arr >= _INT64_FLOAT_BOUND) | (arr < -_INT64_FLOAT_BOUND)
    if bool(np.any(bad)):
        raise InvalidInputError(
            f"{field}: {_first_bad(arr, bad)} is not an integer that fits int64; round the "
            "values, or pass float32 data if they are not integers"
        )
    return arr.astype(np.int64)


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
    if arr.dtype == object:
        # np.asarray keeps Python ints beyond 64 bits (and mixed junk) as objects.
        raise InvalidInputError(
            f"{field}: data must hold numbers that fit {dtype}, got {_first_odd(arr)}"
        )
    if arr.dtype.kind not in "iuf" and arr.dtype.name != "bfloat16":
        raise refuse_dtype(field, arr.dtype)
    if dtype == "int64":
        return to_int64(arr, field)
    return to_float32(arr, field)


def _first_odd(arr: npt.NDArray[Any]) -> str:
    for index, value in enumerate(arr.reshape(-1).tolist()):
        if isinstance(value, bool) or not isinstance(value, int | float) or abs(value) >= 2**63:
            return f"{value!r} at flat index {index}"
    return "non-numeric values"


def keyed_array(arr: npt.NDArray[Any], dtype: TensorDtype, field: str) -> npt.NDArray[Any]:
    """Return a numeric array in the wire ``dtype`` a ``loss_fn_inputs`` key needs.

    Raises:
        InvalidInputError: the cast would change a value (see :func:`to_int64`,
            :func:`to_float32`).
    """
    if arr.dtype == NUMPY_DTYPE[dtype]:
        return arr
    return to_int64(arr, field) if dtype == "int64" else to_float32(arr, field)


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
