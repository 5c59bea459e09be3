"""Server-side custom losses (0.38): a traced torch.fx graph uploaded as plain data.

``create_custom_loss`` uploads a :class:`CustomLossGraph` with its declared inputs; the result
(:class:`CreateCustomLossResponse`) names it by ``loss_id`` for later ``forward_backward``
requests with ``loss_fn="custom"``. Inputs are ``logprobs`` first (rank 1 or 2), then the
``loss_fn_inputs`` keys the loss reads, at most 16 in all, each named like a Python identifier
in lower case::

    >>> CustomLossInput(name="Weights", rank=1)
    Traceback (most recent call last):
    ...
    tinker_actors.errors.InvalidInputError: custom loss input name 'Weights' ...
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal, TypeAlias

import msgspec

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = [
    "CreateCustomLossRequest",
    "CreateCustomLossResponse",
    "CustomLossGraph",
    "CustomLossInput",
    "CustomLossInputRank",
    "CustomLossNode",
    "CustomLossNodeOp",
]

CustomLossNodeOp: TypeAlias = Literal[
    "placeholder", "get_attr", "call_function", "call_method", "call_module", "output"
]
"""A torch.fx node kind."""

CustomLossInputRank: TypeAlias = Literal[0, 1, 2]
"""An input's rank per datum: 0 a scalar, 1 ``[T]``, 2 ``[T, K]``."""

MAX_CUSTOM_LOSS_INPUTS: Final = 16
_INPUT_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,63}")


class CustomLossInput(RequestStruct, kw_only=True, frozen=True):
    """One input of a custom loss, with the rank of every datum's value."""

    name: str
    """``logprobs``, or the ``loss_fn_inputs`` key the loss reads."""
    rank: CustomLossInputRank

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _INPUT_NAME.fullmatch(self.name):
            raise InvalidInputError(
                f"custom loss input name {self.name!r} is invalid: use 1-64 characters of "
                "lower-case letters, digits and '_', not starting with a digit"
            )
        if self.rank not in (0, 1, 2):
            raise InvalidInputError(f"custom loss input {self.name!r}: rank must be 0, 1 or 2")


class CustomLossNode(RequestStruct, kw_only=True, frozen=True):
    """One node of a traced loss, as torch.fx records it."""

    op: CustomLossNodeOp
    name: str
    """Unique within the graph; later nodes refer to it as ``{"ref": name}``."""
    target: str
    """Parameter name, qualified function (``torch.exp``, ``operator.mul``), method, or ``output``."""
    args: list[Any] = msgspec.field(default_factory=list)
    """Encoded arguments (JSON values, or one-key objects such as ``{"ref": name}``)."""
    kwargs: dict[str, Any] = msgspec.field(default_factory=dict)
    """Encoded keyword arguments."""


class CustomLossGraph(RequestStruct, kw_only=True, frozen=True):
    """A traced loss: its nodes in execution order. Nothing in it is executable by itself."""

    format: Literal[1] = 1
    nodes: list[CustomLossNode]


class CreateCustomLossRequest(RequestStruct, kw_only=True, frozen=True):
    """Upload a custom loss (``POST /api/v1/create_custom_loss``)."""

    session_id: str
    custom_loss_seq_id: int
    """Per-session counter of custom losses, starting at 0."""
    name: str
    """The Python function's name."""
    inputs: list[CustomLossInput]
    """``logprobs`` first, then the ``loss_fn_inputs`` keys read, in parameter order."""
    graph: CustomLossGraph
    type: Literal["create_custom_loss"] = "create_custom_loss"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (
            not self.inputs
            or self.inputs[0].name != "logprobs"
            or self.inputs[0].rank not in (1, 2)
        ):
            raise InvalidInputError(
                "a custom loss's first input must be 'logprobs' with rank 1 or 2 "
                "(the loss is called as loss(logprobs, *inputs))"
            )
        if len(self.inputs) > MAX_CUSTOM_LOSS_INPUTS:
            raise InvalidInputError(
                f"a custom loss takes at most {MAX_CUSTOM_LOSS_INPUTS} inputs including "
                f"logprobs, got {len(self.inputs)}"
            )
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"custom loss input names must be distinct, got {names}")


class CreateCustomLossResponse(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="create_custom_loss"
):
    """A stored custom loss."""

    loss_id: str
    """Pass as ``loss_fn_config={"loss_id": ...}`` with ``loss_fn="custom"``."""
