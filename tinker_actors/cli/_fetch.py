"""Download a signed URL (``https://``, or the local server's ``file://``) to a file.

A blocking front end to :func:`tinker_actors.checkpoint_download.fetch_signed_url` for
commands that fetch one file (``session export-trace``): no credential is sent, a progress bar
is drawn, the download stops as soon as it passes ``max_bytes``, and a failed download leaves
no partial file behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tinker_actors.cli._group import CommandError
from tinker_actors.cli._progress import FileBars

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["fetch_url"]


def fetch_url(
    url: str,
    target: Path,
    *,
    label: str,
    max_bytes: int,
    show_progress: bool | None = None,
) -> int:
    """Write what ``url`` holds to ``target`` (which must not exist); return its size.

    Raises:
        CommandError: the URL cannot be read, it holds more than ``max_bytes``, or the file
            cannot be written.
    """
    import trio

    from tinker_actors.checkpoint_download import CheckpointDownloadError, fetch_signed_url

    bars = FileBars(show_progress)
    try:
        return trio.run(
            fetch_signed_url,
            url,
            target,
            label,
            max_bytes,
            lambda _s, n, d, t: bars.update(n, d, t),
        )
    except CheckpointDownloadError as exc:
        raise CommandError(str(exc)) from None
    except OSError as exc:
        raise CommandError(f"cannot download {label}: {exc.strerror} ({target})") from None
    finally:
        bars.close()
