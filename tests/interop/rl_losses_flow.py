"""stable_reinforce and gspo through the official tinker 0.38 client, as a child process.

For each loss: sample 8 completions of one prompt from a sampler created with
``record_stability_info=True``, reward completions whose first token is even, and take one step
on datums built as the cookbook's ``rl_loop.py`` builds them (``with_provenance`` naming each
sequence for stable_reinforce, ``sequence_ratio_mask`` for gspo). Report each completion's
total logprob before and after the step, with its advantage. Then the refusals: a
stable_reinforce datum without provenance, one whose sampled tokens were altered, and a gspo
config the loss does not take.

Usage: ``python tests/interop/rl_losses_flow.py <base_url>``; one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import tinker
from tinker import types

API_KEY = "tml-interop-rl"
PROMPT = [200, 201, 202, 203]
SAMPLES = 8
MAX_TOKENS = 3


def _datum(tokens: list[int], advantage: float, loss_fn: str, sequence_id: str) -> Any:
    n_prompt = len(PROMPT)
    model_input = types.ModelInput.from_ints([*PROMPT, *tokens[:-1]])
    ob = n_prompt - 1
    inputs: dict[str, Any] = {
        "target_tokens": [0] * ob + tokens,
        "logprobs": [0.0] * (ob + len(tokens)),
        "advantages": [0.0] * ob + [advantage] * len(tokens),
    }
    if loss_fn == "gspo":
        inputs["sequence_ratio_mask"] = [0.0] * ob + [1.0] * len(tokens)
    datum = types.Datum(model_input=model_input, loss_fn_inputs=inputs)
    if loss_fn != "stable_reinforce":
        return datum
    return datum.with_provenance(
        model_input=[
            types.PromptProvenanceSpan(sequence_id=sequence_id, length=n_prompt),
            types.SampledProvenanceSpan(sequence_id=sequence_id, length=len(tokens) - 1),
        ],
        loss_fn_inputs=[
            types.PromptProvenanceSpan(sequence_id=sequence_id, offset=1, length=n_prompt - 1),
            types.SampledProvenanceSpan(sequence_id=sequence_id, length=len(tokens)),
        ],
    )


def _total_logprob(sampler: Any, tokens: list[int]) -> float:
    lps = sampler.compute_logprobs(types.ModelInput.from_ints([*PROMPT, *tokens])).result()
    return float(sum(lps[len(PROMPT) :]))


def one_step(service: Any, loss_fn: str) -> dict[str, Any]:
    """Sample, reward even first tokens, step once; logprobs of each completion before/after."""
    training = service.create_lora_training_client(base_model="local/tiny", rank=8, seed=3).result()
    sampler = training.save_weights_and_get_sampling_client(record_stability_info=True)
    params = types.SamplingParams(max_tokens=MAX_TOKENS, temperature=1.0, seed=11, stop=[])
    result = sampler.sample(types.ModelInput.from_ints(PROMPT), SAMPLES, params).result()
    sequences = [(list(s.tokens), s.sequence_id, list(s.logprobs or [])) for s in result.sequences]
    rewards = [1.0 if tokens[0] % 2 == 0 else 0.0 for tokens, _, _ in sequences]
    mean = sum(rewards) / len(rewards)
    advantages = [r - mean for r in rewards]
    data = [
        _datum(tokens, adv, loss_fn, seq_id)
        for (tokens, seq_id, _), adv in zip(sequences, advantages, strict=True)
    ]
    before = [_total_logprob(sampler, tokens) for tokens, _, _ in sequences]
    fb = training.forward_backward(data, loss_fn).result()
    # A small step keeps the update near-linear: at 2e-2 the shared LoRA update lifts every
    # sequence, the negative-advantage ones too, which says nothing about the loss's sign.
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    after_sampler = training.save_weights_and_get_sampling_client()
    after = [_total_logprob(after_sampler, tokens) for tokens, _, _ in sequences]
    return {
        "sequence_ids": [seq_id for _, seq_id, _ in sequences],
        "sampled_logprob_sums": [sum(lps) for _, _, lps in sequences],
        "advantages": advantages,
        "before": before,
        "after": after,
        "loss": fb.metrics["loss:sum"],
        "training": training,
        "sequences": sequences,
    }


def refusals(service: Any, stable: dict[str, Any]) -> dict[str, str]:
    """What the server answers to datums it must refuse (the message of each error)."""
    training = stable["training"]
    tokens, seq_id, _ = stable["sequences"][0]
    out: dict[str, str] = {}
    cases = {
        "no_provenance": ([_datum(tokens, 1.0, "ppo", seq_id)], "stable_reinforce", None),
        "forged_tokens": (
            [_datum([*tokens[:-1], (tokens[-1] + 1) % 4096], 1.0, "stable_reinforce", seq_id)],
            "stable_reinforce",
            None,
        ),
        "bad_gspo_config": (
            [_datum(tokens, 1.0, "gspo", seq_id)],
            "gspo",
            {"kl_coeff": 0.1},
        ),
    }
    for name, (data, loss_fn, config) in cases.items():
        try:
            training.forward_backward(data, loss_fn, loss_fn_config=config).result()
        except tinker.APIStatusError as exc:
            out[name] = f"{exc.status_code}: {exc}"
        except Exception as exc:  # the report says what else happened
            out[name] = f"{type(exc).__name__}: {exc}"
        else:
            out[name] = "accepted"
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    service = tinker.ServiceClient(base_url=args.url, api_key=API_KEY)
    seen: dict[str, Any] = {}
    runs = {loss_fn: one_step(service, loss_fn) for loss_fn in ("stable_reinforce", "gspo")}
    seen["refusals"] = refusals(service, runs["stable_reinforce"])
    for loss_fn, run in runs.items():
        run.pop("training")
        run.pop("sequences")
        seen[loss_fn] = run
    service.close("success").result()
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
