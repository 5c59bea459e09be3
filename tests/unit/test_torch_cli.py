"""``serve --backend torch`` without torch installed fails with an install hint, not a trace."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from tinker_actors.cli._commands import cli


def test_serve_torch_without_torch_explains_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # make ``import torch`` fail, and forget any torch-backend module imported earlier
    monkeypatch.setitem(sys.modules, "torch", None)
    for name in list(sys.modules):
        if name.startswith("tinker_actors.local._torch"):
            monkeypatch.delitem(sys.modules, name)
    result = CliRunner().invoke(cli, ["serve", "--backend", "torch", "--port", "0"])
    assert result.exit_code == 1
    assert "tinker-actors[torch]" in result.output
    assert "-c constraints.txt" in result.output
    assert "Traceback" not in result.output


def test_serve_help_lists_the_torch_backend() -> None:
    result = CliRunner().invoke(cli, ["serve", "--help"])
    assert result.exit_code == 0
    assert "torch" in result.output
