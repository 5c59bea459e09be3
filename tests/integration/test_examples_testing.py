"""``pytest examples/testing`` passes: the example user project, run as its user would run it.

It runs in a subprocess, as a separate pytest session, so the project is exercised exactly as
``pytest examples/testing`` runs it (the plugin found through its entry point, the example's
own imports), and its results are read from a JUnit report.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server extra is not installed")

ROOT = Path(__file__).resolve().parents[2]


def test_pytest_examples_testing(tmp_path: Path) -> None:
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            "examples/testing",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    counts = {key: int(suite.get(key, "0")) for key in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 12, "failures": 0, "errors": 0, "skipped": 0}
    names = {case.get("name") for case in suite.iter("testcase")}
    assert {
        "test_429_storm",
        "test_5xx",
        "test_connection_resets",
        "test_stalls",
        "test_server_restart",
        "test_a_loop_that_resubmits_a_step_after_5xx_is_caught",
    } <= names
