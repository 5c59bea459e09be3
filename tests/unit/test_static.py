"""The package stays ruff-clean and mypy-strict; CI runs this like any other test."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, check=False)


def _ruff() -> list[str]:
    # the virtualenv's ruff even when the virtualenv is not activated (`.venv/bin/python -m
    # pytest`), else one on PATH
    if importlib.util.find_spec("ruff") is not None:
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (dev extra)")
    return [found]


def test_ruff_clean() -> None:
    ruff = _ruff()
    lint = _run(*ruff, "check", "tinker_actors", "tests", "bench", "examples")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(*ruff, "format", "--check", "tinker_actors")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (dev extra)")
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
