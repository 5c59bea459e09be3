"""``serve --backend torch`` makes OpenMP wait passively unless the user chose otherwise.

Spinning OpenMP waits made every small torch step on a busy machine 10-20x slower (a sampling
request of 5 tokens on local/tiny took 0.6 s instead of 30 ms with a recipe running beside the
server), so the serve command sets ``OMP_WAIT_POLICY=PASSIVE`` before torch is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("torch", reason="the torch backend needs the torch extra")

PROBE = (
    "import os, sys\n"
    "from tinker_actors.cli._commands import _make_backend\n"
    "assert 'torch' not in sys.modules\n"
    "_make_backend('torch')\n"
    "print(os.environ.get('OMP_WAIT_POLICY'))\n"
)


def _policy_after_make_backend(preset: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if preset is not None:
        env["OMP_WAIT_POLICY"] = preset
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_torch_backend_waits_passively_by_default() -> None:
    assert _policy_after_make_backend(None) == "PASSIVE"


def test_a_users_choice_is_kept() -> None:
    assert _policy_after_make_backend("ACTIVE") == "ACTIVE"
