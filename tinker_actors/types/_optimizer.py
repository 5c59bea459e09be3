"""Optimizers: the family chosen at model creation, and the hyperparameters of each step.

A training model's optimizer family is fixed when the model is created
(``CreateModelRequest.optimizer_config``): AdamW by default, or Dimuon::

    >>> import msgspec
    >>> msgspec.json.encode(DimuonOptimizerConfig())
    b'{"type":"dimuon","version":1}'

Each optimizer step then carries the hyperparameters of that family: :class:`AdamParams` for
AdamW, :class:`DimuonParams` for Dimuon (:data:`OptimParams` is either).

:class:`OptimizerConfig` is open-ended on purpose: the server may report a family this client
does not know, and a response carrying one must still decode. It is therefore one Struct whose
``type`` is any string, not a closed msgspec tagged union (which would refuse unknown tags);
:class:`AdamOptimizerConfig` and :class:`DimuonOptimizerConfig` are its subclasses for the known
families, and decoded configs of a known family are turned into them by
:func:`known_optimizer_config` (so ``info.optimizer_config == DimuonOptimizerConfig()`` holds).

Hyperparameters are checked on construction with PyTorch's rules for Adam (``lr >= 0``,
``eps >= 0``, betas in ``[0, 1)``, ``weight_decay >= 0``) and 0.38's for Dimuon; every value
must be a finite number, since NaN would be sent as ``null``.
"""

from __future__ import annotations

from typing import Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct
from tinker_actors.types._model_input import none_to_unset
from tinker_actors.types._pydantic import ModelMethods
from tinker_actors.types._values import as_float

__all__ = [
    "AdamOptimizerConfig",
    "AdamParams",
    "DimuonOptimizerConfig",
    "DimuonParams",
    "OptimParams",
    "OptimizerConfig",
    "OptimizerParams",
]


class OptimizerConfig(msgspec.Struct, ModelMethods, kw_only=True, frozen=True):
    """The optimizer family of a training model, fixed for the model's lifetime.

    Build a known family with :class:`AdamOptimizerConfig` (the default) or
    :class:`DimuonOptimizerConfig`. Unknown families decode too (their extra fields are
    dropped), so an older client can still read info about a model created by a newer one.
    """

    type: str = "adamw"
    """The family: ``adamw``, ``dimuon`` or one this client does not know."""
    version: int | UnsetType | None = UNSET
    """The family's version, where it has one (``dimuon``: 1)."""

    def __post_init__(self) -> None:
        none_to_unset(self, "version")
        if not isinstance(self.type, str) or not self.type:
            raise InvalidInputError(
                f"optimizer config type must be a non-empty string, got {self.type!r}"
            )

    @classmethod
    def adamw(cls) -> AdamOptimizerConfig:
        """Select AdamW (decoupled weight decay); per-step values go in :class:`AdamParams`."""
        return AdamOptimizerConfig()

    @classmethod
    def dimuon(cls) -> DimuonOptimizerConfig:
        """Select Dimuon; per-step values go in :class:`DimuonParams`."""
        return DimuonOptimizerConfig()


class AdamOptimizerConfig(OptimizerConfig, kw_only=True, frozen=True):
    """Select AdamW for a training model (the default)."""

    type: Literal["adamw"] = "adamw"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.type != "adamw" or self.version is not UNSET:
            raise InvalidInputError(
                f"AdamOptimizerConfig has type 'adamw' and no version, got type={self.type!r}, "
                f"version={self.version!r}"
            )


class DimuonOptimizerConfig(OptimizerConfig, kw_only=True, frozen=True):
    """Select the Dimuon optimizer (version 1) for a training model."""

    type: Literal["dimuon"] = "dimuon"
    version: Literal[1] = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.type != "dimuon" or self.version != 1:
            raise InvalidInputError(
                "DimuonOptimizerConfig has type 'dimuon' and version 1, got "
                f"type={self.type!r}, version={self.version!r}"
            )


def known_optimizer_config(config: OptimizerConfig) -> OptimizerConfig:
    """Return ``config`` as the class of its family when the family is known, else unchanged."""
    if type(config) is not OptimizerConfig:
        return config
    if config.type == "adamw" and config.version is UNSET:
        return AdamOptimizerConfig()
    if config.type == "dimuon" and config.version == 1:
        return DimuonOptimizerConfig()
    return config


def known_optimizer_field(struct: msgspec.Struct) -> None:
    """Turn ``struct.optimizer_config``, when of a known family, into that family's class.

    Called from ``__post_init__`` of the Structs that carry one, so a decoded config compares
    equal to :class:`AdamOptimizerConfig` / :class:`DimuonOptimizerConfig` and passes
    ``isinstance`` checks, as 0.38's models do.
    """
    config = getattr(struct, "optimizer_config", None)
    if isinstance(config, OptimizerConfig):
        known = known_optimizer_config(config)
        if known is not config:
            msgspec.structs.force_setattr(struct, "optimizer_config", known)


def _finite(struct: msgspec.Struct, *names: str) -> None:
    """Normalise the named fields to finite floats (ints become floats, as in 0.38)."""
    for name in names:
        value = getattr(struct, name)
        checked = as_float(value, f"{type(struct).__name__}.{name}")
        if type(value) is not float:
            msgspec.structs.force_setattr(struct, name, checked)


def _unit_interval(name: str, value: float) -> None:
    if not 0 <= value < 1:
        raise InvalidInputError(f"{name} must be in [0, 1), got {value}")


class AdamParams(RequestStruct, kw_only=True, frozen=True):
    """Hyperparameters of one AdamW step.

    Raises:
        InvalidInputError: a value is not a finite number, or out of range.
    """

    learning_rate: float = 0.0001
    """Step size, at least 0."""
    beta1: float = 0.9
    """Decay of the running average of the gradient, in [0, 1)."""
    beta2: float = 0.95
    """Decay of the running average of the squared gradient, in [0, 1)."""
    eps: float = 1e-12
    """Added to the denominator for numerical stability, at least 0."""
    weight_decay: float = 0.0
    """Decoupled (AdamW) weight decay, at least 0."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm to this value; 0.0 disables clipping."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite(self, "learning_rate", "beta1", "beta2", "eps", "weight_decay", "grad_clip_norm")
        for name in ("learning_rate", "eps", "weight_decay"):
            if getattr(self, name) < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}")
        _unit_interval("beta1", self.beta1)
        _unit_interval("beta2", self.beta2)


class DimuonParams(RequestStruct, kw_only=True, frozen=True, tag_field="type", tag="dimuon"):
    """Hyperparameters of one Dimuon step (``type`` reads ``"dimuon"``).

    Raises:
        InvalidInputError: a value is not a finite number, or out of range.
    """

    learning_rate: float
    """Step size, at least 0."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm to this value; 0 or less disables clipping."""
    beta1: float = 0.9
    """Momentum EMA coefficient, in [0, 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _finite(self, "learning_rate", "grad_clip_norm", "beta1")
        if self.learning_rate < 0:
            raise InvalidInputError(f"learning_rate must be >= 0, got {self.learning_rate}")
        _unit_interval("beta1", self.beta1)


OptimizerParams: TypeAlias = DimuonParams
"""Per-step hyperparameters of the non-Adam families, tagged on ``type``."""

OptimParams: TypeAlias = AdamParams | OptimizerParams
"""Per-step hyperparameters of any family: what ``TrainingClient.optim_step`` takes."""
