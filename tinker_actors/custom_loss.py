"""Client-side custom losses: the maths behind ``forward_backward_custom`` (protocol.md §9.3).

The service computes only its built-in losses. A custom loss ``C(logprobs)`` is trained in two
passes that the TrainingClient sends, with this module doing the maths in between:

1. :func:`forward_data_for_custom` keeps what the server needs from each datum (model input,
   spans, ``target_tokens``, ``weights`` or zeros) for a ``forward`` with ``cross_entropy``;
2. :func:`custom_loss_weights` turns each returned ``logprobs`` into a leaf tensor, runs the
   user's ``loss_fn(data, logprobs_list) -> (loss, metrics)`` and backpropagates. The server's
   cross-entropy is ``sum(-logprob * weight)``, so sending ``weights = -dC/dlogprobs`` in a
   ``forward_backward`` with ``cross_entropy`` puts exactly the custom loss's gradient into the
   model;
3. :func:`merge_custom_metrics` reports the custom loss as ``loss:sum`` and the server's
   surrogate as ``surrogate_loss:sum``, beside the user's metrics.

::

    def dpo(data, logprobs):                    # logprobs: one leaf tensor per datum
        ...
        return loss, {"accuracy:mean": acc}

    forward_data = forward_data_for_custom(data)
    fwd = ...                                   # forward(forward_data, "cross_entropy")
    backward_data, loss_sum, metrics = await run_custom_loss(data, fwd, dpo)
    bwd = ...                                   # forward_backward(backward_data, "cross_entropy")
    result = merge_custom_metrics(bwd, loss_sum, metrics)

A loss that knows what it reads may say so: an object with a ``check_data(data)`` method
(the composed losses of :mod:`tinker_actors.regularizers` have one) is asked at the call, and
what it raises reaches the caller before anything is sent. Without it, bad data surfaces only
when the loss runs, after the forward pass: the call then fails alone, but the server has run
a forward pass for it twice (the second fills the ids reserved for the backward pass).

torch is imported only when a loss runs, and :func:`run_custom_loss` runs it in a worker
thread (``trio.to_thread.run_sync``) so the runtime keeps serving other clients meanwhile.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import msgspec
import trio

from tinker_actors.errors import InvalidInputError
from tinker_actors.types import Datum, ForwardBackwardOutput, TensorData

__all__ = [
    "SURROGATE_LOSS_KEY",
    "CustomLossFn",
    "check_custom_loss_data",
    "custom_loss_weights",
    "forward_data_for_custom",
    "merge_custom_metrics",
    "metric_number",
    "run_custom_loss",
    "torch_module",
]

CustomLossFn: TypeAlias = Callable[[list[Datum], list[Any]], tuple[Any, dict[str, Any]]]
"""``(data, logprobs_list) -> (loss, metrics)``: torch tensors in, a scalar tensor out."""

#: Where the server's own (surrogate) cross-entropy sum is reported.
SURROGATE_LOSS_KEY: Final = "surrogate_loss:sum"
_LOSS_KEY: Final = "loss:sum"


def torch_module() -> Any:
    """Return torch, imported now; without it, an error that says how to install it.

    Raises:
        InvalidInputError: torch is not installed.
    """
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise InvalidInputError(
            "forward_backward_custom needs torch to differentiate the loss: pip install torch"
        ) from exc


def forward_data_for_custom(data: Sequence[Datum]) -> list[Datum]:
    """Return the data of the forward pass: model input and spans, targets, weights or zeros.

    Every other ``loss_fn_inputs`` entry stays on the client: only the user's loss reads it.

    Raises:
        InvalidInputError: ``data`` is empty, or a datum has no ``target_tokens``.
        TypeError: an item is not a Datum.
    """
    if not data:
        raise InvalidInputError("No data provided: forward_backward_custom needs at least 1 Datum")
    out: list[Datum] = []
    for index, datum in enumerate(data):
        if not isinstance(datum, Datum):
            raise TypeError(f"data[{index}] must be a Datum, got {type(datum).__name__}")
        target = datum.loss_fn_inputs.get("target_tokens")
        if target is None:
            raise InvalidInputError(
                f"data[{index}] has no loss_fn_inputs['target_tokens']; forward_backward_custom "
                "needs the target of every position to compute its logprob"
            )
        weights = datum.loss_fn_inputs.get("weights")
        if weights is None:
            shape = target.shape or [target.numel]
            weights = TensorData(data=[0.0] * target.numel, dtype="float32", shape=shape)
        out.append(
            Datum(
                model_input=datum.model_input,
                loss_fn_inputs={"target_tokens": target, "weights": weights},
                model_input_spans=datum.model_input_spans,
                loss_fn_input_spans=datum.loss_fn_input_spans,
            )
        )
    return out


def check_custom_loss_data(loss_fn: CustomLossFn, data: list[Datum]) -> None:
    """Call ``loss_fn.check_data(data)`` when the loss has one (see the module doc).

    Raises:
        InvalidInputError: what the loss's own check raises.
    """
    check = getattr(loss_fn, "check_data", None)
    if callable(check):
        check(data)


def metric_number(value: object) -> float | None:
    """A metric's value as a float: a number, or a 1-element tensor's; None for anything else
    (bools included)."""
    item = getattr(value, "item", None)
    raw = item() if callable(item) else value
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return float(raw)


def _metric_value(name: str, value: object) -> float:
    number = metric_number(value)
    if number is None:
        raise InvalidInputError(
            f"custom loss metric {name!r} must be a number (or a 1-element tensor), got "
            f"{type(value).__name__}"
        )
    return number


def custom_loss_weights(
    data: Sequence[Datum], forward_output: ForwardBackwardOutput, loss_fn: CustomLossFn
) -> tuple[list[Datum], float, dict[str, float]]:
    """Run ``loss_fn`` on the forward pass's logprobs and return the backward pass's data.

    Args:
        data: the user's data (all ``loss_fn_inputs`` included), in forward order.
        forward_output: the combined forward result, one ``logprobs`` per datum.
        loss_fn: ``(data, logprobs_list) -> (loss, metrics)``; ``loss`` a scalar tensor.

    Returns:
        The backward data (targets unchanged, ``weights = -dloss/dlogprobs``), the loss value,
        and the user's metrics as floats. A datum the loss ignores gets zero weights.

    Raises:
        InvalidInputError: outputs and data differ in number, an output has no ``logprobs``,
            ``loss_fn`` does not return ``(scalar tensor, dict)``, or torch is not installed.
    """
    torch = torch_module()
    outputs = forward_output.loss_fn_outputs
    if len(outputs) != len(data):
        raise InvalidInputError(
            f"the forward pass returned {len(outputs)} outputs for {len(data)} datums"
        )
    logprobs: list[Any] = []
    for index, output in enumerate(outputs):
        tensor = output.get("logprobs")
        if tensor is None:
            raise InvalidInputError(f"forward output {index} has no 'logprobs'")
        dense = tensor.to_torch().to(torch.float32).reshape(tensor.shape or [tensor.numel])
        logprobs.append(dense.clone().detach().requires_grad_(True))

    result = loss_fn(list(data), logprobs)
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise InvalidInputError(
            "the custom loss function must return (loss, metrics): a scalar tensor and a dict"
        )
    loss, metrics = result
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise InvalidInputError(
            "the custom loss function must return a scalar torch tensor as its loss, got "
            f"{type(loss).__name__}"
            + (f" of shape {tuple(loss.shape)}" if hasattr(loss, "shape") else "")
        )
    if not loss.requires_grad:
        raise InvalidInputError(
            "the custom loss does not depend on the logprobs it was given (no gradient); build "
            "it from the logprobs tensors"
        )
    loss_sum = float(loss.detach().sum().item())
    if not math.isfinite(loss_sum):
        raise InvalidInputError(f"the custom loss is not finite ({loss_sum})")
    loss.sum().backward()

    backward: list[Datum] = []
    for datum, leaf in zip(data, logprobs, strict=True):
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        backward.append(
            Datum(
                model_input=datum.model_input,
                # The server's cross-entropy is sum(-logprob * weight): these weights make its
                # gradient the custom loss's gradient.
                loss_fn_inputs={
                    "target_tokens": datum.loss_fn_inputs["target_tokens"],
                    "weights": (-grad).detach(),
                },
                model_input_spans=datum.model_input_spans,
                loss_fn_input_spans=datum.loss_fn_input_spans,
            )
        )
    user_metrics = {str(k): _metric_value(str(k), v) for k, v in metrics.items()}
    return backward, loss_sum, user_metrics


async def run_custom_loss(
    data: Sequence[Datum],
    forward_output: ForwardBackwardOutput,
    loss_fn: CustomLossFn,
    *,
    limiter: trio.CapacityLimiter | None = None,
) -> tuple[list[Datum], float, dict[str, float]]:
    """Run :func:`custom_loss_weights` in a worker thread (behind ``limiter``, if given)."""
    return await trio.to_thread.run_sync(
        custom_loss_weights, data, forward_output, loss_fn, limiter=limiter
    )


def merge_custom_metrics(
    backward_output: ForwardBackwardOutput, loss_sum: float, user_metrics: dict[str, float]
) -> ForwardBackwardOutput:
    """Return the backward result with the custom loss as ``loss:sum``.

    The server's ``loss:sum`` (the surrogate cross-entropy) moves to ``surrogate_loss:sum``, the
    user's metrics are added, and ``loss:sum`` becomes ``loss_sum``; these two win over user
    metrics of the same name.
    """
    metrics = dict(backward_output.metrics)
    surrogate = metrics.pop(_LOSS_KEY, None)
    metrics.update(user_metrics)
    metrics[_LOSS_KEY] = loss_sum
    if surrogate is not None:
        metrics[SURROGATE_LOSS_KEY] = surrogate
    return msgspec.structs.replace(backward_output, metrics=metrics)
