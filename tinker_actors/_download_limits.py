"""The default limits of a checkpoint download, without imports (the CLI's --help shows them)."""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_FILES"]

#: Default limit on what one checkpoint may unpack to (16 GiB).
DEFAULT_MAX_BYTES: Final = 16 * 1024**3
#: Default limit on the number of members of one archive.
DEFAULT_MAX_FILES: Final = 100_000
