"""``tinker-actors run [--] CMD [ARGS...]``: run a program with ``import tinker`` on tinker_actors.

The command replaces this process (``exec``) with ``PYTHONPATH`` and ``TINKER_ACTORS_COMPAT``
set so that every Python interpreter it starts, child processes included, installs the import
switch of :mod:`tinker_actors.compat._switch` at start-up.
"""

from __future__ import annotations

import os
import sys

import click

__all__ = ["run"]


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run(command: tuple[str, ...]) -> None:
    """Run COMMAND with `import tinker` resolving to tinker_actors.compat.

    Example: tinker-actors run -- python train.py --steps 10
    """
    from tinker_actors.compat._switch import child_environment

    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise click.UsageError("nothing to run: tinker-actors run -- python script.py ...")
    try:
        os.execvpe(argv[0], argv, _with_own_bin_first(child_environment()))
    except OSError as exc:
        raise click.ClickException(f"cannot run {argv[0]!r}: {exc.strerror or exc}") from None


def _with_own_bin_first(env: dict[str, str]) -> dict[str, str]:
    """Put this virtualenv's ``bin`` first on ``PATH``, as activating it would.

    ``.venv/bin/tinker-actors run -- python train.py`` is often typed without activating the
    environment; ``python`` must then still be the interpreter that has tinker_actors, not
    another one on ``PATH`` that cannot install the switch (and may run the official package).
    Outside a virtualenv ``PATH`` is left as it is.
    """
    if sys.prefix == sys.base_prefix:
        return env
    own = os.path.dirname(sys.executable)
    rest = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != own]
    env["PATH"] = os.pathsep.join([own, *rest])
    return env
