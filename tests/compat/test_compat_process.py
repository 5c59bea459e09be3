"""The process runtime under load from the caller's thread, across fork(), and at exit.

These use real time and real processes on purpose: what they check (the GIL, fork, interpreter
exit) is outside what a virtual clock or an in-process transport can show.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

import tinker_actors.compat as tinker
from tinker_actors.actors import _session
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.local._http_server import serve_asgi
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-process-key"


@pytest.fixture
def served() -> Iterator[tuple[str, LocalServer]]:
    with server_in_thread() as (url, server):
        yield url, server


@contextmanager
def _heartbeat_server(arrivals: list[float]) -> Iterator[str]:
    """Serve a local server on loopback in a thread, recording heartbeat arrival times."""
    ready: list[str] = []
    stop = threading.Event()
    started = threading.Event()

    async def main() -> None:
        async with open_local_server() as server:

            async def app(scope: Any, receive: Any, send: Any) -> None:
                if scope.get("path", "").endswith("/session_heartbeat"):
                    arrivals.append(time.monotonic())
                await server.app(scope, receive, send)

            async with trio.open_nursery() as nursery:
                urls = await nursery.start(serve_asgi, app)
                ready.append(urls[0])
                started.set()
                await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(30)


def test_heartbeats_keep_their_cadence_while_the_caller_spins_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the interval shortened from 10 s to 2 s: what is checked is that the runtime thread gets
    # its turns while this one holds the GIL, which does not depend on the interval's length
    monkeypatch.setattr(_session, "HEARTBEAT_INTERVAL", 2.0)
    arrivals: list[float] = []
    with (
        _heartbeat_server(arrivals) as url,
        tinker.ServiceClient(base_url=url, api_key=KEY) as service,
    ):
        service.create_sampling_client(base_model="local/tiny").result()
        start = time.monotonic()
        spin_until = start + 9.0
        counter = 0
        while time.monotonic() < spin_until:  # pure Python, holding the GIL in turns
            counter += sum(i * i for i in range(2000))
        beats = [t - start for t in arrivals if t >= start]
    gaps = [b - a for a, b in itertools.pairwise(beats)]
    assert len(beats) >= 4, beats
    assert beats[0] <= 2.4, beats
    assert all(1.6 <= gap <= 2.4 for gap in gaps), gaps


def test_a_forked_child_samples_and_refuses_the_parents_training_client(
    served: tuple[str, LocalServer],
) -> None:
    url, _server = served
    prompt = tinker.ModelInput.from_ints([1, 2, 3])
    params = tinker.SamplingParams(max_tokens=2)
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        assert sampler.sample(prompt, 1, params).result(30)
        read, write = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
            pid = os.fork()
        if pid == 0:  # the child: report and leave without running the parent's cleanup
            report: dict[str, Any] = {}
            try:
                started = time.monotonic()
                try:
                    training.optim_step(tinker.AdamParams(learning_rate=1e-3))
                except tinker.ForkedRuntimeError as exc:
                    report["training"] = [type(exc).__name__, time.monotonic() - started]
                    report["message"] = str(exc)
                os.environ["TINKER_API_KEY"] = KEY
                report["sample"] = len(sampler.sample(prompt, 1, params).result(30).sequences)
                fresh = tinker.ServiceClient(base_url=url, api_key=KEY)
                fresh_sampler = fresh.create_sampling_client(base_model="local/tiny").result(30)
                report["fresh"] = len(fresh_sampler.sample(prompt, 1, params).result(30).sequences)
                fresh.close("success").result(30)
            except BaseException as exc:
                report["error"] = repr(exc)
            finally:
                os.write(write, json.dumps(report).encode())
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as pipe:
            child = json.loads(pipe.read())
        os.waitpid(pid, 0)
        # the parent's clients still work after the fork
        assert training.optim_step(tinker.AdamParams(learning_rate=1e-3)).result(30)
    assert "error" not in child, child
    assert child["training"][0] == "ForkedRuntimeError"
    assert child["training"][1] < 1.0
    assert "fork()ed child" in child["message"]
    assert child["sample"] == 1
    assert child["fresh"] == 1


@pytest.mark.parametrize(("how", "status"), [("return", "success"), ("raise", "errored")])
def test_a_client_never_closed_finishes_its_session_at_exit(
    served: tuple[str, LocalServer], how: str, status: str
) -> None:
    url, server = served
    script = (
        "import sys, tinker_actors.compat as tinker\n"
        "service = tinker.ServiceClient(base_url=sys.argv[1], api_key=sys.argv[2])\n"
        "service.create_sampling_client(base_model='local/tiny').result()\n"
        "if sys.argv[3] == 'raise':\n"
        "    raise ValueError('the program failed')\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script, url, KEY, how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode == 0) == (how == "return"), done.stderr
    assert time.monotonic() - started < 30
    assert server.counters()["totals"][f"sessions:{status}"] == 1


def test_a_server_gone_at_exit_gets_one_line_not_a_traceback() -> None:
    # the server stops before the program ends, its session still open: exit waits
    # EXIT_WAIT (shortened here) for the close, then says why in one line
    script = (
        "import tinker_actors.compat as tinker\n"
        "import tinker_actors.compat._process as process\n"
        "from tinker_actors.testing import server_in_thread\n"
        "process.EXIT_WAIT = 1.0\n"
        "with server_in_thread() as (url, _):\n"
        "    service = tinker.ServiceClient(base_url=url, api_key='tml-gone-at-exit')\n"
        "    service.create_sampling_client(base_model='local/tiny').result()\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "the server did not answer within 1 s" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert time.monotonic() - started < 30


def test_a_worker_without_a_key_gets_a_clear_error(
    served: tuple[str, LocalServer], tmp_path: Any
) -> None:
    url, _server = served
    with tinker.ServiceClient(base_url=url, api_key=KEY) as service:
        sampler = service.create_sampling_client(base_model="local/tiny").result()
        handle = sampler.get_sampler_handle()
    script = (
        "import sys, tinker_actors.compat as tinker\n"
        "client = tinker.SamplingClient.from_sampler_handle(sys.argv[1])\n"
        "prompt = tinker.ModelInput.from_ints([1, 2])\n"
        "try:\n"
        "    client.sample(prompt, 1, tinker.SamplingParams(max_tokens=1))\n"
        "except tinker.InvalidInputError as exc:\n"
        "    print(exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    env["HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script, handle],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "never passes the API key" in done.stdout
    assert "TINKER_API_KEY" in done.stdout
