"""The options every command shares: output format, service URL, credential, retries.

Each may be given to the root group (``tinker-actors -f json run list``, as the official
``tinker`` CLI takes ``--format``) or to the command itself (``tinker-actors run list -f
json``); the command's wins. They are stored in the click context's ``meta``, which the whole
command chain shares, so no command function has to thread them through.

Unset, the service URL and the credential come from the SDK's own sources
(:func:`tinker_actors.config.resolve_config`): ``TINKER_BASE_URL``, ``TINKER_API_KEY``,
``TINKER_CREDENTIAL_CMD``, the stored default key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeVar

import click

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "ApiSettings",
    "OutputFormat",
    "api_options",
    "api_settings",
    "format_option",
    "output_format",
]

F = TypeVar("F", bound="Callable[..., object]")
OutputFormat = Literal["table", "json"]

_FORMAT: Final = "tinker_actors.cli.format"
_BASE_URL: Final = "tinker_actors.cli.base_url"
_API_KEY: Final = "tinker_actors.cli.api_key"
_RETRIES: Final = "tinker_actors.cli.retries"


def _store(key: str) -> Callable[[click.Context, click.Parameter, object], None]:
    def callback(ctx: click.Context, _param: click.Parameter, value: object) -> None:
        if value is not None:
            ctx.meta[key] = value

    return callback


def format_option(f: F) -> F:
    """Add ``-f/--format table|json``."""
    return click.option(
        "-f",
        "--format",
        type=click.Choice(["table", "json"]),
        default=None,
        expose_value=False,
        callback=_store(_FORMAT),
        help="Output format: a table for people (default) or JSON for scripts.",
    )(f)


def api_options(f: F) -> F:
    """Add ``--format`` and the connection options ``--base-url``, ``--api-key``, ``--retries``."""
    f = click.option(
        "--retries",
        type=click.IntRange(0, 100),
        default=None,
        expose_value=False,
        callback=_store(_RETRIES),
        help="HTTP retries per request (default: the SDK's, 10).",
    )(f)
    f = click.option(
        "--api-key",
        default=None,
        expose_value=False,
        callback=_store(_API_KEY),
        metavar="KEY",
        help="The credential (default: TINKER_API_KEY, TINKER_CREDENTIAL_CMD, the stored key).",
    )(f)
    f = click.option(
        "--base-url",
        default=None,
        expose_value=False,
        callback=_store(_BASE_URL),
        metavar="URL",
        help="The service (default: TINKER_BASE_URL, else the Tinker service).",
    )(f)
    return format_option(f)


def output_format() -> OutputFormat:
    """Return the output format chosen for the running command."""
    value = click.get_current_context().meta.get(_FORMAT)
    return "json" if value == "json" else "table"


@dataclass(frozen=True)
class ApiSettings:
    """What the command line says about the connection (None: the SDK's default source)."""

    base_url: str | None
    api_key: str | None
    retries: int | None


def api_settings() -> ApiSettings:
    """Return the connection settings given to the running command."""
    meta = click.get_current_context().meta
    return ApiSettings(meta.get(_BASE_URL), meta.get(_API_KEY), meta.get(_RETRIES))
