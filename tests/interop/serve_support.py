"""``tinker-actors serve`` in a child process, as a user starts it, for the recipe tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def serve_in_child(*args: str) -> Iterator[str]:
    """Run ``tinker-actors serve --port 0 ARGS...``; yield its URL, stop it on exit."""
    command = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0", *args]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert " at " in first, first
        yield first.rsplit(" at ", 1)[1].strip()
    finally:
        server.terminate()
        server.wait(timeout=60)
        if server.stdout is not None:
            server.stdout.close()
