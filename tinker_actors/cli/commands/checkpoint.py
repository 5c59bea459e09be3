"""``tinker-actors checkpoint``: list, inspect, download, delete, publish, expire and save.

The official CLI's checkpoint commands (``push-hf`` aside), plus ``save``, which loads a saved
training state into a new training run and saves it again as resumable state, sampler weights
or downloadable external weights. Downloads live in :mod:`tinker_actors.cli._download`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Final, Literal

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._download import download, find_checkpoint
from tinker_actors.cli._group import BadInput, CommandError, one_line
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import View, format_bool, format_size, format_time, print_json, show
from tinker_actors.cli._params import CheckpointPath, Duration, Timestamp
from tinker_actors.cli._progress import progress

if TYPE_CHECKING:
    from datetime import datetime

    from tinker_actors.cli._api import Api
    from tinker_actors.types import Checkpoint, TrainingRun

__all__ = ["command"]

#: Checkpoints fetched per request when listing every run's.
PAGE: Final = 1000
#: Deletions in flight at once.
DELETE_CONCURRENCY: Final = 32
_TYPES: Final = {
    "weights": "training",
    "training": "training",
    "sampler_weights": "sampler",
    "sampler": "sampler",
    "external_weights": "external",
    "external": "external",
}


@click.group()
def command() -> None:
    """Checkpoints: list, info, download, delete, publish, unpublish, set-ttl, save."""


command.add_command(download)


def _rows(checkpoints: list[Checkpoint]) -> list[list[str]]:
    return [
        [
            c.tinker_path,
            c.checkpoint_type,
            format_size(c.size_bytes),
            format_bool(c.public),
            format_time(c.time),
            format_time(c.expires_at) if c.expires_at else "never",
        ]
        for c in checkpoints
    ]


_LIST_COLUMNS: Final = ["Path", "Type", "Size", "Public", "Created", "Expires"]


@command.command("list")
@click.option("--run-id", default=None, help="Only this training run's checkpoints.")
@click.option(
    "--type",
    "kind",
    type=click.Choice(sorted(_TYPES)),
    default=None,
    help="Only this kind of checkpoint.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="Most checkpoints to show across all runs; 0 shows them all.",
)
@api_options
def list_checkpoints(run_id: str | None, kind: str | None, limit: int) -> None:
    """List checkpoints: one run's (--run-id), or all of yours, newest first."""
    quiet = output_format() == "json"

    async def work(api: Api) -> tuple[list[Checkpoint], int]:
        if run_id is not None:
            found = list((await api.rest.list_checkpoints(run_id)).checkpoints)
            return found, len(found)
        first = await api.rest.list_user_checkpoints(limit=min(PAGE, limit or PAGE), offset=0)
        found = list(first.checkpoints)
        total = first.cursor.total_count if first.cursor is not None else len(found)
        target = min(limit or total, total)
        if len(found) < target:
            with progress(
                "fetching checkpoints", target, enabled=False if quiet else None
            ) as advance:
                advance(len(found))
                while len(found) < target:
                    page = await api.rest.list_user_checkpoints(
                        limit=min(PAGE, target - len(found)), offset=len(found)
                    )
                    found.extend(page.checkpoints)
                    advance(len(page.checkpoints))
                    if not page.checkpoints:
                        break
        return found[:target], total

    what = f"list the checkpoints of {run_id}" if run_id else "list checkpoints"
    checkpoints, total = call_api(work, action=what)
    shown_total = len(checkpoints)
    if kind is not None:
        checkpoints = [c for c in checkpoints if c.checkpoint_type == _TYPES[kind]]
    data: dict[str, object] = {"checkpoints": checkpoints, "total_count": total}
    if run_id is not None:
        data["run_id"] = run_id
    noun = "checkpoint" if len(checkpoints) == 1 else "checkpoints"
    view = View(
        data=data,
        columns=_LIST_COLUMNS,
        rows=_rows(checkpoints),
        title=f"{len(checkpoints)} {noun}" + (f" of {run_id}" if run_id else ""),
    )
    if total > shown_total:
        view.notes.append(f"{total - shown_total} more not shown; use --limit 0 to see them all")
    show(view)


def _split(path: str) -> tuple[str, str]:
    run_id, checkpoint_id = path.removeprefix("tinker://").split("/", 1)
    return run_id, checkpoint_id


