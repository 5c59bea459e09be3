"""Progress bars on stderr (rich), so stdout stays clean for tables and JSON.

A bar is drawn only when asked for: ``enabled=None`` means "when stderr is a terminal", which is
what commands pass by default; ``--progress`` / ``--no-progress`` force it either way.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from contextlib import AbstractContextManager

__all__ = ["FileBars", "progress"]


@contextmanager
def progress(
    label: str, total: int | None, *, enabled: bool | None = None, unit: str = "items"
) -> Iterator[Callable[[int], None]]:
    """Yield ``advance(n)``; draw a bar for ``total`` steps (None: unknown) on stderr if enabled.

    Args:
        label: what is being done ("downloading adapter_model.safetensors").
        total: the number of steps (bytes with ``unit="bytes"``), or None if unknown.
        enabled: draw the bar; None draws it when stderr is a terminal.
        unit: ``"bytes"`` shows sizes and a transfer speed; anything else shows counts.
    """
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = [TextColumn("{task.description}"), BarColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn()]
    columns.append(TimeRemainingColumn())
    console = Console(stderr=True, emoji=False, highlight=False)
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


class FileBars:
    """A bar per file of a download: opened at the file's first chunk (when its size is known),
    closed when the next file starts or at :meth:`close`."""

    def __init__(self, enabled: bool | None) -> None:
        self._enabled = enabled
        self._name: str | None = None
        self._done = 0
        self._bar: AbstractContextManager[Callable[[int], None]] | None = None
        self._advance: Callable[[int], None] | None = None

    def update(self, name: str, done: int, total: int | None) -> None:
        """Record that ``done`` bytes of ``name`` (of ``total``, when known) have arrived."""
        if name != self._name or self._advance is None:
            self.close()
            self._name, self._done = name, 0
            self._bar = progress(name, total, enabled=self._enabled, unit="bytes")
            self._advance = self._bar.__enter__()
        self._advance(done - self._done)
        self._done = done

    def close(self) -> None:
        """Finish the open bar, if any."""
        bar, self._bar, self._advance, self._name = self._bar, None, None, None
        if bar is not None:
            bar.__exit__(None, None, None)
