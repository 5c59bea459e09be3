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
from tinker_actors.types._ttl import check_ttl_seconds

__all__ = [
    "AdamParams",
    "CopyWeightsRequest",
    "CopyWeightsResponse",
    "CreateModelRequest",
    "CreateModelResponse",
    "DimuonParams",
    "GetInfoRequest",
    "GetInfoResponse",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
    "LoraConfig",
    "ModelData",
    "OptimStepRequest",
    "OptimStepResponse",
    "OptimizerConfig",
    "OptimizerParams",
    "SamplingClientKind",
    "SaveWeightsExternalRequest",
    "SaveWeightsExternalResponse",
    "SaveWeightsExternalResponseInternal",
    "SaveWeightsForSamplerRequest",
    "SaveWeightsForSamplerResponse",
    "SaveWeightsForSamplerResponseInternal",
    "SaveWeightsRequest",
    "SaveWeightsResponse",
    "UnloadModelRequest",
    "UnloadModelResponse",
    "WeightsInfoRequest",
    "WeightsInfoResponse",
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


# -- saving --------------------------------------------------------------------------------------


class SaveWeightsRequest(RequestStruct, kw_only=True, frozen=True):
    """Save a resumable training checkpoint (weights and optimizer state)."""

    model_id: str
    path: str | UnsetType | None = UNSET
    """The checkpoint name; the result is ``tinker://<run>/weights/<name>``."""
    seq_id: int | UnsetType | None = UNSET
    ttl_seconds: int | UnsetType | None = UNSET
    """Lifetime in seconds, 1 hour to 10 years; unset keeps it forever."""
    overwrite: bool = False
    """Replace an existing checkpoint of the same name."""
    user_metadata: dict[str, str] | UnsetType | None = UNSET
    """Metadata to attach to the checkpoint."""
    type: Literal["save_weights"] = "save_weights"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ttl_seconds(self.ttl_seconds)


class SaveWeightsResponse(ResponseStruct, kw_only=True, frozen=True):
    """A saved training checkpoint."""

    path: str
    """Its ``tinker://`` path."""
    type: Literal["save_weights"] | None = "save_weights"
    """Always ``save_weights`` when sent; older servers may send null or leave it out."""


class SaveWeightsForSamplerRequest(RequestStruct, kw_only=True, frozen=True):
    """Save weights for sampling, named (``path``) or ephemeral (``sampling_session_seq_id``)."""

    model_id: str
    path: str | UnsetType | None = UNSET
    """Name of a durable sampler checkpoint (``tinker://<run>/sampler_weights/<name>``)."""
    sampling_session_seq_id: int | UnsetType | None = UNSET
    """For an ephemeral save: the per-session sampling-session counter; the result is a new
    sampling session bound to these weights."""
    kind: SamplingClientKind = "snapshot"
    """``snapshot`` (fixed weights) or ``inflight`` (the model's shared mutable target)."""
    seq_id: int | UnsetType | None = UNSET
    ttl_seconds: int | UnsetType | None = UNSET
    """Lifetime in seconds, 1 hour to 10 years; unset keeps it forever."""
    user_metadata: dict[str, str] | UnsetType | None = UNSET
    type: Literal["save_weights_for_sampler"] = "save_weights_for_sampler"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path is UNSET and self.sampling_session_seq_id is UNSET:
            raise InvalidInputError(
                "save_weights_for_sampler needs path (a named checkpoint) or "
                "sampling_session_seq_id (an ephemeral sampling session); neither was given"
            )
        check_ttl_seconds(self.ttl_seconds)


class SaveWeightsForSamplerResponseInternal(ResponseStruct, kw_only=True, frozen=True):
    """The wire result of a sampler save: a path (named) or a sampling session (ephemeral)."""

    path: str | None = None
    """The ``tinker://`` path of a named save."""
    sampling_session_id: str | None = None
    """The sampling session created by an ephemeral save."""
    type: Literal["save_weights_for_sampler"] | None = "save_weights_for_sampler"
    """Always ``save_weights_for_sampler`` when sent; older servers may send null or leave it out."""


class SaveWeightsForSamplerResponse(ResponseStruct, kw_only=True, frozen=True):
    """A named sampler checkpoint."""

    path: str
    """Its ``tinker://`` path."""
    type: Literal["save_weights_for_sampler"] | None = "save_weights_for_sampler"
    """Always ``save_weights_for_sampler`` when sent; older servers may send null or leave it out."""


class SaveWeightsExternalRequest(RequestStruct, kw_only=True, frozen=True):
    """Export weights in an external format that can be downloaded."""

    model_id: str
    path: str
    """The export's name; the result is ``tinker://<run>/external_weights/<name>``."""
    seq_id: int | UnsetType | None = UNSET
    ttl_seconds: int | UnsetType | None = UNSET
    """Lifetime in seconds, 1 hour to 10 years; unset keeps it forever."""
    age_encryption_recipients: list[str] | UnsetType | None = UNSET
    """Up to 10 age or SSH public keys to encrypt every file to (files get a ``.age`` suffix)."""
    type: Literal["save_weights_external"] = "save_weights_external"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ttl_seconds(self.ttl_seconds)
        recipients = self.age_encryption_recipients
        if isinstance(recipients, list) and not 1 <= len(recipients) <= _MAX_AGE_RECIPIENTS:
            raise InvalidInputError(
                f"age_encryption_recipients must list 1 to {_MAX_AGE_RECIPIENTS} keys, got "
                f"{len(recipients)}; leave it unset for unencrypted files"
            )


class SaveWeightsExternalResponseInternal(ResponseStruct, kw_only=True, frozen=True):
    """The wire result of an external export."""

    path: str | None = None
    """The export's ``tinker://`` path."""
    size_bytes: int | None = None
    """Total size of the exported files, in bytes."""
    type: Literal["save_weights_external"] | None = "save_weights_external"
    """Always ``save_weights_external`` when sent; older servers may send null or leave it out."""


class SaveWeightsExternalResponse(ResponseStruct, kw_only=True, frozen=True):
    """An external-format export."""

    path: str
    """Its ``tinker://`` path."""
    type: Literal["save_weights_external"] | None = "save_weights_external"
    """Always ``save_weights_external`` when sent; older servers may send null or leave it out."""


# -- loading and copying -------------------------------------------------------------------------


class LoadWeightsRequest(RequestStruct, kw_only=True, frozen=True):
    """Load a checkpoint, into an existing model or as a new model's first request.

    Two addressing modes, exactly one of which is used:

    * legacy: ``model_id`` + ``seq_id``, a load ordered like any training operation;
    * create-via-load: ``session_id`` + ``model_seq_id``; the load creates the model (its
      LoRA configuration comes from the checkpoint), optionally with ``base_model`` and
      ``user_metadata``.
    """

    model_id: str | UnsetType | None = UNSET
    seq_id: int | UnsetType | None = UNSET
    session_id: str | UnsetType | None = UNSET
    model_seq_id: int | UnsetType | None = UNSET
    base_model: str | UnsetType | None = UNSET
    """Create-via-load only: a compatible base model override."""
    user_metadata: dict[str, Any] | UnsetType | None = UNSET
    """Create-via-load only: metadata about the new training run."""
    path: str
    """The checkpoint's ``tinker://`` path."""
    optimizer: bool
    """Also restore the optimizer state."""
    optimizer_config: OptimizerConfig | UnsetType | None = UNSET
    """Optimizer family for a weights-only load into a new model (AdamW when unset)."""
    weights_access_token: str | UnsetType | None = UNSET
    """Token for loading a checkpoint owned by another account."""
    type: Literal["load_weights"] = "load_weights"

    def __post_init__(self) -> None:
        super().__post_init__()
        legacy = (self.model_id is not UNSET, self.seq_id is not UNSET)
        via_load = (self.session_id is not UNSET, self.model_seq_id is not UNSET)
        if any(legacy) and any(via_load):
            raise InvalidInputError(
                "load_weights takes either model_id + seq_id (load into an existing model) or "
                "session_id + model_seq_id (create a model from the checkpoint), not both"
            )
        if not (all(legacy) or all(via_load)):
            raise InvalidInputError(
                "load_weights needs both model_id and seq_id (load into an existing model), or "
                "both session_id and model_seq_id (create a model from the checkpoint)"
            )
        if all(legacy) and (self.base_model is not UNSET or self.user_metadata is not UNSET):
            raise InvalidInputError(
                "base_model and user_metadata only apply when creating a model from the "
                "checkpoint (session_id + model_seq_id)"
            )
        if not self.path.startswith("tinker://"):
            raise InvalidInputError(
                f"path must be a tinker:// checkpoint path, got {self.path!r}; use the path "
                "returned by save_state or listed by the REST client"
            )


class LoadWeightsResponse(ResponseStruct, kw_only=True, frozen=True):
    """A completed load."""

    path: str | None = None
    """The loaded checkpoint's ``tinker://`` path."""
    model_id: str | None = None
    """The id of the model the weights were loaded onto."""
    type: Literal["load_weights"] | None = "load_weights"
    """Always ``load_weights`` when sent; older servers may send null or leave it out."""


class CopyWeightsRequest(RequestStruct, kw_only=True, frozen=True):
    """Copy a checkpoint into a new, non-trainable training run (shares storage with it).

    The copy belongs to ``session_id``'s project (with ``model_seq_id``), or else to
    ``destination_project_id``.
    """

    session_id: str | UnsetType | None = UNSET
    """Session that will own the copy; the copy inherits its project."""
    model_seq_id: int | UnsetType | None = UNSET
    """Training-run slot within that session."""
    destination_project_id: str | UnsetType | None = UNSET
    """Project that will own the copy when no session is given."""
    source_path: str
    """The ``tinker://`` path to copy; either checkpoint kind."""
    ttl_seconds: int | UnsetType | None = UNSET
    """Lifetime of the copy, 1 hour to 10 years; the source's expiry is not inherited."""
    weights_access_token: str | UnsetType | None = UNSET
    """Token for copying weights owned by another account (usually sent as a header instead)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.session_id is UNSET) != (self.model_seq_id is UNSET):
            raise InvalidInputError("session_id and model_seq_id must be given together")
        if self.session_id is UNSET and self.destination_project_id is UNSET:
            raise InvalidInputError(
                "copy_weights needs a destination: session_id + model_seq_id, or "
                "destination_project_id"
            )
        check_ttl_seconds(self.ttl_seconds)


class CopyWeightsResponse(ResponseStruct, kw_only=True, frozen=True):
    """A completed copy."""

    tinker_path: str
    """The copy's ``tinker://`` path."""


class WeightsInfoRequest(RequestStruct, kw_only=True, frozen=True):
    """Ask what a checkpoint needs in order to be loaded (``POST /api/v1/weights_info``)."""

    tinker_path: str


class WeightsInfoResponse(ResponseStruct, kw_only=True, frozen=True):
    """What a checkpoint needs in order to be loaded."""

    base_model: str
    """The base model the weights belong to."""
    optimizer_config: OptimizerConfig = OptimizerConfig()
    """The optimizer family the weights were trained with."""
    is_lora: bool
    """Whether the checkpoint holds LoRA adapters."""
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None


class UnloadModelRequest(RequestStruct, kw_only=True, frozen=True):
    """Unload a training model (legacy endpoint; no caller in 0.38)."""

    model_id: str
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(ResponseStruct, kw_only=True, frozen=True):
    """An unloaded model."""

    model_id: str
    type: Literal["unload_model"] | None = "unload_model"
    """Always ``unload_model`` when sent; older servers may send null or leave it out."""
