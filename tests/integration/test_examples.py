"""Every script in examples/ runs green against the local server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_train_and_sample_local() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_and_sample_local.py"), "--steps", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    losses = [float(line.rsplit("= ", 1)[1]) for line in lines if line.startswith("step ")]
    assert len(losses) == 3
    assert losses == sorted(losses, reverse=True)  # the null backend's loss falls per step
    assert sum(line.startswith("sample ") for line in lines) == 2
    # create_model, 3 x (forward_backward, optim_step), save_weights_for_sampler: in order, once
    assert lines[-1].endswith("applied seq_ids [0, 1, 2, 3, 4, 5, 6, 7]")
