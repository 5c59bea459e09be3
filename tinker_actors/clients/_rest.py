"""RestClient and AdminClient: the REST resources of the Tinker API (protocol.md §3.5-§3.6).

These are plain request/response calls, so the methods are ``async`` and return the typed
response directly (no futures, no session)::

    rest = RestClient(runtime.transport)
    runs = await rest.list_training_runs(limit=50)
    for ckpt in (await rest.list_checkpoints(runs.training_runs[0].training_run_id)).checkpoints:
        print(ckpt.tinker_path)

Method names, arguments and defaults are the official 0.38 client's (§10), and so are the
requests: ``checkpoint_id`` (``weights/<name>``, with its slash) and ``training_run_id`` (with
its colons) are put into paths unescaped, exactly as the service routes them. Every argument is
checked first; a malformed ``tinker://`` path, an id that cannot sit in a URL path, a page
``limit`` out of range or an unknown ``access_scope`` raises
:class:`~tinker_actors.errors.InvalidInputError` and nothing is sent.

Retries are the transport's (HTTP-layer retries with backoff, Retry-After and the billing
pause); each call is one logical request with one idempotency key. Each request names its public
method in ``x-sdk-method`` (``RestClient.list_checkpoints``...). The admin calls that 0.25 had
on RestClient still work there, deprecated, and forward to :class:`AdminClient`.
"""

from __future__ import annotations

import uuid
import warnings
from datetime import date, datetime
from typing import TYPE_CHECKING, Final, Literal, TypeVar, final

import trio

