"""The official ``tinker auth login`` / ``logout`` and ours share one credentials file.

A user may log in with either CLI and log out with the other; both SDKs then read the default
key from ``~/.tinker/credentials.json``. The official CLI (0.38, unmodified, in a child
process) logs in against the local server, which answers its key check
(``GET /api/v1/auth/apikey/me``); our CLI and SDK use the key it stored, and our logout removes
it. Then the other way round.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_actors.testing import server_in_thread

pytest.importorskip("tinker", reason="the official client comes with the interop extra")
pytest.importorskip("click", reason="the cli extra is not installed")

pytestmark = pytest.mark.interop


def _run(
    command: list[str], home: Path, url: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    env.update(HOME=str(home), TINKER_BASE_URL=url, TINKER_TELEMETRY="0")
    return subprocess.run(
        command, input=stdin, env=env, capture_output=True, text=True, timeout=120, check=False
    )


OFFICIAL = [sys.executable, "-m", "tinker.cli", "auth"]
OURS = [sys.executable, "-m", "tinker_actors.cli", "auth"]
CAPABILITIES = (
    "import tinker_actors.compat as tinker, json; "
    "print(json.dumps(len(tinker.RestClient().get_server_capabilities().result().supported_models)))"
)


def test_either_cli_logs_in_and_the_other_logs_out(tmp_path: Path) -> None:
    stored = tmp_path / ".tinker" / "credentials.json"
    with server_in_thread() as (url, _):
        login = _run([*OFFICIAL, "login"], tmp_path, url, "tml-official\n")
        assert login.returncode == 0, login.stderr
        assert "Logged in as local@localhost (local)" in login.stdout
        key_id = json.loads(stored.read_text())["default"]
        status = _run([*OURS, "status", "-f", "json"], tmp_path, url)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["credential_source"] == f"the credentials file {stored}"
        sdk = _run([sys.executable, "-c", CAPABILITIES], tmp_path, url)
        assert sdk.returncode == 0, sdk.stderr
        assert json.loads(sdk.stdout) >= 2
        logout = _run([*OURS, "logout", "-f", "json"], tmp_path, url)
        assert logout.returncode == 0, logout.stderr
        assert json.loads(logout.stdout)["key_id"] == key_id
        assert json.loads(stored.read_text())["keys"] == {}

        login = _run([*OURS, "login", "-f", "json"], tmp_path, url, "tml-ours\n")
        assert login.returncode == 0, login.stderr
        record = json.loads(stored.read_text())
        assert record["keys"][record["default"]]["key"] == "tml-ours"
        official_status = _run([*OFFICIAL, "status"], tmp_path, url)
        assert official_status.returncode == 0, official_status.stderr
        logout = _run([*OFFICIAL, "logout"], tmp_path, url)
        assert logout.returncode == 0, logout.stderr
        assert "The API key is still active" in logout.stdout
        assert json.loads(stored.read_text())["keys"] == {}
