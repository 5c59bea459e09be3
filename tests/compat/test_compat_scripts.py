"""Programs in the official SDK's three styles run unchanged on tinker_actors.compat.

Each script in ``scripts/`` is written for the official ``tinker`` 0.38 (``import tinker``) and
prints a JSON report. Every one runs twice against a fresh local server on a loopback port: with
the official client, and under the import switch (``python -m tinker_actors.compat``), where
``import tinker`` loads the compat package. The reports must agree: the same losses (the null
backend is deterministic), the same numbers of samples and tokens.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tinker_actors.testing import server_in_thread

SCRIPTS = Path(__file__).with_name("scripts")
KEY = "tml-compat-scripts-key"


def run_script(name: str, *args: str, compat: bool, timeout: float = 300) -> dict[str, Any]:
    """Run ``scripts/name`` against a fresh local server; return its JSON report."""
    env = dict(os.environ, TINKER_API_KEY=KEY)
    env.pop("TINKER_BASE_URL", None)
    with server_in_thread() as (url, _server):
        prefix = [sys.executable, "-m", "tinker_actors.compat"] if compat else [sys.executable]
        done = subprocess.run(
            [*prefix, str(SCRIPTS / name), url, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert report.pop("sdk") == ("tinker_actors.compat" if compat else "tinker")
    return report


def _official(name: str, *args: str) -> dict[str, Any]:
    pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
    return run_script(name, *args, compat=False)


@pytest.mark.interop
def test_sync_sft_loop_matches_the_official_client() -> None:
    ours = run_script("sync_sft.py", "5", compat=True)
    official = _official("sync_sft.py", "5")
    assert ours["losses"] == pytest.approx(official["losses"], rel=1e-9)
    assert ours["losses"][-1] < ours["losses"][0]
    assert ours["checkpoint"].endswith("/weights/final")
    assert ours["sequences"] == official["sequences"] == 2
    # bad input is refused on the caller's thread, as a ValueError (ours: InvalidInputError)
    assert ours["refused"] == "InvalidInputError"
    assert official["refused"] is not None


@pytest.mark.interop
def test_asyncio_gather_of_500_samples() -> None:
    ours = run_script("async_gather.py", "500", compat=True)
    assert ours == {"samples": 500, "tokens": 1500, "logprobs": 4}
    assert _official("async_gather.py", "500") == ours


@pytest.mark.interop
def test_asyncio_run_on_every_step() -> None:
    ours = run_script("asyncio_run_per_step.py", "5", compat=True)
    official = _official("asyncio_run_per_step.py", "5")
    assert ours["losses"] == pytest.approx(official["losses"], rel=1e-9)
    assert len(ours["losses"]) == 5


@pytest.mark.interop
def test_inside_an_already_running_loop() -> None:
    ours = run_script("running_loop.py", compat=True)
    official = _official("running_loop.py")
    assert ours == official
    assert ours["sampled"] == 2


@pytest.mark.interop
def test_spawn_pool_samples_through_a_pickled_client() -> None:
    ours = run_script("spawn_pool.py", "2", compat=True)
    assert ours["results"] == 4
    assert ours["tokens"] == 12
    assert ours["parent"] is True  # the samples ran in the workers
    assert ours["workers"] >= 1
    official = _official("spawn_pool.py", "2")
    assert official["results"] == ours["results"]
