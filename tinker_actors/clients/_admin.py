"""AdminClient: the organization-admin REST calls, audit log and billing (protocol.md §3.6).

Like :class:`~tinker_actors.clients.RestClient` these are plain ``async`` request/response calls
that return the typed response::

    admin = AdminClient(runtime.transport)
    usage = await admin.get_current_checkpoint_storage_usage()

They need an admin or billing role on the organization; without one the service answers 403
(:class:`~tinker_actors.errors.PermissionDeniedError`). Arguments are checked before anything is
sent. RestClient keeps deprecated forwarders to these calls (0.25 had them there).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Final, Literal, final

from tinker_actors.clients._rest_base import RestBase, format_datetime, nonempty, rfc3339
from tinker_actors.errors import InvalidInputError
from tinker_actors.types import (
    AuditLogResponse,
    BillingUsageResponse,
    CurrentCheckpointStorageUsageResponse,
)

__all__ = ["AdminClient", "AuditEventType"]

AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]

_AUDIT_EVENT_TYPES: Final = ("all", "checkpoints", "projects", "teams", "organizations")


@final
class AdminClient(RestBase):
    """Organization-admin calls: audit log and billing (protocol.md §3.6).

    They need an admin or billing role; the service answers 403 otherwise
    (:class:`~tinker_actors.errors.PermissionDeniedError`).
    """

    __slots__ = ()

    async def get_audit_log(
        self, event_type: AuditEventType = "all", day: date | str | None = None
    ) -> AuditLogResponse:
        """Return one UTC day of the organization's audit log (default: today).

        Raises:
            InvalidInputError: unknown ``event_type``, or ``day`` not a date / ``YYYY-MM-DD``.
        """
        if event_type not in _AUDIT_EVENT_TYPES:
            raise InvalidInputError(
                f"event_type must be one of {', '.join(_AUDIT_EVENT_TYPES)}, got {event_type!r}"
            )
        params: dict[str, object] = {"event_type": event_type}
        if day is not None:
            params["day"] = self._day(day)
        return await self._get("/audit", "get_audit_log", AuditLogResponse, params)

    @staticmethod
    def _day(day: object) -> str:
        if isinstance(day, datetime):
            raise InvalidInputError("day must be a date (YYYY-MM-DD), not a datetime")
        if isinstance(day, date):
            return day.isoformat()
        if isinstance(day, str):
            try:
                return date.fromisoformat(day).isoformat()
            except ValueError:
                pass
        raise InvalidInputError(f"day must be a date or a 'YYYY-MM-DD' string, got {day!r}")

    async def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> BillingUsageResponse:
        """Return hourly usage buckets in ``[starting_on, ending_before)``.

        The service wants both bounds hour-aligned in UTC, at most 14 days apart, and the start
        not in the future; it answers 400 otherwise.

        Raises:
            InvalidInputError: a bound is not a datetime / RFC 3339 string, or the window is
                empty.
        """
        start = rfc3339("starting_on", starting_on)
        end = rfc3339("ending_before", ending_before)
        if (start.tzinfo is None) == (end.tzinfo is None) and not start < end:
            raise InvalidInputError(
                f"ending_before ({end.isoformat()}) must be after starting_on ({start.isoformat()})"
            )
        params = {"starting_on": format_datetime(start), "ending_before": format_datetime(end)}
        return await self._get(
            "/billing/usage/events", "get_billing_usage", BillingUsageResponse, params
        )

    async def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> CurrentCheckpointStorageUsageResponse:
        """Return current checkpoint storage per project and user (one project if given)."""
        params = {} if project_id is None else {"project_id": nonempty("project_id", project_id)}
        return await self._get(
            "/billing/usage/checkpoints/current",
            "get_current_checkpoint_storage_usage",
            CurrentCheckpointStorageUsageResponse,
            params,
        )