from tinker_actors.config import jwt_claims
from tinker_actors.errors import InvalidInputError, TinkerError
from tinker_actors.transport import RequestOptions, Transport
from tinker_actors.types import (
    AuditLogResponse,
    BillingUsageResponse,
    CheckpointsListResponse,
    CopyWeightsRequest,
    CopyWeightsResponse,
    CurrentCheckpointStorageUsageResponse,
    ExternalWeightsUrlsResponse,
    GetSamplerResponse,
    GetServerCapabilitiesResponse,
    GetSessionResponse,
    ListSessionsResponse,
    SessionSearchRequest,
    SessionSearchResponse,
    SetCheckpointTtlRequest,
    SetSessionProjectRequest,
    TinkerPath,
    TraceExportResponse,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoRequest,
    WeightsInfoResponse,
    WhoamiResponse,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    import msgspec

__all__ = [
    "MAX_PAGE_LIMIT",
    "TRACE_EXPORT_POLL_INTERVAL",
    "AccessScope",
    "AdminClient",
    "AuditEventType",
    "RestClient",
    "TraceExportError",
    "WhoamiUnavailableError",
]

T = TypeVar("T")

AccessScope = Literal["owned", "accessible"]
AuditEventType = Literal["all", "checkpoints", "projects", "teams", "organizations"]

#: The largest page a list call may ask for.
MAX_PAGE_LIMIT: Final = 1000
#: Seconds between polls of a pending session trace export.
TRACE_EXPORT_POLL_INTERVAL: Final = 5.0
_V1: Final = "/api/v1"
_ACCESS_SCOPES: Final = ("owned", "accessible")
_AUDIT_EVENT_TYPES: Final = ("all", "checkpoints", "projects", "teams", "organizations")
_CHECKPOINT_SEGMENTS: Final = ("weights", "sampler_weights", "external_weights")
# Characters that would end or split a URL path segment when interpolated unescaped.
_PATH_BREAKERS: Final = frozenset("/?#%\\") | frozenset(chr(c) for c in range(33))


class WhoamiUnavailableError(TinkerError, RuntimeError):
    """``whoami`` needs a JWT (exchanged, or given as the key); the credential is a plain key."""


class TraceExportError(TinkerError, RuntimeError):
    """The service could not build the session's trace export."""


# -- argument checks ------------------------------------------------------------------------------


def _path_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    bad = sorted({c for c in value if c in _PATH_BREAKERS})
    if bad:
        raise InvalidInputError(
            f"{name} {value!r} contains {''.join(bad)!r}, which cannot appear in a URL path; "
            "pass the id exactly as the API returned it"
        )
    return value


def _nonempty(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _checkpoint_id(value: object) -> str:
    if not isinstance(value, str) or value.count("/") != 1:
        raise InvalidInputError(
            f"checkpoint_id must be '<segment>/<name>' (e.g. 'weights/step-10'), got {value!r}"
        )
    segment, name = value.split("/")
    if segment not in _CHECKPOINT_SEGMENTS:
        raise InvalidInputError(
            f"checkpoint_id {value!r} has segment {segment!r}; expected one of "
            f"{', '.join(_CHECKPOINT_SEGMENTS)}"
        )
    _path_id("checkpoint name", name)
    return value


def _tinker_path(value: object) -> TinkerPath:
    path = TinkerPath.parse(value)  # type: ignore[arg-type]  # parse() checks the type itself
    _path_id("training_run_id", path.training_run_id)
    _path_id("checkpoint name", path.name)
    return path


def _page(limit: object, offset: object) -> dict[str, object]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit <= MAX_PAGE_LIMIT:
        raise InvalidInputError(f"limit must be an int from 0 to {MAX_PAGE_LIMIT}, got {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise InvalidInputError(f"offset must be an int >= 0, got {offset!r}")
    return {"limit": limit, "offset": offset}


def _scope(value: object) -> str:
    if value not in _ACCESS_SCOPES:
        raise InvalidInputError(f"access_scope must be 'owned' or 'accessible', got {value!r}")
    return str(value)


def _rfc3339(name: str, value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidInputError(
        f"{name} must be a datetime or an RFC 3339 string such as '2026-07-13T00:00:00Z', "
        f"got {value!r}"
    )


def _format_datetime(value: datetime) -> str:
    # The official client serializes through pydantic: UTC as "Z", other offsets kept.
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# -- the clients ----------------------------------------------------------------------------------


class _Base:
    __slots__ = ("_kind", "_transport")

    def __init__(self, transport: Transport, *, _attribute_to: str | None = None) -> None:
        if not isinstance(transport, Transport):
            raise TypeError(f"expected a Transport, got {type(transport).__name__}")
        self._transport = transport
        # The class named in x-sdk-method: the outermost public caller's.
        self._kind = _attribute_to or type(self).__name__

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self._transport!r}>"

    async def _call(
        self,
        method: str,
        path: str,
        sdk_method: str,
        result: type[T] | None,
        *,
        params: Mapping[str, object] | None = None,
        json: msgspec.Struct | Mapping[str, object] | None = None,
        options: RequestOptions | None = None,
    ) -> T | None:
        response = await self._transport.request(
            method,
            _V1 + path,
            params=params,
            json=json,
            options=options,
            sdk_method=f"{self._kind}.{sdk_method}",
        )
        return None if result is None else response.decode(result)

    async def _get(
        self, path: str, sdk_method: str, result: type[T], params: Mapping[str, object] | None
    ) -> T:
        value = await self._call("GET", path, sdk_method, result, params=params)
        assert value is not None
        return value


@final
class AdminClient(_Base):
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
        start = _rfc3339("starting_on", starting_on)
        end = _rfc3339("ending_before", ending_before)
        if (start.tzinfo is None) == (end.tzinfo is None) and not start < end:
            raise InvalidInputError(
                f"ending_before ({end.isoformat()}) must be after starting_on ({start.isoformat()})"
            )
        params = {"starting_on": _format_datetime(start), "ending_before": _format_datetime(end)}
        return await self._get(
            "/billing/usage/events", "get_billing_usage", BillingUsageResponse, params
        )

    async def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> CurrentCheckpointStorageUsageResponse:
        """Return current checkpoint storage per project and user (one project if given)."""
        params = {} if project_id is None else {"project_id": _nonempty("project_id", project_id)}
        return await self._get(
            "/billing/usage/checkpoints/current",
            "get_current_checkpoint_storage_usage",
            CurrentCheckpointStorageUsageResponse,
            params,
        )


@final
class RestClient(_Base):
    """Runs, checkpoints, sessions and samplers over REST (protocol.md §3.5).

    Args:
        transport: the runtime's transport (``runtime.transport``).
        project_id: the default destination of :meth:`copy_weights` (the config's
            ``TINKER_PROJECT_ID``).
    """

    __slots__ = ("_admin", "_project_id")

    def __init__(self, transport: Transport, *, project_id: str | None = None) -> None:
        super().__init__(transport)
        self._project_id = project_id
        self._admin = AdminClient(transport, _attribute_to="RestClient")

    # -- capabilities, runs, weights -------------------------------------------------------------

    async def get_server_capabilities(self) -> GetServerCapabilitiesResponse:
        """Return the models the caller may use and what each supports."""
        return await self._get(
            "/get_server_capabilities",
            "get_server_capabilities",
            GetServerCapabilitiesResponse,
            None,
        )

    async def get_training_run(
        self, training_run_id: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        """Return one training run (its id is the training model id)."""
        run = _path_id("training_run_id", training_run_id)
        params = {"access_scope": _scope(access_scope)}
        return await self._get(f"/training_runs/{run}", "get_training_run", TrainingRun, params)

    async def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        """Return the training run a checkpoint path belongs to."""
        run = _tinker_path(tinker_path).training_run_id
        params = {"access_scope": _scope(access_scope)}
        return await self._get(
            f"/training_runs/{run}", "get_training_run_by_tinker_path", TrainingRun, params
        )

    async def get_weights_info_by_tinker_path(self, tinker_path: str) -> WeightsInfoResponse:
        """Return what loading a checkpoint needs: base model, LoRA rank, trained parts."""
        body = WeightsInfoRequest(tinker_path=str(_tinker_path(tinker_path)))
        value = await self._call(
            "POST",
            "/weights_info",
            "get_weights_info_by_tinker_path",
            WeightsInfoResponse,
            json=body,
        )
        assert value is not None
        return value

    async def list_training_runs(
        self,
        limit: int = 20,
        offset: int = 0,
        access_scope: AccessScope = "owned",
        project_id: str | None = None,
    ) -> TrainingRunsResponse:
        """Return a page of training runs, optionally of one project only."""
        params = {**_page(limit, offset), "access_scope": _scope(access_scope)}
        if project_id is not None:
            params["project_id"] = _nonempty("project_id", project_id)
        return await self._get("/training_runs", "list_training_runs", TrainingRunsResponse, params)

    async def list_checkpoints(self, training_run_id: str) -> CheckpointsListResponse:
        """Return every checkpoint of one training run (training, sampler and external)."""
        run = _path_id("training_run_id", training_run_id)
        return await self._get(
            f"/training_runs/{run}/checkpoints", "list_checkpoints", CheckpointsListResponse, None
        )

    async def list_user_checkpoints(
        self, limit: int = 100, offset: int = 0
    ) -> CheckpointsListResponse:
        """Return a page of all the caller's checkpoints, newest first."""
        return await self._get(
            "/checkpoints", "list_user_checkpoints", CheckpointsListResponse, _page(limit, offset)
        )

    async def get_external_weights_urls(self, tinker_path: str) -> ExternalWeightsUrlsResponse:
        """Return signed download URLs, one per file, of an ``external_weights`` checkpoint.

        Raises:
            InvalidInputError: the path is not ``tinker://<run>/external_weights/<name>``.
        """
        path = _tinker_path(tinker_path)
        if path.checkpoint_type != "external":
            raise InvalidInputError(
                "get_external_weights_urls only accepts external weights checkpoints "
                f"(tinker://<training_run_id>/external_weights/<name>), got {tinker_path!r}"
            )
        return await self._get(
            f"/training_runs/{path.training_run_id}/checkpoints/{path.checkpoint_id}"
            "/external_weights_urls",
            "get_external_weights_urls",
            ExternalWeightsUrlsResponse,
            None,
        )

    # -- checkpoint changes ----------------------------------------------------------------------

    async def delete_checkpoint(self, training_run_id: str, checkpoint_id: str) -> None:
        """Delete one checkpoint, addressed by run and ``<segment>/<name>``."""
        run = _path_id("training_run_id", training_run_id)
        ckpt = _checkpoint_id(checkpoint_id)
        await self._call(
            "DELETE", f"/training_runs/{run}/checkpoints/{ckpt}", "delete_checkpoint", None
        )

    async def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        """Delete the checkpoint at ``tinker_path``."""
        path = _tinker_path(tinker_path)
        await self._call(
            "DELETE",
            f"/training_runs/{path.training_run_id}/checkpoints/{path.checkpoint_id}",
            "delete_checkpoint_from_tinker_path",
            None,
        )

    async def publish_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        """Make a checkpoint public (409 ConflictError if it already is)."""
        await self._publish("POST", tinker_path, "publish_checkpoint_from_tinker_path")

    async def unpublish_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        """Make a checkpoint private again (409 ConflictError if it already is)."""
        await self._publish("DELETE", tinker_path, "unpublish_checkpoint_from_tinker_path")

    async def _publish(self, method: str, tinker_path: str, sdk_method: str) -> None:
        path = _tinker_path(tinker_path)
        await self._call(
            method,
            f"/training_runs/{path.training_run_id}/checkpoints/{path.checkpoint_id}/publish",
            sdk_method,
            None,
        )

    async def set_checkpoint_ttl_from_tinker_path(
        self, tinker_path: str, ttl_seconds: int | None
    ) -> None:
        """Set a checkpoint's lifetime from now (1 hour to 10 years), or None to keep it forever.

        Raises:
            InvalidInputError: ``ttl_seconds`` out of range, or a malformed path.
        """
        path = _tinker_path(tinker_path)
        body = SetCheckpointTtlRequest(ttl_seconds=ttl_seconds)
        await self._call(
            "PUT",
            f"/training_runs/{path.training_run_id}/checkpoints/{path.checkpoint_id}/ttl",
            "set_checkpoint_ttl_from_tinker_path",
            None,
            json=body,
        )

    async def copy_weights(
        self,
        path: str,
        destination_project_id: str | None = None,
        *,
        ttl_seconds: int | None = None,
        weights_access_token: str | None = None,
    ) -> str:
        """Copy a checkpoint into a project (storage is shared) and return the copy's path.

        One idempotency key covers every retry, so a retried copy never makes two copies.

        Raises:
            InvalidInputError: no destination (argument or ``TINKER_PROJECT_ID``), a malformed
                path, or ``ttl_seconds`` out of range.
        """
        source = str(_tinker_path(path))
        project = destination_project_id if destination_project_id is not None else self._project_id
        if not project:
            raise InvalidInputError("Provide destination_project_id or set TINKER_PROJECT_ID")
        body = CopyWeightsRequest(
            source_path=source, destination_project_id=project, ttl_seconds=ttl_seconds
        )
        headers = (
            {}
            if weights_access_token is None
            else {"X-Tinker-Weights-Access-Token": weights_access_token}
        )
        options = RequestOptions(idempotency_key=str(uuid.uuid4()), extra_headers=headers)
        value = await self._call(
            "POST", "/copy_weights", "copy_weights", CopyWeightsResponse, json=body, options=options
        )
        assert value is not None
        return value.tinker_path

    # -- sessions and samplers -------------------------------------------------------------------

    async def get_session(
        self, session_id: str, access_scope: AccessScope = "owned"
    ) -> GetSessionResponse:
        """Return the training runs and samplers a session created."""
        sid = _path_id("session_id", session_id)
        params = {"access_scope": _scope(access_scope)}
        return await self._get(f"/sessions/{sid}", "get_session", GetSessionResponse, params)

    async def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> ListSessionsResponse:
        """Return a page of session ids."""
        params = {**_page(limit, offset), "access_scope": _scope(access_scope)}
        return await self._get("/sessions", "list_sessions", ListSessionsResponse, params)

    async def assign_session_project(self, session_id: str, project_id: str) -> None:
        """Move a session (and its runs) into ``project_id``."""
        sid = _path_id("session_id", session_id)
        body = SetSessionProjectRequest(project_id=_nonempty("project_id", project_id))
        await self._call(
            "PUT", f"/sessions/{sid}/project", "assign_session_project", None, json=body
        )

    async def export_session_trace(self, session_id: str) -> str:
        """Build a Perfetto trace of a session and return its signed download URL.

        Polls every :data:`TRACE_EXPORT_POLL_INTERVAL` seconds while the export is pending.

        Raises:
            TraceExportError: the service reports the export failed.
        """
        sid = _path_id("session_id", session_id)
        while True:
            status = await self._get(
                f"/sessions/{sid}/trace_export", "export_session_trace", TraceExportResponse, None
            )
            if status.status == "ready" and status.url:
                return status.url
            if status.status == "failed":
                raise TraceExportError(f"Trace export failed for session {sid}: {status.error}")
            await trio.sleep(TRACE_EXPORT_POLL_INTERVAL)

    async def search_sessions(self, request: SessionSearchRequest) -> SessionSearchResponse:
        """Search the organization's sessions, newest first (experimental in 0.38)."""
        if not isinstance(request, SessionSearchRequest):
            raise TypeError(f"expected a SessionSearchRequest, got {type(request).__name__}")
        value = await self._call(
            "POST", "/sessions/search", "search_sessions", SessionSearchResponse, json=request
        )
        assert value is not None
        return value

    async def get_sampler(self, sampler_id: str) -> GetSamplerResponse:
        """Return a sampling session's base model and weights path."""
        sid = _path_id("sampler_id", sampler_id)
        return await self._get(f"/samplers/{sid}", "get_sampler", GetSamplerResponse, None)

    async def whoami(self) -> WhoamiResponse:
        """Return the caller's user and organization, read from the JWT in use (no request).

        Raises:
            WhoamiUnavailableError: JWT auth is off and the credential is a plain API key.
        """
        token = await self._transport.identity_jwt()
        if token is None:
            raise WhoamiUnavailableError(
                "whoami requires JWT auth, but the server has it disabled and the credential is "
                "a plain API key"
            )
        claims = jwt_claims(token)
        if not isinstance(claims.get("sub"), str) or "org_id" not in claims:
            raise WhoamiUnavailableError("the JWT in use carries no 'sub'/'org_id' claims")
        email = claims.get("email")
        return WhoamiResponse(
            user_urn=claims["sub"],
            org_urn=f"tml:organization:{claims['org_id']}",
            email=email if isinstance(email, str) and email else None,
        )

    # -- deprecated admin forwarders -------------------------------------------------------------

    async def get_audit_log(
        self, event_type: AuditEventType = "all", day: date | str | None = None
    ) -> AuditLogResponse:
        """Deprecated: use :meth:`AdminClient.get_audit_log`."""
        _deprecated("get_audit_log")
        return await self._admin.get_audit_log(event_type, day)

    async def get_billing_usage(
        self, starting_on: datetime | str, ending_before: datetime | str
    ) -> BillingUsageResponse:
        """Deprecated: use :meth:`AdminClient.get_billing_usage`."""
        _deprecated("get_billing_usage")
        return await self._admin.get_billing_usage(starting_on, ending_before)

    async def get_current_checkpoint_storage_usage(
        self, project_id: str | None = None
    ) -> CurrentCheckpointStorageUsageResponse:
        """Deprecated: use :meth:`AdminClient.get_current_checkpoint_storage_usage`."""
        _deprecated("get_current_checkpoint_storage_usage")
        return await self._admin.get_current_checkpoint_storage_usage(project_id)


def _deprecated(name: str) -> None:
    warnings.warn(
        f"RestClient.{name}() is deprecated; use AdminClient(transport).{name}() instead",
        DeprecationWarning,
        stacklevel=3,
    )
