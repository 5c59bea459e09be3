"""Download a checkpoint's files into a new directory: ``await download_checkpoint(...)``.

::

    async with tinker_actors.open() as runtime:
        done = await tinker_actors.download_checkpoint(
            runtime, "tinker://RUN/weights/final", "adapters/final"
        )
        done.files          # ["adapter_config.json", "adapter_model.safetensors", ...]

* A training checkpoint (``weights/...``) comes as one archive from the checkpoint's
  ``/archive`` endpoint (a signed URL), extracted without trusting it
  (:mod:`tinker_actors._archive`: no absolute paths, ``..``, links or special files, and
  nothing over ``max_bytes`` or ``max_files``). A service without that endpoint gets the
  official CLI's way instead: the state is loaded into a new training run, exported as
  temporary external weights (one hour to live), downloaded file by file, and the export
  deleted.
* An external weights checkpoint (``external_weights/...``) comes as one signed URL per file,
  each name checked before anything is downloaded.
* Sampler weights cannot be downloaded (the service keeps them), as in the official CLI.

Signed URLs carry their own authorization: they are fetched with a client of their own
(httpx, or a plain read for the local server's ``file://`` links), never with the runtime's
credential. Files land in a staging directory next to ``into`` that is renamed into place at
the end, so a failed, refused or cancelled download leaves nothing behind. Arguments are
checked before anything is sent. tinkex calls this CheckpointDownload; ``tinker-actors
checkpoint download`` is a front end to it.
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import unquote, urlsplit

import trio

from tinker_actors._archive import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_FILES,
    UnsafeArchiveError,
    extract_archive,
    safe_relative_path,
    staging_dir,
)
from tinker_actors.errors import InvalidInputError, NotFoundError, TinkerError
from tinker_actors.types import ArchiveUrlResponse, ParsedCheckpointTinkerPath

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tinker_actors._runtime import Runtime
    from tinker_actors.clients import RestClient
    from tinker_actors.types import Checkpoint

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FILES",
    "EXPORT_TTL",
    "CheckpointDownloadError",
    "DownloadProgress",
    "DownloadedCheckpoint",
    "UnsafeArchiveError",
    "check_download",
    "download_checkpoint",
    "fetch_signed_url",
    "find_checkpoint",
]

#: Lifetime of the temporary export a training checkpoint is downloaded through, if needed.
EXPORT_TTL: Final = 3600
_CHUNK: Final = 1024 * 1024
_TIMEOUT: Final = 60.0
_EXPORT_NAME: Final = "download"


_Stage = Literal["export", "download"]


class CheckpointDownloadError(TinkerError):
    """The checkpoint could not be downloaded (no such checkpoint, storage refused, too big);
    nothing was left in the destination."""


@dataclass(frozen=True, slots=True)
class DownloadProgress:
    """What ``on_progress`` is told.

    ``stage`` is ``"export"`` once, when the service has no archive and the checkpoint is
    exported first; then ``"download"`` after each chunk of each file, with ``done`` bytes of
    ``name`` so far and its ``total`` when the storage said it.
    """

    stage: _Stage
    name: str
    done: int
    total: int | None


@dataclass(frozen=True, slots=True)
class DownloadedCheckpoint:
    """Where a checkpoint landed: its relative file names and their total size."""

    path: str
    destination: Path
    files: list[str]
    size_bytes: int


async def download_checkpoint(
    runtime: Runtime,
    path: str,
    into: str | Path,
    *,
    force: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    on_progress: Callable[[DownloadProgress], object] | None = None,
) -> DownloadedCheckpoint:
    """Download the checkpoint at ``path`` into the new directory ``into`` (see the module doc).

    Args:
        runtime: an open runtime (``tinker_actors.open()``).
        path: a ``tinker://RUN/weights/NAME`` or ``tinker://RUN/external_weights/NAME`` path.
        into: the directory to create; with ``force`` an existing one is replaced once the
            download succeeded.
        max_bytes: refuse a checkpoint larger than this (16 GiB by default).
        max_files: refuse an archive with more members than this.
        on_progress: called with a :class:`DownloadProgress` as the download goes; it runs in
            the runtime and must not block.

    Raises:
        InvalidInputError: a path that is not a training or external weights checkpoint, an
            existing ``into`` without ``force``, or bad limits (before anything is sent).
        CheckpointDownloadError: no such checkpoint, the storage refused or failed, or the
            checkpoint is over ``max_bytes``.
        UnsafeArchiveError: the archive failed a check.
        TinkerError: the service refused a request (APIStatusError and friends).
    """
    parsed, target = check_download(path, into, force, max_bytes, max_files, on_progress)
    job = _Download(runtime, parsed, target, force, max_bytes, max_files, on_progress)
    files, size = await job.run()
    return DownloadedCheckpoint(path=path, destination=target, files=files, size_bytes=size)


def check_download(
    path: str,
    into: str | Path,
    force: bool,
    max_bytes: int,
    max_files: int,
    on_progress: object,
) -> tuple[ParsedCheckpointTinkerPath, Path]:
    """Check :func:`download_checkpoint`'s arguments; return the parsed path and the target.

    Synchronous (a stat of ``into``), so a blocking front end checks on the caller's thread.

    Raises:
        InvalidInputError: see :func:`download_checkpoint`.
    """
    parsed = ParsedCheckpointTinkerPath.from_tinker_path(path)
    if parsed.checkpoint_type == "sampler":
        raise InvalidInputError(
            f"{path} is a sampler_weights checkpoint, which cannot be downloaded (the service "
            "keeps it); download a training checkpoint (save_state) or external weights "
            "(save_weights_external)"
        )
    target = Path(into).resolve()
    if target.exists() and not force:
        raise InvalidInputError(f"{target} already exists; pass force=True to replace it")
    for name, limit in (("max_bytes", max_bytes), ("max_files", max_files)):
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"{name} must be a positive int, got {limit!r}")
    if on_progress is not None and not callable(on_progress):
        raise InvalidInputError(f"on_progress must be callable, got {type(on_progress).__name__}")
    return parsed, target


class _Download:
    def __init__(
        self,
        runtime: Runtime,
        parsed: ParsedCheckpointTinkerPath,
        target: Path,
        force: bool,
        max_bytes: int,
        max_files: int,
        on_progress: Callable[[DownloadProgress], object] | None,
    ) -> None:
        self.runtime = runtime
        self.parsed = parsed
        self.target = target
        self.force = force
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.on_progress = on_progress

    async def run(self) -> tuple[list[str], int]:
        path = self.parsed.tinker_path
        rest = self.runtime.create_rest_client()
        if self.parsed.checkpoint_type == "external":
            urls = dict((await rest.get_external_weights_urls(path)).urls)
            return await self._files(urls)
        url = await self._archive_url(rest)
        if url is not None:
            return await self._archive(url)
        self._tell("export", _EXPORT_NAME, 0, None)
        training = await self.runtime.create_training_client_from_state(
            path, user_metadata={"created_by": "tinker_actors.download_checkpoint"}
        )
        try:
            export = await training.save_weights_external(_EXPORT_NAME, ttl_seconds=EXPORT_TTL)
            exported = (await export.result()).path
        finally:
            await training.close()
        try:
            urls = dict((await rest.get_external_weights_urls(exported)).urls)
            return await self._files(urls)
        finally:
            # shielded and bounded: a cancelled download still deletes its export; a failed
            # delete is ignored (the export expires within EXPORT_TTL on its own)
            with (
                trio.CancelScope(shield=True),
                trio.move_on_after(30),
                contextlib.suppress(TinkerError),
            ):
                await rest.delete_checkpoint_from_tinker_path(exported)

    async def _archive_url(self, rest: RestClient) -> str | None:
        """The archive's signed URL; None when the service has no archive endpoint.

        Raises:
            CheckpointDownloadError: the run lists no such checkpoint.
        """
        parsed = self.parsed
        try:
            response = await self.runtime.transport.request(
                "GET",
                f"/api/v1/training_runs/{parsed.training_run_id}/checkpoints/"
                f"{parsed.checkpoint_id}/archive",
                sdk_method="download_checkpoint",
            )
        except NotFoundError:
            if await find_checkpoint(rest, parsed.tinker_path) is None:
                raise CheckpointDownloadError(
                    f"no checkpoint {parsed.tinker_path} (list them with "
                    f"list_checkpoints({parsed.training_run_id!r}))"
                ) from None
            return None
        return response.decode(ArchiveUrlResponse).url

    async def _archive(self, url: str) -> tuple[list[str], int]:
        scratch = staging_dir(self.target)  # the archive, and what it unpacks to
        try:
            archive = scratch / "checkpoint.tar"
            label = self.parsed.checkpoint_id
            await fetch_signed_url(url, archive, label, self.max_bytes, self._tell)
            unpacked = scratch / "unpacked"
            # extraction reads and writes up to max_bytes: off the runtime's thread, and not
            # abandoned on cancel (its own cleanup must finish before scratch is removed)
            result = await trio.to_thread.run_sync(
                lambda: extract_archive(
                    archive, unpacked, max_bytes=self.max_bytes, max_files=self.max_files
                )
            )
            _replace(unpacked, self.target, self.force)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return result.files, result.total_bytes

    async def _files(self, urls: dict[str, str]) -> tuple[list[str], int]:
        if not urls:
            raise CheckpointDownloadError(f"{self.parsed.tinker_path} has no files to download")
        names = {name: safe_relative_path(name) for name in urls}  # every name checked first
        staged = staging_dir(self.target)
        total = 0
        try:
            for name, relative in sorted(names.items()):
                destination = staged / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                left = self.max_bytes - total
                total += await fetch_signed_url(urls[name], destination, name, left, self._tell)
            _replace(staged, self.target, self.force)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return sorted(relative.as_posix() for relative in names.values()), total

    def _tell(self, stage: _Stage, name: str, done: int, total: int | None) -> None:
        if self.on_progress is not None:
            self.on_progress(DownloadProgress(stage, name, done, total))


async def find_checkpoint(rest: RestClient, path: str) -> Checkpoint | None:
    """The checkpoint at the ``tinker://`` ``path`` as its run lists it; None if it does not."""
    run_id = path.removeprefix("tinker://").split("/", 1)[0]
    for checkpoint in (await rest.list_checkpoints(run_id)).checkpoints:
        if checkpoint.tinker_path == path:
            return checkpoint
    return None