@command.command("info")
@click.argument("path", type=CheckpointPath())
@api_options
def info(path: str) -> None:
    """Show one checkpoint and the training run it belongs to."""

    async def work(api: Api) -> tuple[Checkpoint, TrainingRun]:
        checkpoint = await find_checkpoint(api, path)
        return checkpoint, await api.rest.get_training_run(_split(path)[0])

    checkpoint, run = call_api(work, action=f"read checkpoint {path}")
    data = {
        **_plain_checkpoint(checkpoint),
        "training_run_id": run.training_run_id,
        "base_model": run.base_model,
        "is_lora": run.is_lora,
        "lora_rank": run.lora_rank,
    }
    rows = [
        ["Path", checkpoint.tinker_path],
        ["Type", checkpoint.checkpoint_type],
        ["Size", format_size(checkpoint.size_bytes)],
        ["Public", format_bool(checkpoint.public)],
        ["Created", format_time(checkpoint.time)],
        ["Expires", format_time(checkpoint.expires_at) if checkpoint.expires_at else "never"],
        ["Training run", run.training_run_id],
        ["Base model", run.base_model],
        [
            "LoRA",
            f"rank {run.lora_rank}" if run.is_lora and run.lora_rank else format_bool(run.is_lora),
        ],
    ]
    for key, value in (checkpoint.user_metadata or {}).items():
        rows.append([f"metadata: {key}", str(value)])
    show(View(data=data, columns=["Property", "Value"], rows=rows, title="Checkpoint"))


def _plain_checkpoint(checkpoint: Checkpoint) -> dict[str, object]:
    from tinker_actors.cli._output import plain

    value = plain(checkpoint)
    assert isinstance(value, dict)
    return value


def _changed(
    path: str, action: str, change: Literal["publish", "unpublish", "ttl"], ttl: int | None = None
) -> None:
    async def work(api: Api) -> Checkpoint:
        if change == "publish":
            await api.rest.publish_checkpoint_from_tinker_path(path)
        elif change == "unpublish":
            await api.rest.unpublish_checkpoint_from_tinker_path(path)
        else:
            await api.rest.set_checkpoint_ttl_from_tinker_path(path, ttl)
        return await find_checkpoint(api, path)

    checkpoint = call_api(work, action=f"{action} {path}")
    expires = format_time(checkpoint.expires_at) if checkpoint.expires_at else "never"
    show(
        View(
            data=checkpoint,
            columns=["Path", "Public", "Expires"],
            rows=[[checkpoint.tinker_path, format_bool(checkpoint.public), expires]],
            title=f"{action}: done",
        )
    )


@command.command("publish")
@click.argument("path", type=CheckpointPath())
@api_options
def publish(path: str) -> None:
    """Make a checkpoint readable by anyone who has its path."""
    _changed(path, "publish", "publish")


@command.command("unpublish")
@click.argument("path", type=CheckpointPath())
@api_options
def unpublish(path: str) -> None:
    """Make a published checkpoint private again."""
    _changed(path, "unpublish", "unpublish")


@command.command("set-ttl")
@click.argument("path", type=CheckpointPath())
@click.option(
    "--ttl",
    type=Duration(),
    default=None,
    help="Expire this long from now: 3600, 12h, 30d, 1y (1 hour to 10 years).",
)
@click.option("--remove", is_flag=True, help="Never expire.")
@api_options
def set_ttl(path: str, ttl: int | None, remove: bool) -> None:
    """Set or remove a checkpoint's expiry."""
    if (ttl is None) == (not remove):
        raise click.UsageError("give exactly one of --ttl DURATION or --remove")
    _changed(path, "set the expiry of", "ttl", None if remove else ttl)


