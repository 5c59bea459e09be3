"""Child-process half of test_sdk_spawn_pickle.py: unpickle a SamplingClient and sample.

It is started with the ``spawn`` method, so it shares nothing with the parent but the pickle:
it opens its own runtime (credential from its own environment), attaches the client and
samples on the parent's sampling session.
"""

from __future__ import annotations

import pickle
from typing import Any

import trio

import tinker_actors as ta
from tinker_actors.types import ModelInput, SamplingParams


def sample_in_child(blob: bytes, base_url: str, results: Any) -> None:
    """Entry point for multiprocessing (spawn): put (sampling_session_id, tokens) on ``results``."""

    async def main() -> None:
        client = pickle.loads(blob)
        async with ta.open(base_url=base_url) as runtime:
            attached = await client.attach(runtime)
            future = await attached.sample(
                ModelInput.from_ints([11, 12, 13]), 2, SamplingParams(max_tokens=3, seed=5)
            )
            response = await future.result()
            results.put((attached.sampling_session_id, [s.tokens for s in response.sequences]))

    try:
        trio.run(main)
    except BaseException as exc:
        results.put(("error", repr(exc)))
        raise


async def run_in_spawned_child(blob: bytes, base_url: str) -> tuple[object, int | None]:
    """Parent half: run :func:`sample_in_child` in a spawned process; return (result, exitcode).

    The child's result arrives on a spawn-context queue, polled so the parent's trio loop (and
    the runtime the pickled client came from) keeps running meanwhile.
    """
    import multiprocessing
    import queue

    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    process = context.Process(target=sample_in_child, args=(blob, base_url, results))
    process.start()
    result: object = None
    try:
        with trio.fail_after(120):
            while True:
                try:
                    result = results.get_nowait()
                    break
                except queue.Empty:
                    await trio.sleep(0.1)
    finally:
        await trio.to_thread.run_sync(process.join, 60)
    return result, process.exitcode