def _replace(staged: Path, target: Path, force: bool) -> None:
    """Move a finished staging directory to ``target`` (replacing it with ``force``)."""
    if target.exists():
        if not force:
            raise InvalidInputError(f"{target} already exists; pass force=True to replace it")
        shutil.rmtree(target)
    staged.rename(target)


async def fetch_signed_url(
    url: str,
    target: Path,
    label: str,
    max_bytes: int,
    tell: Callable[[_Stage, str, int, int | None], None],
) -> int:
    """Write what ``url`` (``https://``, or the local server's ``file://``) holds to the new
    file ``target``, calling ``tell("download", label, done, total)`` after each chunk; return
    its size. Signed URLs carry their own authorization: no credential is sent.

    Raises:
        CheckpointDownloadError: unreadable, refused by the storage, or over ``max_bytes``
            (no partial file is left).
    """
    size = 0
    created = False
    try:
        async with _open_source(url, label) as (chunks, total):
            if total is not None and total > max_bytes:
                raise CheckpointDownloadError(_too_big(label, max_bytes))
            # aclosing: a chunk stream left early (too big, a raising callback) is closed now,
            # not when the garbage collector finds it
            async with await trio.open_file(target, "xb") as out, contextlib.aclosing(chunks):
                created = True
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise CheckpointDownloadError(_too_big(label, max_bytes))
                    await out.write(chunk)
                    tell("download", label, size, total)
    except BaseException:
        if created:
            with trio.CancelScope(shield=True):
                await trio.Path(target).unlink(missing_ok=True)
        raise
    return size


