"""``tinker-actors session``: list sessions, show one, export its trace.

``list`` and ``info`` use the session search of 0.38 (status, owner, checkpoint counts); against
a service without it, ``list`` falls back to the plain list of session ids. ``export-trace``
is the official CLI's: the service builds the trace and the command downloads it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._fetch import fetch_url
from tinker_actors.cli._group import BadInput
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import View, format_size, format_time, plain, print_json, show
from tinker_actors.cli._params import ByteSize

if TYPE_CHECKING:
    from tinker_actors.cli._api import Api
    from tinker_actors.types import GetSessionResponse, SessionSummary

__all__ = ["command"]

#: Sessions fetched per search request.
PAGE: Final = 200
_STATUSES: Final = ("active", "finished", "failed", "cancelled")


@click.group()
def command() -> None:
    """Sessions: list, info, export-trace."""


def status_text(status: object) -> str:
    """``active``, ``finished (success)``, ``failed (user: ...)``, ``cancelled``, or ``-``."""
    if status is None:
        return "-"
    data = plain(status)
    kind = data.get("type", "?")
    if kind == "client_finished":
        return f"finished ({data.get('reason', {}).get('type', '?')})"
    if kind == "failed":
        return f"failed ({data.get('category', '?')}: {data.get('message', '')})"
    return str(kind)


def _status_queries(statuses: tuple[str, ...]) -> list[Any] | None:
    from tinker_actors.types import (
        ActiveSessionStatusQuery,
        CancelledSessionStatusQuery,
        ClientFinishedSessionStatusQuery,
        FailedSessionStatusQuery,
    )

    queries = {
        "active": ActiveSessionStatusQuery,
        "finished": ClientFinishedSessionStatusQuery,
        "failed": FailedSessionStatusQuery,
        "cancelled": CancelledSessionStatusQuery,
    }
    return [queries[name]() for name in statuses] if statuses else None


def _metadata(pairs: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="'--metadata'")
        out[key] = value
    return out


@command.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Most sessions to show; 0 shows them all.",
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(_STATUSES),
    help="Only sessions in this state (repeatable).",
)
@click.option("--name", default=None, help="Only sessions whose display name contains this.")
@click.option(
    "--metadata",
    multiple=True,
    metavar="KEY=VALUE",
    help="Only sessions with this metadata (repeatable).",
)
@click.option(
    "--scope",
    type=click.Choice(["own", "accessible"]),
    default="own",
    show_default=True,
    help="Your sessions, or every session you can read.",
)
@api_options
def list_sessions(
    limit: int, statuses: tuple[str, ...], name: str | None, metadata: tuple[str, ...], scope: str
) -> None:
    """List sessions, newest first."""
    wanted = _metadata(metadata)

    async def work(api: Api) -> tuple[list[SessionSummary], bool]:
        import msgspec

        from tinker_actors.errors import NotFoundError
        from tinker_actors.types import AccessibleSearchOwner, OwnSearchOwner, SessionSearchRequest

        request = SessionSearchRequest(
            owner=OwnSearchOwner() if scope == "own" else AccessibleSearchOwner(),
            statuses=_status_queries(statuses),
            display_name=name,
            user_metadata=wanted,
            limit=min(PAGE, limit or PAGE),
        )
        found: list[SessionSummary] = []
        try:
            while True:
                page = await api.rest.search_sessions(request)
                found.extend(page.sessions)
                if page.next_cursor is None or (limit and len(found) >= limit):
                    return found[: limit or None], True
                request = msgspec.structs.replace(request, cursor=page.next_cursor)
        except NotFoundError:
            if statuses or name or wanted or scope != "own":
                raise  # the filters need the search
            ids = (await api.rest.list_sessions(limit=min(limit or 1000, 1000))).sessions
            return [_bare(session_id) for session_id in ids], False

    sessions, searched = call_api(work, action="list sessions")
    rows = [
        [
            s.session_id,
            format_time(s.created_at) if searched else "-",
            status_text(s.status),
            str(s.checkpoints_count) if searched else "-",
            s.display_name or "-",
        ]
        for s in sessions
    ]
    show(
        View(
            data={"sessions": sessions},
            columns=["Session ID", "Created", "Status", "Checkpoints", "Name"],
            rows=rows,
            title=f"{len(sessions)} session" + ("" if len(sessions) == 1 else "s"),
        )
    )


def _bare(session_id: str) -> SessionSummary:
    from datetime import UTC, datetime

    from tinker_actors.types import SessionSummary

    epoch = datetime.fromtimestamp(0, tz=UTC)
    return SessionSummary(
        session_id=session_id, created_at=epoch, owner="", project_id="", checkpoints_count=0
    )


@command.command("info")
@click.argument("session_id")
@api_options
def info(session_id: str) -> None:
    """Show a session: its status, training runs and samplers."""

    async def work(api: Api) -> tuple[GetSessionResponse, SessionSummary | None]:
        from tinker_actors.errors import NotFoundError
        from tinker_actors.types import SessionSearchRequest

        session = await api.rest.get_session(session_id)
        try:
            found = await api.rest.search_sessions(
                SessionSearchRequest(session_id=session_id, limit=1)
            )
        except NotFoundError:
            return session, None
        match = [s for s in found.sessions if s.session_id == session_id]
        return session, match[0] if match else None

    session, summary = call_api(work, action=f"read session {session_id}")
    data: dict[str, object] = {"session_id": session_id, **plain(session)}
    rows = [["Session ID", session_id]]
    if summary is not None:
        data.update(
            {
                "created_at": summary.created_at,
                "owner": summary.owner,
                "project_id": summary.project_id,
                "status": summary.status,
                "checkpoints_count": summary.checkpoints_count,
                "checkpoint_storage_bytes": summary.checkpoint_storage_bytes,
            }
        )
        rows += [
            ["Created", format_time(summary.created_at)],
            ["Owner", summary.owner],
            ["Project", summary.project_id or "-"],
            ["Status", status_text(summary.status)],
            [
                "Checkpoints",
                f"{summary.checkpoints_count} ({format_size(summary.checkpoint_storage_bytes)})",
            ],
        ]
    rows.append(["Display name", session.display_name or "-"])
    rows += [["Training run", run_id] for run_id in session.training_run_ids]
    rows += [["Sampler", sampler_id] for sampler_id in session.sampler_ids]
    rows += [[f"metadata: {k}", str(v)] for k, v in (session.user_metadata or {}).items()]
    show(View(data=data, columns=["Property", "Value"], rows=rows, title="Session"))


@command.command("export-trace")
@click.argument("session_id")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the trace (default: ./<session-id> plus the format's suffix).",
)
@click.option(
    "--url-only", is_flag=True, help="Print the signed download URL instead of downloading."
)
@click.option("--force", is_flag=True, help="Replace the output file if it exists.")
@click.option(
    "--max-size",
    type=ByteSize(),
    default=4 * 1024**3,
    show_default="4G",
    help="Refuse a larger trace.",
)
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="Draw a progress bar on stderr (default: when stderr is a terminal).",
)
@api_options
def export_trace(
    session_id: str,
    output: Path | None,
    url_only: bool,
    force: bool,
    max_size: int,
    show_progress: bool | None,
) -> None:
    """Export a session's timeline as a trace file (open .pftrace files at ui.perfetto.dev)."""
    if output is not None and not url_only and output.exists() and not force:
        raise BadInput(f"{output} already exists; pass --force to replace it")

    async def work(api: Api) -> str:
        return await api.rest.export_session_trace(session_id)

    if output_format() != "json":
        click.echo(f"exporting the trace of {session_id} (this may take a while)...", err=True)
    url = call_api(work, action=f"export the trace of session {session_id}")
    if url_only:
        if output_format() == "json":
            print_json({"session_id": session_id, "url": url})
        else:
            click.echo(url)  # bare, for $(...) in scripts
        return
    if output is None:  # the service's own format decides the suffix (the local one is JSON)
        suffix = PurePosixPath(urlsplit(url).path).suffix or ".pftrace"
        output = Path(f"{session_id}{suffix}")
    target = output.resolve()
    if target.exists():
        if not force:
            raise BadInput(f"{target} already exists; pass --force to replace it")
        target.unlink()
    if output_format() == "json" and show_progress is None:
        show_progress = False
    size = fetch_url(
        url, target, label=f"trace {session_id}", max_bytes=max_size, show_progress=show_progress
    )
    show(
        View(
            data={"session_id": session_id, "destination": str(target), "size_bytes": size},
            columns=["Property", "Value"],
            rows=[
                ["Session ID", session_id],
                ["Saved to", str(target)],
                ["Size", format_size(size)],
            ],
            title="Trace exported",
        )
    )
