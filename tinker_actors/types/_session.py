"""Sessions and sampling sessions: creation, heartbeat, finish, lookup and search.

A *session* groups everything one client process does; it is created on first need, kept
alive by a heartbeat every 10 s, and closed with a finish reason (protocol §8.3). Training
models and *sampling sessions* live inside it. The finish body always carries ``detail``, as an
explicit ``null`` when there is none, exactly as the official SDK sends it::

    >>> import msgspec
    >>> msgspec.json.encode(FinishSessionRequest.for_status("success"))
    b'{"reason":{"type":"success"},"detail":null}'

Statuses and search filters are tagged unions on ``type``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, TypeAlias

import msgspec
from msgspec import UNSET, UnsetType

from tinker_actors.errors import InvalidInputError
from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = [
    "AccessibleSearchOwner",
    "ActiveSessionStatusQuery",
    "CancelledSessionStatusQuery",
    "ClientFinishedSessionStatusQuery",
    "ClientSessionFinishErrored",
    "ClientSessionFinishInterrupted",
    "ClientSessionFinishReason",
    "ClientSessionFinishReasonType",
    "ClientSessionFinishSuccess",
    "ClientSessionFinished",
    "CreateSamplingSessionRequest",
    "CreateSamplingSessionResponse",
    "CreateSessionRequest",
    "CreateSessionResponse",
    "FailedSessionStatusQuery",
    "FinishSessionRequest",
    "GetSamplerResponse",
    "GetSessionResponse",
    "JoinSamplingSessionRequest",
    "JoinSamplingSessionResponse",
    "ListSessionsResponse",
    "OwnSearchOwner",
    "SearchOwner",
    "SessionActive",
    "SessionCancelled",
    "SessionFailed",
    "SessionFailedReason",
    "SessionFailedRequestReason",
    "SessionFailedSamplingSessionReason",
    "SessionFailedTrainingRunReason",
    "SessionHeartbeatRequest",
    "SessionHeartbeatResponse",
    "SessionSearchCursor",
    "SessionSearchRequest",
    "SessionSearchResponse",
    "SessionStatus",
    "SessionStatusQuery",
    "SessionSummary",
    "SetSessionProjectRequest",
    "TraceExportResponse",
    "UserSearchOwner",
]

ClientSessionFinishReasonType: TypeAlias = Literal["success", "errored", "interrupted"]
"""How a client reports the end of its session: normal exit, exception, or interruption."""

_TINKER_SCHEME = "tinker://"


# -- creation, heartbeat, finish ---------------------------------------------------------------


class CreateSessionRequest(RequestStruct, frozen=True, kw_only=True):
    """Open a session (``POST /api/v1/create_session``)."""

    tags: list[str] = msgspec.field(default_factory=list)
    """Free-form labels (the official SDK takes them from ``TINKER_TAGS``)."""
    user_metadata: dict[str, Any] | UnsetType = msgspec.field(default_factory=dict)
    """Arbitrary caller metadata; sent as ``{}`` when there is none."""
    sdk_version: str
    """The client's version string."""
    project_id: str | UnsetType | None = UNSET
    """Project that owns the session (``TINKER_PROJECT_ID``); the default project when unset."""
    display_name: str | UnsetType | None = UNSET
    """Human-readable name for display and search; need not be unique."""
    type: Literal["create_session"] = "create_session"


class CreateSessionResponse(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="create_session"
):
    """A new session, with optional messages the client should log."""

    info_message: str | None = None
    """Logged at INFO level when present."""
    warning_message: str | None = None
    """Logged at WARNING level when present."""
    error_message: str | None = None
    """Logged at ERROR level when present."""
    session_id: str
    """The new session's opaque id."""


class SessionHeartbeatRequest(RequestStruct, frozen=True, kw_only=True):
    """Keep a session alive; sent every 10 s. A ``410`` answer means the session has finished."""

    session_id: str
    type: Literal["session_heartbeat"] = "session_heartbeat"