@command.command("delete")
@click.argument("paths", nargs=-1, type=CheckpointPath())
@click.option(
    "--run-id", default=None, help="Delete this run's checkpoints (with the filters below)."
)
@click.option(
    "--type",
    "kind",
    type=click.Choice(sorted(_TYPES)),
    default=None,
    help="Only this kind (with --run-id).",
)
@click.option(
    "--before",
    type=Timestamp(),
    default=None,
    help="Only those created before this time (with --run-id).",
)
@click.option(
    "--after",
    type=Timestamp(),
    default=None,
    help="Only those created after this time (with --run-id).",
)
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@api_options
def delete(
    paths: tuple[str, ...],
    run_id: str | None,
    kind: str | None,
    before: datetime | None,
    after: datetime | None,
    yes: bool,
) -> None:
    """Delete checkpoints for good: PATHS, or a run's (--run-id) matching the filters."""
    if bool(paths) == bool(run_id):
        raise click.UsageError("give checkpoint PATHS or --run-id, not both and not neither")
    if not run_id and (kind or before or after):
        raise click.UsageError("--type, --before and --after filter --run-id")

    async def select(api: Api) -> list[str]:
        assert run_id is not None
        found = (await api.rest.list_checkpoints(run_id)).checkpoints
        return [
            c.tinker_path
            for c in found
            if (kind is None or c.checkpoint_type == _TYPES[kind])
            and (before is None or c.time < before)
            and (after is None or c.time > after)
        ]

    targets = list(paths) if paths else call_api(select, action=f"list the checkpoints of {run_id}")
    if not targets:
        if output_format() == "json":
            print_json({"deleted": [], "failed": []})
        else:
            click.echo("nothing to delete: no checkpoint matches")
        return
    if not yes:
        if not sys.stdin.isatty():
            raise BadInput(
                f"refusing to delete {len(targets)} checkpoint(s) without confirmation; pass --yes"
            )
        click.echo("\n".join(f"  {path}" for path in targets), err=True)
        click.confirm(f"Delete these {len(targets)} checkpoint(s) for good?", abort=True, err=True)

    import trio

    async def work(api: Api) -> tuple[list[str], list[tuple[str, str]]]:
        deleted: list[str] = []
        failed: list[tuple[str, str]] = []
        limiter = trio.CapacityLimiter(DELETE_CONCURRENCY)

        async def one(path: str) -> None:
            async with limiter:
                try:
                    await api.rest.delete_checkpoint_from_tinker_path(path)
                except Exception as exc:
                    from tinker_actors.cli._api import describe_error

                    error = describe_error(exc, action=f"delete {path}")
                    if error is None:
                        raise
                    failed.append((path, one_line(error.format_message())))
                else:
                    deleted.append(path)

        async with trio.open_nursery() as nursery:
            for path in targets:
                nursery.start_soon(one, path)
        return sorted(deleted), sorted(failed)

    deleted, failed = call_api(work, action="delete checkpoints")
    data = {"deleted": deleted, "failed": [{"tinker_path": p, "error": e} for p, e in failed]}
    show(
        View(
            data=data,
            columns=["Path", "Result"],
            rows=[[p, "deleted"] for p in deleted] + [[p, e] for p, e in failed],
            title=f"deleted {len(deleted)} of {len(targets)} checkpoint(s)",
        )
    )
    if failed:
        raise CommandError(f"{len(failed)} of {len(targets)} checkpoint(s) could not be deleted")


@command.command("save")
@click.argument("source", type=CheckpointPath("training"))
@click.option("--name", required=True, help="The new checkpoint's name.")
@click.option(
    "--kind",
    type=click.Choice(["state", "sampler", "external"]),
    default="state",
    show_default=True,
    help="state: resumable training state (weights/NAME); sampler: weights to sample from "
    "(sampler_weights/NAME); external: downloadable files (external_weights/NAME).",
)
@click.option(
    "--ttl", type=Duration(), default=None, help="Expire this long after saving (default: never)."
)
@api_options
def save(source: str, name: str, kind: str, ttl: int | None) -> None:
    """Load SOURCE (a training state) into a new training run and save it as a new checkpoint.

    Turns a state into sampler weights for `tinker-actors sample --checkpoint`, or into
    external weights for `checkpoint download`, without writing a training loop.
    """

    async def work(api: Api) -> tuple[str, str]:
        training = await api.runtime.create_training_client_from_state(
            source, user_metadata={"created_by": "tinker-actors checkpoint save"}
        )
        if kind == "state":
            path = (await (await training.save_state(name, ttl_seconds=ttl)).result()).path
        elif kind == "sampler":
            saver = training.save_weights_for_sampler
            path = (await (await saver(name, ttl_seconds=ttl)).result()).path
        else:
            exporter = training.save_weights_external
            path = (await (await exporter(name, ttl_seconds=ttl)).result()).path
        assert path is not None
        return path, training.model_id

    path, run_id = call_api(work, action=f"save {source} as {kind} {name!r}")
    data = {"source": source, "tinker_path": path, "training_run_id": run_id, "kind": kind}
    show(
        View(
            data=data,
            columns=["Property", "Value"],
            rows=[["Source", source], ["Saved", path], ["Training run", run_id], ["Kind", kind]],
            title="Checkpoint saved",
        )
    )
