"""Bootstrap and service-level bodies: feature flags, capabilities, health.

A client asks ``POST /api/v1/client/config`` once per holder for the server's feature flags
(:class:`ClientConfigResponse`) and ``POST /api/v1/client/dynamic_config`` periodically for the
flags that may change while it runs (:class:`ClientDynamicConfigResponse`). Both responses are
defaults-first: a server that sends ``{}`` selects the documented defaults, and flags the client
does not know are ignored::

    >>> import msgspec
    >>> msgspec.json.decode(b'{"pjwt_auth_enabled": true, "new_flag": 1}', type=ClientConfigResponse)
    ... # doctest: +ELLIPSIS
    ClientConfigResponse(pjwt_auth_enabled=True, credential_default_source='api_key', ...)
"""

from __future__ import annotations

from typing import Literal

from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = [
    "ClientConfigRequest",
    "ClientConfigResponse",
    "ClientDynamicConfigRequest",
    "ClientDynamicConfigResponse",
    "GetServerCapabilitiesResponse",
    "HealthResponse",
    "SupportedModel",
]


class ClientConfigRequest(RequestStruct, frozen=True, kw_only=True):
    """Ask for the feature flags resolved for this caller and SDK version."""

    sdk_version: str
    """The SDK version string the server resolves flags for."""


class ClientDynamicConfigRequest(RequestStruct, frozen=True, kw_only=True):
    """Ask for the flags a live client refreshes periodically."""

    sdk_version: str
    """The SDK version string the server resolves flags for."""


class ClientConfigResponse(ResponseStruct, frozen=True, kw_only=True):
    """Server-side feature flags, fetched once when a client holder starts (protocol §2.1)."""

    pjwt_auth_enabled: bool = False
    """Exchange the credential for a JWT at ``/api/v1/auth/token`` and send that instead."""
    credential_default_source: str = "api_key"
    """Where the raw credential for the exchange comes from: ``api_key`` or ``credential_cmd``."""
    sample_dispatch_bytes_semaphore_size: int = 10 * 1024 * 1024
    """Bytes of sample submissions that may be in flight at once."""
    inflight_response_bytes_semaphore_size: int = 50 * 1024 * 1024
    """Bytes of large result payloads that may be fetched at once."""
    parallel_fwdbwd_chunks: bool = True
    """Submit the chunks of one forward/forward_backward call concurrently."""
    proto_compress_fwdbwd: bool = False
    """zstd-compress the protobuf forward_backward body (``Content-Encoding: zstd``)."""
    fwdbwd_max_chunk_len: int = 1024
    """Maximum number of datums per forward_backward request."""
    fwdbwd_max_chunk_bytes_count: int = 5_000_000
    """Maximum estimated serialised bytes (before compression) per forward_backward request."""
    fwdbwd_dispatch_bytes_semaphore_size: int = 50_000_000
    """Estimated forward_backward bytes that may be dispatched at once."""
    billing_exception_max_pause_duration_sec: int = 3600
    """Seconds to keep pausing and retrying after HTTP 402 before giving up."""
    sample_no_retries: bool = False
    """Disable retries of sampling requests."""
    sample_enable_stuck_detection: bool = True
    """Fail sampling with a connection error when no request makes progress for a long time."""
    sample_max_concurrent_requests: int = 2000
    """Maximum in-flight sampling requests per sampling client."""
    use_pyqwest_transport: bool = True
    """The official SDK's transport choice; read for completeness, unused by tinker_actors."""
    sample_use_retrieve_futures: bool = False
    """Wait for sample completions through batched ``/api/v1/retrieve_futures`` long polls."""
    custom_loss_server_side: bool = False
    """Upload traced custom losses and run them on the server by loss id."""
    sample_join_sampling_session: bool = False
    """Get a clone id from ``/api/v1/join_sampling_session`` instead of picking one at random."""


class ClientDynamicConfigResponse(ResponseStruct, frozen=True, kw_only=True):
    """Server-side flags a live client re-fetches periodically (protocol §2.2)."""

    refresh_interval_sec: int = 300
    """Seconds between refreshes (clients never refresh more often than every 10 s)."""
    sample_cancel_enabled: bool = False
    """Send ``/api/v1/cancel_future`` for abandoned sampling requests."""
    sample_cancel_max_batch_size: int = 64
    """How many queued cancellations are sent concurrently per drain round."""


class SupportedModel(ResponseStruct, frozen=True, kw_only=True):
    """A model the server offers."""

    model_name: str | None = None
    """The model's name, e.g. ``Qwen/Qwen3-8B``."""
    max_context_length: int | None = None
    """The longest context, in tokens, the model accepts."""
    trainable: bool | None = None
    """Whether training runs can be created on this model."""
    sampleable: bool | None = None
    """Whether this model currently has sampling capacity."""


class GetServerCapabilitiesResponse(ResponseStruct, frozen=True, kw_only=True):
    """The models the server supports."""

    supported_models: list[SupportedModel]
    """Every model available on the server."""


class HealthResponse(ResponseStruct, frozen=True, kw_only=True):
    """The body of ``GET /api/v1/healthz``."""

    status: Literal["ok"]
    """Always ``ok`` when the server answers."""
