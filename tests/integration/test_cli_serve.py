"""``tinker-actors serve``: starts, answers on loopback, stops on Ctrl-C; bad flags are refused."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("click", reason="the cli extra is not installed: pip install -e '.[cli]'")
pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

CLI = [sys.executable, "-m", "tinker_actors.cli"]


def test_serve_answers_and_stops_on_interrupt(tmp_path: object) -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--data-dir", str(tmp_path), "--fault", "telemetry:503"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "local server (null backend) at http://127.0.0.1:" in first, first
        url = first.rsplit(" at ", 1)[1].strip()
        headers = {"X-API-Key": "tml-cli-test"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
            assert client.get("/api/v1/healthz").json() == {"status": "ok"}
            caps = client.get("/api/v1/get_server_capabilities").json()
            assert {m["model_name"] for m in caps["supported_models"]} >= {"local/tiny"}
            assert client.post("/api/v1/telemetry", json={}).status_code == 503  # the fault
            refused = client.get("/api/v1/get_server_capabilities", headers={"X-API-Key": "x"})
            assert refused.status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_serve_stops_cleanly_on_sigterm() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert " at http://127.0.0.1:" in first, first
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped" in out


def test_serve_refuses_a_bad_fault_rule() -> None:
    done = subprocess.run(
        [*CLI, "serve", "--port", "0", "--fault", "asample:999@2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "999" in done.stderr or "probability" in done.stderr, done.stderr


def test_version() -> None:
    from tinker_actors._version import __version__

    done = subprocess.run([*CLI, "version"], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == __version__
