"""Telemetry batches (``POST /api/v1/telemetry``): what the client reports about itself.

A batch carries up to 100 events of one session and process. Events form a tagged union on
their ``event`` field::

    >>> import msgspec, datetime
    >>> ev = GenericEvent(event_id="e1", event_session_index=0, severity="INFO",
    ...                   timestamp=datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC),
    ...                   event_name="user_error")
    >>> msgspec.json.encode(ev)[:40]
    b'{"event":"GENERIC_EVENT","event_id":"e1"'

``SESSION_END.duration`` is Python's ``str(timedelta)`` (e.g. ``"0:00:05.500000"``), not ISO
8601, whatever the official docs say.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = [
    "EventType",
    "GenericEvent",
    "SessionEndEvent",
    "SessionStartEvent",
    "Severity",
    "TelemetryBatch",
    "TelemetryEvent",
    "TelemetryResponse",
    "TelemetrySendRequest",
    "UnhandledExceptionEvent",
]

EventType: TypeAlias = Literal[
    "SESSION_START", "SESSION_END", "UNHANDLED_EXCEPTION", "GENERIC_EVENT"
]
"""The telemetry event kinds (the ``event`` tag)."""

Severity: TypeAlias = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
"""Log severity of an event."""


class SessionStartEvent(
    RequestStruct, kw_only=True, frozen=True, tag_field="event", tag="SESSION_START"
):
    """A session started."""

    event_id: str
    """A fresh UUID4."""
    event_session_index: int
    """0, 1, 2, ... per session."""
    severity: Severity
    timestamp: datetime


class SessionEndEvent(
    RequestStruct, kw_only=True, frozen=True, tag_field="event", tag="SESSION_END"
):
    """A session ended (sent only together with a fatal exception)."""

    event_id: str
    event_session_index: int
    severity: Severity
    timestamp: datetime
    duration: str
    """The session's age as ``str(timedelta)``, e.g. ``0:00:05.500000``."""


class UnhandledExceptionEvent(
    RequestStruct, kw_only=True, frozen=True, tag_field="event", tag="UNHANDLED_EXCEPTION"
):
    """An exception escaped a public call."""

    event_id: str
    event_session_index: int
    severity: Severity
    timestamp: datetime
    error_type: str
    """The exception's class name."""
    error_message: str
    traceback: str | UnsetType | None = UNSET
    """The formatted traceback, when available."""


class GenericEvent(
    RequestStruct, kw_only=True, frozen=True, tag_field="event", tag="GENERIC_EVENT"
):
    """A named event with structured data (e.g. ``user_error``)."""

    event_id: str
    event_session_index: int
    severity: Severity
    timestamp: datetime
    event_name: str
    """Low-cardinality name, e.g. ``RetryHandler.execute.exception``."""
    event_data: dict[str, Any] = msgspec.field(default_factory=dict)
    """Arbitrary JSON payload."""


TelemetryEvent: TypeAlias = (
    SessionStartEvent | SessionEndEvent | UnhandledExceptionEvent | GenericEvent
)
"""One telemetry event, tagged on ``event``."""


class TelemetrySendRequest(RequestStruct, kw_only=True, frozen=True):
    """A batch of telemetry events (at most 100 per request)."""

    events: list[TelemetryEvent]
    platform: str
    """``platform.system()``, e.g. ``Linux``."""
    sdk_version: str
    session_id: str
    """The session, or ``sessionless-<uuid4>`` for session-less clients."""
    process_uuid: str
    """A UUID4 per OS process (regenerated after fork), shared by all its sessions."""


class TelemetryBatch(ResponseStruct, kw_only=True, frozen=True):
    """A batch of telemetry events as the client assembles it (0.38's model of the body that
    :class:`TelemetrySendRequest` sends)."""

    events: list[TelemetryEvent]
    platform: str
    """Host platform name, e.g. ``Linux``."""
    sdk_version: str
    session_id: str
    process_uuid: str
    """A UUID identifying the client process, shared by all its sessions."""


class TelemetryResponse(ResponseStruct, kw_only=True, frozen=True):
    """The batch was accepted."""

    status: Literal["accepted"]
