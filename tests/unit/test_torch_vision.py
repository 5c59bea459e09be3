"""The torch backend reads images: each token's square of pixels, and a model that learns them.

A local model has no vision tower; what must hold is that an image's pixels reach the model
(two pictures give two outputs, in the right positions), that LoRA can learn from them (a
model taught red -> 7, blue -> 9 answers so for pictures it never saw), and that a picture
that cannot be decoded is a user error that leaves the gradients as they were.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local._backend import BackendInputError, SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._images import ImageSpan, flatten, grid_for
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.local._torch_model import build_base, forward
from tinker_actors.local._torch_vision import image_inserts, square_features
from tinker_actors.types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ImageChunk,
    LoraConfig,
    ModelInput,
    SamplingParams,
    TensorData,
)

Image = pytest.importorskip("PIL.Image", reason="Pillow comes with the torch extra")

TINY = lookup_model("local/tiny")
RED, BLUE, GREEN = (230, 20, 20), (20, 40, 230), (20, 200, 40)


def picture(colour: tuple[int, int, int], size: tuple[int, int], fmt: str = "png") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt.upper())
    return out.getvalue()


def image_chunk(data: bytes, fmt: str = "png") -> ImageChunk:
    width, height = Image.open(io.BytesIO(data)).size
    rows, cols = grid_for(width, height)
    return ImageChunk(data=data, format=fmt, expected_tokens=rows * cols)  # type: ignore[arg-type]


def prompt(data: bytes, fmt: str = "png") -> ModelInput:
    return ModelInput(
        chunks=[
            EncodedTextChunk(tokens=[40, 41]),
            image_chunk(data, fmt),
            EncodedTextChunk(tokens=[42]),
        ]
    )


def answer_datum(data: bytes, answer: int, fmt: str = "png") -> Datum:
    model_input = prompt(data, fmt)
    n = model_input.length
    weights = np.zeros(n, dtype=np.float32)
    weights[-1] = 1.0  # only the answer after the picture is learned
    targets = np.zeros(n, dtype=np.int64)
    targets[-1] = answer
    return Datum(
        model_input=model_input,
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(targets),
            "weights": TensorData.from_numpy(weights),
        },
    )


def test_each_token_reads_its_own_square() -> None:
    half = Image.new("RGB", (128, 64), RED)
    half.paste(Image.new("RGB", (64, 64), BLUE), (64, 0))
    out = io.BytesIO()
    half.save(out, format="PNG")
    span = ImageSpan(offset=0, rows=2, cols=4, data=out.getvalue(), format="png")
    features = square_features(span)
    assert features.shape == (8, 48)
    rgb = features.view(8, 16, 3).mean(dim=1)
    red = torch.tensor(RED) / 127.5 - 1
    blue = torch.tensor(BLUE) / 127.5 - 1
    for row in range(2):
        for col in range(4):
            assert torch.allclose(rgb[row * 4 + col], red if col < 2 else blue, atol=1e-3)
    assert square_features(span) is features  # the same picture again: cached


def test_the_picture_changes_the_outputs_after_it_and_not_before() -> None:
    base = build_base(TINY)
    outputs = []
    for colour in (RED, BLUE):
        flat = flatten(prompt(picture(colour, (64, 64))), "the prompt")
        tokens = torch.tensor([flat.ids])
        outputs.append(forward(base, None, tokens, images=image_inserts([flat], base.device))[0])
    red, blue = outputs
    assert torch.equal(red[:2], blue[:2])  # causal: the text before the picture never sees it
    assert not torch.allclose(red[-1], blue[-1], atol=1e-4)
    # and a picture is not its placeholder tokens
    flat = flatten(prompt(picture(RED, (64, 64))), "the prompt")
    plain = forward(base, None, torch.tensor([flat.ids]))[0]
    assert not torch.allclose(plain[-1], red[-1], atol=1e-4)


def test_a_batch_with_and_without_pictures_gives_each_row_its_own_answer() -> None:
    base = build_base(TINY)
    flats = [
        flatten(prompt(picture(RED, (64, 64))), "a"),
        flatten(ModelInput.from_ints([40, 41, 42, 43, 44, 45, 46]), "b"),
        flatten(prompt(picture(BLUE, (100, 60))), "c"),
    ]
    longest = max(len(f.ids) for f in flats)
    padded = torch.zeros(3, longest, dtype=torch.long)
    for row, flat in enumerate(flats):
        padded[row, : len(flat.ids)] = torch.tensor(flat.ids)
    together = forward(base, None, padded, images=image_inserts(flats, base.device))
    for row, flat in enumerate(flats):
        alone = forward(base, None, torch.tensor([flat.ids]), images=image_inserts([flat], "cpu"))
        assert torch.allclose(together[row, : len(flat.ids)], alone[0], atol=1e-5)


def backend() -> TorchBackend:
    return TorchBackend(device="cpu", tokenizer_loader=lambda spec: None, seed=0)


def job(model_input: ModelInput, **kwargs: Any) -> SampleJob:
    fields: dict[str, Any] = {
        "num_samples": 1,
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
        "topk_sample_logprobs": 0,
        "prompt_logprobs_last_n": None,
        **kwargs,
    }
    return SampleJob(
        prompt=model_input, params=SamplingParams(max_tokens=1, temperature=0.0), **fields
    )


async def test_lora_learns_the_colour_of_pictures_it_never_saw(tmp_path: Any) -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=8, seed=0))
    answers = {RED: 7, BLUE: 9, GREEN: 11}
    data = [
        answer_datum(picture(colour, size, fmt), answer, fmt)
        for colour, answer in answers.items()
        for size, fmt in (((64, 64), "png"), ((120, 80), "jpeg"))
    ]
    losses = []
    for _ in range(20):
        out = await b.forward_backward("m", data, "cross_entropy", {}, forward_only=False)
        losses.append(out.metrics["loss:sum"])
        await b.optim_step("m", AdamParams(learning_rate=3e-3))
    assert losses[-1] < losses[0] / 10
    await b.save_sampler("m", tmp_path)
    for colour, answer in answers.items():
        # another size and shade than any training picture
        shade = tuple(max(0, c - 15) for c in colour)
        fresh = prompt(picture(shade, (90, 150), "jpeg"), "jpeg")  # type: ignore[arg-type]
        response = await b.sample(TINY, tmp_path, job(fresh, prompt_logprobs=True))
        assert response.sequences[0].tokens_np.tolist() == [answer]
        # one prompt logprob per position, the picture's included (the first is None)
        assert response.prompt_logprobs_np is not None
        assert len(response.prompt_logprobs_np) == fresh.length


async def test_a_picture_that_cannot_be_decoded_is_a_user_error_and_changes_nothing() -> None:
    b = backend()
    await b.create_model("m", TINY, LoraConfig(rank=4, seed=0))
    good = answer_datum(picture(RED, (64, 64)), 7)
    await b.forward_backward("m", [good], "cross_entropy", {}, forward_only=False)
    before = [p.grad.clone() for p in b.adapter("m").parameters() if p.grad is not None]
    whole = picture(BLUE, (64, 64))
    cut = whole[:40] + bytes(len(whole) - 40)  # a PNG header, then no picture
    broken = answer_datum(whole, 9)
    chunk = broken.model_input.chunks[1]
    assert isinstance(chunk, ImageChunk)
    bad_input = ModelInput(
        chunks=[
            broken.model_input.chunks[0],
            ImageChunk(data=cut, format="png", expected_tokens=chunk.expected_tokens),
            broken.model_input.chunks[2],
        ]
    )
    bad = Datum(model_input=bad_input, loss_fn_inputs=broken.loss_fn_inputs)
    with pytest.raises(BackendInputError, match="the png image at position 2 cannot be decoded"):
        await b.forward_backward("m", [good, bad], "cross_entropy", {}, forward_only=False)
    after = [p.grad for p in b.adapter("m").parameters() if p.grad is not None]
    assert len(after) == len(before)
    assert all(torch.equal(x, y) for x, y in zip(before, after, strict=True))
    with pytest.raises(BackendInputError, match="cannot be decoded"):
        await b.sample(TINY, None, job(bad_input))
