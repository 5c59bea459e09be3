"""Rendering: a rich table for people, or JSON for scripts, from one :class:`View`.

A command builds a :class:`View` holding both forms (``data`` for ``--format json``; title,
columns and rows for the table) and calls :func:`show`. JSON is the API's own shape (msgspec
structs turned into plain data, datetimes as RFC 3339 strings), pretty-printed on stdout, so
``tinker-actors run list -f json | jq`` sees exactly what the service answered. Tables go to
stdout through rich; notes (what was left out, hints) go under the table, and never into JSON.

rich and msgspec are imported when something is rendered, never at import.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from tinker_actors.cli._options import output_format

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "View",
    "format_bool",
    "format_size",
    "format_time",
    "plain",
    "print_json",
    "show",
]


@dataclass
class View:
    """One result in both forms.

    Attributes:
        data: what ``--format json`` prints (plain data, or structs :func:`plain` converts).
        columns: the table's column headers.
        rows: the table's rows, one string per column.
        title: the table's title.
        notes: lines printed under the table (never in JSON).
    """

    data: object
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    title: str | None = None
    notes: list[str] = field(default_factory=list)


def plain(value: object) -> Any:
    """Return ``value`` (structs, datetimes, containers) as JSON-ready plain data."""
    import msgspec

    return msgspec.to_builtins(value, builtin_types=(), str_keys=True)


def print_json(data: object) -> None:
    """Print ``data`` as indented JSON on stdout."""
    click.echo(json.dumps(plain(data), indent=2, ensure_ascii=False))


def show(view: View) -> None:
    """Print ``view`` in the format the command line asked for."""
    if output_format() == "json":
        print_json(view.data)
        return
    from rich.console import Console
    from rich.table import Table

    # emoji off: ids like ":train:" must print as typed; highlight off: no guessed colours
    console = Console(emoji=False, highlight=False, soft_wrap=False)
    if not view.columns:  # nothing to tabulate (no rows to take columns from): the title alone
        console.print(view.title or "")
        for note in view.notes:
            console.print(note)
        return
    table = Table(title=view.title)
    for index, column in enumerate(view.columns):
        if index == 0:
            table.add_column(column, style="cyan", overflow="fold")
        else:
            table.add_column(column, overflow="fold")
    for row in view.rows:
        table.add_row(*row)
    console.print(table)
    for note in view.notes:
        console.print(note)


def format_size(size: int | None) -> str:
    """Format a byte count for people (``1.5 MiB``); ``-`` when unknown."""
    if size is None or size < 0:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_time(when: datetime | None) -> str:
    """Format a timestamp in UTC to the second; ``-`` when absent."""
    if when is None:
        return "-"
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def format_bool(value: bool | None) -> str:
    """Format a flag as ``yes`` / ``no`` (``-`` when unknown)."""
    return "-" if value is None else ("yes" if value else "no")
