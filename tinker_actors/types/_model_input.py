"""ModelInput: what the model reads, as a list of chunks (text tokens, images, audio).

A chunk is one of four kinds, told apart on the wire by ``type``::

    >>> import msgspec
    >>> image = ImageChunk(data=b"\\x89PNG", format="png", expected_tokens=4)
    >>> mi = ModelInput.from_ints([1, 2, 3]).append(image)
    >>> msgspec.json.encode(mi)
    b'{"chunks":[{"type":"encoded_text","tokens":[1,2,3]},{"type":"image","data":"iVBORw==","format":"png","expected_tokens":4}]}'
    >>> mi.length
    7

JSON conventions for every wire Struct in ``tinker_actors.types`` (protocol.md preamble)
---------------------------------------------------------------------------------------

* Requests are sent "include defaults, drop nulls". msgspec has no ``omit_none``, and
  ``omit_defaults=True`` would also drop real defaults (``"num_samples": 1``), so:

  - a field with a real default is typed ``T`` with that default, and is always sent;
  - a nullable optional field is typed ``T | msgspec.UnsetType | None = msgspec.UNSET`` and the
    Struct's ``__post_init__`` turns ``None`` into ``UNSET`` (``msgspec.structs.force_setattr``
    also works on frozen Structs; use :func:`none_to_unset`). UNSET fields are never encoded, so
    no ``null`` ever reaches the wire, and callers may still write ``seed=None``; a decoded
    ``null`` also lands as UNSET. On a :class:`~tinker_actors.types._base.RequestStruct` such a
    field *reads* as ``None`` (as 0.38's models read), so readers test ``x is None``; the slot
    itself (``msgspec.structs.asdict``) holds UNSET.
* Request Structs: ``kw_only=True, frozen=True, forbid_unknown_fields=True``.
  Response Structs: ``kw_only=True, frozen=True`` (unknown fields ignored), nullable fields typed
  ``T | None = None``.
* Tagged unions: a base Struct with ``tag_field="type"`` and subclasses with ``tag="..."``; the
  tag is always encoded (msgspec writes it first; key order is irrelevant to the protocol).
* ``bytes`` fields are base64 in JSON (msgspec's native behaviour), as protocol §4.1 wants.
* Structs that may hold a :class:`~tinker_actors.types._tensor.TensorData` need the hooks
  ``json_enc_hook`` / ``json_dec_hook`` from ``tinker_actors.types._tensor`` on their
  encoder/decoder.
"""

from __future__ import annotations

import base64
import binascii
import copy
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import tag_attribute
from tinker_actors.types._pydantic import ModelMethods
from tinker_actors.types._values import PackedTokens, as_int, token_ids

if TYPE_CHECKING:
    from collections.abc import Sequence

    import numpy.typing as npt

__all__ = [
    "DmelChunk",
    "EncodedTextChunk",
    "ImageAssetPointerChunk",
    "ImageChunk",
    "ImageFormat",
    "ModelInput",
    "ModelInputChunk",
    "none_to_unset",
    "tensor_container_shape",
]

ImageFormat: TypeAlias = Literal["png", "jpeg"]
"""Image encodings the API accepts."""

_LITTLE_ENDIAN: Final = sys.byteorder == "little"
_CONSTANT_TENSOR_MARKER = 254
_MAX_DTYPE_BYTE = 7


def none_to_unset(struct: msgspec.Struct, *names: str) -> None:
    """Replace ``None`` by ``UNSET`` in the named fields (call it from ``__post_init__``)."""
    for name in names:
        if getattr(struct, name) is None:
            msgspec.structs.force_setattr(struct, name, msgspec.UNSET)


class _Chunk(
    msgspec.Struct,
    ModelMethods,
    tag_field="type",
    kw_only=True,
    frozen=True,
    forbid_unknown_fields=True,
    omit_defaults=True,
):
    """Base of the ModelInput chunk kinds (a tagged union on ``type``).

    ``omit_defaults``: the only defaulted field is an image's ``expected_tokens`` (``None``), so
    an unset one is left out of the JSON, as the official SDK's ``exclude_none`` does, while
    reading it gives ``None`` as in 0.38. ``chunk.type`` reads the tag.
    """

    if not TYPE_CHECKING:
        __getattr__ = tag_attribute


