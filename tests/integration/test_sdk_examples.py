"""The SDK examples run green: embedded, and against ``tinker-actors serve`` with faults."""

from __future__ import annotations

import math
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_support import CLI, run_example

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``tinker-actors serve`` with a 429/503 storm on asample and the polls."""
    pytest.importorskip("click", reason="the cli extra is not installed")
    proc = subprocess.Popen(
        [
            *CLI, "serve", "--port", "0", "--data-dir", str(tmp_path),
            "--fault", "asample:429@0.2,retry_after=0.1",
            "--fault", "retrieve_future:503@0.1",
            "--fault", "seed=4",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert " at http://127.0.0.1:" in first, first
        yield first.rsplit(" at ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)


def sft_losses(lines: list[str]) -> list[float]:
    return [float(line.rsplit("= ", 1)[1]) for line in lines if line.startswith("step ")]


def test_sft_loop_embedded() -> None:
    lines = run_example("sft_loop.py", "--steps", "4", "--batch-size", "4")
    losses = sft_losses(lines)
    assert len(losses) == 4
    assert losses == sorted(losses, reverse=True)  # the null backend's loss falls per step
    assert any(line.startswith("saved tinker://") for line in lines)
    assert sum(line.startswith("sample ") for line in lines) == 2
    assert lines[-1] == "done"


def test_rl_loop_embedded() -> None:
    lines = run_example("rl_loop.py", "--iterations", "2", "--groups", "4", "--group-size", "3")
    iterations = [line for line in lines if line.startswith("iteration ")]
    assert len(iterations) == 2
    assert all(": 12 samples," in line for line in iterations)
    assert lines[-1] == "done"


def dpo_losses(lines: list[str]) -> list[float]:
    return [
        float(line.split("dpo loss = ")[1].split(",")[0]) for line in lines if "dpo loss" in line
    ]


def test_custom_loss_embedded() -> None:
    pytest.importorskip("torch", reason="forward_backward_custom needs torch")
    lines = run_example("custom_loss.py", "--steps", "3", "--pairs", "3")
    losses = dpo_losses(lines)
    assert len(losses) == 3
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at first
    assert losses[1] != losses[0]  # the custom gradient reached the model
    assert all(f"step {i}: " in "\n".join(lines) for i in (1, 2, 3))
    assert lines[-1] == "done"


def test_both_examples_against_tinker_actors_serve_with_faults(served: str) -> None:
    lines = run_example("sft_loop.py", "--base-url", served, "--steps", "3", "--batch-size", "2")
    assert len(sft_losses(lines)) == 3
    assert lines[-1] == "done"
    lines = run_example("rl_loop.py", "--base-url", served, "--iterations", "1", "--groups", "6")
    assert any(line.startswith("iteration 1: 24 samples") for line in lines)
    assert lines[-1] == "done"


def test_custom_loss_against_tinker_actors_serve_with_faults(served: str) -> None:
    pytest.importorskip("torch", reason="forward_backward_custom needs torch")
    lines = run_example("custom_loss.py", "--base-url", served, "--steps", "2", "--pairs", "2")
    assert len(dpo_losses(lines)) == 2
    assert lines[-1] == "done"
