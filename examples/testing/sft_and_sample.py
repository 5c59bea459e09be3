"""A small supervised fine-tuning loop that samples at the end: the code a user wants to test.

Written against the official ``tinker`` API (here through ``tinker_actors.compat``; with the
import switch, ``import tinker`` works the same). What makes it safe under faults:

* it never submits a step twice on the same model: the SDK retries each request itself (same
  idempotency key, so the service applies it once), and the loop waits for every result;
* it saves its state every ``checkpoint_every`` steps, and when the service loses the model (a
  restart) or an error reaches it, it loads the last checkpoint into a new training client and
  goes back to that checkpoint's step, so every step of the final model ran exactly once.

Run it against a server::

    tinker-actors serve --port 8000 &
    TINKER_BASE_URL=http://127.0.0.1:8000 TINKER_API_KEY=tml-local \\
        python examples/testing/sft_and_sample.py --steps 20

Its tests, ``examples/testing/test_sft_and_sample.py``, run it under faults with the
tinker_actors pytest plugin: ``pytest examples/testing``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

import tinker_actors.compat as tinker
from tinker_actors.compat import types

if TYPE_CHECKING:
    from collections.abc import Callable

BASE_MODEL = "local/tiny"
#: How many times the loop recovers from a checkpoint before it gives up.
MAX_RESUMES = 5


@dataclass
class Report:
    """What a run did."""

    model_id: str = ""
    losses: list[float] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    #: the step each recovery went back to (the checkpoint's), in order
    resumed_from: list[int] = field(default_factory=list)
    samples: list[list[int]] = field(default_factory=list)


def make_batch(step: int, size: int = 4, length: int = 16) -> list[types.Datum]:
    """Step ``step``'s batch: arithmetic sequences (next-token prediction that can be learnt)."""
    rng = np.random.default_rng(step)
    batch = []
    for _ in range(size):
        start, stride = int(rng.integers(10, 1000)), int(rng.integers(1, 5))
        tokens = np.arange(start, start + (length + 1) * stride, stride, dtype=np.int64)
        batch.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1].tolist()),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "weights": np.ones(length, dtype=np.float32),
                },
            )
        )
    return batch


def train(
    service: tinker.ServiceClient,
    *,
    steps: int = 12,
    checkpoint_every: int = 4,
    learning_rate: float = 1e-3,
    on_step: Callable[[int, float], None] | None = None,
) -> Report:
    """Fine-tune ``BASE_MODEL`` for ``steps`` steps, then sample from the result.

    Args:
        service: the client to train with.
        steps: how many steps (a forward_backward and an optim_step each).
        checkpoint_every: save the state every this many steps (and after the last).
        learning_rate: Adam's learning rate.
        on_step: called after each step with its number (from 1) and loss.
    """
    report = Report()
    training = service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=0).result()
    checkpoint: tuple[str, int] | None = None  # (path, step)
    step = 0
    while step < steps:
        try:
            forward_backward = training.forward_backward(make_batch(step), "cross_entropy")
            optim = training.optim_step(types.AdamParams(learning_rate=learning_rate))
            loss = forward_backward.result().metrics["loss:sum"]
            optim.result()
            step += 1
            if step % checkpoint_every == 0 or step == steps:
                path = training.save_state(f"step-{step}").result().path
                report.checkpoints.append(path)
                checkpoint = (path, step)
        except tinker.APIError as error:
            # The model is gone (the service restarted) or the client cannot go on in order:
            # start again from the last checkpoint, and from its step.
            if len(report.resumed_from) >= MAX_RESUMES:
                raise
            print(f"step {step + 1}: {type(error).__name__}; resuming from {checkpoint}")
            training, step = _resume(service, checkpoint)
            report.resumed_from.append(step)
            continue
        report.losses.append(loss)
        if on_step is not None:
            on_step(step, loss)
    report.model_id = training.model_id
    sampler = training.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints([100, 102, 104, 106])
    params = types.SamplingParams(max_tokens=8, temperature=0.7, seed=1)
    result = sampler.sample(prompt, num_samples=4, sampling_params=params).result()
    report.samples = [list(sequence.tokens) for sequence in result.sequences]
    return report


def _resume(
    service: tinker.ServiceClient, checkpoint: tuple[str, int] | None
) -> tuple[tinker.TrainingClient, int]:
    """A training client at the last checkpoint (optimizer state included) and its step."""
    if checkpoint is None:
        fresh = service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=0)
        return fresh.result(), 0
    path, step = checkpoint
    return service.create_training_client_from_state_with_optimizer(path).result(), step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    with tinker.ServiceClient() as service:  # TINKER_BASE_URL / TINKER_API_KEY
        report = train(
            service, steps=args.steps, on_step=lambda s, loss: print(f"step {s}: {loss:.2f}")
        )
    print(
        f"model {report.model_id}: {len(report.samples)} samples, checkpoints {report.checkpoints}"
    )


if __name__ == "__main__":
    main()
