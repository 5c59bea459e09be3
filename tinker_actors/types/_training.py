"""Training-model requests and results: creation, info, optimizer steps, saving and loading.

Every training operation except ``get_info`` and ``copy_weights`` is answered with a future
(protocol §6) whose result is one of the ``*Response`` types here. The optimizer is chosen once,
at model creation (:class:`OptimizerConfig`), and its per-step hyperparameters travel with each
optimizer step, under ``adam_params`` for Adam and ``optimizer_params`` for any other family::

    >>> import msgspec
    >>> msgspec.json.encode(OptimStepRequest.for_params("m", AdamParams(), seq_id=3))
    b'{"model_id":"m","seq_id":3,"type":"optim_step","adam_params":{"learning_rate":0.0001,...}}'

:class:`OptimizerConfig` is open-ended on purpose: the server may report an optimizer family
this client does not know, and a response carrying one must still decode. It is therefore one
Struct whose ``type`` is any string (``adamw`` and ``dimuon`` are the known families), not a
closed msgspec tagged union, which would refuse unknown tags.
"""

from __future__ import annotations

import math
from typing import Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct
from tinker_actors.types._model_input import none_to_unset

__all__ = [
    "AdamParams",
    "CreateModelRequest",
    "CreateModelResponse",
    "DimuonParams",
    "GetInfoRequest",
    "GetInfoResponse",
    "LoraConfig",
    "ModelData",
    "OptimStepRequest",
    "OptimStepResponse",
    "OptimizerConfig",
    "OptimizerParams",
    "SamplingClientKind",
]

SamplingClientKind: TypeAlias = Literal["snapshot", "inflight"]
"""Which weights a sampler save publishes: a fixed ``snapshot`` (default), or the ``inflight``
target shared by all inflight samplers of the model and updated by later inflight saves."""

_MAX_AGE_RECIPIENTS = 10


# -- model configuration -------------------------------------------------------------------------


class LoraConfig(RequestStruct, kw_only=True, frozen=True):
    """Which layers get LoRA adapters, and their rank."""

    rank: int
    """LoRA rank (dimension of the low-rank matrices), at least 1."""
    seed: int | UnsetType | None = UNSET
    """Seed for initialising the LoRA weights, for reproducible runs."""
    train_unembed: bool = True
    """Add LoRA to the unembedding layer."""
    train_mlp: bool = True
    """Add LoRA to the MLP layers (including MoE layers)."""
    train_attn: bool = True
    """Add LoRA to the attention layers."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.rank, int) and self.rank < 1:
            raise InvalidInputError(f"LoRA rank must be at least 1, got {self.rank}")


class OptimizerConfig(msgspec.Struct, kw_only=True, frozen=True):
    """The optimizer family of a training model, fixed for the model's lifetime.

    Known families: ``adamw`` (the default) and ``dimuon`` (with ``version`` 1). Unknown
    families decode too (their extra fields are dropped), so an older client can still read
    info about a model created by a newer one.
    """

    type: str = "adamw"
    """The family: ``adamw``, ``dimuon`` or one this client does not know."""
    version: int | UnsetType | None = UNSET
    """The family's version, where it has one (``dimuon``: 1)."""

    def __post_init__(self) -> None:
        none_to_unset(self, "version")

    @classmethod
    def adamw(cls) -> OptimizerConfig:
        """Select AdamW (decoupled weight decay); per-step values go in :class:`AdamParams`."""
        return cls(type="adamw")

    @classmethod
    def dimuon(cls) -> OptimizerConfig:
        """Select Dimuon; per-step values go in :class:`DimuonParams`."""
        return cls(type="dimuon", version=1)


class AdamParams(RequestStruct, kw_only=True, frozen=True):
    """Hyperparameters of one AdamW step."""

    learning_rate: float = 0.0001
    """Step size."""
    beta1: float = 0.9
    """Decay of the running average of the gradient."""
    beta2: float = 0.95
    """Decay of the running average of the squared gradient."""
    eps: float = 1e-12
    """Added to the denominator for numerical stability."""
    weight_decay: float = 0.0
    """Decoupled (AdamW) weight decay."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm to this value; 0.0 disables clipping."""


