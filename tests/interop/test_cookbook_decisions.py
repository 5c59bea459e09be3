"""tinker-cookbook's decisions library (``target_prompt_logprobs``) on the torch backend.

``decisions_flow.py`` runs in a child process, once with the official tinker 0.38 client and
once under the import switch (``tinker-actors run --``), against one server in this process's
thread. The cookbook scores a question's three choices with one sample request that asks for
the choices' answer tokens at the answer position (a sparse tensor padded with -1), trains
three cross-entropy steps towards one choice, scores again, and takes a soft-label step
through ``forward_backward_custom``. A server that ignored ``target_prompt_logprobs`` made the
cookbook raise ("The sampling response did not include target_prompt_logprobs").
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")

from serve_support import SWITCH

from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.testing import server_in_thread

pytestmark = [pytest.mark.interop, pytest.mark.slow]

FLOW = Path(__file__).with_name("decisions_flow.py")
MODEL = "local/tiny"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    cache = tmp_path_factory.mktemp("decisions") / "hub"
    install = [
        sys.executable, "-m", "tinker_actors.cli", "tokenizers", "install",
        "--cache-dir", str(cache), "--model", MODEL,
    ]  # fmt: skip
    done = subprocess.run(install, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(cache))
    out = {}
    with server_in_thread(backend=TorchBackend(seed=0)) as (url, _server):
        for name, prefix in (
            ("official", []),
            ("compat", SWITCH),
        ):
            command = [*prefix, sys.executable, str(FLOW), url, MODEL]
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=600, check=False
            )
            assert done.returncode == 0, done.stderr[-6000:]
            out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def test_choices_are_scored_and_training_moves_them(runs: dict[str, dict[str, Any]]) -> None:
    run = runs["official"]
    assert run["tinker"] == "tinker"
    before, after = run["before"], run["after"]
    assert list(before) == ["billing", "sdk", "cookbook"]  # choice order
    for probabilities in (before, after):
        assert math.isclose(sum(probabilities.values()), 1.0, abs_tol=1e-5)
    # an untrained LoRA model is nearly indifferent; three steps make "cookbook" the answer
    assert max(before.values()) < 0.5
    assert after["cookbook"] > 0.9 > before["cookbook"]
    assert run["losses"][-1] < run["losses"][0]
    metrics = run["custom_metrics"]
    assert math.isfinite(metrics["loss"])
    assert 0.0 <= metrics["target_prob:mean"] <= 1.0


def test_the_switch_gives_the_official_clients_numbers(runs: dict[str, dict[str, Any]]) -> None:
    official, compat = runs["official"], runs["compat"]
    assert compat["tinker"] == "tinker_actors.compat"
    for key in ("before", "after"):
        for label, p in official[key].items():
            assert math.isclose(compat[key][label], p, rel_tol=1e-4, abs_tol=1e-6), (key, label)
    for a, b in zip(official["losses"], compat["losses"], strict=True):
        assert math.isclose(a, b, rel_tol=1e-4)