def _too_big(label: str, max_bytes: int) -> str:
    return (
        f"refused to download {label}: it is larger than {max_bytes} bytes (raise max_bytes, "
        "--max-size, if it is really that large)"
    )


@contextlib.asynccontextmanager
async def _open_source(url: str, label: str) -> AsyncIterator[tuple[Any, int | None]]:
    """Yield an async iterator of ``url``'s chunks and its size when known."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        local = trio.Path(unquote(parts.path))
        try:
            source = await trio.open_file(local, "rb")
        except OSError as exc:
            raise CheckpointDownloadError(
                f"cannot download {label}: {exc.strerror} ({local})"
            ) from None

        async def read() -> AsyncIterator[bytes]:
            while chunk := await source.read(_CHUNK):
                yield chunk

        async with source:
            yield read(), (await local.stat()).st_size
    elif parts.scheme in ("http", "https"):
        import httpx

        try:
            async with (
                httpx.AsyncClient(timeout=_TIMEOUT, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code >= 400:
                    raise CheckpointDownloadError(
                        f"cannot download {label}: the storage answered {response.status_code}; "
                        "the signed URL may have expired, try again"
                    )
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                yield response.aiter_bytes(_CHUNK), total
        except httpx.HTTPError as exc:
            raise CheckpointDownloadError(f"cannot download {label}: {exc}") from None
    else:
        raise CheckpointDownloadError(
            f"cannot download {label}: unsupported URL scheme {parts.scheme!r}"
        )
