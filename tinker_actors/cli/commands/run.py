"""``tinker-actors run``: training runs (``list``, ``info``), or a program under the import switch.

``run list`` and ``run info`` are the official CLI's commands. Anything else after ``run`` is a
program to start with ``import tinker`` resolving to :mod:`tinker_actors.compat`
(:mod:`tinker_actors.cli._run`); ``--`` first forces that reading, for a program that happens to
be called ``list`` or ``info``::

    tinker-actors run list --limit 0 -f json
    tinker-actors run info 'session-1:train:0'
    tinker-actors run -- python train.py --steps 10
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Literal

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import View, format_time, show
from tinker_actors.cli._progress import progress
from tinker_actors.cli._run import run as run_program

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.cli._api import Api
    from tinker_actors.types import TrainingRun

__all__ = ["command"]

_EXEC: Final = "tinker_actors.cli.run.exec"
#: Runs fetched per request when listing.
PAGE: Final = 100


class _RunGroup(click.Group):
    """``list`` and ``info``; any other first argument is a program to run."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and (args[0] == "--" or (args[0] not in self.commands and args[0][0] != "-")):
            ctx.meta[_EXEC] = True
        return super().parse_args(ctx, args)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if ctx.meta.get(_EXEC):
            return "COMMAND", run_program, args
        return super().resolve_command(ctx, args)


@click.group(
    cls=_RunGroup,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
def command() -> None:
    """Training runs (list, info), or a program under the import switch.

    \b
    tinker-actors run list [--limit N] [-c COLUMNS] [-f json]
    tinker-actors run info RUN_ID
    tinker-actors run [--] python train.py ...   (the import switch; see docs/compat.md)
    """


def _lora(run: TrainingRun) -> str:
    if not run.is_lora:
        return "no"
    return f"rank {run.lora_rank}" if run.lora_rank else "yes"


COLUMNS: Final[dict[str, tuple[str, Callable[[TrainingRun], str]]]] = {
    "id": ("Run ID", lambda r: r.training_run_id),
    "model": ("Base model", lambda r: r.base_model),
    "owner": ("Owner", lambda r: r.model_owner),
    "lora": ("LoRA", _lora),
    "updated": ("Last request", lambda r: format_time(r.last_request_time)),
    "status": ("Status", lambda r: "corrupted" if r.corrupted else "ok"),
    "checkpoint": (
        "Last checkpoint",
        lambda r: r.last_checkpoint.tinker_path if r.last_checkpoint else "-",
    ),
    "sampler": (
        "Last sampler checkpoint",
        lambda r: r.last_sampler_checkpoint.tinker_path if r.last_sampler_checkpoint else "-",
    ),
}
DEFAULT_COLUMNS: Final = ("id", "model", "lora", "updated", "status")


def _columns(value: str | None) -> list[str]:
    if value is None:
        return list(DEFAULT_COLUMNS)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown column(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(COLUMNS)}",
            param_hint="'--columns'",
        )
    return names


@command.command("list")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Most runs to show; 0 shows them all.",
)
@click.option(
    "-c", "--columns", default=None, help=f"Columns, comma-separated: {', '.join(COLUMNS)}."
)
@click.option("--project-id", default=None, help="Only the runs of this project.")
@click.option(
    "--scope",
    type=click.Choice(["owned", "accessible"]),
    default="owned",
    show_default=True,
    help="Your own runs, or every run you can read.",
)
@api_options
def list_runs(
    limit: int,
    columns: str | None,
    project_id: str | None,
    scope: Literal["owned", "accessible"],
) -> None:
    """List training runs, newest first."""
    chosen = _columns(columns)
    quiet = output_format() == "json"

    async def work(api: Api) -> tuple[list[TrainingRun], int]:
        first = await api.rest.list_training_runs(
            limit=min(PAGE, limit or PAGE), offset=0, access_scope=scope, project_id=project_id
        )
        runs = list(first.training_runs)
        total = first.cursor.total_count
        target = min(limit or total, total)
        if len(runs) >= target:
            return runs[:target], total
        with progress(
            "fetching training runs", target, enabled=False if quiet else None
        ) as advance:
            advance(len(runs))
            while len(runs) < target:
                page = await api.rest.list_training_runs(
                    limit=min(PAGE, target - len(runs)),
                    offset=len(runs),
                    access_scope=scope,
                    project_id=project_id,
                )
                runs.extend(page.training_runs)
                advance(len(page.training_runs))
                if not page.training_runs:
                    break
        return runs[:target], total

    runs, total = call_api(work, action="list training runs")
    view = View(
        data={"runs": runs, "total_count": total},
        columns=[COLUMNS[name][0] for name in chosen],
        rows=[[COLUMNS[name][1](run) for name in chosen] for run in runs],
        title=_count(len(runs), "training run"),
    )
    if total > len(runs):
        view.notes.append(f"{total - len(runs)} more not shown; use --limit 0 to see them all")
    show(view)


@command.command("info")
@click.argument("run_id")
@api_options
def info(run_id: str) -> None:
    """Show one training run (RUN_ID, or a tinker:// path of one of its checkpoints)."""

    async def work(api: Api) -> TrainingRun:
        if run_id.startswith("tinker://"):
            return await api.rest.get_training_run_by_tinker_path(run_id)
        return await api.rest.get_training_run(run_id)

    run = call_api(work, action=f"read training run {run_id}")
    rows: list[list[str]] = [
        ["Run ID", run.training_run_id],
        ["Base model", run.base_model],
        ["Owner", run.model_owner],
        ["LoRA", _lora(run)],
        ["Last request", format_time(run.last_request_time)],
        ["Status", "corrupted" if run.corrupted else "ok"],
    ]
    for label, checkpoint in (
        ("Last checkpoint", run.last_checkpoint),
        ("Last sampler checkpoint", run.last_sampler_checkpoint),
    ):
        if checkpoint is not None:
            rows.append([label, f"{checkpoint.tinker_path} ({format_time(checkpoint.time)})"])
    for key, value in (run.user_metadata or {}).items():
        rows.append([f"metadata: {key}", str(value)])
    show(View(data=run, columns=["Property", "Value"], rows=rows, title="Training run"))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