class SessionHeartbeatResponse(
    ResponseStruct, frozen=True, tag_field="type", tag="session_heartbeat"
):
    """Acknowledges a heartbeat."""


class ClientSessionFinishSuccess(ResponseStruct, frozen=True, tag_field="type", tag="success"):
    """The client finished normally."""


class ClientSessionFinishErrored(ResponseStruct, frozen=True, tag_field="type", tag="errored"):
    """The client finished because of an exception."""


class ClientSessionFinishInterrupted(
    ResponseStruct, frozen=True, tag_field="type", tag="interrupted"
):
    """The client was interrupted (e.g. KeyboardInterrupt)."""


ClientSessionFinishReason: TypeAlias = (
    ClientSessionFinishSuccess | ClientSessionFinishErrored | ClientSessionFinishInterrupted
)
"""Why a client finished its session, tagged on ``type``."""

_FINISH_REASONS: dict[str, ClientSessionFinishReason] = {
    "success": ClientSessionFinishSuccess(),
    "errored": ClientSessionFinishErrored(),
    "interrupted": ClientSessionFinishInterrupted(),
}


class FinishSessionRequest(RequestStruct, frozen=True, kw_only=True):
    """Close a session (``POST /api/v1/sessions/{session_id}/finish``); the first reason wins.

    ``detail`` is always sent, as ``null`` when absent.
    """

    reason: ClientSessionFinishReason
    detail: str | None = None

    @classmethod
    def for_status(
        cls, status: ClientSessionFinishReasonType, detail: str | None = None
    ) -> FinishSessionRequest:
        """Build the finish body for ``status`` (``success``, ``errored`` or ``interrupted``).

        Raises:
            InvalidInputError: ``status`` is not one of the three reasons.
        """
        reason = _FINISH_REASONS.get(status)
        if reason is None:
            raise InvalidInputError(
                f"unknown session finish status {status!r}; use one of "
                f"{', '.join(repr(s) for s in _FINISH_REASONS)}"
            )
        return cls(reason=reason, detail=detail)


# -- sampling sessions -------------------------------------------------------------------------


class CreateSamplingSessionRequest(RequestStruct, frozen=True, kw_only=True):
    """Create a sampling session on a base model or on saved weights."""

    session_id: str
    """The session that will own the sampling session."""
    sampling_session_seq_id: int
    """Per-session counter of sampling sessions, starting at 0."""
    base_model: str | UnsetType | None = UNSET
    """Base model to sample from; required unless ``model_path`` is set."""
    model_path: str | UnsetType | None = UNSET
    """``tinker://`` path of sampler weights to sample from."""
    type: Literal["create_sampling_session"] = "create_sampling_session"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.base_model is None and self.model_path is None:
            raise InvalidInputError(
                "a sampling session needs base_model (sample the base model) or model_path "
                "(a tinker:// path of saved sampler weights); neither was given"
            )
        if isinstance(self.model_path, str) and not self.model_path.startswith(_TINKER_SCHEME):
            raise InvalidInputError(
                f"model_path must be a tinker:// path, got {self.model_path!r}; use the path "
                "returned by save_weights_for_sampler"
            )


class CreateSamplingSessionResponse(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="create_sampling_session"
):
    """A new sampling session."""

    sampling_session_id: str
    """The new sampling session's opaque id."""


class JoinSamplingSessionRequest(RequestStruct, frozen=True, kw_only=True):
    """Join an existing sampling session as a clone (e.g. an unpickled sampling client)."""

    sampling_session_id: str
    """The sampling session to join."""
    type: Literal["join_sampling_session"] = "join_sampling_session"


class JoinSamplingSessionResponse(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="join_sampling_session"
):
    """The clone id the server allocated."""

    client_counter: int
    """Unique among the sampling session's clients; the original client is 0."""


