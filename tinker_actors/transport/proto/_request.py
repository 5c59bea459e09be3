"""``tinker_public.ForwardBackwardRequest``: encode (client) and decode (local server).

Encoding follows protocol §5.2: text tokens as int32 little-endian bytes; images as raw bytes;
DMel chunks as raw TensorContainer bytes; image asset pointers are refused; each loss input as a
``Tensor``; ``loss_fn_config`` written twice for numbers (the legacy ``map<string, double>`` and
``loss_fn_config_v2[k].number``) and once for strings (``v2[k].text``). The body is optionally
zstd-compressed (level 3), sent with ``Content-Encoding: zstd``.

Decoding never trusts the body's own size claims: a zstd body is decompressed in pieces and
refused (:class:`DecompressionLimitError`) as soon as its output passes the caller's limit, so a
few kilobytes that expand to gigabytes cost the server nothing.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Final, cast

import numpy as np
import zstandard

from tinker_actors.errors import InvalidInputError
from tinker_actors.transport.proto._request_fast import KnownTokens, append_datum
from tinker_actors.transport.proto._tensors import decode_tensor, encode_tensor
from tinker_actors.transport.proto._wire import (
    FIXED64,
    LEN,
    VARINT,
    MessageWriter,
    ProtobufDecodeError,
    array_view,
    as_int32,
    as_int64,
    expect,
    iter_fields,
    key,
    pack_int32,
    read_array,
    read_double,
    read_string,
)
from tinker_actors.types._datum import (
    Datum,
    PromptProvenanceSpan,
    ProvenanceSpan,
    SampledProvenanceSpan,
)
from tinker_actors.types._forward_backward import ForwardBackwardInput, ForwardBackwardRequest
from tinker_actors.types._model_input import (
    DmelChunk,
    EncodedTextChunk,
    ImageAssetPointerChunk,
    ImageChunk,
    ImageFormat,
    ModelInput,
    ModelInputChunk,
)

if TYPE_CHECKING:
    from tinker_actors.types._datum import LossFnConfig, LossFnType
    from tinker_actors.types._tensor import TensorData

__all__ = [
    "MAX_DECOMPRESSED_BYTES",
    "DecompressionLimitError",
    "decode_forward_backward_request",
    "encode_forward_backward_request",
]

ZSTD_LEVEL: Final = 3
#: The most bytes a compressed request body may decompress to, unless the caller says otherwise.
MAX_DECOMPRESSED_BYTES: Final = 64 << 20
_DECOMPRESS_PIECE: Final = 1 << 20
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

# ForwardBackwardRequest
_R_MODEL_ID = key(1, LEN)
_R_SEQ_ID = key(2, VARINT)
_R_DATA = key(3, LEN)
_R_LOSS_FN = key(4, LEN)
_R_CONFIG = key(5, LEN)
_R_FORWARD_ONLY = key(6, VARINT)
_R_CONFIG_V2 = key(7, LEN)
# map entries, LossConfigValue
_E_KEY = key(1, LEN)
_E_VALUE_DOUBLE = key(2, FIXED64)
_E_VALUE_MSG = key(2, LEN)
_V_NUMBER = key(1, FIXED64)
_V_TEXT = key(2, LEN)
# Datum
_D_MODEL_INPUT = key(1, LEN)
_D_LOSS_INPUTS = key(2, LEN)
_D_INPUT_SPANS = key(3, LEN)
_D_LOSS_SPANS = key(4, LEN)
# Chunk oneof, and the chunk messages
_C_TEXT = key(1, LEN)
_C_IMAGE = key(2, LEN)
_C_DMEL = key(3, LEN)
_F1_LEN = key(1, LEN)
_F2_LEN = key(2, LEN)
_F3_VARINT = key(3, VARINT)
# ProvenanceSpan oneof and span fields
_S_PROMPT = key(1, LEN)
_S_SAMPLED = key(2, LEN)
_S_OFFSET = key(2, VARINT)
_S_LENGTH = key(3, VARINT)

_I32: Final = np.dtype(np.int32)
_IMAGE_FORMATS: Final[dict[str, ImageFormat]] = {"png": "png", "jpeg": "jpeg"}


def _token_bytes(tokens: object, what: str) -> bytes | memoryview:
    """Pack token ids as int32 little-endian bytes.

    A list is packed with ``struct`` (2.4x faster than ``np.fromiter``, which was 3x faster
    than ``np.asarray``), and checked again here: a chunk's list may have changed since the
    chunk checked it.
    """
    if isinstance(tokens, np.ndarray):
        if tokens.size and (tokens.ndim != 1 or tokens.dtype.kind not in "iu"):
            raise InvalidInputError(f"{what}: tokens must be a flat list of integers")
        if tokens.size and (int(tokens.min()) < _INT32_MIN or int(tokens.max()) > _INT32_MAX):
            raise InvalidInputError(f"{what}: token ids must fit int32")
        return array_view(tokens.astype("<i4", copy=False))
    if not isinstance(tokens, list | tuple):
        raise InvalidInputError(f"{what}: tokens must be a list of integers")
    try:
        return pack_int32(tokens)
    except struct.error as exc:
        if "format requires" in str(exc):
            raise InvalidInputError(f"{what}: token ids must fit int32 ({exc})") from exc
        raise InvalidInputError(f"{what}: tokens must be a flat list of integers ({exc})") from exc


def _encode_chunk(chunk: ModelInputChunk, what: str) -> MessageWriter:
    w = MessageWriter()
    inner = MessageWriter()
    if isinstance(chunk, EncodedTextChunk):
        data = _token_bytes(chunk.tokens, what)
        if len(data):
            inner.blob(_F1_LEN, data)
        w.message(_C_TEXT, inner)
    elif isinstance(chunk, ImageChunk):
        if chunk.data:
            inner.blob(_F1_LEN, chunk.data)
        if chunk.format:
            inner.string(_F2_LEN, chunk.format)
        if isinstance(chunk.expected_tokens, int):
            inner.uint(_F3_VARINT, chunk.expected_tokens)
        w.message(_C_IMAGE, inner)
    elif isinstance(chunk, DmelChunk):
        if chunk.dmel:
            inner.blob(_F1_LEN, chunk.dmel)
        w.message(_C_DMEL, inner)
    elif isinstance(chunk, ImageAssetPointerChunk):
        raise InvalidInputError(
            f"{what}: an ImageAssetPointerChunk cannot be sent in a forward/forward_backward "
            "request; load the image and pass an ImageChunk with its bytes"
        )
    else:
        raise TypeError(f"{what}: unsupported model input chunk {type(chunk).__name__}")
    return w


def _encode_span(span: ProvenanceSpan, what: str) -> MessageWriter:
    inner = MessageWriter()
    if span.sequence_id:
        inner.string(_F1_LEN, span.sequence_id)
    if span.offset:
        inner.uint(_S_OFFSET, span.offset)
    if span.length:
        inner.uint(_S_LENGTH, span.length)
    w = MessageWriter()
    if isinstance(span, SampledProvenanceSpan):
        w.message(_S_SAMPLED, inner)
    elif isinstance(span, PromptProvenanceSpan):
        w.message(_S_PROMPT, inner)
    else:
        raise TypeError(f"{what}: unsupported provenance span {type(span).__name__}")
    return w


def _encode_datum(datum: Datum, i: int) -> MessageWriter:
    w = MessageWriter()
    for j, chunk in enumerate(datum.model_input.chunks):
        w.message(_D_MODEL_INPUT, _encode_chunk(chunk, f"data[{i}].model_input.chunks[{j}]"))
    for name, td in datum.loss_fn_inputs.items():
        entry = MessageWriter()
        entry.string(_E_KEY, name)
        entry.message(_E_VALUE_MSG, encode_tensor(td, f"data[{i}].loss_fn_inputs[{name!r}]"))
        w.message(_D_LOSS_INPUTS, entry)
    for tag, spans in (
        (_D_INPUT_SPANS, datum.model_input_spans),
        (_D_LOSS_SPANS, datum.loss_fn_input_spans),
    ):
        if isinstance(spans, list):
            for span in spans:
                w.message(tag, _encode_span(span, f"data[{i}] provenance"))
    return w


def _encode_config(w: MessageWriter, config: LossFnConfig) -> None:
    for name, value in config.items():
        if not isinstance(name, str):
            raise InvalidInputError(f"loss_fn_config keys must be strings, got {name!r}")
        value_msg = MessageWriter()
        if isinstance(value, str):
            value_msg.string(_V_TEXT, value)
        elif isinstance(value, int | float | np.integer | np.floating):
            number = float(value)
            legacy = MessageWriter()
            legacy.string(_E_KEY, name)
            legacy.double(_E_VALUE_DOUBLE, number)
            w.message(_R_CONFIG, legacy)
            value_msg.double(_V_NUMBER, number)
        else:
            raise InvalidInputError(
                f"loss_fn_config[{name!r}] must be a number or a string, got {type(value).__name__}"
            )
        entry = MessageWriter()
        entry.string(_E_KEY, name)
        entry.message(_E_VALUE_MSG, value_msg)
        w.message(_R_CONFIG_V2, entry)


def encode_forward_backward_request(
    req: ForwardBackwardRequest, *, compress: bool, known: KnownTokens | None = None
) -> bytes:
    """Encode a forward/forward_backward request as protobuf, zstd-compressed if ``compress``.

    ``known`` holds text chunks' ids already packed (by the input checks, see
    :func:`~tinker_actors.clients._checks.check_forward_data`); they are sent as they are.

    Raises:
        InvalidInputError: an image asset pointer, token ids outside int32, a seq_id outside
            int32, or a loss_fn_config value that is neither number nor string.
    """
    body = encode_request_body(req, known=known)
    if compress:
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(body)
    return body


def encode_request_body(
    req: ForwardBackwardRequest, *, fast: bool = True, known: KnownTokens | None = None
) -> bytes:
    """Encode ``req`` uncompressed; ``fast=False`` frames every datum with the general path.

    The two give the same bytes (the fast framing handles the common datum, see
    :mod:`._request_fast`); ``fast=False`` exists for the tests that check this.
    """
    if not _INT32_MIN <= req.seq_id <= _INT32_MAX:
        raise InvalidInputError(f"seq_id must fit int32, got {req.seq_id}")
    fb = req.forward_backward_input
    w = MessageWriter()
    if req.model_id:
        w.string(_R_MODEL_ID, req.model_id)
    if req.seq_id:
        w.uint(_R_SEQ_ID, req.seq_id)
    for i, datum in enumerate(fb.data):
        n = append_datum(w.parts, datum, _token_bytes, f"data[{i}]", known) if fast else -1
        if n < 0:
            w.message(_R_DATA, _encode_datum(datum, i))
        else:
            w.size += n
    if fb.loss_fn:
        w.string(_R_LOSS_FN, fb.loss_fn)
    if req.forward_only:
        w.uint(_R_FORWARD_ONLY, 1)
    if isinstance(fb.loss_fn_config, dict):
        _encode_config(w, fb.loss_fn_config)
    return w.getvalue()


# -- decoding (local server) ----------------------------------------------------------------------


class DecompressionLimitError(ProtobufDecodeError):
    """A compressed body decompresses to more than the decoder's limit (``limit`` bytes)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the zstd body decompresses to more than {limit} bytes")
        self.limit = limit


