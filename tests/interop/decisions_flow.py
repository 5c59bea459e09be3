"""tinker-cookbook's decisions library on a local server, as a child process.

``recipes/decisions`` scores a question's choices with one ``sample`` request that asks for
``target_prompt_logprobs`` (each choice's answer token at the answer position, a sparse
``[len(prompt) - 1, K]`` tensor padded with -1), and trains with ``cross_entropy`` on the right
choice's token or with ``forward_backward_custom`` over ``[T, K]`` choice targets. This runs
that as a user would: the choice probabilities of an untrained LoRA model, three cross-entropy
steps towards one choice, the probabilities again, then one soft-label step through
``probability_loss``.

Usage: ``python tests/interop/decisions_flow.py <base_url> <model>`` (the tokenizer of
``<model>`` must load offline: ``HF_HUB_CACHE`` / ``HF_HUB_OFFLINE``); one JSON object on
stdout. Under ``tinker-actors run --`` it runs on tinker_actors.compat.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import tinker
import torch
from tinker_cookbook.recipes.decisions import (
    Decision,
    DecisionRenderer,
    decision_choice_datums,
    sample_decision,
)
from tinker_cookbook.recipes.decisions.train import decision_dist_datums, probability_loss
from tinker_cookbook.renderers import get_renderer
from tinker_cookbook.tokenizer_utils import get_tokenizer

STEPS = 3
DECISION = Decision(
    "A user asked: how do I build a decision model with the Tinker Cookbook?\n\n"
    "Which team should answer it?",
    [
        ("billing", "Charges, invoices and payments"),
        ("sdk", "The tinker Python package"),
        ("cookbook", "The Tinker Cookbook"),
    ],
)


async def main(base_url: str, model: str) -> dict[str, Any]:
    service = tinker.ServiceClient(base_url=base_url, api_key="tml-interop-decisions")
    training = await service.create_lora_training_client(base_model=model, rank=8, seed=0)
    renderer = DecisionRenderer(get_renderer("role_colon", get_tokenizer(model)))
    rendering = renderer.render(DECISION)
    sampler = await training.save_weights_and_get_sampling_client()
    before = await sample_decision(sampler, rendering)
    losses = []
    for _ in range(STEPS):
        datums = decision_choice_datums(renderer, [(DECISION, "cookbook")] * 4)
        backward = training.forward_backward(datums, "cross_entropy")
        step = training.optim_step(tinker.AdamParams(learning_rate=1e-2))
        losses.append((await backward).metrics["loss:sum"])
        await step
    sampler = await training.save_weights_and_get_sampling_client()
    after = await sample_decision(sampler, rendering)
    soft = decision_dist_datums(renderer, [(DECISION, {"sdk": 0.5, "cookbook": 0.5})] * 2)
    brier = probability_loss(lambda probs, target: ((probs - target) ** 2).sum())
    custom = await training.forward_backward_custom(soft, brier)
    return {
        "tinker": tinker.__name__,
        "before": before,
        "after": after,
        "losses": losses,
        "custom_metrics": custom.metrics,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2]))))
