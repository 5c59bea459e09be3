"""forward / forward_backward for the torch backend: datums in length-sorted chunks.

A request's datums are right-padded into batches, and every padded position costs a row of
logits (``V`` floats, three times over with the log-softmax and its gradient). One batch of a
multi-turn RL step (160 datums of 40-610 tokens) padded to its longest was 1.6 GB of logits
on ``local/tiny`` and 15 s; a vocabulary of 49,152 would make it 19 GB. So the datums are
sorted by length and cut into chunks whose logits stay under :data:`CHUNK_BYTES` (a datum
longer than that runs alone). Each chunk runs forward, its losses, and backward; the
gradients add up across chunks, which is what ``optim_step`` applies. Outputs come back in
the request's order.

Every datum is checked before any chunk runs, and a chunk that fails later (a loss refusing
its inputs) puts the gradients back as they were: a refused request adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._images import flatten
from tinker_actors.local._torch_losses import elementwise_loss
from tinker_actors.local._torch_model import forward, length_groups
from tinker_actors.local._torch_vision import image_inserts
from tinker_actors.types import ForwardBackwardOutput, TensorData

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tinker_actors.local._torch_losses import LossConfig
    from tinker_actors.local._torch_model import Adapter, BaseWeights
    from tinker_actors.types import Datum

__all__ = ["CHUNK_BYTES", "chunks", "run_forward_backward"]

#: The most memory one chunk's logits take (logits, log-softmax and gradient, float32).
CHUNK_BYTES = 64 * 1024 * 1024


def _tensor_data(tensor: torch.Tensor) -> TensorData:
    return TensorData.from_numpy(tensor.detach().to("cpu", torch.float32).numpy())


@dataclass(frozen=True)
class _Item:
    index: int  # the datum's place in the request
    length: int
    width: int  # K targets per position (1 for a 1-D target)
    shape: tuple[int, ...]
    inputs: dict[str, torch.Tensor]


@dataclass(frozen=True)
class _Batch:
    """A right-padded batch: tokens [B, T], targets [B, T, K], per-datum float inputs."""

    tokens: torch.Tensor
    targets: torch.Tensor
    items: list[_Item]
    images: list[tuple[int, int, torch.Tensor]]  # forward's: (row, column, square features)

    @classmethod
    def build(
        cls,
        data: Sequence[Datum],
        indices: Sequence[int],
        device: torch.device,
        vocab_size: int,
    ) -> _Batch:
        """Check and pad ``data[i]`` for ``i`` in ``indices`` (errors name the datum's index)."""
        flats = [flatten(data[i].model_input, f"datum {i}") for i in indices]
        rows = [flat.ids for flat in flats]
        targets_np = [
            data[i].loss_fn_inputs["target_tokens"].to_numpy().astype(np.int64) for i in indices
        ]
        length = max(len(r) for r in rows)
        width = max(1 if t.ndim == 1 else int(t.shape[1]) for t in targets_np)
        tokens = np.zeros((len(rows), length), dtype=np.int64)
        targets = np.zeros((len(rows), length, width), dtype=np.int64)
        items = []
        for row_index, (i, row, target) in enumerate(zip(indices, rows, targets_np, strict=True)):
            if target.ndim > 2:
                raise BackendInputError(f"datum {i}: target_tokens must be [N] or [N, K]")
            tokens[row_index, : len(row)] = row
            grid = target.reshape(len(row), -1)
            if grid.size and (grid.min() < 0 or grid.max() >= vocab_size):
                raise BackendInputError(
                    f"datum {i}: target_tokens must be in [0, {vocab_size}); got "
                    f"{grid.min()}..{grid.max()}"
                )
            targets[row_index, : len(row), : grid.shape[1]] = grid
            inputs = {
                name: torch.from_numpy(
                    tensor.to_numpy().astype(np.float32).reshape(target.shape)
                ).to(device)
                for name, tensor in data[i].loss_fn_inputs.items()
                if name != "target_tokens"
            }
            items.append(
                _Item(
                    index=i, length=len(row), width=grid.shape[1], shape=target.shape, inputs=inputs
                )
            )
        return cls(
            tokens=torch.from_numpy(tokens).to(device),
            targets=torch.from_numpy(targets).to(device),
            items=items,
            images=image_inserts(flats, device),
        )


def chunks(lengths: Sequence[int], vocab_size: int, budget: int = CHUNK_BYTES) -> list[list[int]]:
    """Datum indices grouped shortest first, each group's padded logits under ``budget``."""
    # three float32 [rows, longest, V] tensors: logits, log-softmax and its gradient
    return length_groups(
        lengths, lambda rows, longest: rows * max(longest, 1) * vocab_size * 12 <= budget
    )


def run_forward_backward(
    base: BaseWeights,
    adapter: Adapter,
    data: Sequence[Datum],
    loss_fn: str,
    config: LossConfig,
    *,
    forward_only: bool,
    budget: int = CHUNK_BYTES,
) -> ForwardBackwardOutput:
    """Outputs and ``loss:sum`` for ``data``; unless ``forward_only``, add to the gradients.

    Raises:
        BackendInputError: a datum cannot be run (nothing is added to the gradients).
    """
    device = base.device
    groups = chunks([d.model_input.length for d in data], base.spec.vocab_size, budget)
    batches = [_Batch.build(data, group, device, base.spec.vocab_size) for group in groups]
    params = adapter.parameters()
    saved = [p.grad.clone() if p.grad is not None else None for p in params]
    outputs: list[dict[str, TensorData] | None] = [None] * len(data)
    total = 0.0
    try:
        for batch in batches:
            total += _run_chunk(base, adapter, batch, loss_fn, config, forward_only, outputs)
    except BaseException:
        if not forward_only:  # put the gradients back as they were before this request
            for p, before in zip(params, saved, strict=True):
                p.grad = before
        raise
    return ForwardBackwardOutput(
        loss_fn_output_type="ArrayRecord",
        loss_fn_outputs=[o for o in outputs if o is not None],
        metrics={"loss:sum": total},
    )


def _run_chunk(
    base: BaseWeights,
    adapter: Adapter,
    batch: _Batch,
    loss_fn: str,
    config: LossConfig,
    forward_only: bool,
    outputs: list[dict[str, TensorData] | None],
) -> float:
    with torch.set_grad_enabled(not forward_only):
        logits = forward(base, adapter, batch.tokens, images=batch.images)
        logprobs = torch.log_softmax(logits, dim=-1)
        # one gather for the whole chunk: [B, T, K] (K = 1 for ordinary targets)
        picked = logprobs.gather(-1, batch.targets)
        total = torch.zeros((), device=base.device)
        for row, item in enumerate(batch.items):
            lp = picked[row, : item.length, : item.width].reshape(item.shape)
            loss = elementwise_loss(loss_fn, lp, item.inputs, config)
            total = total + loss.sum()
            outputs[item.index] = {
                "logprobs": _tensor_data(lp),
                "elementwise_loss": _tensor_data(loss),
            }
        if not forward_only:
            torch.autograd.backward(total)
    return float(total.detach())
