"""A synchronous SFT loop in the official SDK's style (runs unchanged on tinker 0.38).

Usage: python sync_sft.py BASE_URL [STEPS]; prints a JSON report on stdout.
"""

import json
import sys

import numpy as np
import tinker
from tinker import types


def batch(step: int, n: int = 4, length: int = 16) -> list[types.Datum]:
    data = []
    for i in range(n):
        tokens = np.arange(10 + step + i, 10 + step + i + length + 1, dtype=np.int64)
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "weights": np.ones(length, dtype=np.float32),
                },
            )
        )
    return data


def main() -> None:
    url, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5
    losses = []
    with tinker.ServiceClient(base_url=url) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8, seed=0)
        training = training.result()
        for step in range(steps):
            fb = training.forward_backward(batch(step), "cross_entropy")
            opt = training.optim_step(tinker.AdamParams(learning_rate=1e-3))
            losses.append(fb.result().metrics["loss:sum"])
            opt.result()
        saved = training.save_state("final").result()
        sampler = training.save_weights_and_get_sampling_client().result()
        prompt = types.ModelInput.from_ints([5, 6, 7])
        params = types.SamplingParams(max_tokens=4, temperature=1.0, seed=3)
        sample = sampler.sample(prompt, 2, params).result()
        try:
            training.forward_backward([], "no_such_loss").result()
        except (ValueError, tinker.TinkerError) as exc:
            refused = type(exc).__name__
        else:
            refused = None
    print(
        json.dumps(
            {
                "sdk": tinker.__name__,
                "losses": losses,
                "model_id": training.model_id,
                "checkpoint": saved.path,
                "sequences": len(sample.sequences),
                "refused": refused,
            }
        )
    )


if __name__ == "__main__":
    main()
