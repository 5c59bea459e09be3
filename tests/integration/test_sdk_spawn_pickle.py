"""A SamplingClient pickled to a spawn-started worker process samples on the same session."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import trio

import tinker_actors as ta
from tinker_actors.testing import server_in_thread

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

KEY = "tml-spawn-test"


def test_spawned_worker_unpickles_and_samples_on_the_same_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TINKER_API_KEY", KEY)  # the child resolves its own credential
    with server_in_thread() as (url, server):
        # the owner's runtime must stay open while the child samples: run it in this thread
        done: dict[str, object] = {}

        async def owner() -> None:
            async with ta.open(base_url=url) as runtime:
                client = await runtime.create_sampling_client(base_model="local/tiny")
                blob = pickle.dumps(client)
                assert KEY.encode() not in blob
                sys.path.insert(0, str(Path(__file__).parent))
                from spawn_sampler_worker import run_in_spawned_child

                done["result"], done["exitcode"] = await run_in_spawned_child(blob, url)
                done["session"] = client.sampling_session_id

        trio.run(owner)
        counters = server.counters()["totals"]
    sampler_id, tokens = done["result"]  # type: ignore[misc]
    assert sampler_id == done["session"], done  # the same sampling session
    assert len(tokens) == 2
    assert done["exitcode"] == 0
    assert counters["applied:Sample"] == 1
