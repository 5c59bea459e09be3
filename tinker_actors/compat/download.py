"""``download_checkpoint`` for code on the official surface (not part of 0.38).

::

    from tinker_actors.compat.download import download_checkpoint

    done = download_checkpoint(service_client, "tinker://RUN/weights/final", "adapter").result()
    done.files      # ["adapter_config.json", "adapter_model.safetensors"]

The download runs in the client's runtime block (:func:`tinker_actors.download_checkpoint`:
the archive checked as it is unpacked, a staging directory renamed into place, an export when
the service has no archive). The call returns an ``APIFuture`` at once, as 0.38's REST calls
do: ``.result()``, ``await`` or ``.result_async()``. Bad arguments raise on the caller's
thread before anything is sent. ``on_progress`` is called on the runtime's thread and must not
block. The import names this package, so code that uses it fails at once, and clearly, on the
official SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinker_actors._download_limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
from tinker_actors.compat._host_of import AnyClient, host_of

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tinker_actors.checkpoint_download import DownloadedCheckpoint, DownloadProgress
    from tinker_actors.compat._future import APIFuture

__all__ = ["download_checkpoint"]


def download_checkpoint(
    client: AnyClient,
    path: str,
    into: str | Path,
    *,
    force: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    on_progress: Callable[[DownloadProgress], object] | None = None,
) -> APIFuture[DownloadedCheckpoint]:
    """Download the checkpoint at ``path`` into the new directory ``into``; see the module doc
    and :func:`tinker_actors.download_checkpoint` for the arguments.

    Raises:
        InvalidInputError: not a compat client, or bad arguments (at the call).
    """
    from tinker_actors.checkpoint_download import check_download
    from tinker_actors.checkpoint_download import download_checkpoint as download

    host = host_of(client, "download_checkpoint()")
    _, target = check_download(path, into, force, max_bytes, max_files, on_progress)

    async def run() -> DownloadedCheckpoint:
        return await download(
            host.runtime,
            path,
            target,
            force=force,
            max_bytes=max_bytes,
            max_files=max_files,
            on_progress=on_progress,
        )

    future: APIFuture[DownloadedCheckpoint] = host.spawn(run)
    return future
