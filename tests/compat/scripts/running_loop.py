"""Code run inside an event loop that is already running (a notebook cell, an async app).

It mixes awaits with the blocking calls notebooks use (``.result()`` inside the running loop,
which blocks that loop but works). Usage: python running_loop.py BASE_URL.
"""

import asyncio
import json
import sys

import tinker
from tinker import types


async def cell(url: str) -> dict[str, object]:
    service = tinker.ServiceClient(base_url=url)
    training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([3, 4, 5, 6]),
        loss_fn_inputs={"target_tokens": [4, 5, 6, 7], "weights": [1.0, 1.0, 1.0, 1.0]},
    )
    first = training.forward_backward([datum], "cross_entropy").result()
    second = await training.forward_backward([datum], "cross_entropy")
    await training.optim_step(types.AdamParams(learning_rate=1e-3))
    sampler = await training.save_weights_and_get_sampling_client()
    prompt = types.ModelInput.from_ints([3, 4])
    sample = await sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2))
    service.close("success").result()
    return {
        "sdk": tinker.__name__,
        "losses": [first.metrics["loss:sum"], second.metrics["loss:sum"]],
        "sampled": len(sample.sequences[0].tokens),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(cell(sys.argv[1]))))
