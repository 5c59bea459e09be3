"""Subcommands. Heavy imports stay inside each command so ``--help`` starts fast."""

from __future__ import annotations

import click


@click.group()
def cli() -> None:
    """Tinker SDK on trio: local server, demo and tools."""


@cli.command()
def version() -> None:
    """Print the tinker_actors version."""
    from tinker_actors._version import __version__

    click.echo(__version__)
