"""``serve``'s retention flags reach the server's settings; out-of-range values are refused."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from tinker_actors.cli._commands import cli


def _settings_of(monkeypatch: pytest.MonkeyPatch, *flags: str) -> Any:
    """The settings ``serve FLAGS`` builds: a fake server records them and stops it at once
    (as Ctrl-C would), before anything is bound."""
    import tinker_actors.local

    seen: list[object] = []

    def fake_open_local_server(**kwargs: object) -> object:
        seen.append(kwargs["settings"])
        raise KeyboardInterrupt

    monkeypatch.setattr(tinker_actors.local, "open_local_server", fake_open_local_server)
    result = CliRunner().invoke(cli, ["serve", "--port", "0", *flags])
    assert result.exit_code == 0, result.output
    assert len(seen) == 1
    return seen[0]


def test_serve_passes_result_ttl_and_ephemeral_samplers(monkeypatch: pytest.MonkeyPatch) -> None:
    default = _settings_of(monkeypatch)
    assert (default.result_ttl, default.ephemeral_samplers) == (3600.0, 32)
    chosen = _settings_of(monkeypatch, "--result-ttl", "60", "--ephemeral-samplers", "4")
    assert (chosen.result_ttl, chosen.ephemeral_samplers) == (60.0, 4)
    keep_all = _settings_of(monkeypatch, "--ephemeral-samplers", "0")
    assert keep_all.ephemeral_samplers is None


@pytest.mark.parametrize(
    ("flags", "name"),
    [(["--result-ttl", "0.5"], "--result-ttl"), (["--ephemeral-samplers", "-1"], "--ephemeral")],
)
def test_serve_refuses_out_of_range_retention(flags: list[str], name: str) -> None:
    result = CliRunner().invoke(cli, ["serve", "--port", "0", *flags])
    assert result.exit_code == 2
    assert name in result.output
