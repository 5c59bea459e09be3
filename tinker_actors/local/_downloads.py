"""Signed download links: the local server's stand-in for the service's signed storage URLs.

Archive, external-weights and trace-export answers carry URLs a client on another host can
fetch: ``<server base URL>/_local/files/<token>/<file name>``, served by the server itself. The
token is 32 random bytes (unguessable; it is the only credential, as with a signed URL), maps to
one file, and stops working when the link expires. The file is read when it is downloaded, so a
link to a deleted checkpoint answers 404.

Links live in memory (a restart forgets them; clients ask for new URLs, as they must after an
expiry anyway), at most :data:`MAX_LINKS` at once, expired ones dropped first.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["DOWNLOAD_PREFIX", "MAX_LINKS", "DownloadLinks"]

#: The path under which links are served (never faulted, no API key: the token is the key).
DOWNLOAD_PREFIX = "/_local/files/"
#: Links kept at once; signing more drops the oldest.
MAX_LINKS = 100_000


@dataclass(frozen=True)
class _Link:
    path: Path
    name: str
    expires: float


class DownloadLinks:
    """Signed links to files, by token.

    Args:
        clock: POSIX seconds (the server's wall clock, so tests can move it).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._links: dict[str, _Link] = {}

    def __len__(self) -> int:
        return len(self._links)

    def sign(self, base_url: str, path: Path, lifetime: timedelta) -> tuple[str, datetime]:
        """Return a URL for ``path`` valid for ``lifetime``, and when it expires."""
        now = self._clock()
        self._purge(now)
        while len(self._links) >= MAX_LINKS:
            self._links.pop(next(iter(self._links)))
        token = secrets.token_urlsafe(32)
        expires = now + lifetime.total_seconds()
        self._links[token] = _Link(path=path, name=path.name, expires=expires)
        url = f"{base_url.rstrip('/')}{DOWNLOAD_PREFIX}{token}/{quote(path.name)}"
        return url, datetime.fromtimestamp(expires, tz=UTC)

    def resolve(self, token: str, name: str) -> Path | None:
        """The file a live link names (``name`` must be its file name), else None."""
        link = self._links.get(token)
        if link is None or link.name != name:
            return None
        if link.expires <= self._clock():
            del self._links[token]
            return None
        return link.path if link.path.is_file() else None

    def _purge(self, now: float) -> None:
        for token in [t for t, link in self._links.items() if link.expires <= now]:
            del self._links[token]
