"""``tinker-actors checkpoint download``: fetch a checkpoint's files into a new directory.

* A training checkpoint (``weights/...``) comes as one archive from the checkpoint's
  ``/archive`` endpoint (a signed URL; ``file://`` on the local server), which is downloaded
  and then extracted by :func:`tinker_actors.cli._archive.extract_archive`, refusing absolute
  paths, ``..``, links, special files and archives over ``--max-size``. A service without that
  endpoint gets the official CLI's way instead: the state is loaded into a new training run,
  exported as temporary external weights (one hour to live), downloaded as below, and the
  export deleted.
* An external weights checkpoint (``external_weights/...``) comes as one signed URL per file;
  each file name gets the same checks before anything is downloaded.
* Sampler weights cannot be downloaded (the service keeps them), as in the official CLI.

The files land in ``<output>/<run>_<segment>_<name>/``, built in a staging directory and
renamed into place at the end, so an interrupted or refused download leaves nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Final

import click

from tinker_actors.cli._api import call_api
from tinker_actors.cli._archive import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    extract_archive,
    safe_relative_path,
    staging_dir,
)
from tinker_actors.cli._fetch import fetch_url
from tinker_actors.cli._group import BadInput, CommandError
from tinker_actors.cli._options import api_options, output_format
from tinker_actors.cli._output import View, format_size, show
from tinker_actors.cli._params import ByteSize, CheckpointPath

if TYPE_CHECKING:
    from tinker_actors.cli._api import Api
    from tinker_actors.types import Checkpoint

__all__ = ["EXPORT_TTL", "download", "find_checkpoint", "target_name"]

#: Lifetime of the temporary export a training checkpoint is downloaded through, if needed.
EXPORT_TTL: Final = 3600

_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")


async def find_checkpoint(api: Api, path: str) -> Checkpoint:
    """Return the listed checkpoint at ``path``.

    Raises:
        CommandError: the run has no such checkpoint.
    """
    run_id = path.removeprefix("tinker://").split("/", 1)[0]
    for checkpoint in (await api.rest.list_checkpoints(run_id)).checkpoints:
        if checkpoint.tinker_path == path:
            return checkpoint
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
    target = output.resolve() / target_name(path)
    if target.exists() and not force:
        raise BadInput(f"{target} already exists; pass --force to replace it")
    run_id, checkpoint_id = path.removeprefix("tinker://").split("/", 1)
    if output_format() == "json" and show_progress is None:
        show_progress = False
    output.mkdir(parents=True, exist_ok=True)

    if checkpoint_id.startswith("external_weights/"):

        async def signed_urls(api: Api) -> dict[str, str]:
            return dict((await api.rest.get_external_weights_urls(path)).urls)

        files = call_api(signed_urls, action=f"get the download URLs of {path}")
        written, total = _fetch_files(files, target, force, max_size, show_progress)
    else:

        async def archive_or_export(api: Api) -> tuple[str | None, dict[str, str]]:
            from tinker_actors.errors import NotFoundError
            from tinker_actors.types import ArchiveUrlResponse

            try:
                response = await api.runtime.transport.request(
                    "GET",
                    f"/api/v1/training_runs/{run_id}/checkpoints/{checkpoint_id}/archive",
                    sdk_method="cli.checkpoint_download",
                )
                return None, {"": response.decode(ArchiveUrlResponse).url}
            except NotFoundError:
                await find_checkpoint(api, path)  # a missing checkpoint stays an error
            if output_format() != "json":
                click.echo(
                    f"the service has no archive of {path}: exporting it as external weights "
                    "(a new training run on its base model)...",
                    err=True,
                )
            training = await api.runtime.create_training_client_from_state(
                path, user_metadata={"created_by": "tinker-actors checkpoint download"}
            )
            export = await training.save_weights_external("download", ttl_seconds=EXPORT_TTL)
            exported = (await export.result()).path
            return exported, dict((await api.rest.get_external_weights_urls(exported)).urls)

        export, found = call_api(archive_or_export, action=f"get the download URL of {path}")
        try:
            if export is None:
                written, total = _fetch_archive(
                    found[""], path, target, force, max_size, max_files, show_progress
                )
            else:
                written, total = _fetch_files(found, target, force, max_size, show_progress)
        finally:
            if export is not None:
                _delete_export(export)

    data = {
        "checkpoint_path": path,
        "destination": str(target),
        "files": written,
        "size_bytes": total,
    }
    rows = [["Checkpoint", path], ["Downloaded to", str(target)], ["Size", format_size(total)]]
    rows += [["File", name] for name in written]
    show(View(data=data, columns=["Property", "Value"], rows=rows, title="Checkpoint downloaded"))


def _delete_export(export: str) -> None:
    """Delete a temporary export; if that fails, say so (it expires on its own)."""

    async def delete(api: Api) -> None:
        await api.rest.delete_checkpoint_from_tinker_path(export)

    try:
        call_api(delete, action=f"delete the temporary export {export}")
    except click.ClickException as exc:
        click.echo(f"warning: {exc.format_message()}; it expires in {EXPORT_TTL} s", err=True)


def _replace(staged: Path, target: Path, force: bool) -> None:
    """Move a finished staging directory to ``target`` (replacing it with ``force``)."""
    import shutil

    if target.exists():
        if not force:
            raise BadInput(f"{target} already exists; pass --force to replace it")
        shutil.rmtree(target)
    staged.rename(target)


def checkpoint_name(path: str) -> str:
    """The short name of a checkpoint for progress bars: ``weights/step-1``."""
    return path.removeprefix("tinker://").split("/", 1)[1]


def _fetch_archive(
    url: str,
    path: str,
    target: Path,
    force: bool,
    max_size: int,
    max_files: int,
    show_progress: bool | None,
) -> tuple[list[str], int]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as scratch:
        archive = Path(scratch) / "checkpoint.tar"
        fetch_url(
            url,
            archive,
            label=checkpoint_name(path),
            max_bytes=max_size,
            show_progress=show_progress,
        )
        unpacked = Path(scratch) / "unpacked"
        result = extract_archive(archive, unpacked, max_bytes=max_size, max_files=max_files)
        _replace(unpacked, target, force)
    return result.files, result.total_bytes


def _fetch_files(
    urls: dict[str, str], target: Path, force: bool, max_size: int, show_progress: bool | None
) -> tuple[list[str], int]:
    if not urls:
        raise CommandError("the checkpoint has no files to download")
    names = {name: safe_relative_path(name) for name in urls}  # every name checked first
    import shutil

    staged = staging_dir(target)
    total = 0
    try:
        for name, relative in sorted(names.items()):
            destination = staged / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            total += fetch_url(
                urls[name],
                destination,
                label=name,
                max_bytes=max_size - total,
                show_progress=show_progress,
            )
        _replace(staged, target, force)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return sorted(relative.as_posix() for relative in names.values()), total
