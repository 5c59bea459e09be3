"""Images in the local server's inputs: sizes from file headers, the token count, placement.

The count must be the one tinker-cookbook's renderers compute with ``AutoImageProcessor`` on
the ``preprocessor_config.json`` that ``tokenizers install`` writes, for any image size: a
renderer and the server that disagree by one token shift every later target.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import (
    IMAGE_PAD_ID,
    MAX_PIXELS,
    MIN_PIXELS,
    flatten,
    grid_for,
    image_size,
    preprocessor_config,
)
from tinker_actors.types import EncodedTextChunk, ImageAssetPointerChunk, ImageChunk, ModelInput

Image = pytest.importorskip("PIL.Image", reason="Pillow makes the test images (torch extra)")


def picture(width: int, height: int, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(
        out, format=fmt.upper() if fmt != "jpeg" else "JPEG", **options
    )
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "options"),
    [
        ("png", {}),
        ("jpeg", {}),
        ("jpeg", {"progressive": True}),
        ("jpeg", {"exif": b"Exif\x00\x00" + bytes(40)}),  # an APP1 segment before the frame
    ],
)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (100, 60), (640, 480), (33, 2000)])
def test_sizes_come_from_the_file_header(
    fmt: str, options: dict[str, object], width: int, height: int
) -> None:
    assert image_size(picture(width, height, fmt, **options), fmt) == (width, height)


def test_a_greyscale_png_and_a_cmyk_jpeg_are_read_too() -> None:
    grey = io.BytesIO()
    Image.new("L", (70, 9)).save(grey, format="PNG")
    assert image_size(grey.getvalue(), "png") == (70, 9)
    cmyk = io.BytesIO()
    Image.new("CMYK", (12, 34)).save(cmyk, format="JPEG")
    assert image_size(cmyk.getvalue(), "jpeg") == (12, 34)


@pytest.mark.parametrize(
    ("data", "fmt", "told"),
    [
        (b"GIF89a" + bytes(40), "png", "not a PNG file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(4), "png", "not a PNG file"),
        (b"GIF89a" + bytes(40), "jpeg", "no start-of-image marker"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "jpeg", "the header ends before the frame size"),
        (b"\xff\xd8\xff\xda\x00\x08" + bytes(20), "jpeg", "no frame header before the image"),
        (b"\xff\xd8\x00\x00" + bytes(20), "jpeg", "no marker at byte 2"),
        (b"anything", "gif", "image format must be 'png' or 'jpeg', got 'gif'"),
    ],
)
def test_bytes_that_are_not_the_format_are_refused(data: bytes, fmt: str, told: str) -> None:
    with pytest.raises(BackendInputError, match=told):
        image_size(data, fmt)


def test_a_png_sent_as_jpeg_is_refused_by_what_it_claims() -> None:
    with pytest.raises(BackendInputError, match=r"format 'jpeg' but its .* not a readable JPEG"):
        image_size(picture(10, 10, "png"), "jpeg")


def test_the_count_follows_the_resize_rule() -> None:
    assert grid_for(100, 60) == (2, 3)  # 64 x 96 pixels
    assert grid_for(1, 1) == (2, 2)  # scaled up to MIN_PIXELS
    assert grid_for(480, 360) == (11, 15)  # what the cookbook's max_image_size=480 gives
    rows, cols = grid_for(4000, 3000)  # scaled down under MAX_PIXELS
    assert rows * cols * 32 * 32 <= MAX_PIXELS
    assert MIN_PIXELS == 64 * 64
    with pytest.raises(BackendInputError, match="too narrow"):
        grid_for(1, 201)
    with pytest.raises(BackendInputError, match="nothing to read"):
        grid_for(0, 10)


@pytest.fixture(scope="module")
def processor(tmp_path_factory: pytest.TempPathFactory) -> object:
    auto = pytest.importorskip(
        "transformers.models.auto.image_processing_auto",
        reason="transformers is tinker-cookbook's (the cookbook extra)",
    )
    folder: Path = tmp_path_factory.mktemp("processor")
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor_config()))
    return auto.AutoImageProcessor.from_pretrained(str(folder))


@settings(max_examples=300, deadline=None)
@given(width=st.integers(1, 5000), height=st.integers(1, 5000))
def test_the_count_is_the_image_processors(processor: object, width: int, height: int) -> None:
    if max(width, height) / min(width, height) > 200:
        with pytest.raises(BackendInputError):
            grid_for(width, height)
        return
    rows, cols = grid_for(width, height)
    patches = processor.get_number_of_image_patches(height, width, images_kwargs={})  # type: ignore[attr-defined]
    assert rows * cols == patches // processor.merge_size**2  # type: ignore[attr-defined]


def test_flatten_puts_placeholders_where_the_images_are() -> None:
    red = picture(100, 60, "png")
    blue = picture(64, 64, "jpeg")
    flat = flatten(
        ModelInput(
            chunks=[
                EncodedTextChunk(tokens=[7, 8]),
                ImageChunk(data=red, format="png", expected_tokens=6),
                EncodedTextChunk(tokens=[9]),
                ImageChunk(data=blue, format="jpeg", expected_tokens=4),
            ]
        ),
        "datum 0",
    )
    assert flat.ids == [7, 8, *[IMAGE_PAD_ID] * 6, 9, *[IMAGE_PAD_ID] * 4]
    first, second = flat.images
    assert (first.offset, first.rows, first.cols, first.data, first.format) == (2, 2, 3, red, "png")
    assert (second.offset, second.tokens, second.format) == (9, 4, "jpeg")
    text_only = flatten(ModelInput.from_ints([1, 2, 3]), "the prompt")
    assert text_only.ids == [1, 2, 3]
    assert text_only.images == ()


@pytest.mark.parametrize(("given_count", "said"), [(None, "is unset"), (5, "is 5")])
def test_a_missing_or_wrong_count_is_told_the_right_one(given_count: int | None, said: str) -> None:
    chunk = ImageChunk(data=picture(100, 60, "png"), format="png", expected_tokens=given_count)
    model_input = ModelInput(chunks=[EncodedTextChunk(tokens=[1]), chunk])
    with pytest.raises(BackendInputError) as caught:
        flatten(model_input, "datum 2")
    message = str(caught.value)
    assert message.startswith(f"datum 2, chunk 1: expected_tokens {said}, but this model reads")
    assert "a 100x60 image as 6 tokens (2 x 3 squares" in message
    assert "set expected_tokens=6" in message


def test_an_image_pointer_is_refused_with_what_to_send_instead() -> None:
    pointer = ImageAssetPointerChunk(format="png", location="/etc/passwd", expected_tokens=4)
    with pytest.raises(BackendInputError, match="not ImageAssetPointerChunk; send the image's"):
        flatten(ModelInput(chunks=[pointer]), "the prompt")
