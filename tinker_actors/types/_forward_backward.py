"""forward / forward_backward: the request (sent as protobuf) and its result.

A forward_backward runs the model on a batch of :class:`~tinker_actors.types._datum.Datum`,
computes the named loss and accumulates gradients; a forward (``forward_only=True``) computes the
loss outputs without gradients. Both travel as ``tinker_public.ForwardBackwardRequest``
(protocol §5.2) and answer with a :class:`ForwardBackwardOutput` (decoded from protobuf, §5.3).
The JSON forms exist only for the legacy shape (protocol Appendix A); encode them with the
TensorData hooks of ``tinker_actors.types._tensor``.
"""

from __future__ import annotations

import msgspec

from tinker_actors.types._datum import Datum, LossFnConfig, LossFnType
from tinker_actors.types._model_input import none_to_unset
from tinker_actors.types._tensor import TensorData

__all__ = ["ForwardBackwardInput", "ForwardBackwardOutput", "ForwardBackwardRequest"]


class ForwardBackwardInput(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A batch and the loss to compute on it."""

    data: list[Datum]
    """The examples, in order; outputs come back in the same order."""

    loss_fn: LossFnType
    """The server-side loss function."""

    loss_fn_config: LossFnConfig | msgspec.UnsetType | None = msgspec.UNSET
    """Loss hyper-parameters (numbers, or strings such as a custom ``loss_id``)."""

    def __post_init__(self) -> None:
        none_to_unset(self, "loss_fn_config")


class ForwardBackwardRequest(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """One ``POST /api/v1/forward_backward`` (or forward) call for one model."""

    forward_backward_input: ForwardBackwardInput
    """The batch and loss."""

    model_id: str
    """The training model the request applies to."""

    seq_id: int = 0
    """Position of this request in the model's request order (the SDK starts at 1; 0 = unset)."""

    forward_only: bool = False
    """Compute outputs only: no backward pass, no gradient accumulation."""


class ForwardBackwardOutput(msgspec.Struct, kw_only=True, frozen=True):
    """What a forward or forward_backward computed."""

    loss_fn_output_type: str
    """Class name of the per-datum output records (e.g. ``"ArrayRecord"``)."""

    loss_fn_outputs: list[dict[str, TensorData]]
    """One dict per input datum, in order: output name (e.g. ``"logprobs"``) to tensor."""

    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """Scalars keyed ``"name:reduction"`` (e.g. ``"loss:sum"``); the reduction says how chunk
    results combine (mean, sum, min, max, slack, hash2, unique)."""