class EncodedTextChunk(_Chunk, tag="encoded_text", frozen=True):
    """A run of token ids.

    Raises:
        InvalidInputError: a value is not a token id (a bool, a fraction, NaN, a string, or
            outside int32), naming it. Integral floats and numpy integers become ints.
    """

    tokens: list[int]
    """Token ids (Python ints that fit int32: the protobuf request packs them as int32)."""

    def __post_init__(self) -> None:
        checked = token_ids(self.tokens)  # a list is copied: the chunk owns its ids
        if checked is not self.tokens:
            msgspec.structs.force_setattr(self, "tokens", checked)

    @property
    def length(self) -> int:
        """Number of tokens."""
        return len(self.tokens)


_EMPTY_TEXT = EncodedTextChunk(tokens=[])


def _trusted_text(tokens: list[int]) -> EncodedTextChunk:
    """Return a text chunk of already checked ``tokens`` (``copy`` skips ``__post_init__``)."""
    chunk = copy.copy(_EMPTY_TEXT)
    msgspec.structs.force_setattr(chunk, "tokens", tokens)
    return chunk


def packed_tokens(chunk: EncodedTextChunk) -> memoryview | None:
    """Return the chunk's ids as little-endian int32 bytes when it holds them packed.

    Only a chunk built from a numpy array does (its tokens are a read-only
    :class:`~tinker_actors.types._values.PackedTokens`); a plain list may have changed since
    the chunk was built, so the encoder packs (and checks) it afresh.
    """
    tokens = chunk.tokens
    if type(tokens) is not PackedTokens or not _LITTLE_ENDIAN:
        return None
    return memoryview(tokens.packed.data).cast("B")


def _image_length(kind: str, expected_tokens: object) -> int:
    if not isinstance(expected_tokens, int):
        raise InvalidInputError(
            f"{kind}.expected_tokens must be set to compute the length of a ModelInput that "
            "holds an image"
        )
    return expected_tokens


def _check_image(chunk: ImageChunk | ImageAssetPointerChunk) -> None:
    if chunk.format not in ("png", "jpeg"):
        raise InvalidInputError(
            f"{type(chunk).__name__}.format must be 'png' or 'jpeg', got {chunk.format!r}"
        )
    expected = chunk.expected_tokens
    if expected is not None:
        checked = as_int(expected, f"{type(chunk).__name__}.expected_tokens", minimum=0)
        if checked is not expected:
            msgspec.structs.force_setattr(chunk, "expected_tokens", checked)


def _bytes_field(chunk: msgspec.Struct, name: str) -> None:
    """Accept base64 text for a bytes field, as 0.38 does, and refuse anything else."""
    value = getattr(chunk, name)
    if isinstance(value, bytes):
        return
    if isinstance(value, bytearray | memoryview):
        msgspec.structs.force_setattr(chunk, name, bytes(value))
        return
    if isinstance(value, str):
        try:
            msgspec.structs.force_setattr(chunk, name, base64.b64decode(value, validate=True))
        except binascii.Error as exc:
            raise InvalidInputError(
                f"{type(chunk).__name__}.{name}: a str must be base64 ({exc}); pass bytes"
            ) from exc
        return
    raise InvalidInputError(
        f"{type(chunk).__name__}.{name} must be bytes (or base64 text), got {type(value).__name__}"
    )


class ImageChunk(_Chunk, tag="image", frozen=True):
    """An inline image (raw PNG/JPEG bytes; base64 in JSON)."""

    data: bytes
    """The encoded image file (base64 text is decoded, as in 0.38)."""

    format: ImageFormat
    """``"png"`` or ``"jpeg"``."""

    expected_tokens: int | None = None
    """How many tokens the image should take; advisory, but needed to compute lengths."""

    def __post_init__(self) -> None:
        _bytes_field(self, "data")
        _check_image(self)

    @property
    def length(self) -> int:
        """Number of tokens the image takes (``expected_tokens``).

        Raises:
            InvalidInputError: ``expected_tokens`` is not set.
        """
        return _image_length("ImageChunk", self.expected_tokens)


