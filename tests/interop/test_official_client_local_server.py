"""The official tinker 0.38 client runs a whole training flow against our local server.

The server runs on a loopback port in a background thread of this process; the official client
runs the flow of ``official_flow.py`` in a child process. Afterwards the server's counters must
show every training operation applied exactly once, in seq_id order.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

from tinker_actors.testing import server_in_thread

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("official_flow.py")
STEPS = 10


def run_official_flow(url: str, steps: int = STEPS, timeout: float = 300) -> dict[str, Any]:
    """Run the official client's flow against ``url`` in a child process; return its report."""
    done = subprocess.run(
        [sys.executable, str(FLOW), url, "--steps", str(steps)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


@pytest.fixture
def local_server() -> Iterator[tuple[str, Any]]:
    with server_in_thread() as (url, server):
        yield url, server


def _assert_applied_once_in_order(server: Any, model_id: str) -> None:
    counters = server.counters()
    assert model_id in counters["models"], counters
    model = counters["models"][model_id]
    expected_kinds = (
        ["CreateModel"]
        + ["ForwardBackward", "OptimStep"] * STEPS
        + ["Forward", "SaveWeights", "LoadWeights", "SaveWeightsForSampler"]
    )
    # every operation exactly once, strictly in seq_id order, nothing failed
    assert model["applied_seq_ids"] == list(range(len(expected_kinds)))
    assert model["applied_kinds"] == expected_kinds
    assert model["failed"] == 0
    totals = counters["totals"]
    # 10 fwd/bwd + 10 optim + forward + save + load + save_for_sampler, each applied once
    assert totals["applied:ForwardBackward"] == STEPS
    assert totals["applied:OptimStep"] == STEPS
    assert totals["applied:Forward"] == 1
    assert totals["applied:SaveWeights"] == 1
    assert totals["applied:LoadWeights"] == 1
    assert totals["applied:SaveWeightsForSampler"] == 1
    assert totals["applied:CreateModel"] == 1
    assert totals["applied:Sample"] == 2  # the sample and compute_logprobs
    assert totals["sessions:success"] == 1


def test_official_client_full_flow(local_server: tuple[str, Any]) -> None:
    url, server = local_server
    seen = run_official_flow(url)

    assert seen["model_id"].endswith(":train:0")
    assert len(seen["losses"]) == STEPS
    assert seen["losses"][-1] < seen["losses"][0]  # the null backend "learns" per step
    assert seen["forward_outputs"] == 4
    assert seen["state_path"].endswith("/weights/after-ten")
    assert len(seen["sequences"]) == 4
    assert all(len(tokens) == 6 for tokens in seen["sequences"])
    assert seen["prompt_logprobs"][0] is None
    assert all(isinstance(x, float) for x in seen["prompt_logprobs"][1:])
    assert seen["logprobs"] == seen["prompt_logprobs"]
    assert seen["model_id"] in seen["run_ids"]
    assert "weights/after-ten" in seen["checkpoints"]
    assert seen["run"]["training_run_id"] == seen["model_id"]
    assert seen["run"]["last_checkpoint"] == "weights/after-ten"
    # copy_weights, assign_session_project and export_session_trace through the official client
    assert seen["copied_path"].endswith("/weights/after-ten")
    assert seen["copied_path"] != seen["state_path"]
    assert seen["trace_url"].startswith(url + "/_local/files/")
    assert seen["model_id"] in seen["project_runs"]
    _assert_applied_once_in_order(server, seen["model_id"])


FAULT_PLAN = {
    "seed": 20261121,
    "rules": [
        {
            "endpoint": "*",
            "probability": 0.2,
            "choices": {"429": 1, "500": 1, "503": 1, "408": 1},
            "retry_after": 0.05,
        }
    ],
    "connection": {"reset": 0.05},
}


def test_official_client_full_flow_under_faults() -> None:
    """20 % of responses replaced by 429/5xx/408 and 5 % of requests reset: still exactly once."""
    from tinker_actors.local._faults import FaultPlan

    plan = FaultPlan.from_dict(FAULT_PLAN)
    with server_in_thread(faults=plan) as (url, server):
        seen = run_official_flow(url, timeout=600)
        counters = server.counters()
    assert len(seen["losses"]) == STEPS
    assert len(seen["sequences"]) == 4
    _assert_applied_once_in_order(server, seen["model_id"])
    assert counters["faults"]["injected"] > 0
    assert counters["connection_faults"]["reset"] > 0
