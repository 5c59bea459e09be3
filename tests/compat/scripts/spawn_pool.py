"""Sampling from spawn-started worker processes through a pickled SamplingClient.

The workers get the client by pickle and call nothing else: they sample with their own
process's credential (TINKER_API_KEY). Usage: python spawn_pool.py BASE_URL [WORKERS].
"""

import json
import multiprocessing
import os
import sys

import tinker
from tinker import types


def work(args: tuple[tinker.SamplingClient, int]) -> list[int]:
    sampler, seed = args
    prompt = types.ModelInput.from_ints([7, 8, 9])
    params = types.SamplingParams(max_tokens=3, temperature=1.0, seed=seed)
    result = sampler.sample(prompt, 1, params).result()
    return [os.getpid(), len(result.sequences[0].tokens)]


def main() -> None:
    url, workers = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 2
    with tinker.ServiceClient(base_url=url) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(work, [(sampler, seed) for seed in range(2 * workers)])
    print(
        json.dumps(
            {
                "sdk": tinker.__name__,
                "results": len(results),
                "workers": len({pid for pid, _ in results}),
                "tokens": sum(n for _, n in results),
                "parent": os.getpid() not in {pid for pid, _ in results},
            }
        )
    )


if __name__ == "__main__":
    main()
