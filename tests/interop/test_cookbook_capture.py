"""tinker-cookbook's capture (``tinker_cookbook.capture``) records a run on the compat layer as
it does with the official client.

Capture patches ``tinker.SamplingClient.sample`` and the TrainingClient operations, then reads
what it records from the clients and the arguments: 0.38's private ``_sampling_session_id``
(the key its store de-duplicates samples by), ``SamplingParams`` fields (``seed`` unset reads
None), ``model_id``, the results' metrics. The same script runs with the official client and
under the import switch against one ``tinker-actors serve`` (null backend); the records must
have the same shape and the same non-random values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serve_support import SWITCH, serve_in_child

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("capture_flow.py")
RANDOM = {"created_at", "latency_sec", "seq_id", "samples", "model_id", "sampling_session_id"}


def _records(out: Path) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(out.rglob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        found[path.stem] = rows
    return found


def _run(url: str, out: Path, *, compat: bool) -> dict[str, list[dict[str, Any]]]:
    command = [sys.executable, str(FLOW), str(out)]
    if compat:
        command = [*SWITCH, *command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    env.update(TINKER_BASE_URL=url, TINKER_API_KEY="tml-capture")
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return _records(out)


def test_capture_records_the_same_run_with_both_clients(tmp_path: Path) -> None:
    with serve_in_child() as url:
        theirs = _run(url, tmp_path / "official", compat=False)
        ours = _run(url, tmp_path / "compat", compat=True)
    assert sorted(theirs) == sorted(ours) == ["sample", "train_op"]
    assert [len(theirs[k]) for k in ("sample", "train_op")] == [2, 4]
    for kind in theirs:
        for mine, official in zip(ours[kind], theirs[kind], strict=True):
            assert sorted(mine) == sorted(official), kind
            assert {k: v for k, v in mine.items() if k not in RANDOM} == {
                k: v for k, v in official.items() if k not in RANDOM
            }
    for row in ours["sample"]:
        # the store's dedupe key: the sampling session the sample ran in
        assert row["sampling_session_id"].endswith(":sample:0"), row
        assert len(row["samples"]) == row["num_samples"]
    assert [row["sampling_params"]["seed"] for row in ours["sample"]] == [None, 5]
    assert {row["model_id"] for row in ours["train_op"]} == {
        ours["sample"][0]["sampling_session_id"].replace(":sample:0", ":train:0")
    }
