"""A batch of completions is fetched over a few connections (issue 14).

With ``sample_use_retrieve_futures`` one ``retrieve_futures`` answer can complete hundreds of
samples at once. Each sample then fetched its result at the same moment, so the client opened
one TCP connection per sample (500 for 500, 999 for 2,000) although the server answered each
fetch at once and never had more than one in flight. Fetches of one completion loop now share
:data:`~tinker_actors.actors._completions.FETCH_CONCURRENCY` slots, hence a few keep-alive
connections. Counted here by a pass-through TCP proxy in front of the local server.
"""

from __future__ import annotations

import functools

import pytest
import trio

import tinker_actors as ta
from tinker_actors.actors._completions import FETCH_CONCURRENCY
from tinker_actors.local import LatencyModel, NullBackend, ServerSettings, open_local_server
from tinker_actors.local._fault_proxy import FaultProxy
from tinker_actors.local._http_server import serve_asgi
from tinker_actors.types import ClientConfigResponse, ModelInput, SamplingParams

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)

SAMPLES = 200
KEY = "tml-connections-test"


async def test_a_batch_of_completions_shares_a_few_connections() -> None:
    settings = ServerSettings(client_config=ClientConfigResponse(sample_use_retrieve_futures=True))
    # every sample takes the same time, long enough for all submissions to be answered first,
    # so their completions arrive together in a few polls after the submission phase
    backend = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=3.0)})
    with trio.fail_after(120):
        async with (
            open_local_server(backend=backend, settings=settings) as server,
            trio.open_nursery() as nursery,
        ):
            (upstream,) = await nursery.start(functools.partial(serve_asgi, server.app))
            proxy = FaultProxy(upstream_port=int(upstream.rsplit(":", 1)[1]))
            url = await nursery.start(proxy.serve)
            async with ta.open(base_url=url, api_key=KEY, telemetry=False) as rt:
                client = await rt.create_sampling_client(base_model="local/tiny")
                prompt = ModelInput.from_ints([11, 12, 13])
                params = SamplingParams(max_tokens=2, seed=1)
                # (submissions run in the background, up to the limiter's dispatch slots: they
                # open connections of their own, kept idle for the fetches to reuse)
                futures = [await client.sample(prompt, 1, params) for _ in range(SAMPLES)]
                before = proxy.statistics().connections
                results = [await future.result() for future in futures]
                during = proxy.statistics().connections - before
            nursery.cancel_scope.cancel()
    assert len(results) == SAMPLES
    assert all(len(r.sequences) == 1 for r in results)
    # fetching 200 completed samples opened at most a slot's worth of new connections
    # (before the fix: about one per sample, 98 of 200 here)
    assert during <= FETCH_CONCURRENCY, (before, during)
