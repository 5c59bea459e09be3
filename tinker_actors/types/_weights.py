"""Checkpoint requests of a training model: save, load, copy and describe weights.

Saving comes in three kinds (protocol.md §4.6): ``save_weights`` (resumable state, weights and
optimizer, ``tinker://<run>/weights/<name>``), ``save_weights_for_sampler`` (sampler weights,
named or bound to an ephemeral sampling session) and ``save_weights_external`` (a downloadable
export). Loading addresses an existing model (``model_id`` + ``seq_id``) or creates one from
the checkpoint (``session_id`` + ``model_seq_id``). Validation happens at construction, so bad
requests fail before anything is sent.
"""

from __future__ import annotations

from typing import Any, Literal

from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct
from tinker_actors.types._checkpoints import checkpoint_console_url, checkpoint_playground_url
from tinker_actors.types._optimizer import (
    AdamOptimizerConfig,
    OptimizerConfig,
    known_optimizer_field,
)
from tinker_actors.types._training import SamplingClientKind
from tinker_actors.types._ttl import check_ttl_seconds

__all__ = [
    "CopyWeightsRequest",
    "CopyWeightsResponse",
    "LoadWeightsRequest",
    "LoadWeightsResponse",
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

_MAX_AGE_RECIPIENTS = 10


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

    def get_console_url(self) -> str:
        """Return the Tinker console page of this checkpoint.

        Raises:
            InvalidInputError: ``path`` is not a tinker:// checkpoint path.
        """
        return checkpoint_console_url(self.path)


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
        if self.path is None and self.sampling_session_seq_id is None:
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

    def get_console_url(self) -> str:
        """Return the Tinker console page of this sampler checkpoint.

        Raises:
            InvalidInputError: ``path`` is not a tinker:// checkpoint path.
        """
        return checkpoint_console_url(self.path)

    def get_playground_url(self) -> str:
        """Return a Tinker playground URL that samples from this checkpoint."""
        return checkpoint_playground_url(self.path)


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
        known_optimizer_field(self)
        legacy = (self.model_id is not None, self.seq_id is not None)
        via_load = (self.session_id is not None, self.model_seq_id is not None)
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
        if all(legacy) and (self.base_model is not None or self.user_metadata is not None):
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
        if (self.session_id is None) != (self.model_seq_id is None):
            raise InvalidInputError("session_id and model_seq_id must be given together")
        if self.session_id is None and self.destination_project_id is None:
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
    optimizer_config: OptimizerConfig = AdamOptimizerConfig()
    """The optimizer family the weights were trained with."""
    is_lora: bool
    """Whether the checkpoint holds LoRA adapters."""
    lora_rank: int | None = None
    train_unembed: bool | None = None
    train_mlp: bool | None = None
    train_attn: bool | None = None

    def __post_init__(self) -> None:
        known_optimizer_field(self)


class UnloadModelRequest(RequestStruct, kw_only=True, frozen=True):
    """Unload a training model (legacy endpoint; no caller in 0.38)."""

    model_id: str
    type: Literal["unload_model"] = "unload_model"


class UnloadModelResponse(ResponseStruct, kw_only=True, frozen=True):
    """An unloaded model."""

    model_id: str
    type: Literal["unload_model"] | None = "unload_model"
    """Always ``unload_model`` when sent; older servers may send null or leave it out."""
