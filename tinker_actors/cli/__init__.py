"""The ``tinker-actors`` command line. click and rich come with the ``cli`` extra."""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    try:
        from tinker_actors.cli._commands import cli
    except ImportError as exc:  # click is an extra
        print(
            f"tinker-actors: the command line needs the 'cli' extra ({exc.name} is missing); "
            "install it with: pip install 'tinker-actors[cli]'",
            file=sys.stderr,
        )
        return 2
    import click

    try:
        return int(cli.main(args=argv, standalone_mode=False) or 0)
    except click.ClickException as exc:
        # a user error (a bad flag, a refused alias): its message, not a traceback
        exc.show()
        return exc.exit_code
    except click.Abort:
        print("aborted", file=sys.stderr)
        return 1
