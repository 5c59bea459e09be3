"""The torch backend's kept prefixes: multi-turn conversations with and without them.

``--conversations`` conversations of ``--turns`` turns run at once on a LoRA sampler snapshot,
as a multi-turn RL environment or a chat app sends them: each turn's prompt is the last
turn's prompt, its completion and ``--user`` new tokens (the first turn: a ``--system``-token
preamble every conversation shares, then its own opening). Every turn's requests start
together (one batch); a turn samples ``--tokens`` tokens greedily, without stops.

Two backends run the same conversations, alternating round by round in one process: one
keeps sequences for later prompts (``TorchBackend``'s default), one keeps none
(``prefix_cache_bytes=0``). The script prints each one's median wall time, their ratio, the
share of prompt tokens reused, and checks that both sampled the same tokens.

Usage: ``python bench/multi_turn.py [--model local/tiny] [--conversations 16] [--turns 6]
[--system 400] [--user 40] [--tokens 60] [--rounds 3]``. Not a test.
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
from tinker_actors.types import AdamParams, LoraConfig, ModelInput, SamplingParams


def job(prompt: list[int], tokens: int) -> SampleJob:
    params = SamplingParams(max_tokens=tokens, temperature=0.0, stop=[])
    return SampleJob(prompt=ModelInput.from_ints(prompt), params=params)


async def conversations(
    backend: TorchBackend, spec_name: str, weights: Path, args: argparse.Namespace
) -> tuple[float, list[list[int]], int, int]:
    """Run every conversation to its end: (seconds, final sequences, prompt tokens, reused)."""
    spec = lookup_model(spec_name)
    system = [(11 * j) % 3000 + 5 for j in range(args.system)]
    prompts = [
        [*system, *[(13 * j + 7 * c) % 3000 + 5 for j in range(args.user)]]
        for c in range(args.conversations)
    ]
    total = reused = 0
    start = time.perf_counter()
    for turn in range(args.turns):
        answers: list[list[int]] = [[] for _ in prompts]

        async def one(c: int, prompt: list[int], answers: list[list[int]] = answers) -> None:
            nonlocal total, reused
            response = await backend.sample(spec, weights, job(prompt, args.tokens))
            answers[c] = response.sequences[0].tokens_np.tolist()
            total += len(prompt)
            reused += response.prompt_cache_hit_tokens

        async with trio.open_nursery() as nursery:
            for c, prompt in enumerate(prompts):
                nursery.start_soon(one, c, prompt)
        user = [
            [(17 * j + 5 * c + turn) % 3000 + 5 for j in range(args.user)]
            for c in range(len(prompts))
        ]
        prompts = [[*p, *a, *u] for p, a, u in zip(prompts, answers, user, strict=True)]
    return time.perf_counter() - start, prompts, total, reused


async def main(args: argparse.Namespace) -> None:
    spec = lookup_model(args.model)
    kept = TorchBackend(seed=0)
    plain = TorchBackend(seed=0, prefix_cache_bytes=0)
    weights = Path(tempfile.mkdtemp()) / "sampler"
    await kept.create_model("m", spec, LoraConfig(rank=32))
    await kept.optim_step("m", AdamParams(learning_rate=1e-3))
    await kept.save_sampler("m", weights)
    times: dict[str, list[float]] = {"kept": [], "plain": []}
    finals: dict[str, list[list[int]]] = {}
    shares = []
    for r in range(args.rounds):
        order = [("kept", kept), ("plain", plain)]
        if r % 2:
            order.reverse()
        for name, backend in order:
            # a fresh store each round: the first turn always starts cold
            if backend.prefixes is not None:
                backend.prefixes = type(backend.prefixes)(backend.prefixes.budget)
            seconds, final, total, reused = await conversations(backend, args.model, weights, args)
            times[name].append(seconds)
            finals.setdefault(name, final)
            if name == "kept":
                shares.append(reused / total)
    same = finals["kept"] == finals["plain"]
    k, p = statistics.median(times["kept"]), statistics.median(times["plain"])
    print(
        f"{args.model}: {args.conversations} conversations x {args.turns} turns, preamble "
        f"{args.system}, +{args.user} user and {args.tokens} sampled tokens a turn"
    )
    print(f"  prefixes kept: {k:.2f} s (median of {args.rounds}; {times['kept']})")
    print(f"  none kept:     {p:.2f} s ({times['plain']})")
    print(f"  kept / none: {k / p:.2f}x; prompt tokens reused: {statistics.median(shares):.0%}")
    print(f"  same tokens both ways: {same}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="local/tiny")
    parser.add_argument("--conversations", type=int, default=16)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--system", type=int, default=400)
    parser.add_argument("--user", type=int, default=40)
    parser.add_argument("--tokens", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    trio.run(main, parser.parse_args())
