"""A training loop that creates and closes an asyncio loop on every step (``asyncio.run``).

Usage: python asyncio_run_per_step.py BASE_URL [STEPS]; prints a JSON report on stdout.
"""

import asyncio
import json
import sys

import numpy as np
import tinker
from tinker import types


def batch(step: int) -> list[types.Datum]:
    tokens = np.arange(20 + step, 37 + step, dtype=np.int64)
    return [
        types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
            loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(16, np.float32)},
        )
    ]


async def step(training: tinker.TrainingClient, index: int) -> float:
    fb = training.forward_backward(batch(index), "cross_entropy")
    opt = training.optim_step(types.AdamParams(learning_rate=1e-3))
    output = await fb
    await opt.result_async()
    return float(output.metrics["loss:sum"])


def main() -> None:
    url, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    service = tinker.ServiceClient(base_url=url)
    training = asyncio.run(_create(service))
    losses = [asyncio.run(step(training, i)) for i in range(steps)]
    service.close("success").result()
    print(json.dumps({"sdk": tinker.__name__, "losses": losses}))


async def _create(service: tinker.ServiceClient) -> tinker.TrainingClient:
    return await service.create_lora_training_client(base_model="local/tiny", rank=8, seed=0)


if __name__ == "__main__":
    main()
