"""Images in a model input: how many tokens one takes, and where it sits among the tokens.

Every local model reads images the way Qwen's vision models count them: the picture is
resized (keeping its aspect ratio) to a multiple of :data:`CELL` pixels on each side, within
:data:`MIN_PIXELS` .. :data:`MAX_PIXELS`, and each ``CELL`` x ``CELL`` square becomes one token
(16-pixel patches merged 2 x 2). ``tinker-actors tokenizers install`` writes the same rule as
the models' ``preprocessor_config.json``, so ``AutoImageProcessor`` (and tinker-cookbook's
renderers, which set ``ImageChunk.expected_tokens`` from it) count exactly what the server
counts. A client's ``expected_tokens`` must be set and must agree: a wrong count would shift
every later position against the targets the client built for them.

The server only needs an image's width and height to count it; those are read from the PNG or
JPEG header here (no imaging library). The pixels themselves are read only by the torch
backend (:mod:`._torch_vision`). Where an image sits, :func:`flatten` gives token ids with a
placeholder (:data:`IMAGE_PAD_ID`) in each image position, and the images' spans.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tinker_actors.local._backend import BackendInputError
from tinker_actors.types import EncodedTextChunk, ImageChunk

if TYPE_CHECKING:
    from tinker_actors.types import ModelInput

__all__ = [
    "CELL",
    "IMAGE_PAD_ID",
    "MAX_PIXELS",
    "MERGE",
    "MIN_PIXELS",
    "PATCH",
    "Flat",
    "ImageSpan",
    "flatten",
    "grid_for",
    "image_size",
    "preprocessor_config",
]

PATCH = 16
MERGE = 2
CELL = PATCH * MERGE
#: the fewest pixels an image is scaled up to (2 x 2 tokens) and the most it is scaled down to
MIN_PIXELS = 64 * 64
MAX_PIXELS = 1024 * 1024
#: what an image position holds among the token ids (the torch backend overwrites its embedding)
IMAGE_PAD_ID = 0
_MAX_ASPECT = 200
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless...): C0-CF but C4, C8 and CC
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


@dataclass(frozen=True)
class ImageSpan:
    """One image of a flattened input: ``rows`` x ``cols`` tokens from ``offset`` on."""

    offset: int
    rows: int
    cols: int
    data: bytes
    format: str

    @property
    def tokens(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Flat:
    """A model input as token ids (a placeholder per image position) and its images."""

    ids: list[int]
    images: tuple[ImageSpan, ...] = ()


def grid_for(width: int, height: int) -> tuple[int, int]:
    """Token rows and columns of a ``width`` x ``height`` image (Qwen's resize rule).

    Raises:
        BackendInputError: an empty image, or one more than 200 times as long as it is wide.
    """
    if width < 1 or height < 1:
        raise BackendInputError(f"an image of {width}x{height} pixels has nothing to read")
    if max(width, height) / min(width, height) > _MAX_ASPECT:
        raise BackendInputError(
            f"an image of {width}x{height} pixels is too narrow: the longer side may be at "
            f"most {_MAX_ASPECT} times the shorter"
        )
    # round() as Python does it (half to even), like the processors that count on the client
    h = round(height / CELL) * CELL
    w = round(width / CELL) * CELL
    if h * w > MAX_PIXELS:
        scale = math.sqrt(height * width / MAX_PIXELS)
        h = max(CELL, math.floor(height / scale / CELL) * CELL)
        w = max(CELL, math.floor(width / scale / CELL) * CELL)
    elif h * w < MIN_PIXELS:
        scale = math.sqrt(MIN_PIXELS / (height * width))
        h = math.ceil(height * scale / CELL) * CELL
        w = math.ceil(width * scale / CELL) * CELL
    return h // CELL, w // CELL


def image_size(data: bytes, fmt: str) -> tuple[int, int]:
    """``(width, height)`` from a PNG or JPEG file's header.

    Raises:
        BackendInputError: the bytes are not a ``fmt`` image, or its header is cut short.
    """
    if fmt == "png":
        if data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR" or len(data) < 24:
            raise BackendInputError(
                f"the image says format 'png' but its {len(data)} bytes are not a PNG file "
                "(no PNG signature and IHDR header)"
            )
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    if fmt == "jpeg":
        return _jpeg_size(data)
    raise BackendInputError(f"image format must be 'png' or 'jpeg', got {fmt!r}")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    def bad(why: str) -> BackendInputError:
        return BackendInputError(
            f"the image says format 'jpeg' but its {len(data)} bytes are not a readable JPEG "
            f"file ({why})"
        )

    if data[:2] != b"\xff\xd8":
        raise bad("no start-of-image marker")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise bad(f"no marker at byte {at}")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        (size,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            if at + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return int(width), int(height)
        if marker == 0xDA or size < 2:  # image data before any frame header
            raise bad("no frame header before the image data")
        at += 2 + size
    raise bad("the header ends before the frame size")


def flatten(model_input: ModelInput, where: str) -> Flat:
    """Token ids of ``model_input``, each image's positions holding :data:`IMAGE_PAD_ID`.

    Args:
        where: names the input in errors (``"datum 3"``, ``"the prompt"``).

    Raises:
        BackendInputError: a chunk the local models cannot read (an image pointer, audio), an
            image that is not a PNG/JPEG of its format, or an ``expected_tokens`` that is unset
            or differs from the image's count (the message gives the right one).
    """
    ids: list[int] = []
    images: list[ImageSpan] = []
    for index, chunk in enumerate(model_input.chunks):
        if isinstance(chunk, EncodedTextChunk):
            ids.extend(chunk.tokens)
            continue
        what = f"{where}, chunk {index}"
        if not isinstance(chunk, ImageChunk):
            raise BackendInputError(
                f"{what}: the local models read text and inline images (ImageChunk) only, not "
                f"{chunk.__class__.__name__}; send the image's bytes in an ImageChunk"
            )
        width, height = image_size(chunk.data, chunk.format)
        rows, cols = grid_for(width, height)
        count = rows * cols
        if chunk.expected_tokens != count:
            said = "is unset" if chunk.expected_tokens is None else f"is {chunk.expected_tokens}"
            raise BackendInputError(
                f"{what}: expected_tokens {said}, but this model reads a {width}x{height} image "
                f"as {count} tokens ({rows} x {cols} squares of {CELL} pixels after resizing "
                f"within {MIN_PIXELS}..{MAX_PIXELS} pixels); set expected_tokens={count}, or "
                "count with the image processor `tinker-actors tokenizers install` writes"
            )
        images.append(ImageSpan(len(ids), rows, cols, chunk.data, chunk.format))
        ids.extend([IMAGE_PAD_ID] * count)
    return Flat(ids, tuple(images))


def preprocessor_config() -> dict[str, object]:
    """The ``preprocessor_config.json`` that makes ``AutoImageProcessor`` count as the server.

    Qwen2-VL's processor: ``size`` gives the pixel bounds, patches of ``patch_size`` merged
    ``merge_size`` x ``merge_size`` into a token.
    """
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "size": {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        "min_pixels": MIN_PIXELS,
        "max_pixels": MAX_PIXELS,
        "patch_size": PATCH,
        "merge_size": MERGE,
        "temporal_patch_size": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "do_resize": True,
        "do_rescale": True,
        "do_normalize": True,
        "do_convert_rgb": True,
    }
