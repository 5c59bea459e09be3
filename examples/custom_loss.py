"""A custom loss with the SDK: DPO (direct preference optimization) via forward_backward_custom.

The service computes only built-in losses; ``forward_backward_custom`` trains on any loss that
torch can differentiate with respect to the model's per-token logprobs. Each step here:

1. a batch of preference pairs (the same prompt with a *chosen* and a *rejected* completion),
   laid out as ``[chosen_0, rejected_0, chosen_1, rejected_1, ...]``;
2. ``forward_backward_custom(batch, dpo_loss)``: the SDK runs a forward pass, hands the
   logprobs to ``dpo_loss`` in a worker thread, and sends its gradient back as a
   ``forward_backward``; ``optim_step`` is queued right behind it;
3. the loss is DPO plus a weighted supervised anchor on the chosen completions (``--sft-weight``;
   DPO + NLL is known as RPO), composed with :mod:`tinker_actors.regularizers`: the result's
   ``loss:sum`` is their sum, ``base_loss`` the DPO loss and ``regularizer/sft`` the anchor,
   beside the metrics ``dpo_loss`` returned.

The reference model's logprobs (the frozen starting policy DPO compares against) are computed
once, before training, with a plain ``forward`` of the same data, and travel in the datums'
``loss_fn_inputs`` (everything but ``target_tokens``/``weights`` stays client-side). The first
step's loss is therefore ``log 2``; later steps move away from it as the policy changes.

Needs torch. Run against a server you started (``tinker-actors serve``)::

    python examples/custom_loss.py --base-url http://127.0.0.1:8000

or without ``--base-url`` to start an embedded local server for the run.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import trio

import tinker_actors as ta
from tinker_actors.custom_loss import forward_data_for_custom
from tinker_actors.regularizers import Regularizer, compose
from tinker_actors.types import AdamParams, Datum, ModelInput

API_KEY = "tml-local-example"
BETA = 0.1


def sequence(prompt: np.ndarray, completion: np.ndarray) -> Datum:
    """One next-token datum; ``mask`` marks the completion's positions (the ones DPO scores)."""
    tokens = np.concatenate([prompt, completion])
    mask = np.zeros(len(tokens) - 1, dtype=np.float32)
    mask[len(prompt) - 1 :] = 1.0
    return Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "mask": mask},
    )


def make_pairs(rng: np.random.Generator, pairs: int, length: int = 8) -> list[Datum]:
    """Prompts of counting sequences; chosen continues the count, rejected repeats a token."""
    batch = []
    for _ in range(pairs):
        start, stride = int(rng.integers(10, 1000)), int(rng.integers(1, 4))
        prompt = np.arange(start, start + length * stride, stride, dtype=np.int64)
        chosen = np.arange(prompt[-1] + stride, prompt[-1] + (length + 1) * stride, stride)
        rejected = np.full(length, prompt[-1], dtype=np.int64)
        batch += [sequence(prompt, chosen.astype(np.int64)), sequence(prompt, rejected)]
    return batch


def with_reference(batch: list[Datum], logprobs: list[np.ndarray]) -> list[Datum]:
    """Attach the reference model's per-token logprobs to each datum (client-side only)."""
    return [
        Datum(
            model_input=d.model_input,
            loss_fn_inputs={**d.loss_fn_inputs, "ref_logprobs": lp.astype(np.float32)},
        )
        for d, lp in zip(batch, logprobs, strict=True)
    ]


def dpo_loss(data: list[Datum], logprobs: list[Any]) -> tuple[Any, dict[str, float]]:
    """-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))), averaged over the pairs."""
    import torch
    import torch.nn.functional as F

    def score(index: int) -> tuple[Any, Any]:
        inputs = data[index].loss_fn_inputs
        mask = torch.as_tensor(inputs["mask"].to_numpy())
        ref = torch.as_tensor(inputs["ref_logprobs"].to_numpy())
        return (logprobs[index] * mask).sum(), (ref * mask).sum()

    losses, margins = [], []
    for pair in range(len(data) // 2):
        policy_c, ref_c = score(2 * pair)
        policy_r, ref_r = score(2 * pair + 1)
        margin = BETA * ((policy_c - ref_c) - (policy_r - ref_r))
        losses.append(-F.logsigmoid(margin))
        margins.append(margin.detach())
    loss = torch.stack(losses).mean()
    accuracy = float((torch.stack(margins) > 0).float().mean())
    return loss, {"accuracy:mean": accuracy, "margin:mean": float(torch.stack(margins).mean())}


def chosen_nll(data: list[Datum], logprobs: list[Any]) -> Any:
    """The chosen completions' mean negative logprob per token: a supervised anchor."""
    import torch

    terms = []
    for index in range(0, len(data), 2):  # the chosen half of each pair
        mask = torch.as_tensor(data[index].loss_fn_inputs["mask"].to_numpy())
        terms.append(-(logprobs[index] * mask).sum() / mask.sum())
    return torch.stack(terms).mean()


async def train(base_url: str, steps: int, pairs: int, sft_weight: float = 0.1) -> None:
    # Checked here, before anything is sent: a bad weight raises InvalidInputError now.
    loss_fn = compose(dpo_loss, Regularizer("sft", chosen_nll, weight=sft_weight))
    rng = np.random.default_rng(0)
    async with ta.open(base_url=base_url, api_key=API_KEY) as tinker:
        training = await tinker.create_lora_training_client("local/tiny", rank=16, seed=0)
        print(f"session {await tinker.session_id()} model {training.model_id}")
        batch = make_pairs(rng, pairs)
        # The reference logprobs: the starting policy's, before any training.
        reference = await (
            await training.forward(forward_data_for_custom(batch), "cross_entropy")
        ).result()
        ref = [o["logprobs"].to_numpy() for o in reference.loss_fn_outputs]
        batch = with_reference(batch, ref)
        for step in range(steps):
            fb = await training.forward_backward_custom(batch, loss_fn)
            opt = await training.optim_step(AdamParams(learning_rate=2e-3))
            output = await fb.result()
            await opt.result()
            metrics = output.metrics
            print(
                f"step {step + 1}: dpo loss = {metrics['base_loss']:.4f}, "
                f"sft = {metrics['regularizer/sft']:.4f}, loss = {metrics['loss:sum']:.4f}, "
                f"accuracy = {metrics['accuracy:mean']:.2f}, "
                f"surrogate = {metrics['surrogate_loss:sum']:.4f}"
            )
    print("done")


async def main(base_url: str | None, steps: int, pairs: int, sft_weight: float) -> None:
    if base_url is not None:
        await train(base_url, steps, pairs, sft_weight)
        return
    from tinker_actors.local import open_local_server

    async with open_local_server() as server, trio.open_nursery() as nursery:
        url = await nursery.start(server.serve)
        print(f"local server at {url}")
        await train(url, steps, pairs, sft_weight)
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default=None, help="a running server (default: embedded)")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument(
        "--sft-weight", type=float, default=0.1, help="weight of the chosen completions' NLL"
    )
    args = parser.parse_args()
    trio.run(main, args.base_url, args.steps, args.pairs, args.sft_weight)
