"""tinker-cookbook's weights.download of age-encrypted exports from the local torch server.

``weights_download_flow.py`` runs in a child process with only ``TINKER_API_KEY`` set; the
files come over the server's signed HTTP URLs.
"""

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
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (see the README)")
pytest.importorskip("pyrage", reason="pyrage (server extra) encrypts exports")
pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.testing import server_in_thread

pytestmark = pytest.mark.interop

FLOW = Path(__file__).with_name("weights_download_flow.py")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("downloads")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    env["TINKER_API_KEY"] = "tml-interop-download"
    with server_in_thread(backend=TorchBackend()) as (url, server):
        done = subprocess.run(
            [sys.executable, str(FLOW), url, str(workdir)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-4000:]
        seen: dict[str, Any] = json.loads(done.stdout)
        seen["downloads"] = server.counters()["totals"].get("downloads", 0)
    return seen


def test_a_training_checkpoint_downloads_through_an_encrypted_export(
    report: dict[str, Any],
) -> None:
    # weights.download exported the state encrypted to its own key, fetched and decrypted it:
    # the files equal the plain export of the same weights
    assert set(report["state"]) == {"adapter_config.json", "adapter_model.safetensors"}
    assert report["state"] == report["plain"]
    # and deleted its temporary export afterwards
    assert report["checkpoints_after"] == [
        "external_weights/plain",
        "external_weights/sealed",
        "weights/state",
    ]


def test_an_export_encrypted_to_our_key_arrives_encrypted_and_decrypts(
    report: dict[str, Any],
) -> None:
    assert set(report["sealed"]) == {"adapter_config.json.age", "adapter_model.safetensors.age"}
    assert report["sealed_decrypted"] == report["plain"]
    # every file came over HTTP from the server itself: 2 plain + 2 state + 2 sealed
    assert report["downloads"] == 6
