"""RestClient: the REST resources of the Tinker API (protocol.md §3.5).

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
on RestClient still work there, deprecated, and forward to :class:`AdminClient` (in
``_admin``, with the argument checks and the shared request code in ``_rest_base``).
"""

from __future__ import annotations

import uuid
import warnings
from typing import TYPE_CHECKING, Final, Literal, final

import trio

from tinker_actors.clients._admin import AdminClient, AuditEventType
from tinker_actors.clients._rest_base import (
    MAX_PAGE_LIMIT,
    RestBase,
    access_scope_param,
    checked_checkpoint_id,
    checked_tinker_path,
    nonempty,
    page_params,
    path_id,
)
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
    TraceExportResponse,
    TrainingRun,
    TrainingRunsResponse,
    WeightsInfoRequest,
    WeightsInfoResponse,
    WhoamiResponse,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from datetime import date, datetime

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

AccessScope = Literal["owned", "accessible"]

#: Seconds between polls of a pending session trace export.
TRACE_EXPORT_POLL_INTERVAL: Final = 5.0


class WhoamiUnavailableError(TinkerError, RuntimeError):
    """``whoami`` needs a JWT (exchanged, or given as the key); the credential is a plain key."""


class TraceExportError(TinkerError, RuntimeError):
    """The service could not build the session's trace export."""


@final
class RestClient(RestBase):
    """Runs, checkpoints, sessions and samplers over REST (protocol.md §3.5).

    Args:
        transport: the runtime's transport (``runtime.transport``).
        project_id: the default destination of :meth:`copy_weights` (the config's
            ``TINKER_PROJECT_ID``).
    """

    __slots__ = ("_admin", "_project_id", "_server_flags")

    def __init__(
        self,
        transport: Transport,
        *,
        project_id: str | None = None,
        server_flags: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        super().__init__(transport)
        self._project_id = project_id
        # Fetches the server's flags once (no session): they say whether to use JWTs.
        self._server_flags = server_flags
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
        run = path_id("training_run_id", training_run_id)
        params = {"access_scope": access_scope_param(access_scope)}
        return await self._get(f"/training_runs/{run}", "get_training_run", TrainingRun, params)

    async def get_training_run_by_tinker_path(
        self, tinker_path: str, access_scope: AccessScope = "owned"
    ) -> TrainingRun:
        """Return the training run a checkpoint path belongs to."""
        run = checked_tinker_path(tinker_path).training_run_id
        params = {"access_scope": access_scope_param(access_scope)}
        return await self._get(
            f"/training_runs/{run}", "get_training_run_by_tinker_path", TrainingRun, params
        )

    async def get_weights_info_by_tinker_path(self, tinker_path: str) -> WeightsInfoResponse:
        """Return what loading a checkpoint needs: base model, LoRA rank, trained parts."""
        body = WeightsInfoRequest(tinker_path=str(checked_tinker_path(tinker_path)))
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
        params = {**page_params(limit, offset), "access_scope": access_scope_param(access_scope)}
        if project_id is not None:
            params["project_id"] = nonempty("project_id", project_id)
        return await self._get("/training_runs", "list_training_runs", TrainingRunsResponse, params)

    async def list_checkpoints(self, training_run_id: str) -> CheckpointsListResponse:
        """Return every checkpoint of one training run (training, sampler and external)."""
        run = path_id("training_run_id", training_run_id)
        return await self._get(
            f"/training_runs/{run}/checkpoints", "list_checkpoints", CheckpointsListResponse, None
        )

    async def list_user_checkpoints(
        self, limit: int = 100, offset: int = 0
    ) -> CheckpointsListResponse:
        """Return a page of all the caller's checkpoints, newest first."""
        return await self._get(
            "/checkpoints",
            "list_user_checkpoints",
            CheckpointsListResponse,
            page_params(limit, offset),
        )

    async def get_external_weights_urls(self, tinker_path: str) -> ExternalWeightsUrlsResponse:
        """Return signed download URLs, one per file, of an ``external_weights`` checkpoint.

        Raises:
            InvalidInputError: the path is not ``tinker://<run>/external_weights/<name>``.
        """
        path = checked_tinker_path(tinker_path)
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
        run = path_id("training_run_id", training_run_id)
        ckpt = checked_checkpoint_id(checkpoint_id)
        await self._call(
            "DELETE", f"/training_runs/{run}/checkpoints/{ckpt}", "delete_checkpoint", None
        )

    async def delete_checkpoint_from_tinker_path(self, tinker_path: str) -> None:
        """Delete the checkpoint at ``tinker_path``."""
        path = checked_tinker_path(tinker_path)
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
        path = checked_tinker_path(tinker_path)
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
        path = checked_tinker_path(tinker_path)
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
        source = str(checked_tinker_path(path))
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
        sid = path_id("session_id", session_id)
        params = {"access_scope": access_scope_param(access_scope)}
        return await self._get(f"/sessions/{sid}", "get_session", GetSessionResponse, params)

    async def list_sessions(
        self, limit: int = 20, offset: int = 0, access_scope: AccessScope = "owned"
    ) -> ListSessionsResponse:
        """Return a page of session ids."""
        params = {**page_params(limit, offset), "access_scope": access_scope_param(access_scope)}
        return await self._get("/sessions", "list_sessions", ListSessionsResponse, params)

    async def assign_session_project(self, session_id: str, project_id: str) -> None:
        """Move a session (and its runs) into ``project_id``."""
        sid = path_id("session_id", session_id)
        body = SetSessionProjectRequest(project_id=nonempty("project_id", project_id))
        await self._call(
            "PUT", f"/sessions/{sid}/project", "assign_session_project", None, json=body
        )

    async def export_session_trace(self, session_id: str) -> str:
        """Build a Perfetto trace of a session and return its signed download URL.

        Polls every :data:`TRACE_EXPORT_POLL_INTERVAL` seconds while the export is pending.

        Raises:
            TraceExportError: the service reports the export failed.
        """
        sid = path_id("session_id", session_id)
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
        sid = path_id("sampler_id", sampler_id)
        return await self._get(f"/samplers/{sid}", "get_sampler", GetSamplerResponse, None)

    async def whoami(self) -> WhoamiResponse:
        """Return the caller's user and organization, read from the JWT in use (no request).

        Works before any session exists: the server's flags (which switch the transport to
        JWTs) are fetched first when the runtime has not fetched them yet.

        Raises:
            WhoamiUnavailableError: JWT auth is off and the credential is a plain API key.
        """
        if self._server_flags is not None:
            await self._server_flags()
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
