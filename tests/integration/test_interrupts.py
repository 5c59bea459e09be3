"""Ctrl-C stops a program waiting on the SDK at once, on the trio SDK and on the compat layer.

Each program waits for a result the server holds for a minute (a latency fault) and is sent
SIGINT. It must stop as a Ctrl-C'd Python program does: at once, with ``KeyboardInterrupt``
(exit status -SIGINT), never hanging. Leaving ``open()`` (or, on the compat layer, interpreter
exit) still waits for the training requests the program was told are accepted, so that wait
says what it is after a moment, and a second Ctrl-C ends it with one line, not a traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from tinker_actors.local import FaultPlan
from tinker_actors.testing import server_in_thread

KEY = "tml-interrupts"

_COMPAT_SAMPLE = """
import tinker_actors.compat as tinker
from tinker_actors.compat import types

service = tinker.ServiceClient()
sampler = service.create_sampling_client(base_model="local/tiny")
future = sampler.sample(types.ModelInput.from_ints([1, 2, 3]), num_samples=1,
                        sampling_params=types.SamplingParams(max_tokens=4))
print("waiting", flush=True)
future.result()
"""

_COMPAT_SAMPLE_ASYNCIO = """
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

_COMPAT_TRAINING = """
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

# the trio SDK: a program busy with something else while a training step runs (awaiting the
# step's result instead would take the step with it when interrupted, as a cancelled waiter
# does), or ("fail") one that fails right after submitting it, so that the Ctrl-C comes while
# leaving open() flushes
_TRIO_TRAINING = """
import sys
import numpy as np
import trio
import tinker_actors as ta
from tinker_actors.types import Datum, ModelInput, TensorData

async def main():
    async with ta.open() as runtime:
        training = await runtime.create_lora_training_client("local/tiny", rank=4)
        datum = Datum(
            model_input=ModelInput.from_ints([1, 2, 3]),
            loss_fn_inputs={
                "target_tokens": TensorData.from_numpy(np.array([2, 3, 4])),
                "weights": TensorData.from_numpy(np.ones(3, np.float32)),
            },
        )
        future = await training.forward_backward([datum], "cross_entropy")
        print("waiting", flush=True)
        if sys.argv[1:] == ["fail"]:
            raise ValueError("the program failed")
        await trio.sleep(3600)

trio.run(main)
"""


@dataclass
class Interrupted:
    returncode: int
    stderr: str
    #: seconds from the last SIGINT to the program's exit
    exit_took: float


def interrupt(program: str, *args: str, faults: str, again_after: str | None = None) -> Interrupted:
    """Run ``program`` against a server with ``faults``; SIGINT it 1 s after it prints
    "waiting", and again once its stderr shows ``again_after`` (if given)."""
    with server_in_thread(faults=FaultPlan.from_flags([faults])) as (url, _):
        env = dict(os.environ, TINKER_BASE_URL=url, TINKER_API_KEY=KEY)
        with subprocess.Popen(
            [sys.executable, "-c", program, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as child:
            guard = threading.Timer(90, child.kill)  # a hang fails the test, not the suite
            guard.start()
            try:
                assert child.stdout is not None
                assert child.stderr is not None
                assert child.stdout.readline() == "waiting\n"
                time.sleep(1.0)  # the request is at the server
                child.send_signal(signal.SIGINT)
                seen = []
                if again_after is not None:
                    for line in child.stderr:
                        seen.append(line)
                        if again_after in line:
                            break
                    child.send_signal(signal.SIGINT)
                sent = time.monotonic()
                err = "".join(seen) + child.stderr.read()
                child.wait()
                took = time.monotonic() - sent
            finally:
                guard.cancel()
                child.kill()
    return Interrupted(child.returncode, err, took)


def check_stopped_by_ctrl_c(run: Interrupted) -> None:
    assert run.returncode == -signal.SIGINT, run.stderr[-3000:]
    assert "KeyboardInterrupt" in run.stderr.splitlines(), run.stderr[-3000:]
    assert "Exception ignored" not in run.stderr, run.stderr[-3000:]
    assert "ExceptionGroup" not in run.stderr, run.stderr[-3000:]
    assert run.exit_took < 10, run.exit_took  # not the minute the server would have taken


@pytest.mark.parametrize(
    "program", [_COMPAT_SAMPLE, _COMPAT_SAMPLE_ASYNCIO], ids=["result", "asyncio"]
)
def test_compat_sigint_while_waiting_for_a_sample_stops_at_once(program: str) -> None:
    check_stopped_by_ctrl_c(interrupt(program, faults="asample:latency=60"))


@pytest.mark.parametrize(
    ("program", "notice", "ended"),
    [
        (
            _COMPAT_TRAINING,
            "finishing the tinker session before exit: waiting up to 15 s for the training "
            "requests already accepted (Ctrl-C again to exit now)",
            "exiting without waiting for the tinker session to finish (interrupted)",
        ),
        (
            _TRIO_TRAINING,
            "leaving open() after an interrupt: waiting up to 30 s for 1 accepted training "
            "request(s) (Ctrl-C again to stop waiting",
            None,  # the second KeyboardInterrupt comes out of open(), chained to the first
        ),
    ],
    ids=["compat", "trio"],
)
def test_the_wait_after_a_sigint_says_so_and_a_second_sigint_ends_it(
    program: str, notice: str, ended: str | None
) -> None:
    # Ctrl-C while a training step runs: what was accepted is still awaited (the server may
    # apply it), the wait says so after a moment, and a second Ctrl-C ends it
    run = interrupt(program, faults="forward_backward:latency=60", again_after="Ctrl-C again")
    check_stopped_by_ctrl_c(run)
    assert notice in run.stderr
    if ended is not None:  # compat: at interpreter exit, one line and no atexit traceback
        assert ended in run.stderr
        assert run.stderr.count("Traceback") == 1


def test_trio_sigint_while_leaving_open_after_an_error_stops_at_once() -> None:
    # the block failed and leaving it flushes the accepted step: a Ctrl-C then used to end the
    # flush and skip stopping the shielded actor tree, and the program hung for good
    run = interrupt(_TRIO_TRAINING, "fail", faults="forward_backward:latency=60")
    check_stopped_by_ctrl_c(run)
    assert "ValueError: the program failed" in run.stderr  # the KeyboardInterrupt's context
