"""A cancelled torch call stops its job instead of sitting it out (the server's SIGTERM path).

A running sample stops at its next decoding step; a job still queued never starts. (The
SIGTERM test itself, against ``tinker-actors serve --backend torch``: test_torch_sigterm.py.)
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio

pytest.importorskip("torch", reason="the torch extra is not installed")

from tinker_actors.local import _torch_backend
from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_sampling import SampleCancelled, run_sample
from tinker_actors.types import ModelInput, SamplingParams

GUARD = 20.0


def job(max_tokens: int, num_samples: int = 2) -> SampleJob:
    return SampleJob(
        prompt=ModelInput.from_ints([5, 6, 7]),
        num_samples=num_samples,
        params=SamplingParams(max_tokens=max_tokens, stop=[], seed=1),
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
        topk_sample_logprobs=0,
        prompt_logprobs_last_n=None,
    )


async def test_a_cancelled_sample_stops_its_running_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, saw_cancel = threading.Event(), threading.Event()

    def endless(*args: Any) -> None:
        _base, _adapter, items, finish = args[:4]
        # a batch that would never end on its own: only the cancellation can stop it
        ((key, _job, _seed, _decode, cancelled),) = items
        entered.set()
        while not cancelled():
            threading.Event().wait(0.005)
        saw_cancel.set()
        finish(key, SampleCancelled("stopped"))

    monkeypatch.setattr(_torch_backend, "sample_batch", endless)
    backend = _torch_backend.TorchBackend(device="cpu")
    spec = lookup_model("local/tiny")
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend.sample, spec, None, job(8))
            await trio.to_thread.run_sync(entered.wait, GUARD)
            nursery.cancel_scope.cancel()
    assert saw_cancel.is_set()  # the call returned only once its job had stopped


async def test_a_cancelled_job_that_has_not_started_never_starts() -> None:
    backend = _torch_backend.TorchBackend(device="cpu", max_concurrent=1)
    first, release, ran = threading.Event(), threading.Event(), []

    def holding() -> None:
        first.set()
        release.wait(GUARD)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(backend._run, holding)
            await trio.to_thread.run_sync(first.wait, GUARD)
            with trio.CancelScope() as waiting:
                waiting.cancel()
                await backend._run(ran.append, "queued")  # the limiter is taken: it queues
            release.set()
    assert ran == []


def test_a_cancelled_sample_stops_decoding_at_the_next_step() -> None:
    backend = _torch_backend.TorchBackend(device="cpu")
    base = backend.base(lookup_model("local/tiny"))
    polls = 0

    def cancelled() -> bool:
        nonlocal polls
        polls += 1
        return polls > 3

    # the first poll comes before the prompt runs, then one before each step
    with pytest.raises(SampleCancelled, match="after 2 of 500 steps"):
        run_sample(base, None, job(500), seed=1, decode=None, cancelled=cancelled)
    finished = run_sample(base, None, job(5), seed=1, decode=None, cancelled=lambda: False)
    assert [len(s.tokens) for s in finished.sequences] == [5, 5]