class GetSamplerResponse(ResponseStruct, frozen=True, kw_only=True):
    """What a sampling session samples from (``GET /api/v1/samplers/{id}``)."""

    sampler_id: str
    """The sampling session id."""
    base_model: str
    """The base model name."""
    model_path: str | None = None
    """The ``tinker://`` path of the weights, when sampling saved weights."""


# -- lookup --------------------------------------------------------------------------------------


class GetSessionResponse(ResponseStruct, frozen=True, kw_only=True):
    """What a session contains (``GET /api/v1/sessions/{id}``)."""

    training_run_ids: list[str]
    """Training runs (model ids) created in the session."""
    sampler_ids: list[str]
    """Sampling sessions created in the session."""
    user_metadata: dict[str, str] | None = None
    """Metadata the user attached to the session."""
    display_name: str | None = None
    """The session's human-readable name, if any."""


class ListSessionsResponse(ResponseStruct, frozen=True, kw_only=True):
    """A page of session ids (``GET /api/v1/sessions``)."""

    sessions: list[str]
    """Session ids."""


class SetSessionProjectRequest(RequestStruct, frozen=True, kw_only=True):
    """Move a session to another project (``PUT /api/v1/sessions/{id}/project``)."""

    project_id: str


class TraceExportResponse(ResponseStruct, frozen=True, kw_only=True):
    """State of a session trace export; re-poll while ``pending``."""

    status: Literal["pending", "ready", "failed"]
    """``pending`` (poll again), ``ready`` (download ``url``) or ``failed`` (see ``error``)."""
    url: str | None = None
    """Download URL once ready."""
    error: str | None = None
    """Why the export failed."""


# -- statuses (responses) ------------------------------------------------------------------------


class SessionFailedRequestReason(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="request"
):
    """A request failed the session."""

    request_id: str
    request_type: str


class SessionFailedTrainingRunReason(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="training_run"
):
    """A training run failed the session."""

    training_run_id: str


class SessionFailedSamplingSessionReason(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="sampling_session"
):
    """A sampling session failed the session."""

    sampling_session_id: str


SessionFailedReason: TypeAlias = (
    SessionFailedRequestReason | SessionFailedTrainingRunReason | SessionFailedSamplingSessionReason
)
"""What failed a session, tagged on ``type``."""


class SessionFailed(ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="failed"):
    """The session was failed by one of its requests, training runs or sampling sessions."""

    category: Literal["user", "internal"]
    """``user`` when the caller caused the failure, ``internal`` otherwise."""
    reason: SessionFailedReason
    """What failed it."""
    message: str
    """Human-readable explanation."""


class SessionCancelled(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="cancelled"
):
    """The session was cancelled (e.g. from the console)."""

    detail: str | None = None


class ClientSessionFinished(
    ResponseStruct, frozen=True, kw_only=True, tag_field="type", tag="client_finished"
):
    """The session's client reported it was done."""

    reason: ClientSessionFinishReason
    """How the client finished."""
    detail: str | None = None
    """The client's free-text detail, if any."""


class SessionActive(ResponseStruct, frozen=True, tag_field="type", tag="active"):
    """The session is still running."""


SessionStatus: TypeAlias = SessionFailed | SessionCancelled | ClientSessionFinished | SessionActive
"""A session's state, tagged on ``type``."""


# -- search (experimental, 0.38) -----------------------------------------------------------------


class OwnSearchOwner(RequestStruct, frozen=True, tag_field="type", tag="own"):
    """Search the caller's own sessions."""


class AccessibleSearchOwner(RequestStruct, frozen=True, tag_field="type", tag="accessible"):
    """Search every session the caller may list."""


