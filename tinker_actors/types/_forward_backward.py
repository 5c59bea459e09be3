"""forward / forward_backward: the request (sent as protobuf) and its result.

A forward_backward runs the model on a batch of :class:`~tinker_actors.types._datum.Datum`,
computes the named loss and accumulates gradients; a forward (``forward_only=True``) computes the
loss outputs without gradients. Both travel as ``tinker_public.ForwardBackwardRequest``
(protocol §5.2) and answer with a :class:`ForwardBackwardOutput` (decoded from protobuf, §5.3).
The JSON forms exist only for the legacy shape (protocol Appendix A); encode them with the
TensorData hooks of ``tinker_actors.types._tensor``.
"""

from __future__ import annotations

from typing import TypeAlias, cast

import msgspec

from tinker_actors.types._dataclass import dataclass_protocol
from tinker_actors.types._datum import Datum, LossFnConfig, LossFnType
from tinker_actors.types._tensor import TensorData

__all__ = [
    "ForwardBackwardInput",
    "ForwardBackwardOutput",
    "ForwardBackwardRequest",
    "ForwardRequest",
    "LossFnOutput",
]

LossFnOutput: TypeAlias = dict[str, TensorData]
"""What the loss computed for one datum, by name (e.g. ``"logprobs"``)."""


@dataclass_protocol
class ForwardBackwardInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A batch and the loss to compute on it (positional arguments in 0.38's order)."""

    data: list[Datum]
    """The examples, in order; outputs come back in the same order."""

    loss_fn: LossFnType
    """The server-side loss function."""

    loss_fn_config: LossFnConfig | None = None
    """Loss hyper-parameters (numbers, or strings such as a custom ``loss_id``)."""


@dataclass_protocol
class ForwardBackwardRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ``POST /api/v1/forward_backward`` (or forward) call for one model.

    Both travel as this one protobuf message; ``forward_only`` tells them apart.
    """

    forward_backward_input: ForwardBackwardInput
    """The batch and loss."""

    model_id: str
    """The training model the request applies to."""

    seq_id: int = 0
    """Position of this request in the model's request order (the SDK starts at 1; 0 or None
    = unset)."""

    forward_only: bool = False
    """Compute outputs only: no backward pass, no gradient accumulation."""

    def __post_init__(self) -> None:
        if cast("object", self.seq_id) is None:  # 0.38 spells unset as None
            msgspec.structs.force_setattr(self, "seq_id", 0)


@dataclass_protocol
class ForwardRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """0.38's model of a forward call (no gradients); it is sent as a
    :class:`ForwardBackwardRequest` with ``forward_only=True``."""

    forward_input: ForwardBackwardInput
    """The batch and loss."""

    model_id: str
    """The training model the request applies to."""

    seq_id: int | None = None
    """Position of this request in the model's request order."""

    def to_forward_backward_request(self) -> ForwardBackwardRequest:
        """Return the request as it travels: a forward_backward with ``forward_only=True``."""
        return ForwardBackwardRequest(
            self.forward_input, self.model_id, self.seq_id or 0, forward_only=True
        )


@dataclass_protocol
class ForwardBackwardOutput(msgspec.Struct, frozen=True):
    """What a forward or forward_backward computed (positional arguments in 0.38's order)."""

    loss_fn_output_type: str
    """Class name of the per-datum output records (e.g. ``"ArrayRecord"``)."""

    loss_fn_outputs: list[LossFnOutput]
    """One dict per input datum, in order: output name (e.g. ``"logprobs"``) to tensor."""

    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    """Scalars keyed ``"name:reduction"`` (e.g. ``"loss:sum"``); the reduction says how chunk
    results combine (mean, sum, min, max, slack, hash2, unique)."""
