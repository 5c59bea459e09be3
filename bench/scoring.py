"""The torch backend's kept prefixes on scoring workloads: prompts that ask for their logprobs.

Two servers run in child processes (``tinker-actors serve --backend torch``: one with its
default prefix store, one with ``--prefix-cache 0``), and the official ``tinker`` client and
tinker-cookbook (the interop extra) send the requests, as their users do. Workloads:

* ``tts``: tinker-cookbook's True-Thinking Score recipe
  (``recipes/true_thinking_score/tts.compute_tts_for_cot``) scores every step of a fixed
  chain of thought of ``--steps`` steps: four ``compute_logprobs`` calls a step (intact or
  perturbed context, intact or perturbed step), the steps in order. The model is served
  under the recipe's model name (``Qwen/Qwen3.5-4B``) so the recipe picks its own renderer.
* ``choices``: ``--questions`` multiple-choice questions, each a ``--context``-token context
  and four short answers; a question's four scores are sent at once and ``--concurrent``
  questions at a time, as lm-evaluation-harness scores likelihoods.

Rounds alternate between the servers; the script prints each one's median wall time, their
ratio, the share of scored prompt tokens the store reused (``/_local/counters``), and
whether both servers gave the same numbers within 1e-3 (the logs of each step's four
confidences; each choice's summed logprob).

Usage: ``python bench/scoring.py [--model HuggingFaceTB/SmolLM2-135M-Instruct] [--workload
tts|choices|both] [--steps 16] [--questions 16] [--context 400] [--concurrent 4]
[--rounds 3]``. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

#: the model name the TTS recipe is written for; the server answers it with ``--model``
RECIPE_MODEL = "Qwen/Qwen3.5-4B"
KEY = "tml-local"


@contextlib.contextmanager
def server(model: str, *flags: str) -> Iterator[str]:
    """``tinker-actors serve`` in a child process on a free port; yields its URL."""
    cmd = [sys.executable, "-m", "tinker_actors.cli", "serve", "--backend", "torch", "--port",
           "0", "--seed", "0", "--model-alias", f"{RECIPE_MODEL}={model}", *flags]  # fmt: skip
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if "TINKER_BASE_URL=" in line:
                yield line.split("TINKER_BASE_URL=")[1].split()[0]
                break
        else:
            raise RuntimeError("the server exited before it printed its URL")
    finally:
        child.terminate()
        child.wait(timeout=30)


def counters(url: str) -> tuple[int, int]:
    """The server's (scored prompt tokens, of them reused) so far."""
    request = urllib.request.Request(f"{url}/_local/counters", headers={"X-API-Key": KEY})
    with urllib.request.urlopen(request, timeout=30) as answer:
        totals = json.load(answer)["totals"]
    return totals.get("sample_prompt_tokens", 0), totals.get("sample_prompt_tokens_cached", 0)


def chain_of_thought(steps: int, seed: int) -> tuple[str, str]:
    """A chain of thought of ``steps`` arithmetic steps (numbers in each, as the recipe
    perturbs them) and its answer; the same for the same ``seed``."""
    rng = random.Random(seed)
    total = rng.randint(10, 50)
    lines = [f"Let me start from the first amount, which is {total} apples."]
    cues = ["Next", "Then", "So we add", "Now", "Therefore", "Since we also get"]
    for i in range(steps - 1):
        more = rng.randint(2, 30)
        total += more
        lines.append(
            f"{cues[i % len(cues)]} {more} more apples arrive from basket {i + 2}, which gives "
            f"{total - more} + {more} = {total} apples in all so far."
        )
    return "\n".join(lines), str(total)


async def tts(url: str, model_name: str, steps: int, seed: int) -> list[float]:
    """The recipe's four early-exit confidences of every step of :func:`chain_of_thought`,
    as logs (each is the exponential of a sum of answer-token logprobs)."""
    import tinker
    from tinker_cookbook import model_info, renderers
    from tinker_cookbook.recipes.true_thinking_score.tts import compute_tts_for_cot
    from tinker_cookbook.tokenizer_utils import get_tokenizer

    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    client = await service.create_sampling_client(base_model=model_name)
    tokenizer = get_tokenizer(model_name)
    renderer = renderers.get_renderer(
        model_info.get_recommended_renderer_name(model_name), tokenizer=tokenizer
    )
    cot, answer = chain_of_thought(steps, seed)
    question = f"Farmer {seed} gathers apples from several baskets. How many apples in all?"
    result = await compute_tts_for_cot(client, renderer, question, answer, cot, seed=0)
    conditions = [(s.s1_c1, s.s0_c1, s.s1_c0, s.s0_c0) for s in result.step_scores]
    return [math.log(max(p, 1e-300)) for step in conditions for p in step]


