"""tinker-cookbook's evaluation framework (``eval.benchmarks``) as a user runs it: its gsm8k
benchmark on a base model, through whichever ``tinker`` is importable (the official client, or
tinker_actors.compat under ``tinker-actors run``). Prints the score and each example's reward.

Usage: ``python benchmark_flow.py MODEL RENDERER SAVE_DIR`` from a folder holding
``openai/gsm8k`` (the benchmark reads it with ``datasets.load_dataset``, which finds a local
folder named like the hub id first).
"""

from __future__ import annotations

import asyncio
import json
import sys

import tinker
from tinker_cookbook import renderers
from tinker_cookbook.eval.benchmarks import BenchmarkConfig, load_trajectories, run_benchmark
from tinker_cookbook.tokenizer_utils import get_tokenizer


async def main(model: str, renderer_name: str, save_dir: str) -> None:
    service = tinker.ServiceClient()
    client = await service.create_sampling_client_async(base_model=model)
    renderer = renderers.get_renderer(renderer_name, get_tokenizer(model))
    config = BenchmarkConfig(save_dir=save_dir, max_tokens=120, temperature=0.0)
    result = await run_benchmark("gsm8k", client, renderer, config)
    rewards = {t.example_id: t.reward for t in load_trajectories(save_dir, "gsm8k")}
    print("TINKER-MODULE", tinker.__name__)
    print("RESULT", json.dumps({"score": result.score, "rewards": rewards}, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
