"""stable_reinforce and gspo on the torch backend, driven by the official tinker 0.38 client.

``rl_losses_flow.py`` runs in a child process against a server in this process's thread: one
RL step per loss on datums built as the cookbook builds them, then the refusals.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)
pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.testing import server_in_thread

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("rl_losses_flow.py")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    with server_in_thread(backend=TorchBackend()) as (url, server):
        done = subprocess.run(
            [sys.executable, str(FLOW), url],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        seen: dict[str, Any] = json.loads(done.stdout)
        seen["counters"] = server.counters()
    return seen


@pytest.mark.parametrize("loss_fn", ["stable_reinforce", "gspo"])
def test_one_step_moves_towards_the_advantage(report: dict[str, Any], loss_fn: str) -> None:
    run = report[loss_fn]
    changes = [a - b for a, b in zip(run["after"], run["before"], strict=True)]
    advantages = run["advantages"]
    assert any(a > 0 for a in advantages)
    assert any(a < 0 for a in advantages)
    up = [c for c, a in zip(changes, advantages, strict=True) if a > 0]
    down = [c for c, a in zip(changes, advantages, strict=True) if a < 0]
    assert sum(up) / len(up) > 0 > sum(down) / len(down), (up, down)
    assert sum(a * c for a, c in zip(advantages, changes, strict=True)) > 0


def test_sequences_carry_ids_and_sampled_logprobs_match_the_learner(
    report: dict[str, Any],
) -> None:
    run = report["stable_reinforce"]
    assert len(set(run["sequence_ids"])) == 8
    assert all(":seq:" in s for s in run["sequence_ids"])
    # on-policy: what the sampler recorded is what the learner computes
    for sampled, learner in zip(run["sampled_logprob_sums"], run["before"], strict=True):
        assert sampled == pytest.approx(learner, abs=1e-3)


def test_refusals_are_400s_that_say_what_to_do(report: dict[str, Any]) -> None:
    refused = report["refusals"]
    assert refused["no_provenance"].startswith("400")
    assert "stable_reinforce needs provenance" in refused["no_provenance"]
    assert refused["forged_tokens"].startswith("400")
    assert "are not the sampled tokens" in refused["forged_tokens"]
    assert refused["bad_gspo_config"].startswith("400")
    assert "accepts clip_high_threshold, clip_low_threshold" in refused["bad_gspo_config"]


def test_nothing_failed_after_acceptance(report: dict[str, Any]) -> None:
    totals = report["counters"]["totals"]
    assert totals["applied:ForwardBackward"] == 2
    assert totals.get("failed:ForwardBackward", 0) == 0
