"""Session search for the local server (``POST /api/v1/sessions/search``, protocol.md §4.8).

A search is a filter over the persisted :class:`~._records.SessionRecord` s, newest first, with
keyset paging: each page ends with a cursor ``(last_created_at, last_session_id)`` and the next
page holds exactly the sessions that sort after it in the order ``(created, session_id)``
descending. Because the cursor names a position rather than an offset, sessions created while a
client pages through results never shift or repeat a page.

Every filter that is given must match (``session_id`` and ``display_name`` are the exception:
given together, either one suffices, as the request type documents). A session's status comes
from how its record ended::

    finished None                            -> active
    "success" / "errored" / "interrupted"    -> client_finished with that reason
    "expired"                                -> cancelled (detail: why)

The local server never fails a session, so a ``failed`` status query matches nothing here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from tinker_actors.local._core import EngineError
from tinker_actors.types import (
    ActiveSessionStatusQuery,
    CancelledSessionStatusQuery,
    ClientFinishedSessionStatusQuery,
    ClientSessionFinished,
    ClientSessionFinishErrored,
    ClientSessionFinishInterrupted,
    ClientSessionFinishSuccess,
    SessionActive,
    SessionCancelled,
    SessionSearchCursor,
    SessionSearchResponse,
    SessionSummary,
    UserSearchOwner,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.local._records import CheckpointRecord, RecordStore, SessionRecord
    from tinker_actors.types import (
        ClientSessionFinishReason,
        SessionSearchRequest,
        SessionStatus,
        SessionStatusQuery,
    )

__all__ = ["LOCAL_OWNER", "live_checkpoints", "search_sessions", "session_status"]

#: The URN of the one user a local server has (the ``sub`` of the JWTs it issues).
LOCAL_OWNER = "tml:user:local"

_CLIENT_REASONS: dict[str, ClientSessionFinishReason] = {
    "success": ClientSessionFinishSuccess(),
    "errored": ClientSessionFinishErrored(),
    "interrupted": ClientSessionFinishInterrupted(),
}


def _when(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, tz=UTC)


def live_checkpoints(
    store: RecordStore, session: SessionRecord, now: float
) -> list[CheckpointRecord]:
    """The listed (not ephemeral, not expired) checkpoints of a session's training runs."""
    found: list[CheckpointRecord] = []
    for run_id in session.training_run_ids:
        run = store.runs.get(run_id)
        if run is None:
            continue
        found.extend(
            c
            for c in run.checkpoints
            if not c.ephemeral and (c.expires_at is None or c.expires_at > now)
        )
    return found


def session_status(record: SessionRecord) -> SessionStatus:
    """The wire status of a stored session.

    Raises:
        EngineError: 500 for a finish reason the server never writes (a corrupt record).
    """
    if record.finished is None:
        return SessionActive()
    reason = _CLIENT_REASONS.get(record.finished)
    if reason is not None:
        return ClientSessionFinished(reason=reason, detail=record.finish_detail)
    if record.finished == "expired":
        return SessionCancelled(detail=record.finish_detail or "expired")
    raise EngineError(
        500, f"session {record.session_id!r} has an unknown finish reason {record.finished!r}"
    )


def _status_matches(status: SessionStatus, queries: list[SessionStatusQuery]) -> bool:
    for query in queries:
        if isinstance(query, ActiveSessionStatusQuery) and isinstance(status, SessionActive):
            return True
        if isinstance(query, CancelledSessionStatusQuery) and isinstance(status, SessionCancelled):
            return True
        if isinstance(query, ClientFinishedSessionStatusQuery) and isinstance(
            status, ClientSessionFinished
        ):
            reasons = query.reasons
            tag = type(status.reason).__struct_config__.tag
            if not isinstance(reasons, list) or tag in reasons:
                return True
        # FailedSessionStatusQuery: the local server never fails a session
    return False


def _name_matches(record: SessionRecord, request: SessionSearchRequest) -> bool:
    """The session_id / display_name filters; either suffices when both are given."""
    by_id = request.session_id if isinstance(request.session_id, str) else None
    by_name = request.display_name if isinstance(request.display_name, str) else None
    if by_id is None and by_name is None:
        return True
    if by_id is not None and record.session_id == by_id:
        return True
    if by_name is not None and record.display_name is not None:
        haystack = record.display_name.casefold()
        return all(word in haystack for word in by_name.casefold().split())
    return False


def _matches(record: SessionRecord, request: SessionSearchRequest) -> bool:
    if not _name_matches(record, request):
        return False
    if isinstance(request.project_ids, list) and record.project_id not in request.project_ids:
        return False
    for key, value in request.user_metadata.items():
        if key not in record.user_metadata or str(record.user_metadata[key]) != value:
            return False
    # every local session belongs to the one local user: "own" and "accessible" see them all
    if isinstance(request.owner, UserSearchOwner) and LOCAL_OWNER not in request.owner.owner_urns:
        return False
    return not (
        isinstance(request.statuses, list)
        and not _status_matches(session_status(record), request.statuses)
    )


def _summary(store: RecordStore, record: SessionRecord, now: float) -> SessionSummary:
    checkpoints = live_checkpoints(store, record, now)
    return SessionSummary(
        session_id=record.session_id,
        created_at=_when(record.created),
        owner=LOCAL_OWNER,
        # a session created without a project belongs to none: the empty string says so
        project_id=record.project_id or "",
        status=session_status(record),
        checkpoints_count=len(checkpoints),
        display_name=record.display_name,
        user_metadata={str(k): str(v) for k, v in record.user_metadata.items()},
        checkpoint_storage_bytes=sum(c.size_bytes for c in checkpoints),
    )


def search_sessions(
    store: RecordStore,
    request: SessionSearchRequest,
    now: float,
    *,
    visible: Callable[[SessionRecord], bool] | None = None,
) -> SessionSearchResponse:
    """Answer one page of a session search, newest first.

    Args:
        store: the persisted records.
        request: the filters, page size and cursor (already validated by its type).
        now: wall-clock POSIX time, to leave expired checkpoints out of the counts.
        visible: which sessions the caller may see (all when None); others never match.
    """
    # datetimes, not floats, are compared: the cursor a client sends back is the datetime this
    # server wrote, so equality at the page boundary is exact
    ordered = sorted(
        store.sessions.values(), key=lambda s: (_when(s.created), s.session_id), reverse=True
    )
    cursor = request.cursor
    if isinstance(cursor, SessionSearchCursor):
        boundary = (cursor.last_created_at, cursor.last_session_id)
        ordered = [s for s in ordered if (_when(s.created), s.session_id) < boundary]
    page: list[SessionRecord] = []
    more = False
    for record in ordered:
        if (visible is not None and not visible(record)) or not _matches(record, request):
            continue
        if len(page) == request.limit:
            more = True
            break
        page.append(record)
    next_cursor = (
        SessionSearchCursor(
            last_created_at=_when(page[-1].created), last_session_id=page[-1].session_id
        )
        if more
        else None
    )
    return SessionSearchResponse(
        sessions=[_summary(store, r, now) for r in page], next_cursor=next_cursor
    )
