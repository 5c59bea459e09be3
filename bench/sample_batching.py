"""The torch backend's sample batching: many small requests at once, against one at a time.

An RL loop sends a batch of groups at once, often one request per sample. This sends
``--requests`` one-sample requests (prompts of 55-74 tokens, ``--tokens`` new tokens each,
temperature 1, a stop string, as tinker-cookbook's math_rl does) on a LoRA sampler snapshot,
two ways, alternating round by round in one process:

* together: every ``TorchBackend.sample`` call started at once in one trio nursery (they are
  batched: see ``tinker_actors/local/_batch_queue.py``);
* in turn: the same calls awaited one after the other (each its own run, as before batching).

It prints the median wall time of each and their ratio, and checks that both ways sampled the
same tokens (each request has its own seed).

``--prompt N`` gives every request a prompt of N-N+6 tokens instead (long prompts and long
completions measure the decoding cache: ``--prompt 2300 --tokens 200 --requests 40
--together-only``); ``--together-only`` skips the in-turn runs; ``--stagger K`` gives request i
``tokens + K * i`` new tokens, so requests leave the batch one by one; ``--arrive-ms M`` starts
request i at ``i * M`` ms instead of all at once (a stream of arrivals: the late ones join the
running batch when they draw no more tokens than it has left) and also prints the median and
largest time from a request's start to its answer. ``--group G``: requests ``i`` with the same
``i // G`` send the same prompt, as an RL loop sends a group's prompt once per sample.

Usage: ``python bench/sample_batching.py [--requests 64] [--tokens 10] [--rounds 5]
[--model local/tiny] [--prompt N] [--together-only] [--stagger K] [--arrive-ms M]
[--group G]``. Not a
test.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import trio

from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.types import AdamParams, LoraConfig, ModelInput, SampleResponse, SamplingParams


def make_job(i: int, tokens: int, prompt: int = 0, stagger: int = 0, group: int = 1) -> SampleJob:
    p = i // group  # requests of one group send the same prompt (their seeds differ)
    ids = list(range(5, 60 + p % 20))
    if prompt:
        ids = [(7 * j + p) % 4000 + 5 for j in range(prompt + p % 7)]
    return SampleJob(
        prompt=ModelInput.from_ints(ids),
        num_samples=1,
        params=SamplingParams(
            max_tokens=tokens + stagger * i, stop=["\n\nUser:"], temperature=1.0, seed=i
        ),
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
        topk_sample_logprobs=0,
        prompt_logprobs_last_n=None,
    )


async def main(
    model: str,
    requests: int,
    tokens: int,
    rounds: int,
    prompt: int,
    together_only: bool,
    stagger: int,
    arrive_ms: float,
    group: int,
) -> None:
    spec = lookup_model(model)
    backend = TorchBackend(seed=0)
    await backend.create_model("m", spec, LoraConfig(rank=32))
    await backend.optim_step("m", AdamParams(learning_rate=1e-3))
    weights = Path(tempfile.mkdtemp()) / "sampler"
    await backend.save_sampler("m", weights)
    jobs = [make_job(i, tokens, prompt, stagger, group) for i in range(requests)]
    await backend.sample(spec, weights, jobs[0])  # warm: the base model, the tokenizer

    latencies: list[float] = []

    async def together() -> dict[int, SampleResponse]:
        out: dict[int, SampleResponse] = {}
        async with trio.open_nursery() as nursery:
            for i, job in enumerate(jobs):

                async def one(i: int = i, job: SampleJob = job) -> None:
                    start = time.perf_counter()
                    out[i] = await backend.sample(spec, weights, job)
                    latencies.append(time.perf_counter() - start)

                nursery.start_soon(one)
                if arrive_ms:
                    await trio.sleep(arrive_ms / 1000)
        return out

    async def in_turn() -> dict[int, SampleResponse]:
        return {i: await backend.sample(spec, weights, job) for i, job in enumerate(jobs)}

    ways = (
        [("together", together)]
        if together_only
        else [("together", together), ("in turn", in_turn)]
    )
    times: dict[str, list[float]] = {name: [] for name, _ in ways}
    same = True
    for _ in range(rounds):
        results = []
        for name, run in ways:
            start = time.perf_counter()
            results.append(await run())
            times[name].append(time.perf_counter() - start)
        same &= all(
            a.sequences[0].tokens_np.tolist() == b.sequences[0].tokens_np.tolist()
            for a, b in zip(results[0].values(), (results[-1][i] for i in results[0]), strict=True)
        )
    shape = f"prompts of {prompt}-{prompt + 6}" if prompt else "prompts of 55-74"
    if group > 1:
        shape += f", each sent by {group} requests"
    print(f"{model}: {requests} one-sample requests of {tokens} tokens, {shape}, {rounds} rounds")
    for name, values in times.items():
        print(f"  {name:9} median {statistics.median(values):.3f} s  (min {min(values):.3f})")
    if latencies:
        ordered = sorted(latencies)
        print(
            f"  together: a request's wait for its answer: median "
            f"{statistics.median(ordered):.3f} s, largest {ordered[-1]:.3f} s (all rounds)"
        )
    if not together_only:
        ratio = statistics.median(times["together"]) / statistics.median(times["in turn"])
        print(f"  together / in turn: {ratio:.2f}x; same samples both ways: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local/tiny")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prompt", type=int, default=0)
    parser.add_argument("--together-only", action="store_true")
    parser.add_argument("--stagger", type=int, default=0)
    parser.add_argument("--arrive-ms", type=float, default=0.0)
    parser.add_argument("--group", type=int, default=1)
    args = parser.parse_args()
    trio.run(
        main,
        args.model,
        args.requests,
        args.tokens,
        args.rounds,
        args.prompt,
        args.together_only,
        args.stagger,
        args.arrive_ms,
        args.group,
    )
