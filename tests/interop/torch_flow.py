"""The torch backend's acceptance flow through the official tinker 0.38 client, as a child process.

Three parts, reported as one JSON object on stdout:

* **SFT**: continue a fixed pattern. A seeded random cycle of ``CYCLE`` token ids; a prompt is
  ``PROMPT`` consecutive ids of it, the completion the next ``COMPLETION`` ids. Training uses
  prompts starting at positions ``s % 4 != 0``; the held-out prompts start at ``s % 4 == 0``.
  100 pipelined cross_entropy steps, then greedy samples from the trained weights and from
  the base model on the held-out prompts.
* **Consistency**: seeded samples twice (same seed, same tokens); their logprobs against
  compute_logprobs and a forward pass on the same tokens.
* **RL**: a two-token bandit per loss (importance_sampling, ppo): one step with advantage +1
  on token A and -1 on token B; A's probability before and after.

Usage: ``python tests/interop/torch_flow.py <base_url>``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from typing import Any

import tinker
from tinker import types

API_KEY = "tml-interop-torch"
BASE_MODEL = "local/tiny"
CYCLE = 32
PROMPT = 3
COMPLETION = 8
BATCH = 16
STEPS = 100
LEARNING_RATE = 4e-3


def _cycle() -> list[int]:
    ids = list(range(100, 1100))
    random.Random(7).shuffle(ids)
    return ids[:CYCLE]


CYCLE_IDS = _cycle()


def _run(start: int, n: int) -> list[int]:
    return [CYCLE_IDS[(start + i) % CYCLE] for i in range(n)]


def _sft_datum(start: int) -> types.Datum:
    full = _run(start, PROMPT + COMPLETION)
    weights = [0.0] * (PROMPT - 1) + [1.0] * COMPLETION
    return types.Datum(
        model_input=types.ModelInput.from_ints(full[:-1]),
        loss_fn_inputs={"target_tokens": full[1:], "weights": weights},
    )


def _greedy_solved(sampler: Any, prompts: list[tuple[int, int]]) -> float:
    """The fraction of (start, length) prompts whose greedy completion is exactly right."""
    params = types.SamplingParams(max_tokens=COMPLETION, temperature=0.0)
    futures = [
        sampler.sample(
            types.ModelInput.from_ints(_run(start, length)), num_samples=1, sampling_params=params
        )
        for start, length in prompts
    ]
    solved = 0
    for (start, length), future in zip(prompts, futures, strict=True):
        tokens = future.result().sequences[0].tokens
        solved += tokens == _run(start + length, COMPLETION)
    return solved / len(prompts)


def sft(service: Any, seen: dict[str, Any]) -> Any:
    """Train the pattern; return the training client."""
    training = service.create_lora_training_client(base_model=BASE_MODEL, rank=16, seed=0).result()
    train_starts = [s for s in range(CYCLE) if s % 4]
    # prompts never trained on: other start positions, and one token longer as well
    held_out = [(s, n) for s in range(CYCLE) if s % 4 == 0 for n in (PROMPT, PROMPT + 1)]
    rng = random.Random(0)
    began = time.perf_counter()
    futures = []
    for _ in range(STEPS):
        batch = [_sft_datum(rng.choice(train_starts)) for _ in range(BATCH)]
        futures.append(training.forward_backward(batch, "cross_entropy"))
        futures.append(training.optim_step(types.AdamParams(learning_rate=LEARNING_RATE)))
    results = [f.result() for f in futures]
    seen["sft_seconds"] = time.perf_counter() - began
    seen["sft_losses"] = [r.metrics["loss:sum"] / (BATCH * COMPLETION) for r in results[::2]]
    seen["grad_norms"] = [r.metrics["grad_norm:mean"] for r in results[1::2]][:3]
    sampler = training.save_weights_and_get_sampling_client()
    base = service.create_sampling_client(base_model=BASE_MODEL).result()
    seen["held_out"] = len(held_out)
    seen["trained_solved"] = _greedy_solved(sampler, held_out)
    seen["base_solved"] = _greedy_solved(base, held_out)
    tokenizer = training.get_tokenizer()
    seen["tokenizer_eos"] = tokenizer.eos_token_id
    # how the official quickstart builds its prompts
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about the ocean."}],
        add_generation_prompt=True,
        enable_thinking=False,
        tokenize=True,
        return_dict=False,
    )
    seen["chat_prompt"] = tokenizer.decode(chat)
    return training, sampler, base


def seeds(base: Any, seen: dict[str, Any]) -> None:
    """Same seed, same samples; another seed, other samples (on the wide base distribution)."""
    prompt = types.ModelInput.from_ints([2000, 2001, 2002])
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=1234, stop=[])
    first = base.sample(prompt, num_samples=3, sampling_params=params).result()
    again = base.sample(prompt, num_samples=3, sampling_params=params).result()
    other_params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=99, stop=[])
    other = base.sample(prompt, num_samples=3, sampling_params=other_params).result()
    seen["seeded_tokens"] = [s.tokens for s in first.sequences]
    seen["same_seed_tokens"] = [s.tokens for s in again.sequences]
    seen["other_seed_tokens"] = [s.tokens for s in other.sequences]


def consistency(training: Any, sampler: Any, seen: dict[str, Any]) -> None:
    """Sampled-token logprobs, compute_logprobs and forward logprobs agree (trained weights).

    At temperature 1: at another, sampled tokens' logprobs are the tempered distribution's
    (tests/unit/test_torch_backend.py checks those)."""
    prompt_ids = [2000, 2001, 2002]
    prompt = types.ModelInput.from_ints(prompt_ids)
    params = types.SamplingParams(max_tokens=6, temperature=1.0, seed=5, stop=[])
    first = sampler.sample(prompt, num_samples=3, sampling_params=params).result()
    worst_cl = worst_fw = 0.0
    for seq in first.sequences:
        full = prompt_ids + list(seq.tokens)
        computed = sampler.compute_logprobs(types.ModelInput.from_ints(full)).result()
        datum = types.Datum(
            model_input=types.ModelInput.from_ints(full[:-1]),
            loss_fn_inputs={"target_tokens": full[1:], "weights": [0.0] * (len(full) - 1)},
        )
        forward = training.forward([datum], "cross_entropy").result()
        fw = forward.loss_fn_outputs[0]["logprobs"].tolist()
        n = len(seq.tokens)
        for sampled, cl, f in zip(seq.logprobs, computed[-n:], fw[-n:], strict=True):
            worst_cl = max(worst_cl, abs(sampled - cl))
            worst_fw = max(worst_fw, abs(sampled - f))
        # prompt positions too: compute_logprobs[i] == forward[i - 1]
        for cl, f in zip(computed[1:], fw, strict=True):
            worst_fw = max(worst_fw, abs(cl - f))
    seen["max_diff_sample_vs_compute_logprobs"] = worst_cl
    seen["max_diff_vs_forward"] = worst_fw


def bandit(service: Any, loss_fn: str) -> dict[str, float]:
    """One RL step on a two-token bandit; the probabilities of A and B before and after."""
    training = service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=1).result()
    prompt = [200, 201, 202, 203]
    good, bad = 300, 301

    def logprobs(sampler: Any) -> tuple[float, float]:
        a = sampler.compute_logprobs(types.ModelInput.from_ints([*prompt, good])).result()
        b = sampler.compute_logprobs(types.ModelInput.from_ints([*prompt, bad])).result()
        return a[-1], b[-1]

    before = training.save_weights_and_get_sampling_client()
    lp_good, lp_bad = logprobs(before)
    data = []
    for action, advantage, lp in ((good, 1.0, lp_good), (bad, -1.0, lp_bad)):
        tokens = [*prompt, action]
        n = len(tokens) - 1
        data.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": tokens[1:],
                    "logprobs": [0.0] * (n - 1) + [lp],
                    "advantages": [0.0] * (n - 1) + [advantage],
                },
            )
        )
    result = training.forward_backward(data, loss_fn).result()
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    after_good, after_bad = logprobs(training.save_weights_and_get_sampling_client())
    return {
        "p_good_before": math.exp(lp_good),
        "p_good_after": math.exp(after_good),
        "p_bad_before": math.exp(lp_bad),
        "p_bad_after": math.exp(after_bad),
        "loss": result.metrics["loss:sum"],
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    seen: dict[str, Any] = {}
    service = tinker.ServiceClient(base_url=args.url, api_key=API_KEY)
    training, sampler, base = sft(service, seen)
    seeds(base, seen)
    consistency(training, sampler, seen)
    seen["rl"] = {loss: bandit(service, loss) for loss in ("importance_sampling", "ppo")}
    service.close("success").result()
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