def _decompress(body: bytes, limit: int) -> bytes:
    """Decompress one zstd frame, refusing it once the output passes ``limit`` bytes.

    The frame header's content size is not trusted (it is the sender's claim): the output is
    read in pieces, so memory stays bounded by ``limit`` whatever the body says.
    """
    pieces: list[bytes] = []
    size = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(body) as reader:
            while True:
                piece = reader.read(min(_DECOMPRESS_PIECE, limit + 1 - size))
                if not piece:
                    break
                size += len(piece)
                if size > limit:
                    raise DecompressionLimitError(limit)
                pieces.append(piece)
    except zstandard.ZstdError as exc:
        raise ProtobufDecodeError(f"body is not a valid zstd frame: {exc}") from exc
    return b"".join(pieces)


def _map_entry(buf: bytes, a: int, b: int, what: str) -> tuple[str, int, int, int]:
    """Return (key, value wire type, value start/int, value end) of a map entry."""
    name = ""
    value: tuple[int, int, int] = (-1, 0, 0)
    for number, wt, x, y in iter_fields(buf, a, b):
        if number == 1:
            expect(wt, LEN, f"{what} key")
            name = read_string(buf, x, y, what)
        elif number == 2:
            value = (wt, x, y)
    return name, *value


def _decode_chunk(
    buf: bytes, a: int, b: int, what: str, bounds: list[tuple[int, int]] | None = None
) -> ModelInputChunk:
    chunk: ModelInputChunk | None = None
    for number, wt, x, y in iter_fields(buf, a, b):
        if number not in (1, 2, 3):
            continue
        expect(wt, LEN, what)
        fields = {n: (t, p, q) for n, t, p, q in iter_fields(buf, x, y)}
        if number == 1:
            t, p, q = fields.get(1, (LEN, 0, 0))
            expect(t, LEN, f"{what}.encoded_text.tokens")
            tokens = read_array(buf, p, q, _I32, f"{what}.tokens")
            if bounds is not None and tokens.size:
                bounds.append((int(tokens.min()), int(tokens.max())))
            chunk = EncodedTextChunk(tokens=tokens.tolist())
        elif number == 2:
            data = b""
            if 1 in fields:
                t, p, q = fields[1]
                expect(t, LEN, f"{what}.image.data")
                data = buf[p:q]
            fmt = ""
            if 2 in fields:
                t, p, q = fields[2]
                expect(t, LEN, f"{what}.image.format")
                fmt = read_string(buf, p, q, what)
            image_format = _IMAGE_FORMATS.get(fmt)
            if image_format is None:
                raise ProtobufDecodeError(f"{what}: image format must be png or jpeg, got {fmt!r}")
            expected: int | None = None
            if 3 in fields:
                t, p, _ = fields[3]
                expect(t, VARINT, f"{what}.image.expected_tokens")
                expected = as_int32(p)
            try:
                chunk = ImageChunk(data=data, format=image_format, expected_tokens=expected)
            except InvalidInputError as exc:
                raise ProtobufDecodeError(f"{what}: {exc}") from exc
        else:
            t, p, q = fields.get(1, (LEN, 0, 0))
            expect(t, LEN, f"{what}.dmel.dmel")
            chunk = DmelChunk(dmel=buf[p:q])
    if chunk is None:
        raise ProtobufDecodeError(f"{what}: empty Chunk (no encoded_text, image or dmel)")
    return chunk


