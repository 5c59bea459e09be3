"""Training-model requests and results: creation, info and optimizer steps.

Every training operation except ``get_info`` and ``copy_weights`` is answered with a future
(protocol §6) whose result is one of the ``*Response`` types here or in ``._weights``. The
optimizer is chosen once, at model creation (``optimizer_config``, see ``._optimizer``), and its
per-step hyperparameters travel with each optimizer step, under ``adam_params`` for Adam and
``optimizer_params`` for any other family::

    >>> import msgspec
    >>> msgspec.json.encode(OptimStepRequest.for_params("m", AdamParams(), seq_id=3))
    b'{"model_id":"m","seq_id":3,"type":"optim_step","adam_params":{"learning_rate":0.0001,...}}'
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct
from tinker_actors.types._optimizer import (
    AdamOptimizerConfig,
    AdamParams,
    DimuonParams,
    OptimizerConfig,
    OptimizerParams,
    OptimParams,
    known_optimizer_field,
)
from tinker_actors.types._values import as_int

__all__ = [
    "CreateModelRequest",
    "CreateModelResponse",
    "GetInfoRequest",
    "GetInfoResponse",
    "LoraConfig",
    "ModelData",
    "ModelID",
    "OptimStepRequest",
    "OptimStepResponse",
    "SamplingClientKind",
]

ModelID: TypeAlias = str
"""A training model's id (also its training run id)."""

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
        rank = as_int(self.rank, "LoRA rank", minimum=1)
        if type(self.rank) is not int:
            msgspec.structs.force_setattr(self, "rank", rank)
        if self.seed is not None:
            seed = as_int(self.seed, "LoRA seed")
            if type(self.seed) is not int:
                msgspec.structs.force_setattr(self, "seed", seed)
        for name in ("train_unembed", "train_mlp", "train_attn"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(
                    f"LoraConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )


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
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """The optimizer family for the model's lifetime; always sent."""
    type: Literal["create_model"] = "create_model"

    def __post_init__(self) -> None:
        super().__post_init__()
        known_optimizer_field(self)


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
    vocab_size: int | None = None
    """Token ids must be below this (an extension: the local server reports it; when it is
    absent the client does not check token ids against the vocabulary)."""
    max_context_length: int | None = None
    """The longest model input, in tokens (an extension, as ``vocab_size``)."""


class GetInfoResponse(ResponseStruct, kw_only=True, frozen=True):
    """What a training model is."""

    type: Literal["get_info"] | None = "get_info"
    """Always ``get_info`` when sent; older servers may send null or leave it out."""

    model_data: ModelData
    """Architecture and tokenizer."""
    model_id: str
    """The model's id."""
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """The model's optimizer family."""
    is_lora: bool | None = None
    """Whether the model trains LoRA adapters."""
    lora_rank: int | None = None
    """The LoRA rank, for LoRA models."""
    model_name: str | None = None
    """The base model's name."""

    def __post_init__(self) -> None:
        known_optimizer_field(self)


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
        if (self.adam_params is None) == (self.optimizer_params is None):
            raise InvalidInputError(
                "an optimizer step needs exactly one of adam_params (AdamParams) and "
                "optimizer_params (e.g. DimuonParams); use OptimStepRequest.for_params"
            )

    @classmethod
    def for_params(
        cls, model_id: str, params: OptimParams, seq_id: int | None = None
    ) -> OptimStepRequest:
        """Build a step request, putting ``params`` under the field its family uses."""
        if isinstance(params, AdamParams):
            return cls(model_id=model_id, seq_id=seq_id, adam_params=params)
        return cls(model_id=model_id, seq_id=seq_id, optimizer_params=params)

    @property
    def params(self) -> OptimParams:
        """The step's hyperparameters, whichever field holds them."""
        if isinstance(self.adam_params, AdamParams):
            return self.adam_params
        assert isinstance(self.optimizer_params, DimuonParams)  # __post_init__ guarantees one
        return self.optimizer_params

    @property
    def optim_params(self) -> OptimParams:
        """The step's hyperparameters: 0.38's name for :attr:`params`."""
        return self.params


class OptimStepResponse(ResponseStruct, kw_only=True, frozen=True):
    """The result of an optimizer step."""

    metrics: dict[str, float] | None = None
    """Step metrics by name (e.g. gradient norm)."""
