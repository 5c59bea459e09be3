"""Extract a downloaded checkpoint archive without trusting it.

An archive comes from the network, so every member is checked before a byte is written, and
the archive is refused as a whole (nothing is left behind) when any member is:

* an absolute path (``/etc/x``, ``C:\\x``) or one with a backslash;
* a path with a ``..`` component, which would land outside the destination;
* a symbolic or hard link (which could point anywhere), or a device, FIFO or other special file;
* a second copy of a name already extracted;
* beyond the limits: more than ``max_bytes`` in total (counted from the headers before
  reading, and again from the bytes really written) or more than ``max_files`` members.

Members are written into a fresh staging directory next to the destination, which is renamed
into place only once every member passed; the destination never holds half an archive.

Shared by :func:`tinker_actors.download_checkpoint` and ``tinker-actors checkpoint download``;
the messages name both the keyword arguments and the CLI's options.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Final

from tinker_actors._download_limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES
from tinker_actors.errors import TinkerError

if TYPE_CHECKING:  # tarfile and tempfile load on first use (the CLI's --help lists its users)
    import tarfile
    from collections.abc import Callable

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_FILES",
    "Extracted",
    "UnsafeArchiveError",
    "extract_archive",
    "safe_relative_path",
    "staging_dir",
]

_CHUNK: Final = 1024 * 1024
_DRIVE: Final = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(TinkerError, ValueError):
    """The archive was refused; nothing of it was kept."""


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote: relative file names and their total size."""

    files: list[str]
    total_bytes: int


def safe_relative_path(name: str) -> PurePosixPath:
    """Return ``name`` as a relative path inside the destination, or refuse it.

    Raises:
        UnsafeArchiveError: the name is empty, absolute, has a backslash or a NUL, or
            climbs out with ``..``.
    """
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"refused the archive: member {name!r} has an empty or NUL name")
    if name.startswith("/") or _DRIVE.match(name):
        raise UnsafeArchiveError(f"refused the archive: member {name!r} is an absolute path")
    if "\\" in name:
        raise UnsafeArchiveError(f"refused the archive: member {name!r} contains a backslash")
    path = PurePosixPath(name)
    if ".." in path.parts:
        raise UnsafeArchiveError(
            f"refused the archive: member {name!r} climbs out of the destination with '..'"
        )
    return PurePosixPath(*[part for part in path.parts if part != "."])


def staging_dir(destination: Path) -> Path:
    """Create and return an empty staging directory next to ``destination``."""
    import tempfile

    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.partial-", dir=destination.parent))
    umask = os.umask(0o022)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would stick to the renamed destination
    return staging


def extract_archive(
    archive: Path,
    destination: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_files: int = DEFAULT_MAX_FILES,
    on_bytes: Callable[[int], None] | None = None,
) -> Extracted:
    """Extract the tar archive (any compression) at ``archive`` into ``destination``.

    Args:
        archive: the downloaded archive.
        destination: the directory to create; it must not exist.
        max_bytes: the most the members may hold in total.
        max_files: the most members the archive may have.
        on_bytes: called with each chunk's size as it is written (a progress bar).

    Raises:
        UnsafeArchiveError: a member failed a check (see the module docstring), the file is
            not a tar archive, or it is truncated; nothing was left in ``destination``.
    """
    import shutil

    staging = staging_dir(destination)
    try:
        result = _extract_into(archive, staging, max_bytes, max_files, on_bytes)
        staging.rename(destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _extract_into(
    archive: Path,
    staging: Path,
    max_bytes: int,
    max_files: int,
    on_bytes: Callable[[int], None] | None,
) -> Extracted:
    import tarfile

    files: list[str] = []
    seen: set[PurePosixPath] = set()
    declared = written = 0
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > max_files:
                    raise UnsafeArchiveError(
                        f"refused the archive: more than {max_files} members (raise max_files, "
                        "--max-files, if it is really that large)"
                    )
                relative = safe_relative_path(member.name)
                if member.issym() or member.islnk():
                    kind = "symbolic" if member.issym() else "hard"
                    raise UnsafeArchiveError(
                        f"refused the archive: member {member.name!r} is a {kind} link "
                        f"(to {member.linkname!r}); checkpoints hold only files"
                    )
                if member.isdir():
                    (staging / relative).mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    raise UnsafeArchiveError(
                        f"refused the archive: member {member.name!r} is a device, FIFO or "
                        "other special file; checkpoints hold only files"
                    )
                if relative in seen:
                    raise UnsafeArchiveError(
                        f"refused the archive: member {member.name!r} appears twice"
                    )
                seen.add(relative)
                declared += member.size
                if declared > max_bytes:
                    raise UnsafeArchiveError(_oversize(max_bytes))
                written += _write_member(tar, member, staging / relative, on_bytes)
                if written > max_bytes:  # headers can be trusted no more than the rest
                    raise UnsafeArchiveError(_oversize(max_bytes))
                files.append(relative.as_posix())
    except (tarfile.TarError, EOFError) as exc:
        raise UnsafeArchiveError(
            f"refused the archive: it is not a readable tar archive ({exc})"
        ) from None
    except (NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        raise UnsafeArchiveError(
            f"refused the archive: its member names collide ({exc.filename})"
        ) from None
    return Extracted(files=files, total_bytes=written)


def _write_member(
    tar: tarfile.TarFile,
    member: tarfile.TarInfo,
    target: Path,
    on_bytes: Callable[[int], None] | None,
) -> int:
    source = tar.extractfile(member)
    if source is None:  # pragma: no cover - isfile() members always have data
        raise UnsafeArchiveError(f"refused the archive: member {member.name!r} has no data")
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with source, open(target, "xb") as out:
        while chunk := source.read(_CHUNK):
            out.write(chunk)
            size += len(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return size


def _oversize(max_bytes: int) -> str:
    return (
        f"refused the archive: it unpacks to more than {max_bytes} bytes (raise max_bytes, "
        "--max-size, if the checkpoint is really that large)"
    )
