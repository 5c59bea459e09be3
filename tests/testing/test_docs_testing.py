"""docs/testing.md: every example test file in the guide runs, as shown, and passes.

The guide's ``python`` blocks that start with a ``# test_<name>.py`` line are written to a
fresh directory under those names and run there as one pytest session of their own (no
project configuration: the plugin comes from its entry point, trio tests are marked).
"""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server extra is not installed")

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
BLOCK = re.compile(r"```python\n# (test_\w+\.py)\n(.*?)```", re.DOTALL)


def test_the_guide_examples_pass(tmp_path: Path) -> None:
    files = dict(BLOCK.findall(GUIDE.read_text()))
    assert set(files) == {
        "test_first.py",
        "test_faults.py",
        "test_broken_loop.py",
        "test_restart.py",
        "test_styles.py",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-W",
            "error",
            f"--junitxml={report}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")} == {
        "tests": 9,
        "failures": 0,
        "errors": 0,
        "skipped": 0,
    }
