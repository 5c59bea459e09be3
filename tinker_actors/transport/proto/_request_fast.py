"""The common forward_backward datum, framed straight into the request's list of pieces.

:func:`~tinker_actors.transport.proto._request.encode_forward_backward_request` spends almost
nothing on the payload itself (token and tensor bytes are views of their buffers, copied once by
the final join) and, with the general :class:`MessageWriter` path, most of its time on framing:
a writer object per sub-message, a ``varint`` and a bytes concatenation per field, and every
child's pieces copied into its parent's list. A datum made of text chunks and dense tensors
without provenance spans (what supervised and RL training send) is framed here instead: sizes are
computed first, then each datum adds a few header ``bytes`` (built from precomputed field tags)
and its buffers to the one list, so a 128-datum request is a few hundred list appends.

The bytes are the same as the general path's (``tests/property/test_fb_encode_fast.py`` compares
the two); a datum this module does not handle makes :func:`append_datum` return ``False`` and the
caller uses the general path for it.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, Final

from tinker_actors.transport.proto._tensors import (
    _T_DENSE,
    _T_DTYPE,
    _T_SHAPE,
    _TO_WIRE,
    _WIRE_NUMPY,
)
from tinker_actors.transport.proto._wire import LEN, array_view, key, packed_varints, varint
from tinker_actors.types._model_input import EncodedTextChunk, packed_tokens

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.types._datum import Datum

__all__ = ["KnownTokens", "append_datum"]

#: Text chunks' ids packed ahead (int32 little-endian), by ``id(chunk)``. The chunk is held
#: beside its bytes so that its id cannot be reused by another object while the map lives, and
#: a hit is only taken when the held chunk *is* the one being encoded.
KnownTokens = dict[int, tuple[EncodedTextChunk, bytes]]

_R_DATA: Final = key(3, LEN)
_D_MODEL_INPUT: Final = key(1, LEN)
_D_LOSS_INPUTS: Final = key(2, LEN)
_C_TEXT: Final = key(1, LEN)
_F1_LEN: Final = key(1, LEN)
_E_KEY: Final = key(1, LEN)
_E_VALUE_MSG: Final = key(2, LEN)
_SMALL: Final = tuple(bytes((i,)) for i in range(128))
#: native byte orders a buffer can be sent in as it is ("|": one-byte types)
_AS_IS: Final = frozenset({"<", "|", "="} if sys.byteorder == "little" else {"<", "|"})

#: a text chunk's framing (everything before its ids) per ids byte count
_TEXT_HEAD: dict[int, bytes] = {}
#: a dense tensor's framing per (input name, dtype, dims): the bytes before its values and
#: the bytes after them. Both follow from the key alone (the value count is the product of the
#: dims), so a batch of like-shaped datums frames each tensor with one lookup.
_TENSOR_FRAME: dict[tuple[str, str, tuple[int, ...]], tuple[bytes, bytes, int]] = {}
_CACHE_LIMIT: Final = 4096


def _varint(value: int) -> bytes:
    # sizes only: never negative
    if value < 128:
        return _SMALL[value]
    if value < 16384:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 2097152:  # a datum of 2,048 tokens and two tensors: about 24 KB
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    return varint(value)


def _text_head(nbytes: int) -> bytes:
    """The ``model_input`` chunk field up to its ids: chunk, text chunk and ``tokens`` headers."""
    inner = (_F1_LEN + _varint(nbytes)) if nbytes else b""
    text = _C_TEXT + _varint(len(inner) + nbytes) + inner
    head = _D_MODEL_INPUT + _varint(len(text) + nbytes) + text
    if len(_TEXT_HEAD) < _CACHE_LIMIT:
        _TEXT_HEAD[nbytes] = head
    return head


def _tensor_frame(name: str, dtype: str, dims: tuple[int, ...]) -> tuple[bytes, bytes, int] | None:
    """The ``loss_fn_inputs`` map entry around a dense tensor's values, and their byte count
    (None: not a wire dtype).

    Entry: key (the name), value message (the tensor: ``data`` bytes, then dtype and shape).
    """
    wire_dtype = _TO_WIRE.get(dtype)
    if wire_dtype is None:
        return None
    nbytes = math.prod(dims) * _WIRE_NUMPY[wire_dtype].itemsize
    raw = name.encode("utf-8")
    trailer = _T_DTYPE + varint(wire_dtype)
    if dims:
        shape = packed_varints(dims)
        trailer += _T_SHAPE + _varint(len(shape)) + shape
    dense = _T_DENSE + _varint(nbytes)
    value_size = len(dense) + nbytes + len(trailer)
    entry = _E_KEY + _varint(len(raw)) + raw + _E_VALUE_MSG + _varint(value_size) + dense
    head = _D_LOSS_INPUTS + _varint(len(entry) + nbytes + len(trailer)) + entry
    found = (head, trailer, nbytes)
    if len(_TENSOR_FRAME) < _CACHE_LIMIT:
        _TENSOR_FRAME[(name, dtype, dims)] = found
    return found


def append_datum(
    parts: list[bytes | memoryview],
    datum: Datum,
    token_bytes: Callable[[object, str], bytes | memoryview],
    what: str,
    known: KnownTokens | None = None,
) -> int:
    """Append ``datum`` as a ``data`` field of the request to ``parts``; return its byte count.

    Returns -1, appending nothing, when the datum has something but text chunks and dense
    tensors of a wire dtype (images, audio, CSR, provenance spans): the caller encodes it with
    the general path. ``token_bytes`` packs a chunk's Python-int tokens (with the caller's
    errors) when the chunk holds no packed copy and ``known`` has none for it.
    """
    if datum.model_input_spans or datum.loss_fn_input_spans:
        return -1
    start = len(parts)
    parts.append(b"")  # the datum's own header, once its size is known
    size = 0
    for j, chunk in enumerate(datum.model_input.chunks):
        if type(chunk) is not EncodedTextChunk:
            del parts[start:]
            return -1
        view: bytes | memoryview | None = packed_tokens(chunk)
        if view is None:
            hit = known.get(id(chunk)) if known else None
            if hit is not None and hit[0] is chunk:
                view = hit[1]
            else:
                view = token_bytes(chunk.tokens, f"{what}.model_input.chunks[{j}]")
        nbytes = len(view)
        head = _TEXT_HEAD.get(nbytes) or _text_head(nbytes)
        parts.append(head)
        size += len(head) + nbytes
        if nbytes:
            parts.append(view)
    for name, td in datum.loss_fn_inputs.items():
        if td.is_sparse:
            del parts[start:]
            return -1
        array = td.array
        dims = td.dims
        key = (name, td.dtype, (array.size,) if dims is None else dims)
        frame = _TENSOR_FRAME.get(key) or _tensor_frame(*key)
        if frame is None:
            del parts[start:]
            return -1
        head, trailer, nbytes = frame
        values = (
            array.data.cast("B")  # the common 1-D array: no reshape, no copy
            if array.ndim == 1 and array.flags.c_contiguous and array.dtype.byteorder in _AS_IS
            else array_view(array)
        )
        if len(values) != nbytes:  # values that disagree with the dtype or dims it claims
            del parts[start:]
            return -1
        parts.append(head)
        parts.append(values)
        parts.append(trailer)
        size += len(head) + nbytes + len(trailer)
    head = _R_DATA + _varint(size)
    parts[start] = head
    return len(head) + size
