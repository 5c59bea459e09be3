"""``tinker-actors audit``: one UTC day of the organization's audit log (admin roles only)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._options import api_options
from tinker_actors.cli._output import View, format_time, plain, show

if TYPE_CHECKING:
    from datetime import datetime

    from tinker_actors.cli._api import Api
    from tinker_actors.clients._admin import AuditEventType
    from tinker_actors.types import AuditLogResponse

__all__ = ["command"]


@click.command()
@click.option(
    "--type",
    "event_type",
    type=click.Choice(["all", "checkpoints", "projects", "teams", "organizations"]),
    default="all",
    show_default=True,
    help="Which events.",
)
@click.option(
    "--day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="The UTC day, YYYY-MM-DD (default: today).",
)
@api_options
def command(event_type: AuditEventType, day: datetime | None) -> None:
    """Show one UTC day of the audit log: who read, changed or deleted what."""

    async def work(api: Api) -> AuditLogResponse:
        return await api.admin.get_audit_log(event_type, None if day is None else day.date())

    response = call_api(work, action="read the audit log")
    rows = [
        [format_time(e.timestamp), e.event, json.dumps(plain(e.event_details), sort_keys=True)]
        for e in response.entries
    ]
    title = f"{len(rows)} audit event(s)" if rows else "no audit events that day"
    show(View(data=response, columns=["Time", "Event", "Details"], rows=rows, title=title))
