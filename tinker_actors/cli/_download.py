"""``tinker-actors checkpoint download``: fetch a checkpoint's files into a new directory.

A front end to :func:`tinker_actors.download_checkpoint`, which holds the whole procedure
(the archive of a training checkpoint, checked as it is extracted, or an export when the
service has no archive; one signed URL per file of external weights; sampler weights refused;
a staging directory renamed into place at the end). The command picks the directory
(``<output>/<run>_<segment>_<name>/``), draws the progress bars and prints the result.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from tinker_actors._download_limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
from tinker_actors.cli._api import call_api
from tinker_actors.cli._group import BadInput, CommandError
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import View, format_size, show
from tinker_actors.cli._params import ByteSize, CheckpointPath
from tinker_actors.cli._progress import FileBars

if TYPE_CHECKING:
    from tinker_actors.checkpoint_download import DownloadedCheckpoint, DownloadProgress
    from tinker_actors.cli._api import Api
    from tinker_actors.types import Checkpoint

__all__ = ["download", "find_checkpoint", "target_name"]

_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")


async def find_checkpoint(api: Api, path: str) -> Checkpoint:
    """Return the listed checkpoint at ``path``.

    Raises:
        CommandError: the run has no such checkpoint.
    """
    from tinker_actors.checkpoint_download import find_checkpoint as find

    checkpoint = await find(api.rest, path)
    if checkpoint is not None:
        return checkpoint
    run_id = path.removeprefix("tinker://").split("/", 1)[0]
    raise CommandError(
        f"no checkpoint {path} (list them with: tinker-actors checkpoint list --run-id {run_id})"
    )


def target_name(path: str) -> str:
    """The directory name a checkpoint downloads into: its path, flattened and portable."""
    return _UNSAFE_NAME.sub("_", path.removeprefix("tinker://").replace("/", "_"))


@click.command("download")
@click.argument("path", type=CheckpointPath("training", "external"))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    help="Parent directory of the checkpoint's directory (default: here).",
)
@click.option("--force", is_flag=True, help="Replace the checkpoint's directory if it exists.")
@click.option(
    "--max-size",
    type=ByteSize(),
    default=DEFAULT_MAX_BYTES,
    show_default="16G",
    help="Refuse a checkpoint that unpacks to more than this (e.g. 500M, 40G).",
)
@click.option(
    "--max-files",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_FILES,
    show_default=True,
    help="Refuse an archive with more members than this.",
)
@click.option(
    "--progress/--no-progress",
    "show_progress",
    default=None,
    help="Draw a progress bar on stderr (default: when stderr is a terminal).",
)
@api_options
def download(
    path: str, output: Path, force: bool, max_size: int, max_files: int, show_progress: bool | None
) -> None:
    """Download a training or external weights checkpoint into a new directory.

    \b
    tinker-actors checkpoint download tinker://RUN/weights/final
        -> ./RUN_weights_final/ (the archive, unpacked and checked)
    tinker-actors checkpoint download tinker://RUN/external_weights/final -o models/
    """
    from tinker_actors.checkpoint_download import download_checkpoint

    target = output.resolve() / target_name(path)
    if target.exists() and not force:
        raise BadInput(f"{target} already exists; pass --force to replace it")
    if output_format() == "json" and show_progress is None:
        show_progress = False
    output.mkdir(parents=True, exist_ok=True)
    bars = FileBars(show_progress)

    async def fetch(api: Api) -> DownloadedCheckpoint:
        return await download_checkpoint(
            api.runtime,
            path,
            target,
            force=force,
            max_bytes=max_size,
            max_files=max_files,
            on_progress=lambda event: _tell(event, bars),
        )

    try:
        done = call_api(fetch, action=f"download {path}")
    finally:
        bars.close()
    data = {
        "checkpoint_path": path,
        "destination": str(done.destination),
        "files": done.files,
        "size_bytes": done.size_bytes,
    }
    rows = [["Checkpoint", path], ["Downloaded to", str(done.destination)]]
    rows += [["Size", format_size(done.size_bytes)]]
    rows += [["File", name] for name in done.files]
    show(View(data=data, columns=["Property", "Value"], rows=rows, title="Checkpoint downloaded"))


def _tell(event: DownloadProgress, bars: FileBars) -> None:
    """Draw a chunk's progress; say on stderr when the checkpoint is exported first."""
    if event.stage == "download":
        bars.update(event.name, event.done, event.total)
    elif output_format() != "json":
        click.echo(
            "the service has no archive of this checkpoint: exporting it as external weights "
            "(a new training run on its base model)...",
            err=True,
        )