def _decode_span(buf: bytes, a: int, b: int, what: str) -> ProvenanceSpan:
    for number, wt, x, y in iter_fields(buf, a, b):
        if number not in (1, 2):
            continue
        expect(wt, LEN, what)
        seq, offset, length = "", 0, 0
        for n, t, p, q in iter_fields(buf, x, y):
            if n == 1:
                expect(t, LEN, what)
                seq = read_string(buf, p, q, what)
            elif n in (2, 3):
                expect(t, VARINT, what)
                if n == 2:
                    offset = as_int64(p)
                else:
                    length = as_int64(p)
        cls = PromptProvenanceSpan if number == 1 else SampledProvenanceSpan
        try:
            return cls(sequence_id=seq, offset=offset, length=length)
        except InvalidInputError as exc:
            raise ProtobufDecodeError(f"{what}: {exc}") from exc
    raise ProtobufDecodeError(f"{what}: empty ProvenanceSpan")


def _decode_datum(
    buf: bytes, a: int, b: int, i: int, bounds: list[tuple[int, int] | None] | None = None
) -> Datum:
    chunks: list[ModelInputChunk] = []
    chunk_bounds: list[tuple[int, int]] | None = [] if bounds is not None else None
    inputs: dict[str, TensorData] = {}
    spans: tuple[list[ProvenanceSpan], list[ProvenanceSpan]] = ([], [])
    for number, wt, x, y in iter_fields(buf, a, b):
        what = f"data[{i}]"
        if number in (1, 2, 3, 4):
            expect(wt, LEN, what)
        if number == 1:
            where = f"{what}.model_input[{len(chunks)}]"
            chunks.append(_decode_chunk(buf, x, y, where, chunk_bounds))
        elif number == 2:
            name, vt, p, q = _map_entry(buf, x, y, f"{what}.loss_fn_inputs")
            field = f"{what}.loss_fn_inputs[{name!r}]"
            if vt == -1:
                raise ProtobufDecodeError(f"{field}: missing tensor")
            expect(vt, LEN, field)
            inputs[name] = decode_tensor(buf, p, q, field)
        elif number in (3, 4):
            spans[number - 3].append(_decode_span(buf, x, y, f"{what} span"))
    if bounds is not None:
        assert chunk_bounds is not None
        bounds.append(
            (min(lo for lo, _ in chunk_bounds), max(hi for _, hi in chunk_bounds))
            if chunk_bounds
            else None
        )
    has_spans = bool(spans[0] or spans[1])
    try:
        return Datum(
            model_input=ModelInput(chunks=chunks),
            loss_fn_inputs=inputs,
            model_input_spans=spans[0] if has_spans else None,
            loss_fn_input_spans=spans[1] if has_spans else None,
        )
    except InvalidInputError as exc:
        raise ProtobufDecodeError(f"data[{i}]: {exc}") from exc


