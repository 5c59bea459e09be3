"""Pictures through the trio SDK to the local server: protobuf forward_backward, JSON sampling.

forward_backward carries an ImageChunk's bytes in the protobuf body; sample and
compute_logprobs carry them base64 in JSON. Both must reach the model intact: a LoRA model
taught red -> 7 and blue -> 9 through the SDK answers so when sampled through it. A wrong
``expected_tokens`` comes back as the server's 400 naming the right count, and the model's
next request is served.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import trio
from sdk_support import served_runtime

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)
pytest.importorskip("PIL", reason="Pillow comes with the torch extra")

from PIL import Image

from tinker_actors.errors import BadRequestError
from tinker_actors.local._images import grid_for
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.types import (
    AdamParams,
    Datum,
    EncodedTextChunk,
    ImageChunk,
    ModelInput,
    SamplingParams,
    TensorData,
)

ANSWERS = {(230, 20, 20): 7, (20, 40, 230): 9}


def picture(colour: tuple[int, int, int], size: tuple[int, int]) -> ImageChunk:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    rows, cols = grid_for(*size)
    return ImageChunk(data=out.getvalue(), format="jpeg", expected_tokens=rows * cols)


def prompt(image: ImageChunk) -> ModelInput:
    return ModelInput(
        chunks=[EncodedTextChunk(tokens=[40, 41]), image, EncodedTextChunk(tokens=[42])]
    )


def datum(image: ImageChunk, answer: int) -> Datum:
    n = prompt(image).length
    targets = np.zeros(n, dtype=np.int64)
    targets[-1] = answer
    weights = np.zeros(n, dtype=np.float32)
    weights[-1] = 1.0
    return Datum(
        model_input=prompt(image),
        loss_fn_inputs={
            "target_tokens": TensorData.from_numpy(targets),
            "weights": TensorData.from_numpy(weights),
        },
    )


async def test_a_model_trained_on_pictures_through_the_sdk_answers_through_it() -> None:
    backend = TorchBackend(device="cpu", seed=0)
    async with served_runtime(lambda app: app, backend=backend) as (rt, _server, _app):
        with trio.fail_after(300):
            tc = await rt.create_lora_training_client("local/tiny", rank=8, seed=0)
            data = [
                datum(picture(colour, size), answer)
                for colour, answer in ANSWERS.items()
                for size in ((64, 64), (120, 80))
            ]
            losses = []
            for _ in range(20):
                fb = await tc.forward_backward(data, "cross_entropy")
                await tc.optim_step(AdamParams(learning_rate=3e-3))
                losses.append((await fb.result()).metrics["loss:sum"])
            assert losses[-1] < losses[0] / 10
            sc = await tc.save_weights_and_get_sampling_client("pictures")
            greedy = SamplingParams(max_tokens=1, temperature=0.0)
            for colour, answer in ANSWERS.items():
                fresh = prompt(picture(colour, (90, 150)))  # a size it was not trained on
                result = await (await sc.sample(fresh, 1, greedy)).result()
                assert result.sequences[0].tokens == [answer]
                logprobs = await (await sc.compute_logprobs(fresh)).result()
                assert len(logprobs) == fresh.length

            wrong = ImageChunk(
                data=picture((0, 0, 0), (64, 64)).data, format="jpeg", expected_tokens=5
            )
            with pytest.raises(BadRequestError, match="set expected_tokens=4"):
                await (await tc.forward_backward([datum(wrong, 7)], "cross_entropy")).result()
            with pytest.raises(BadRequestError, match="as 4 tokens"):
                await (await sc.sample(prompt(wrong), 1, greedy)).result()
            # the refusals cost nothing: the model's next step runs
            after = await (await tc.forward_backward(data, "cross_entropy")).result()
            assert after.metrics["loss:sum"] < losses[0] / 10
