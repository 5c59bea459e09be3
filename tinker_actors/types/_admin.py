"""Organisation-level reads: audit log, billing usage, checkpoint storage, identity.

Billing usage comes in hourly buckets; what each bucket measured is a tagged union on
``event_info.type`` (training tokens, prefill tokens, sampled tokens, checkpoint operations,
storage). Costs are gross estimates in US dollars before credits, not amounts due.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = [
    "AuditLogEntry",
    "AuditLogResponse",
    "BillingEventInfo",
    "BillingUsageEvent",
    "BillingUsageResponse",
    "BillingUsageSession",
    "CheckpointBillingEvent",
    "CurrentCheckpointStorageUsageItem",
    "CurrentCheckpointStorageUsageResponse",
    "GetBillingUsageRequest",
    "GetCurrentCheckpointStorageUsageRequest",
    "SamplingPrefillBillingEvent",
    "SamplingSampleBillingEvent",
    "StorageBillingEvent",
    "TrainingBillingEvent",
    "WhoamiResponse",
]


class AuditLogEntry(ResponseStruct, kw_only=True, frozen=True):
    """One audited event."""

    timestamp: datetime
    """When it happened."""
    event: str
    """``<resource>_<action>``, e.g. ``checkpoint_read``."""
    event_details: dict[str, Any] = msgspec.field(default_factory=dict)
    """Who did it, to what, and whatever else the event records."""
    model_id: str | None = None
    """Deprecated: read ``event_details``."""
    tinker_path: str | None = None
    """Deprecated: read ``event_details``."""
    purpose: str | None = None
    """Deprecated: read ``event_details``."""


class AuditLogResponse(ResponseStruct, kw_only=True, frozen=True):
    """One UTC day of the audit log."""

    entries: list[AuditLogEntry]
    """Entries sorted by timestamp."""


class TrainingBillingEvent(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="training"
):
    """Training tokens processed by forward/backward passes."""

    token_count: int


class SamplingPrefillBillingEvent(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="sampling_prefill"
):
    """Prompt (prefill) tokens processed while sampling."""

    cached: bool
    """Served from the prefix cache (billed at the cached rate)."""
    token_count: int


class SamplingSampleBillingEvent(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="sampling_sample"
):
    """Tokens generated while sampling."""

    token_count: int


class CheckpointBillingEvent(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="checkpoint"
):
    """Checkpoint operations, billed per checkpoint."""

    count: int


class StorageBillingEvent(
    ResponseStruct, kw_only=True, frozen=True, tag_field="type", tag="storage"
):
    """Checkpoint storage."""

    free: bool = False
    """Free (not billed) storage."""
    gigabyte_hours: float
    """Storage quantity in GB-hours."""


BillingEventInfo: TypeAlias = (
    TrainingBillingEvent
    | SamplingPrefillBillingEvent
    | SamplingSampleBillingEvent
    | CheckpointBillingEvent
    | StorageBillingEvent
)
"""What a billing bucket measured, tagged on ``type``."""


class BillingUsageEvent(ResponseStruct, kw_only=True, frozen=True):
    """One hourly bucket of usage."""

    bucket_start: datetime
    """Inclusive start of the UTC hour."""
    bucket_end: datetime
    """Exclusive end of the UTC hour."""
    base_model: str | None = None
    user_id: str | None = None
    """Organisation-user URN of the session's creator."""
    user_name: str | None = None
    session_id: str | None = None
    """The session the usage is attributed to (see ``BillingUsageResponse.sessions``)."""
    project_id: str | None = None
    estimated_cost_usd: float | None = None
    """Estimated gross cost in USD before credits; None when it cannot be priced yet."""
    effective_rate_usd_per_million_tokens: float | None = None
    """USD per million tokens behind ``estimated_cost_usd``, for token events."""
    effective_rate_usd_per_gigabyte_month: float | None = None
    """USD per GB-month (720 GB-hours) behind ``estimated_cost_usd``, for storage events."""
    event_info: BillingEventInfo
    """The usage kind and its quantity."""


class BillingUsageSession(ResponseStruct, kw_only=True, frozen=True):
    """A session that appears in billing data."""

    user_metadata: dict[str, str] | None = None
    """The session's user metadata."""


class BillingUsageResponse(ResponseStruct, kw_only=True, frozen=True):
    """Usage over a window of at most 14 days."""

    data: list[BillingUsageEvent]
    """Hourly events, by bucket then descending token count."""
    sessions: dict[str, BillingUsageSession] = msgspec.field(default_factory=dict)
    """Attributes of every session appearing in ``data``."""
    cost_data_through: datetime | None = None
    """Estimates before this instant are invoice-derived, after it rate-card based."""


class CurrentCheckpointStorageUsageItem(ResponseStruct, kw_only=True, frozen=True):
    """Active checkpoint storage of one project and session owner."""

    project_id: str | None = None
    org_user_urn: str | None = None
    user_email: str | None = None
    user_name: str | None = None
    checkpoint_count: int
    """Number of active checkpoints."""
    size_bytes: int
    """Stored bytes."""
    size_gigabytes: float
    """Stored size in the billing unit."""
    estimated_monthly_cost_usd: float | None = None
    """Projected gross 720-hour cost at the current rate."""


class CurrentCheckpointStorageUsageResponse(ResponseStruct, kw_only=True, frozen=True):
    """Current checkpoint storage (may lag by 1-2 hours)."""

    effective_rate_usd_per_gigabyte_month: float | None = None
    """The current gross storage rate."""
    data: list[CurrentCheckpointStorageUsageItem]


class GetBillingUsageRequest(RequestStruct, kw_only=True, frozen=True):
    """The query of ``GET /api/v1/billing/usage/events`` (sent as query parameters).

    The service wants both bounds aligned to a UTC hour, the start not in the future and the
    end at most 14 days after it.

    Raises:
        InvalidInputError: a bound is neither a datetime nor an ISO 8601 / RFC 3339 string.
    """

    starting_on: datetime
    """Inclusive start of the window."""
    ending_before: datetime
    """Exclusive end of the window."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("starting_on", "ending_before"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError as exc:
                    raise InvalidInputError(
                        f"{name} must be a datetime or an RFC 3339 string, got {value!r}"
                    ) from exc
                msgspec.structs.force_setattr(self, name, value)
            elif not isinstance(value, datetime):
                raise InvalidInputError(
                    f"{name} must be a datetime or an RFC 3339 string, got {type(value).__name__}"
                )


class GetCurrentCheckpointStorageUsageRequest(RequestStruct, kw_only=True, frozen=True):
    """The query of ``GET /api/v1/billing/usage/checkpoints/current``: the whole organisation,
    or one project."""

    project_id: str | UnsetType | None = UNSET
    """Only this project's checkpoints; unset for the entire organisation."""


class WhoamiResponse(ResponseStruct, kw_only=True, frozen=True):
    """Who the credential belongs to (built client-side from JWT claims)."""

    user_urn: str
    """URN of the calling principal."""
    org_urn: str
    """URN of the organisation the credential acts in."""
    email: str | None = None
    """The user's email, for user-backed principals."""
