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
