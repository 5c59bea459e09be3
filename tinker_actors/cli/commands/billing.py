"""``tinker-actors billing``: hourly usage and current checkpoint storage (admin roles only).

JSON output keeps the service's nested shape; the table and ``--csv`` flatten each usage row's
``event_info`` (kind and quantity) into the row. A service that does not offer billing data, or
a credential without the billing role, gets a one-line error (404 / 403), exit status 1.
"""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING, Any

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._options import api_options
from tinker_actors.cli._output import View, plain, show
from tinker_actors.cli._params import Timestamp

if TYPE_CHECKING:
    from datetime import datetime

    from tinker_actors.cli._api import Api
    from tinker_actors.types import BillingUsageResponse, CurrentCheckpointStorageUsageResponse

__all__ = ["command", "flat_rows"]


@click.group()
def command() -> None:
    """Billing: hourly usage, current checkpoint storage."""


def flat_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with their nested ``event_info`` merged in (its ``type`` becomes the row's)."""
    out = []
    for row in rows:
        info = row.get("event_info")
        merged = {k: v for k, v in row.items() if k != "event_info"}
        if isinstance(info, dict):
            merged.update(info)
        out.append(merged)
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def _cell(value: object) -> str:
    return "" if value is None else str(value)


def _write_csv(rows: list[dict[str, Any]], path: str) -> None:
    def write(out: Any) -> None:
        writer = csv.DictWriter(out, fieldnames=_columns(rows), restval="")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in row.items()} for row in rows)

    if path == "-":
        write(sys.stdout)
    else:
        with open(path, "w", newline="", encoding="utf-8") as out:
            write(out)
        click.echo(f"wrote {len(rows)} row(s) to {path}", err=True)


def _table(rows: list[dict[str, Any]], data: object, title: str) -> View:
    columns = _columns(rows)
    return View(
        data=data,
        columns=columns,
        rows=[[_cell(row.get(column)) for column in columns] for row in rows],
        title=title,
    )


@command.command("usage")
@click.argument("starting_on", type=Timestamp())
@click.argument("ending_before", type=Timestamp())
@click.option(
    "--csv",
    "csv_path",
    default=None,
    metavar="PATH",
    help="Write the usage rows as CSV to PATH ('-': stdout) instead.",
)
@click.option(
    "--sessions-csv",
    default=None,
    metavar="PATH",
    help="Also write the sessions table (session_id, user_metadata) as CSV to PATH.",
)
@api_options
def usage(
    starting_on: datetime, ending_before: datetime, csv_path: str | None, sessions_csv: str | None
) -> None:
    """Show hourly usage in [STARTING_ON, ENDING_BEFORE) (UTC hours, at most 14 days apart).

    Costs are gross estimates before credits, not invoice amounts.
    """

    async def work(api: Api) -> BillingUsageResponse:
        return await api.admin.get_billing_usage(starting_on, ending_before)

    response = call_api(work, action="read billing usage")
    rows = flat_rows(plain(response.data))
    if sessions_csv is not None:
        import json

        sessions = [
            {
                "session_id": sid,
                "user_metadata": None if s.user_metadata is None else json.dumps(s.user_metadata),
            }
            for sid, s in response.sessions.items()
        ]
        _write_csv(sessions, sessions_csv)
    if csv_path is not None:
        _write_csv(rows, csv_path)
    if csv_path is None and sessions_csv is None:
        title = f"{len(rows)} hourly usage row(s)" if rows else "no usage in this window"
        show(_table(rows, response, title))


@command.command("checkpoint-storage")
@click.option("--project-id", default=None, help="Only this project's storage.")
@click.option(
    "--csv",
    "csv_path",
    default=None,
    metavar="PATH",
    help="Write the rows as CSV to PATH ('-': stdout) instead.",
)
@api_options
def checkpoint_storage(project_id: str | None, csv_path: str | None) -> None:
    """Show current checkpoint storage per project and owner, and its projected monthly cost."""

    async def work(api: Api) -> CurrentCheckpointStorageUsageResponse:
        return await api.admin.get_current_checkpoint_storage_usage(project_id)

    response = call_api(work, action="read checkpoint storage")
    rate = response.effective_rate_usd_per_gigabyte_month
    rows = [{"effective_rate_usd_per_gigabyte_month": rate, **row} for row in plain(response.data)]
    if csv_path is not None:
        _write_csv(rows, csv_path)
        return
    show(_table(rows, response, "current checkpoint storage" if rows else "no checkpoint storage"))
