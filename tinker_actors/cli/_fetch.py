"""Download a signed URL (``https://``, or the local server's ``file://``) to a file.

Signed URLs carry their own authorization, so no credential is sent with them. The download
is streamed in chunks with a progress bar, stops as soon as it passes ``max_bytes``, and a
failed download leaves no partial file behind.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Final
from urllib.parse import unquote, urlsplit

from tinker_actors.cli._group import CommandError
from tinker_actors.cli._progress import progress

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["fetch_url"]

_CHUNK: Final = 1024 * 1024
_TIMEOUT: Final = 60.0


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
    size = 0
    created = False
    try:
        with _open_source(url, label) as (chunks, total):
            if total is not None and total > max_bytes:
                raise CommandError(_too_big(label, max_bytes))
            with (
                progress(label, total, enabled=show_progress, unit="bytes") as advance,
                open(target, "xb") as out,
            ):
                created = True
                for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise CommandError(_too_big(label, max_bytes))
                    out.write(chunk)
                    advance(len(chunk))
    except BaseException:
        if created:
            target.unlink(missing_ok=True)
        raise
    return size


def _too_big(label: str, max_bytes: int) -> str:
    return (
        f"refused to download {label}: it is larger than {max_bytes} bytes (raise --max-size "
        "if it is really that large)"
    )


@contextlib.contextmanager
def _open_source(url: str, label: str) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """Yield the chunks of ``url`` and its size when known."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise CommandError(f"cannot download {label}: {exc.strerror} ({path})") from None
        with source:
            yield iter(lambda: source.read(_CHUNK), b""), path.stat().st_size
    elif parts.scheme in ("http", "https"):
        import httpx

        try:
            with (
                httpx.Client(timeout=_TIMEOUT, follow_redirects=True) as client,
                client.stream("GET", url) as response,
            ):
                if response.status_code >= 400:
                    raise CommandError(
                        f"cannot download {label}: the storage answered "
                        f"{response.status_code}; the signed URL may have expired, run the "
                        "command again"
                    )
                length = response.headers.get("content-length")
                total = int(length) if length and length.isdigit() else None
                yield response.iter_bytes(_CHUNK), total
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot download {label}: {exc}") from None
    else:
        raise CommandError(f"cannot download {label}: unsupported URL scheme {parts.scheme!r}")
