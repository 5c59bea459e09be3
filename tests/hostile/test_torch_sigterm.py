"""The torch server stops on SIGTERM without waiting for the torch job in flight.

The audit measured 2-7 s to stop the torch server (null: under 1 s); with a long sample in
flight it waited for the whole job, minutes on a CPU. Now the job stops at its next decoding
step and the server exits.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

pytest.importorskip("torch", reason="the torch extra is not installed")

CLI = [sys.executable, "-m", "tinker_actors.cli"]


def test_sigterm_stops_the_torch_server_with_a_long_sample_in_flight() -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--backend", "torch", "--port", "0", "--long-poll", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "(torch backend) at http://127.0.0.1:" in first, first
        url = first.rsplit(" at ", 1)[1].strip()
        with httpx.Client(base_url=url, headers={"X-API-Key": "tml-stop"}, timeout=30) as c:
            session = c.post("/api/v1/create_session", json={"sdk_version": "x"}).json()
            sampler = c.post(
                "/api/v1/create_sampling_session",
                json={
                    "session_id": session["session_id"],
                    "sampling_session_seq_id": 0,
                    "base_model": "local/small",
                },
            ).json()["sampling_session_id"]
            # minutes of work on a CPU: 64 samples x 2000 tokens of local/small
            body = {
                "num_samples": 64,
                "prompt": {"chunks": [{"type": "encoded_text", "tokens": [5, 6, 7]}]},
                "sampling_params": {"max_tokens": 2000, "stop": []},
                "sampling_session_id": sampler,
                "seq_id": 0,
            }
            future = c.post("/api/v1/asample", json=body)
            assert future.status_code == 200, future.text
            # one long poll (1 s): the job has started and is still running
            poll = c.post(
                "/api/v1/retrieve_future", json={"request_id": future.json()["request_id"]}
            )
            assert poll.json()["type"] == "try_again", poll.text
        proc.send_signal(signal.SIGTERM)
        # a guard, not a timing: the job in flight would hold the old server for minutes
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in out
