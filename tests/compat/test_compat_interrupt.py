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
import threading
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


_TRAINING = """
import tinker_actors.compat as tinker
from tinker_actors.compat import types

service = tinker.ServiceClient()
training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
datum = types.Datum(
    model_input=types.ModelInput.from_ints([1, 2, 3]),
    loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]},
)
future = training.forward_backward([datum], "cross_entropy")
print("waiting", flush=True)
future.result()
"""


def test_exit_says_what_it_waits_for_and_a_second_sigint_ends_the_wait() -> None:
    # Ctrl-C while a training step runs: exit waits for the accepted request (it may still be
    # applied), says so after a moment, and a second Ctrl-C ends the wait without a traceback
    with server_in_thread(faults=FaultPlan.from_flags(["forward_backward:latency=60"])) as (url, _):
        env = dict(os.environ, TINKER_BASE_URL=url, TINKER_API_KEY=KEY)
        with subprocess.Popen(
            [sys.executable, "-c", _TRAINING],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as child:
            guard = threading.Timer(60, child.kill)  # a hang fails the test, not the suite
            guard.start()
            try:
                assert child.stdout is not None
                assert child.stderr is not None
                assert child.stdout.readline() == "waiting\n"
                time.sleep(1.0)
                child.send_signal(signal.SIGINT)
                seen = []
                for line in child.stderr:
                    seen.append(line)
                    if "Ctrl-C again to exit now" in line:
                        break
                sent = time.monotonic()
                child.send_signal(signal.SIGINT)
                err = "".join(seen) + child.stderr.read()
                child.wait()
                took = time.monotonic() - sent
            finally:
                guard.cancel()
                child.kill()
    assert "finishing the tinker session before exit" in err, err[-3000:]
    assert "exiting without waiting for the tinker session to finish (interrupted)" in err, err
    assert "Exception ignored" not in err, err[-3000:]
    assert err.count("Traceback") == 1, err[-3000:]  # the program's own KeyboardInterrupt
    assert child.returncode == -signal.SIGINT, err[-3000:]
    assert took < 10, took
