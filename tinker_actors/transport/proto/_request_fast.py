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

import sys
from typing import TYPE_CHECKING, Final

from tinker_actors.transport.proto._tensors import _T_DENSE, _T_DTYPE, _T_SHAPE, _TO_WIRE
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

#: map-entry key prefix (tag, length, UTF-8 name) per loss input name
_NAME_PREFIX: dict[str, bytes] = {}
#: tensor trailer (dtype field, shape field) per (wire dtype, dims)
_TRAILER: dict[tuple[int, tuple[int, ...]], bytes] = {}
_CACHE_LIMIT: Final = 1024


def _varint(value: int) -> bytes:
    # sizes only: never negative
    if value < 128:
        return _SMALL[value]
    if value < 16384:
        return bytes((value & 0x7F | 0x80, value >> 7))
    if value < 2097152:  # a datum of 2,048 tokens and two tensors: about 24 KB
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    return varint(value)


def _name_prefix(name: str) -> bytes:
    prefix = _NAME_PREFIX.get(name)
    if prefix is None:
        raw = name.encode("utf-8")
        prefix = _E_KEY + _varint(len(raw)) + raw
        if len(_NAME_PREFIX) < _CACHE_LIMIT:
            _NAME_PREFIX[name] = prefix
    return prefix


def _trailer(wire_dtype: int, dims: tuple[int, ...]) -> bytes:
    found = _TRAILER.get((wire_dtype, dims))
    if found is None:
        found = _T_DTYPE + varint(wire_dtype)
        if dims:
            shape = packed_varints(dims)
            found += _T_SHAPE + _varint(len(shape)) + shape
        if len(_TRAILER) < _CACHE_LIMIT:
            _TRAILER[(wire_dtype, dims)] = found
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
    body: list[bytes | memoryview] = []
    size = 0
    for j, chunk in enumerate(datum.model_input.chunks):
        if type(chunk) is not EncodedTextChunk:
            return -1
        view: bytes | memoryview | None = packed_tokens(chunk)
        if view is None:
            hit = known.get(id(chunk)) if known else None
            if hit is not None and hit[0] is chunk:
                view = hit[1]
            else:
                view = token_bytes(chunk.tokens, f"{what}.model_input.chunks[{j}]")
        nbytes = len(view)
        inner = (_F1_LEN + _varint(nbytes)) if nbytes else b""
        inner_size = len(inner) + nbytes
        text = _C_TEXT + _varint(inner_size) + inner
        head = _D_MODEL_INPUT + _varint(len(text) + nbytes) + text
        body.append(head)
        size += len(head) + nbytes
        if nbytes:
            body.append(view)
    for name, td in datum.loss_fn_inputs.items():
        wire_dtype = _TO_WIRE.get(td.dtype)
        if wire_dtype is None or td.is_sparse:
            return -1
        array = td.array
        values = (
            array.data.cast("B")  # the common 1-D array: no reshape, no copy
            if array.ndim == 1 and array.flags.c_contiguous and array.dtype.byteorder in _AS_IS
            else array_view(array)
        )
        nbytes = len(values)
        shape = td.shape
        trailer = _trailer(wire_dtype, tuple(shape) if shape is not None else (td.numel,))
        dense = _T_DENSE + _varint(nbytes)
        tensor_size = len(dense) + nbytes + len(trailer)
        entry = _name_prefix(name) + _E_VALUE_MSG + _varint(tensor_size) + dense
        entry_size = len(entry) + nbytes + len(trailer)
        head = _D_LOSS_INPUTS + _varint(entry_size) + entry
        body.append(head)
        body.append(values)
        body.append(trailer)
        size += len(head) + nbytes + len(trailer)
    head = _R_DATA + _varint(size)
    parts.append(head)
    parts.extend(body)
    return len(head) + size