class ImageAssetPointerChunk(_Chunk, tag="image_asset_pointer", frozen=True):
    """An image referenced by path or URL (JSON only: it cannot go into a forward_backward)."""

    format: ImageFormat
    """``"png"`` or ``"jpeg"``."""

    location: str
    """Path or URL of the image."""

    expected_tokens: int | None = None
    """How many tokens the image should take; advisory, but needed to compute lengths."""

    def __post_init__(self) -> None:
        _check_image(self)

    @property
    def length(self) -> int:
        """Number of tokens the image takes (``expected_tokens``).

        Raises:
            InvalidInputError: ``expected_tokens`` is not set.
        """
        return _image_length("ImageAssetPointerChunk", self.expected_tokens)


class DmelChunk(_Chunk, tag="dmel", frozen=True):
    """Audio as a serialized TensorContainer of DMel tokens (opaque bytes; base64 in JSON)."""

    dmel: bytes
    """The TensorContainer bytes (base64 text is decoded); only the header is read here."""

    def __post_init__(self) -> None:
        _bytes_field(self, "dmel")

    @property
    def length(self) -> int:
        """Number of tokens: dimension 0 of the contained tensor.

        Raises:
            InvalidInputError: the header is malformed or the tensor is 0-D.
        """
        shape = tensor_container_shape(self.dmel)
        if not shape:
            raise InvalidInputError("DmelChunk: the TensorContainer holds a 0-D tensor")
        return shape[0]


ModelInputChunk: TypeAlias = EncodedTextChunk | ImageChunk | ImageAssetPointerChunk | DmelChunk
"""One piece of a ModelInput."""


_CHUNK_TYPES: Final = (EncodedTextChunk, ImageChunk, ImageAssetPointerChunk, DmelChunk)


class ModelInput(
    msgspec.Struct, ModelMethods, kw_only=True, frozen=True, forbid_unknown_fields=True
):
    """The model's input: chunks read in order. Immutable; ``append*`` return a new one.

    Raises:
        InvalidInputError: a chunk is not one of the four chunk kinds (dicts in their JSON form
            are converted, as 0.38 does).
    """

    chunks: list[ModelInputChunk] = msgspec.field(default_factory=list)
    """The chunks, in order."""

    def __post_init__(self) -> None:
        chunks = self.chunks
        if type(chunks) is not list or not all(type(c) in _CHUNK_TYPES for c in chunks):
            msgspec.structs.force_setattr(self, "chunks", _checked_chunks(chunks))
        else:  # immutable means a list of its own, not the caller's (0.38 copies it too)
            msgspec.structs.force_setattr(self, "chunks", list(chunks))

    @classmethod
    def _trusted(cls, chunks: list[ModelInputChunk]) -> ModelInput:
        """Build from chunks already known to be chunks (``copy`` skips ``__post_init__``)."""
        out = copy.copy(_EMPTY_INPUT)
        msgspec.structs.force_setattr(out, "chunks", chunks)
        return out

    @classmethod
    def from_ints(cls, tokens: Sequence[int] | npt.NDArray[Any]) -> ModelInput:
        """Return a ModelInput of one text chunk holding a copy of ``tokens``.

        Raises:
            InvalidInputError: a value is not a token id (a bool, a fraction, NaN, a string, or
                outside int32); the message names it.
        """
        ids = token_ids(tokens)  # a list comes back copied; a tuple as it is
        return cls._trusted([_trusted_text(ids if isinstance(ids, list) else list(ids))])

    @classmethod
    def empty(cls) -> ModelInput:
        """Return a ModelInput with no chunks."""
        return cls._trusted([])

    def append(self, chunk: ModelInputChunk) -> ModelInput:
        """Return a new ModelInput with ``chunk`` added at the end."""
        return ModelInput._trusted([*self.chunks, *_checked_chunks([chunk])])

    def append_int(self, token: int) -> ModelInput:
        """Return a new ModelInput with one token added (extending a trailing text chunk).

        Unlike 0.38, which adds a one-token chunk each time, the token joins a trailing text
        chunk: the model reads the same tokens, and a request built token by token stays small.

        Raises:
            InvalidInputError: ``token`` is not a token id.
        """
        (checked,) = token_ids([token], "token")
        last = self.chunks[-1] if self.chunks else None
        if isinstance(last, EncodedTextChunk):
            text = _trusted_text([*last.tokens, checked])
            return ModelInput._trusted([*self.chunks[:-1], text])
        return ModelInput._trusted([*self.chunks, _trusted_text([checked])])

    @property
    def length(self) -> int:
        """Total context length in tokens (images need ``expected_tokens``)."""
        chunks = self.chunks
        if len(chunks) == 1:  # the common input: no generator per call
            return chunks[0].length
        return sum(chunk.length for chunk in chunks)

    def to_ints(self) -> list[int]:
        """Return all tokens as one list.

        Raises:
            InvalidInputError: a chunk is not text.
        """
        out: list[int] = []
        for chunk in self.chunks:
            if not isinstance(chunk, EncodedTextChunk):
                raise InvalidInputError(
                    f"to_ints needs text-only input, but a chunk is {chunk.__class__.__name__}"
                )
            out.extend(chunk.tokens)
        return out