class UserSearchOwner(RequestStruct, frozen=True, kw_only=True, tag_field="type", tag="user"):
    """Search the sessions of the listed users."""

    owner_urns: list[str]
    """Owner URNs to match, 1 to 10."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= len(self.owner_urns) <= 10:
            raise InvalidInputError(
                f"owner_urns must list 1 to 10 user URNs, got {len(self.owner_urns)}; "
                "split larger searches into several requests"
            )


SearchOwner: TypeAlias = OwnSearchOwner | AccessibleSearchOwner | UserSearchOwner
"""Whose sessions a search covers, tagged on ``type``."""


class ActiveSessionStatusQuery(RequestStruct, frozen=True, tag_field="type", tag="active"):
    """Match sessions still running."""


class CancelledSessionStatusQuery(RequestStruct, frozen=True, tag_field="type", tag="cancelled"):
    """Match sessions cancelled from the console."""


class FailedSessionStatusQuery(RequestStruct, frozen=True, tag_field="type", tag="failed"):
    """Match sessions failed by a request, training run or sampling session."""


class ClientFinishedSessionStatusQuery(
    RequestStruct, frozen=True, kw_only=True, tag_field="type", tag="client_finished"
):
    """Match sessions whose client reported it was done, optionally only for some reasons."""

    reasons: list[ClientSessionFinishReasonType] | UnsetType | None = UNSET
    """Reasons to match (at least one); unset matches every reason."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.reasons, list) and not self.reasons:
            raise InvalidInputError(
                "reasons must list at least one finish reason; leave it unset to match all"
            )


SessionStatusQuery: TypeAlias = (
    ActiveSessionStatusQuery
    | CancelledSessionStatusQuery
    | FailedSessionStatusQuery
    | ClientFinishedSessionStatusQuery
)
"""A status filter for session search, tagged on ``type``."""


class SessionSearchCursor(ResponseStruct, frozen=True, kw_only=True):
    """Where the next page starts; pass a response's ``next_cursor`` back unchanged."""

    last_created_at: Annotated[datetime, msgspec.Meta(tz=True)]
    last_session_id: str


class SessionSearchRequest(RequestStruct, frozen=True, kw_only=True):
    """Search sessions (``POST /api/v1/sessions/search``); results are newest first."""

    session_id: str | UnsetType | None = UNSET
    """Exact session id to match; with ``display_name``, matching either one suffices."""
    project_ids: list[str] | UnsetType | None = UNSET
    """Projects to search; unset searches every listable project."""
    user_metadata: dict[str, str] = msgspec.field(default_factory=dict)
    """Exact key/value pairs that must all match."""
    display_name: str | UnsetType | None = UNSET
    """Case-insensitive substring; with several words, each must appear."""
    owner: SearchOwner = OwnSearchOwner()
    """Whose sessions to search; the caller's own by default."""
    statuses: list[SessionStatusQuery] | UnsetType | None = UNSET
    """Match any of these statuses (at least one); unset matches every status."""
    limit: int = 50
    """Page size, 1 to 200."""
    cursor: SessionSearchCursor | UnsetType | None = UNSET
    """The previous page's ``next_cursor``; unset for the first page."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 1 <= self.limit <= 200:
            raise InvalidInputError(f"limit must be between 1 and 200, got {self.limit}")
        if self.display_name == "":
            raise InvalidInputError("display_name must not be empty; leave it unset to match all")
        if isinstance(self.statuses, list) and not self.statuses:
            raise InvalidInputError(
                "statuses must list at least one status query; leave it unset to match all"
            )


class SessionSummary(ResponseStruct, frozen=True, kw_only=True):
    """One session in search results."""

    session_id: str
    created_at: datetime
    """When the session was created."""
    owner: str
    """URN of the session's owner."""
    project_id: str
    """The project the session belongs to."""
    status: SessionStatus | None = None
    """None when the session neither finished nor is known to be running."""
    checkpoints_count: int
    """How many checkpoints the session's training runs hold."""
    display_name: str | None = None
    user_metadata: dict[str, str] | None = None
    checkpoint_storage_bytes: int | None = None
    """Bytes of checkpoint storage the session's training runs use."""


class SessionSearchResponse(ResponseStruct, frozen=True, kw_only=True):
    """One page of search results, newest first."""

    sessions: list[SessionSummary]
    next_cursor: SessionSearchCursor | None = None
    """Pass as the next request's ``cursor``; None once the results are exhausted."""