class DimuonParams(RequestStruct, kw_only=True, frozen=True, tag_field="type", tag="dimuon"):
    """Hyperparameters of one Dimuon step."""

    learning_rate: float
    """Step size, at least 0."""
    grad_clip_norm: float = 0.0
    """Clip the global gradient norm to this value; 0 or less disables clipping."""
    beta1: float = 0.9
    """Momentum EMA coefficient, in [0, 1)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        values = (self.learning_rate, self.grad_clip_norm, self.beta1)
        if not all(math.isfinite(v) for v in values):
            raise InvalidInputError(f"Dimuon parameters must be finite numbers, got {values}")
        if self.learning_rate < 0:
            raise InvalidInputError(f"learning_rate must be >= 0, got {self.learning_rate}")
        if not 0 <= self.beta1 < 1:
            raise InvalidInputError(f"beta1 must be in [0, 1), got {self.beta1}")


OptimizerParams: TypeAlias = DimuonParams
"""Per-step hyperparameters of the non-Adam families, tagged on ``type``."""


# -- creation and info ---------------------------------------------------------------------------


class CreateModelRequest(RequestStruct, kw_only=True, frozen=True):
    """Create a training model (``POST /api/v1/create_model``); its result is
    :class:`CreateModelResponse`."""

    session_id: str
    model_seq_id: int
    """Per-session counter of training models, starting at 0."""
    base_model: str
    """The base model to fine-tune, e.g. ``Qwen/Qwen3-8B``."""
    user_metadata: dict[str, Any] | UnsetType | None = UNSET
    """Metadata about the training run, set by the user."""
    lora_config: LoraConfig | UnsetType | None = UNSET
    """LoRA configuration; unset for a full fine-tune where the server allows it."""
    optimizer_config: OptimizerConfig = OptimizerConfig()
    """The optimizer family for the model's lifetime; always sent."""
    type: Literal["create_model"] = "create_model"


class CreateModelResponse(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="create_model"
):
    """A new training model."""

    model_id: str
    """The model's id, also its training run id."""


class GetInfoRequest(RequestStruct, kw_only=True, frozen=True):
    """Ask about a training model (``POST /api/v1/get_info``, answered directly)."""

    model_id: str
    type: Literal["get_info"] = "get_info"


class ModelData(ResponseStruct, kw_only=True, frozen=True):
    """A model's architecture and tokenizer."""

    arch: str | None = None
    """The architecture identifier."""
    model_name: str | None = None
    """The human-readable model name."""
    tokenizer_id: str | None = None
    """The tokenizer to load; the client uses the part before the first ``:``."""


class GetInfoResponse(ResponseStruct, kw_only=True, frozen=True):
    """What a training model is."""

    type: Literal["get_info"] | None = "get_info"
    """Always ``get_info`` when sent; older servers may send null or leave it out."""

    model_data: ModelData
    """Architecture and tokenizer."""
    model_id: str
    """The model's id."""
    optimizer_config: OptimizerConfig = OptimizerConfig()
    """The model's optimizer family."""
    is_lora: bool | None = None
    """Whether the model trains LoRA adapters."""
    lora_rank: int | None = None
    """The LoRA rank, for LoRA models."""
    model_name: str | None = None
    """The base model's name."""


# -- optimizer step ------------------------------------------------------------------------------


class OptimStepRequest(RequestStruct, kw_only=True, frozen=True):
    """Apply the accumulated gradients (``POST /api/v1/optim_step``).

    Exactly one of ``adam_params`` (Adam) and ``optimizer_params`` (any other family) is set;
    :meth:`for_params` picks the right one.
    """

    model_id: str
    seq_id: int | UnsetType | None = UNSET
    """The model's request order number (protocol §8.4)."""
    type: Literal["optim_step"] = "optim_step"
    adam_params: AdamParams | UnsetType | None = UNSET
    """Adam hyperparameters for this step."""
    optimizer_params: OptimizerParams | UnsetType | None = UNSET
    """Hyperparameters of a non-Adam family for this step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.adam_params is UNSET) == (self.optimizer_params is UNSET):
            raise InvalidInputError(
                "an optimizer step needs exactly one of adam_params (AdamParams) and "
                "optimizer_params (e.g. DimuonParams); use OptimStepRequest.for_params"
            )

    @classmethod
    def for_params(
        cls, model_id: str, params: AdamParams | OptimizerParams, seq_id: int | None = None
    ) -> OptimStepRequest:
        """Build a step request, putting ``params`` under the field its family uses."""
        if isinstance(params, AdamParams):
            return cls(model_id=model_id, seq_id=seq_id, adam_params=params)
        return cls(model_id=model_id, seq_id=seq_id, optimizer_params=params)

    @property
    def params(self) -> AdamParams | OptimizerParams:
        """The step's hyperparameters, whichever field holds them."""
        if isinstance(self.adam_params, AdamParams):
            return self.adam_params
        assert isinstance(self.optimizer_params, DimuonParams)  # __post_init__ guarantees one
        return self.optimizer_params


class OptimStepResponse(ResponseStruct, kw_only=True, frozen=True):
    """The result of an optimizer step."""

    metrics: dict[str, float] | None = None
    """Step metrics by name (e.g. gradient norm)."""
