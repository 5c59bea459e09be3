"""The root command group: commands found by module, errors reported in one line.

Every module of :mod:`tinker_actors.cli.commands` is one top-level command, named after the
module (``session`` -> ``tinker-actors session``; ``_`` becomes ``-``), and exposes it as
``command``. A new command is a new module there and nothing else, so branches that add
commands never edit a shared list. The modules are imported only when the group lists or runs
its commands, and import nothing but click at module level: SDK imports stay inside the
command functions, so ``tinker-actors --help`` starts without trio, httpx or msgspec.

Exit statuses, with one line on stderr and never a traceback:

* 0: done;
* 1: the service (or the disk, or the network) failed: :class:`CommandError`;
* 2: the command line was wrong, or an argument failed a check before anything was sent:
  click's usage errors and :class:`BadInput`;
* 130: interrupted (Ctrl-C).

A failure this module does not recognise is a bug: it is reported in one line too, naming
``TINKER_ACTORS_CLI_TRACEBACK=1``, which prints the traceback instead.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
from typing import TYPE_CHECKING, Any, Final

import click

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "COMMANDS_PACKAGE",
    "TRACEBACK_ENV",
    "BadInput",
    "CommandError",
    "RootGroup",
    "one_line",
]

COMMANDS_PACKAGE: Final = "tinker_actors.cli.commands"
#: Set to 1 to get the traceback of an unexpected failure instead of its one-line summary.
TRACEBACK_ENV: Final = "TINKER_ACTORS_CLI_TRACEBACK"


class CommandError(click.ClickException):
    """A failure of the service or the environment: one line, exit status 1."""

    exit_code = 1


class BadInput(click.ClickException):
    """Input refused before anything was sent: one line, exit status 2."""

    exit_code = 2


def one_line(text: str) -> str:
    """Collapse ``text`` (a message that may span lines) into one line."""
    return " ".join(text.split())


class RootGroup(click.Group):
    """A click group that adds the modules of :data:`COMMANDS_PACKAGE` as lazy commands."""

    def _module_commands(self) -> dict[str, str]:
        package = importlib.import_module(COMMANDS_PACKAGE)
        return {
            info.name.replace("_", "-"): f"{COMMANDS_PACKAGE}.{info.name}"
            for info in pkgutil.iter_modules(package.__path__)
            if not info.name.startswith("_")
        }

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the names of every command: those added here and the modules'."""
        return sorted(set(super().list_commands(ctx)) | set(self._module_commands()))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Return the named command, importing its module on first use."""
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        module = self._module_commands().get(cmd_name)
        if module is None:
            return None
        found = getattr(importlib.import_module(module), "command", None)
        if not isinstance(found, click.Command):
            raise TypeError(f"{module} must define `command`, a click command")
        return found

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command line; report any failure in one line with its exit status.

        Returns the exit status (with ``standalone_mode=False``); exits with it otherwise.
        """
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            status = result if isinstance(result, int) and not isinstance(result, bool) else 0
        except click.ClickException as exc:
            status = _report(exc)
        except click.exceptions.Abort:
            click.echo("tinker-actors: interrupted", err=True)
            status = 130
        except Exception as exc:
            if os.environ.get(TRACEBACK_ENV, "").strip() in ("1", "true", "yes"):
                raise
            where = _innermost(exc)
            click.echo(
                f"Error: unexpected {type(where).__name__}: {one_line(str(where))} "
                f"(set {TRACEBACK_ENV}=1 to see the traceback, and report it)",
                err=True,
            )
            status = 1
        if standalone_mode:
            sys.exit(status)
        return status


def _report(exc: click.ClickException) -> int:
    """Print a click error as one line; return its exit status."""
    if isinstance(exc, click.exceptions.NoArgsIsHelpError):
        exc.show()  # a group named without a subcommand: its help, as click prints it
        return exc.exit_code
    message = one_line(exc.format_message())
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see '{exc.ctx.command_path} --help')"
    click.echo(f"Error: {message}", err=True)
    return exc.exit_code


def _innermost(exc: BaseException) -> BaseException:
    """The first leaf of an exception group (trio wraps task failures), else ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
