"""Reinforcement learning with the SDK: a sampling burst, then an importance-sampling update.

Each iteration of the cookbook's RL loop, in miniature:

1. ``save_weights_and_get_sampling_client`` — a fresh sampler on the current weights (one RPC);
2. a sampling burst: ``groups`` prompts, ``group_size`` completions each, all in flight at once
   in one trio nursery;
3. a toy reward per completion (the fraction of even token ids), advantages centred per group;
4. ``forward_backward(..., "importance_sampling")`` on the completions with their sampling
   logprobs, then ``optim_step``.

Run against a server you started (``tinker-actors serve``)::

    python examples/rl_loop.py --base-url http://127.0.0.1:8000

or without ``--base-url`` to start an embedded local server for the run.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import numpy as np
import trio

import tinker_actors as ta
from tinker_actors.types import AdamParams, Datum, ModelInput, SampleResponse, SamplingParams

if TYPE_CHECKING:
    from tinker_actors.clients import SamplingClient

API_KEY = "tml-local-example"


def reward(tokens: list[int]) -> float:
    """A toy reward: the share of even token ids in the completion."""
    return sum(1 for t in tokens if t % 2 == 0) / max(len(tokens), 1)


async def sample_groups(
    sampler: SamplingClient, prompts: list[ModelInput], group_size: int, max_tokens: int
) -> list[SampleResponse]:
    """Sample every prompt's group concurrently; return the responses in prompt order."""
    results: list[SampleResponse | None] = [None] * len(prompts)
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0)

    async def one(index: int) -> None:
        future = await sampler.sample(prompts[index], group_size, params)
        results[index] = await future.result()

    async with trio.open_nursery() as nursery:
        for index in range(len(prompts)):
            nursery.start_soon(one, index)
    return [r for r in results if r is not None]


def to_datums(prompt: ModelInput, response: SampleResponse) -> tuple[list[Datum], float]:
    """One datum per completion: advantage = its reward minus the group's mean reward."""
    rewards = np.array([reward(s.tokens) for s in response.sequences], dtype=np.float32)
    advantages = rewards - rewards.mean()
    prompt_tokens = prompt.to_ints()
    data = []
    for sequence, advantage in zip(response.sequences, advantages, strict=True):
        assert sequence.logprobs is not None
        tokens = prompt_tokens + sequence.tokens
        n = len(tokens) - 1
        # only the completion is trained: zero logprob/advantage over the prompt positions
        logprobs = np.zeros(n, dtype=np.float32)
        advantage_row = np.zeros(n, dtype=np.float32)
        logprobs[len(prompt_tokens) - 1 :] = sequence.logprobs
        advantage_row[len(prompt_tokens) - 1 :] = advantage
        data.append(
            Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": np.array(tokens[1:], dtype=np.int64),
                    "logprobs": logprobs,
                    "advantages": advantage_row,
                },
            )
        )
    return data, float(rewards.mean())


async def train(base_url: str, iterations: int, groups: int, group_size: int) -> None:
    rng = np.random.default_rng(0)
    async with ta.open(base_url=base_url, api_key=API_KEY) as tinker:
        training = await tinker.create_lora_training_client("local/tiny", rank=16, seed=0)
        print(f"session {await tinker.session_id()} model {training.model_id}")
        for iteration in range(iterations):
            sampler = await training.save_weights_and_get_sampling_client()
            prompts = [
                ModelInput.from_ints(rng.integers(10, 3000, size=6).tolist()) for _ in range(groups)
            ]
            responses = await sample_groups(sampler, prompts, group_size, max_tokens=8)
            batch: list[Datum] = []
            mean_rewards = []
            for prompt, response in zip(prompts, responses, strict=True):
                data, mean_reward = to_datums(prompt, response)
                batch += data
                mean_rewards.append(mean_reward)
            fb = await training.forward_backward(batch, "importance_sampling")
            opt = await training.optim_step(AdamParams(learning_rate=1e-3))
            await fb.result()
            await opt.result()
            samples = sum(len(r.sequences) for r in responses)
            print(
                f"iteration {iteration + 1}: {samples} samples, "
                f"mean reward {float(np.mean(mean_rewards)):.3f}"
            )
    print("done")


async def main(base_url: str | None, iterations: int, groups: int, group_size: int) -> None:
    if base_url is not None:
        await train(base_url, iterations, groups, group_size)
        return
    from tinker_actors.local import open_local_server

    async with open_local_server() as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        print(f"local server at {url}")
        await train(url, iterations, groups, group_size)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=None, help="a running server (default: embedded)")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4)
    args = parser.parse_args()
    trio.run(main, args.base_url, args.iterations, args.groups, args.group_size)
