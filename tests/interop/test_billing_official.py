"""``tinker billing usage``, ``tinker billing checkpoint-storage`` and the audit log answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

from tinker_actors.testing import server_in_thread

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("billing_flow.py")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    with server_in_thread() as (url, _):
        env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
        env.update(TINKER_BASE_URL=url, TINKER_API_KEY="tml-interop-billing")
        done = subprocess.run(
            [sys.executable, str(FLOW)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        seen: dict[str, Any] = json.loads(done.stdout)
    return seen


def test_billing_usage_reports_what_was_used(report: dict[str, Any]) -> None:
    usage: dict[str, int] = {}
    for row in report["usage"]["data"]:
        info = row["event_info"]
        if "token_count" in info:
            usage[info["type"]] = usage.get(info["type"], 0) + info["token_count"]
        elif info["type"] == "checkpoint":
            usage["checkpoint"] = usage.get("checkpoint", 0) + info["count"]
    assert usage["training"] == 20
    assert usage["sampling_prefill"] == 4
    assert usage["sampling_sample"] == 10
    assert usage["checkpoint"] == 1  # the named save; the ephemeral sampler save is not billed
    assert report["usage"]["sessions"]


def test_checkpoint_storage_lists_the_saved_checkpoint(report: dict[str, Any]) -> None:
    (row,) = report["storage"]["data"]
    assert row["checkpoint_count"] == 1
    assert row["size_bytes"] > 0


def test_audit_log_has_the_checkpoint(report: dict[str, Any]) -> None:
    created = [e for e in report["audit"] if e["event"] == "checkpoint_create"]
    assert [e["tinker_path"] for e in created] == [report["state"]]
