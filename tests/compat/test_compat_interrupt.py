"""Ctrl-C stops a program waiting on tinker_actors.compat at once, in both official styles.

The compat clients run on a runtime thread; the caller's thread only waits. A program that
waits for a result the server is slow to give must still stop on SIGINT as an official-SDK
program does: at once, with ``KeyboardInterrupt``, and the interpreter must not then hang
on the runtime thread at exit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tinker_actors.local import FaultPlan
from tinker_actors.testing import server_in_thread

KEY = "tml-compat-interrupt"

_SYNC = """
import tinker_actors.compat as tinker
from tinker_actors.compat import types

service = tinker.ServiceClient()
sampler = service.create_sampling_client(base_model="local/tiny")
future = sampler.sample(types.ModelInput.from_ints([1, 2, 3]), num_samples=1,
                        sampling_params=types.SamplingParams(max_tokens=4))
print("waiting", flush=True)
future.result()
"""

_ASYNCIO = """
import asyncio
import tinker_actors.compat as tinker
from tinker_actors.compat import types

async def main():
    service = tinker.ServiceClient()
    sampler = await service.create_sampling_client_async(base_model="local/tiny")
    print("waiting", flush=True)
    await sampler.sample_async(types.ModelInput.from_ints([1, 2, 3]), num_samples=1,
                               sampling_params=types.SamplingParams(max_tokens=4))

asyncio.run(main())
"""


@pytest.mark.parametrize("program", [_SYNC, _ASYNCIO], ids=["result", "asyncio"])
def test_sigint_while_waiting_stops_the_program_at_once(program: str) -> None:
    # every sample request is held for a minute: the program is waiting when it is interrupted
    with server_in_thread(faults=FaultPlan.from_flags(["asample:latency=60"])) as (url, _):
        env = dict(os.environ, TINKER_BASE_URL=url, TINKER_API_KEY=KEY)
        child = subprocess.Popen(
            [sys.executable, "-c", program],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "waiting\n"
            time.sleep(1.0)  # the request is at the server
            child.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _out, err = child.communicate(timeout=30)
            took = time.monotonic() - sent
        finally:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGINT, err[-3000:]
    assert err.rstrip().endswith("KeyboardInterrupt"), err[-3000:]
    assert took < 10, took  # not the minute the server would have taken
