"""The torch backend's eyes: an image's pixels as one feature row per image token.

A local model has no vision tower to train. Each image token's square of the resized picture
(:data:`._images.CELL` pixels a side) is averaged down to 4 x 4 RGB values in [-1, 1]; the base
model's frozen, seeded ``vision`` matrix maps those 48 numbers to an embedding that replaces the
placeholder token's (:func:`._torch_model.forward`). The LoRA adapters learn to read them, so a
local model can be taught that a red square is a red square.

Decoding uses Pillow (the torch extra installs it). Features are cached by the image's bytes:
RL and evaluation send the same picture many times.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from threading import Lock
from typing import TYPE_CHECKING

import numpy as np
import torch

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._torch_model import VISION_FEATURES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.local._images import Flat, ImageSpan

__all__ = ["image_inserts", "square_features"]

_SIDE = 4  # each square is averaged down to _SIDE x _SIDE pixels
_CACHED = 256
_cache: OrderedDict[tuple[bytes, int, int], torch.Tensor] = OrderedDict()
_lock = Lock()  # samplers and trainers run in worker threads


def square_features(span: ImageSpan) -> torch.Tensor:
    """``[rows * cols, 48]`` float32 on the CPU: each token's square, row by row.

    Raises:
        BackendInputError: the image cannot be decoded.
    """
    key = (span.data, span.rows, span.cols)
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    features = _decode(span)
    with _lock:
        _cache[key] = features
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return features


def _decode(span: ImageSpan) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(span.data)) as opened:
            picture = opened.convert("RGB")
            # BOX averages every source pixel into its target: the squares' mean colours
            small = picture.resize((span.cols * _SIDE, span.rows * _SIDE), Image.Resampling.BOX)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise BackendInputError(
            f"the {span.format} image at position {span.offset} cannot be decoded: {exc}"
        ) from None
    pixels = np.asarray(small, dtype=np.float32) / 127.5 - 1.0  # [rows*4, cols*4, 3]
    squares = pixels.reshape(span.rows, _SIDE, span.cols, _SIDE, 3).transpose(0, 2, 1, 3, 4)
    rows = squares.reshape(span.rows * span.cols, VISION_FEATURES)
    return torch.from_numpy(np.ascontiguousarray(rows))


def image_inserts(
    flats: Sequence[Flat], device: torch.device
) -> list[tuple[int, int, torch.Tensor]]:
    """:func:`._torch_model.forward`'s ``images`` for a batch whose row ``i`` is ``flats[i]``."""
    return [
        (row, span.offset, square_features(span).to(device))
        for row, flat in enumerate(flats)
        for span in flat.images
    ]
