"""Checkpoint files are written aside and moved into place only once complete.

A save writes into ``.staging-<name>-<token>`` beside the checkpoint's directory, and only a
save that finished replaces ``<name>``. A save that fails (a full disk, an I/O error, a
cancelled request) so leaves nothing behind, and when it was replacing a checkpoint of the same
name (``overwrite``) that checkpoint stays as it was. Writing in place, as before, left a
failed save's partial files on disk for good, and a failed overwrite left a mix of old and new
files that the records still listed as the old checkpoint.

Replacing is two renames (the old directory aside to ``.old-<name>-<token>``, the new one into
place) and a removal; :func:`recover`, run when the store opens, finishes or undoes what a
crash between them left, and removes abandoned staging directories. Checkpoint names never
start with ``.``, so these names cannot collide with a checkpoint's.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CheckpointWriteError",
    "commit",
    "failure",
    "full_disk_message",
    "is_full",
    "recover",
    "staging_dir",
]

_STAGING: Final = ".staging-"
_OLD: Final = ".old-"
#: Less free space than this after a failed write reads as a full disk, whatever the library
#: that hit it made of the error (torch reports ENOSPC as "unexpected pos ... vs ...").
_NEARLY_FULL: Final = 1 << 20
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


class CheckpointWriteError(Exception):
    """Writing a checkpoint's files failed; nothing was saved (a server-side failure).

    ``full``: the disk ran out of space (HTTP 507 where the error is answered directly).
    """

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full


def staging_dir(directory: Path) -> Path:
    """A fresh directory name beside ``directory`` to write its new contents into."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    return directory.parent / f"{_STAGING}{directory.name}-{secrets.token_hex(4)}"


def commit(staging: Path, directory: Path) -> None:
    """Put a finished ``staging`` directory in ``directory``'s place, replacing what was there."""
    if not directory.exists():
        os.rename(staging, directory)
        return
    old = directory.parent / f"{_OLD}{directory.name}-{secrets.token_hex(4)}"
    os.rename(directory, old)
    os.rename(staging, directory)
    shutil.rmtree(old, ignore_errors=True)


def is_full(exc: BaseException) -> bool:
    """Whether ``exc`` is (or reports) a full disk or an exhausted quota."""
    if isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS:
        return True
    return "No space left on device" in str(exc) or "Disk quota exceeded" in str(exc)


_FREE_SPACE: Final = (
    "Free space on that disk (delete checkpoints you no longer need; 'tinker-actors serve "
    "--ephemeral-samplers N' keeps fewer RL samplers)"
)


def full_disk_message(what: str, exc: BaseException, *, advice: bool = False) -> str:
    """``<what> failed: the local server's data directory is out of space (<exc>)``."""
    text = f"{what} failed: the local server's data directory is out of space ({exc})"
    return f"{text}. {_FREE_SPACE} and try again" if advice else text


def failure(staging: Path, what: str, exc: BaseException) -> CheckpointWriteError:
    """Remove a failed save's files and say why it failed, naming a full disk as such."""
    try:
        free: int | None = shutil.disk_usage(staging.parent).free
    except OSError:
        free = None
    shutil.rmtree(staging, ignore_errors=True)
    unchanged = "nothing was saved, and an earlier checkpoint of that name is unchanged"
    if is_full(exc) or (free is not None and free < _NEARLY_FULL):
        return CheckpointWriteError(
            f"{full_disk_message(what, exc)}; {unchanged}. {_FREE_SPACE} and save again",
            full=True,
        )
    return CheckpointWriteError(
        f"{what} failed writing its files ({exc!r}); {unchanged}", full=False
    )


def recover(runs_dir: Path) -> None:
    """Clean up after a crash: drop staging directories, finish or undo interrupted swaps."""
    if not runs_dir.is_dir():
        return
    for kind_dir in runs_dir.glob("*/checkpoints/*"):
        for path in sorted(kind_dir.glob(".*")):
            if not path.is_dir():
                continue
            if path.name.startswith(_STAGING):
                shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(_OLD):
                name = path.name.removeprefix(_OLD).rsplit("-", 1)[0]
                if (kind_dir / name).exists():  # the new one made it: the old one goes
                    shutil.rmtree(path, ignore_errors=True)
                else:  # crashed between the renames: the old one is still the checkpoint
                    os.rename(path, kind_dir / name)