async def choices(url: str, model_name: str, args: argparse.Namespace, seed: int) -> list[float]:
    """Every choice's summed logprob, a question's four at once, ``--concurrent`` at a time."""
    import tinker

    service = tinker.ServiceClient(base_url=url, api_key=KEY)
    client = await service.create_sampling_client(base_model=model_name)
    rng = random.Random(seed)
    vocab = 3000
    questions = [
        ([rng.randrange(5, vocab) for _ in range(args.context)],
         [[rng.randrange(5, vocab) for _ in range(rng.randint(2, 8))] for _ in range(4)])
        for _ in range(args.questions)
    ]  # fmt: skip
    out: list[float] = [0.0] * (4 * len(questions))
    limit = asyncio.Semaphore(args.concurrent)

    async def one(q: int) -> None:
        context, answers = questions[q]
        async with limit:
            scored = await asyncio.gather(
                *(
                    client.compute_logprobs(tinker.ModelInput.from_ints([*context, *a]))
                    for a in answers
                )
            )
        for j, (a, lps) in enumerate(zip(answers, scored, strict=True)):
            out[4 * q + j] = sum(float(x) for x in lps[-len(a) :] if x is not None)

    await asyncio.gather(*(one(q) for q in range(len(questions))))
    return out


def timed(run: Callable[[], Awaitable[list[float]]]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    numbers = asyncio.run(run())  # type: ignore[arg-type]
    return time.perf_counter() - start, numbers


def measure(name: str, urls: dict[str, str], run: Callable[[str, int], Any], rounds: int) -> None:
    """Run ``run(url, round)`` ``rounds`` times on each server, alternating which goes first;
    each round's requests are new to both (nothing kept from an earlier round answers them)."""
    times: dict[str, list[float]] = {"kept": [], "none": []}
    numbers: dict[str, list[float]] = {}
    shares = []
    for r in range(rounds):
        order = ["kept", "none"] if r % 2 == 0 else ["none", "kept"]
        for which in order:
            before = counters(urls[which])
            seconds, found = timed(lambda which=which, r=r: run(urls[which], r))
            after = counters(urls[which])
            times[which].append(seconds)
            numbers.setdefault(which, found)
            if which == "kept":
                total, cached = after[0] - before[0], after[1] - before[1]
                shares.append(cached / max(total, 1))
    k, n = statistics.median(times["kept"]), statistics.median(times["none"])
    worst = max(
        (abs(a - b) for a, b in zip(numbers["kept"], numbers["none"], strict=True)), default=0.0
    )
    print(f"{name}:")
    print(
        f"  prefixes kept: {k:.2f} s (median of {rounds}; {[round(t, 2) for t in times['kept']]})"
    )
    print(f"  none kept:     {n:.2f} s ({[round(t, 2) for t in times['none']]})")
    print(f"  kept / none: {k / n:.2f}x; prompt tokens reused: {statistics.median(shares):.0%}")
    print(f"  same numbers both ways (within 1e-3): {worst <= 1e-3} (largest gap {worst:.2g})")


def main(args: argparse.Namespace) -> None:
    hub = Path(tempfile.mkdtemp()) / "hub"
    subprocess.run(
        [sys.executable, "-m", "tinker_actors.cli", "tokenizers", "install", "--cache-dir",
         str(hub), "--model", args.model, "--model-alias", f"{RECIPE_MODEL}={args.model}"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    os.environ.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub))
    with server(args.model) as kept, server(args.model, "--prefix-cache", "0") as none:
        urls = {"kept": kept, "none": none}
        print(f"model {args.model}, served as {RECIPE_MODEL}")
        if args.workload in ("tts", "both"):
            measure(
                f"tts: the cookbook's TTS of a {args.steps}-step chain of thought",
                urls,
                lambda url, r: tts(url, RECIPE_MODEL, args.steps, r),
                args.rounds,
            )
        if args.workload in ("choices", "both"):
            measure(
                f"choices: {args.questions} questions x 4 answers, {args.context}-token "
                f"contexts, {args.concurrent} questions at a time",
                urls,
                lambda url, r: choices(url, RECIPE_MODEL, args, r),
                args.rounds,
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="HuggingFaceTB/SmolLM2-135M-Instruct")
    parser.add_argument("--workload", choices=["tts", "choices", "both"], default="both")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--questions", type=int, default=16)
    parser.add_argument("--context", type=int, default=400)
    parser.add_argument("--concurrent", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
