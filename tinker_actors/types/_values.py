"""Scalar and token-id checks shared by the user-built types (chunks, sampling, optimizer).

msgspec does not validate on construction, so a Struct built in user code holds whatever it was
given, and a wrong value would only surface as a 4xx from the server, which for a training client
also leaves a hole in its request order. The constructors of the types users build call these
helpers, which accept the lossless conversions 0.38's pydantic models make (an integral float or
a numpy integer becomes ``int``; an ``int`` becomes ``float``) and refuse, with a message that
names the value, what would change a value or hides a bug: bools, fractions, NaN and infinities,
strings, and token ids outside int32 (the protobuf request packs token ids as int32)::

    >>> token_ids([1, 2.0, np.int64(3)])
    [1, 2, 3]
    >>> token_ids([1, 2.5])
    Traceback (most recent call last):
    ...
    tinker_actors.errors.InvalidInputError: tokens[1] = 2.5 is not a token id: it has a fractional part; token ids are integers in [-2**31, 2**31)
"""

from __future__ import annotations

import array
import math
from collections.abc import Sequence
from typing import Final, NoReturn

import numpy as np

from tinker_actors.errors import InvalidInputError

# Internal helpers only: tinker_actors.types re-exports every name listed here.
__all__: list[str] = []

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
_TOKEN_RANGE: Final = "token ids are integers in [-2**31, 2**31)"


def _int_or_reason(value: object) -> int | str:
    """Return ``value`` as an exact ``int``, or the reason it is not one."""
    if isinstance(value, bool | np.bool_):
        return "it is a bool"
    if isinstance(value, int):
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if not math.isfinite(value):
            return "it is not a finite number"
        if not float(value).is_integer():
            return "it has a fractional part"
        return int(value)
    return f"it is a {type(value).__name__}, not an integer"


def as_int(value: object, what: str, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` (integral floats and numpy integers are converted).

    Raises:
        InvalidInputError: a bool, a fraction, NaN/inf, a non-number, or below ``minimum``.
    """
    out = _int_or_reason(value)
    if isinstance(out, str):
        raise InvalidInputError(f"{what} must be an integer, got {value!r}: {out}")
    if minimum is not None and out < minimum:
        raise InvalidInputError(f"{what} must be >= {minimum}, got {out}")
    return out


def as_float(value: object, what: str) -> float:
    """Return ``value`` as a finite ``float`` (ints and numpy numbers are converted).

    NaN and infinities are refused: JSON has no spelling for them, so they would be sent as
    ``null`` and come back as a confusing 422.

    Raises:
        InvalidInputError: a bool, a non-number, NaN or an infinity.
    """
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise InvalidInputError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise InvalidInputError(f"{what} must be a finite number, got {value!r}")
    return out


class PackedTokens(list[int]):
    """Token ids built from a numpy array: a read-only list that also holds them packed.

    ``ModelInput.from_ints(array)`` checks and packs the ids with vectorised numpy, and the
    protobuf encoder sends :attr:`packed` as it is, never reading the Python ints back. That is
    only right while the list cannot change, so every mutating method raises; copies
    (``copy.copy``, pickling, slicing, ``+``) are plain lists.
    """

    __slots__ = ("packed",)

    packed: np.ndarray
    """The same ids as a native-endian int32 array (read-only)."""

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            "these token ids were built from a numpy array and are read-only; build a new "
            "ModelInput (ModelInput.from_ints(list(tokens) + more)) instead of changing them"
        )

    append = extend = insert = pop = remove = clear = sort = reverse = _read_only
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _read_only

    def __reduce__(self) -> tuple[type[list[int]], tuple[list[int]]]:
        return list, (list(self),)

    def __copy__(self) -> list[int]:
        return list(self)

    def __deepcopy__(self, memo: object) -> list[int]:
        return list(self)


def _packed_list(tokens: np.ndarray) -> PackedTokens:
    packed = tokens.astype(np.int32)  # always a copy: the caller may reuse its array
    packed.flags.writeable = False
    out = PackedTokens(packed.tolist())
    out.packed = packed
    return out


def token_ids(tokens: object, what: str = "tokens") -> list[int] | tuple[int, ...]:
    """Return ``tokens`` as token ids the caller's later changes cannot reach.

    A list of Python ints in int32 range is copied (as 0.38's pydantic models copy it: callers
    clear or extend the same list for the next chunk, as tinker-cookbook's
    rl/data_processing.py does); a tuple of them is returned as is; a 1-D integer
    numpy array becomes a read-only :class:`PackedTokens` (checked with vectorised numpy, no
    per-id Python work); anything else that holds only lossless values (integral floats, numpy
    integers) is converted to a new list.

    Raises:
        InvalidInputError: naming the first value that is not a token id.
    """
    if type(tokens) is PackedTokens:
        return tokens
    if isinstance(tokens, np.ndarray):
        if tokens.ndim != 1:
            raise InvalidInputError(f"{what} must be 1-D, got an array of shape {tokens.shape}")
        if tokens.dtype.kind in "iu" and not (
            tokens.size and (int(tokens.min()) < INT32_MIN or int(tokens.max()) > INT32_MAX)
        ):
            return _packed_list(tokens)
        tokens = tokens.tolist()  # the general path names the first bad value
    if type(tokens) is list or type(tokens) is tuple:
        try:
            # One C pass refuses floats, strings and ids outside int32 ('i' is 32-bit on every
            # platform CPython supports); only bools and numpy integers remain to be told apart.
            array.array("i", tokens)
        except (TypeError, OverflowError, ValueError):
            pass
        else:
            if set(map(type, tokens)) <= {int}:
                return tokens if type(tokens) is tuple else list(tokens)
        return _convert(tokens, what)
    if isinstance(tokens, Sequence) and not isinstance(tokens, str | bytes):
        return _convert(list(tokens), what)
    raise InvalidInputError(
        f"{what} must be a list of token ids (integers), got {type(tokens).__name__}"
    )


def _convert(tokens: Sequence[object], what: str) -> list[int]:
    out: list[int] = []
    for i, value in enumerate(tokens):
        token = _int_or_reason(value)
        if isinstance(token, int) and not INT32_MIN <= token <= INT32_MAX:
            token = "it does not fit int32"
        if isinstance(token, str):
            raise InvalidInputError(
                f"{what}[{i}] = {value!r} is not a token id: {token}; {_TOKEN_RANGE}"
            )
        out.append(token)
    return out
