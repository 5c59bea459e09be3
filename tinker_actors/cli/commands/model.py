"""``tinker-actors model list``: the base models the service offers to this credential."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._group import CommandError
from tinker_actors.cli._options import api_options
from tinker_actors.cli._output import View, format_bool, show

if TYPE_CHECKING:
    from tinker_actors.cli._api import Api
    from tinker_actors.types import SupportedModel

__all__ = ["command"]


@click.group()
def command() -> None:
    """Base models: list."""


@command.command("list")
@click.argument("substring", required=False)
@api_options
def list_models(substring: str | None) -> None:
    """List the base models you can train or sample (SUBSTRING filters, ignoring case).

    Pass a name from the Model column as base_model (or to `tinker-actors sample --model`).
    """

    async def work(api: Api) -> list[SupportedModel]:
        return list((await api.rest.get_server_capabilities()).supported_models)

    models = call_api(work, action="list models")
    if substring is not None:
        needle = substring.lower()
        models = [m for m in models if m.model_name and needle in m.model_name.lower()]
        if not models:
            raise CommandError(
                f"no model name contains {substring!r}; run 'tinker-actors model list' to see all"
            )
    rows = [
        [
            m.model_name or "-",
            "-" if m.max_context_length is None else str(m.max_context_length),
            format_bool(m.trainable),
            format_bool(m.sampleable),
        ]
        for m in models
    ]
    show(
        View(
            data={"models": models},
            columns=["Model", "Max context", "Trainable", "Sampleable"],
            rows=rows,
            title=f"{len(models)} model" + ("" if len(models) == 1 else "s"),
        )
    )