def decode_forward_backward_request(
    body: bytes,
    *,
    content_encoding: str | None,
    token_bounds: list[tuple[int, int] | None] | None = None,
    max_decompressed_bytes: int = MAX_DECOMPRESSED_BYTES,
) -> ForwardBackwardRequest:
    """Decode a forward/forward_backward request body (``Content-Encoding`` zstd or none).

    ``loss_fn_config`` prefers ``loss_fn_config_v2`` entries over the legacy map. With
    ``token_bounds``, one entry per datum is appended to it: the (min, max) of its token ids
    (None when it has none), computed on the packed ids before they become lists, so a server
    checks them against the model's vocabulary without scanning the lists again.

    Raises:
        DecompressionLimitError: a zstd body expands past ``max_decompressed_bytes``.
        ProtobufDecodeError: unsupported encoding, bad zstd frame, or malformed protobuf.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "zstd":
        body = _decompress(body, max_decompressed_bytes)
    elif encoding != "identity":
        raise ProtobufDecodeError(f"unsupported Content-Encoding {content_encoding!r}")
    buf = bytes(body)
    model_id = loss_fn = ""
    seq_id = 0
    forward_only = False
    data: list[Datum] = []
    legacy: dict[str, float | str] = {}
    v2: dict[str, float | str] = {}
    for number, wt, a, b in iter_fields(buf, 0, len(buf)):
        if number == 1:
            expect(wt, LEN, "model_id")
            model_id = read_string(buf, a, b, "model_id")
        elif number == 2:
            expect(wt, VARINT, "seq_id")
            seq_id = as_int32(a)
        elif number == 3:
            expect(wt, LEN, "data")
            data.append(_decode_datum(buf, a, b, len(data), token_bounds))
        elif number == 4:
            expect(wt, LEN, "loss_fn")
            loss_fn = read_string(buf, a, b, "loss_fn")
        elif number == 5:
            expect(wt, LEN, "loss_fn_config")
            name, vt, p, _ = _map_entry(buf, a, b, "loss_fn_config")
            if vt != -1:
                expect(vt, FIXED64, f"loss_fn_config[{name!r}]")
            legacy[name] = read_double(buf, p) if vt != -1 else 0.0
        elif number == 6:
            expect(wt, VARINT, "forward_only")
            forward_only = bool(a)
        elif number == 7:
            expect(wt, LEN, "loss_fn_config_v2")
            name, vt, p, q = _map_entry(buf, a, b, "loss_fn_config_v2")
            if vt != -1:
                expect(vt, LEN, f"loss_fn_config_v2[{name!r}]")
                for n, t, x, y in iter_fields(buf, p, q):
                    if n == 1:
                        expect(t, FIXED64, f"loss_fn_config_v2[{name!r}].number")
                        v2[name] = read_double(buf, x)
                    elif n == 2:
                        expect(t, LEN, f"loss_fn_config_v2[{name!r}].text")
                        v2[name] = read_string(buf, x, y, "loss_fn_config_v2")
    config: LossFnConfig | None = {**legacy, **v2} if legacy or v2 else None
    return ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(
            data=data, loss_fn=cast("LossFnType", loss_fn), loss_fn_config=config
        ),
        model_id=model_id,
        seq_id=seq_id,
        forward_only=forward_only,
    )