_EMPTY_INPUT = ModelInput(chunks=[])


def _checked_chunks(chunks: object) -> list[ModelInputChunk]:
    if isinstance(chunks, str | bytes | dict) or not isinstance(chunks, Iterable):
        raise InvalidInputError(
            f"ModelInput.chunks must be a list of chunks, got {type(chunks).__name__}"
        )
    out: list[ModelInputChunk] = []
    for i, chunk in enumerate(chunks):
        if isinstance(chunk, dict):
            try:
                chunk = msgspec.convert(chunk, ModelInputChunk)
            except msgspec.ValidationError as exc:
                raise InvalidInputError(f"ModelInput.chunks[{i}]: {exc}") from exc
        if not isinstance(chunk, _CHUNK_TYPES):
            raise InvalidInputError(
                f"ModelInput.chunks[{i}] must be an EncodedTextChunk, ImageChunk, "
                f"ImageAssetPointerChunk or DmelChunk, got {type(chunk).__name__}"
            )
        out.append(chunk)
    return out


def _read_varint(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if offset >= len(data):
            raise InvalidInputError("DmelChunk: truncated TensorContainer header")
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset
        shift += 7
        if shift > 63:
            raise InvalidInputError("DmelChunk: TensorContainer header varint is too long")


def tensor_container_shape(data: bytes) -> tuple[int, ...]:
    """Read the shape from a TensorContainer header (protocol §5.4) without reading the payload.

    Layout: optional marker byte 254 ("constant tensor"), one dtype byte in 0..7, a LEB128
    varint ``ndim``, then ``ndim`` LEB128 dims.

    Raises:
        InvalidInputError: empty, truncated, or an unknown dtype byte.
    """
    if not data:
        raise InvalidInputError("DmelChunk: TensorContainer bytes are empty")
    offset = 1 if data[0] == _CONSTANT_TENSOR_MARKER else 0
    if offset >= len(data):
        raise InvalidInputError("DmelChunk: truncated TensorContainer header")
    if data[offset] > _MAX_DTYPE_BYTE:
        raise InvalidInputError(f"DmelChunk: unknown TensorContainer dtype byte {data[offset]}")
    ndim, offset = _read_varint(data, offset + 1)
    dims: list[int] = []
    for _ in range(ndim):
        dim, offset = _read_varint(data, offset)
        dims.append(dim)
    return tuple(dims)
