"""For the recipe tests: ``tinker-actors serve`` in a child process, as a user starts it, and
the command that runs a recipe module with the official client or under the import switch."""

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


#: Runs a module as ``python -m`` would, then prints which ``tinker`` module it imported, so a
#: test knows whether the import switch really was active.
_LAUNCHER = (
    "import runpy, sys\n"
    "module, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    print('TINKER-MODULE', sys.modules['tinker'].__name__)\n"
)


def recipe_command(module: str, args: list[str], *, compat: bool) -> list[str]:
    """The command that runs recipe ``module`` with ``args``: with the official client, or
    (``compat``) under the import switch, ``tinker-actors run -- python ...``."""
    launch = [sys.executable, "-c", _LAUNCHER, module, *args]
    if compat:
        launch = [sys.executable, "-m", "tinker_actors.cli", "run", "--", *launch]
    return launch


def check_tinker_module(stdout: str, *, compat: bool) -> None:
    """Assert that a :func:`recipe_command` run imported the ``tinker`` it was meant to."""
    expected = "tinker_actors.compat" if compat else "tinker"
    assert f"TINKER-MODULE {expected}" in stdout, stdout[-2000:]
