"""The OpenAI-compatible routes in process: what a caller that goes away leaves behind.

(The answers themselves are checked with the openai SDK in tests/interop/test_openai_compatible.py.)
"""

from __future__ import annotations

import httpx
import pytest
import trio

from tinker_actors.local import LatencyModel, NullBackend, open_local_server

pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

KEY = "tml-oai-routes"


async def test_a_caller_that_gives_up_cancels_its_sample(autojump_clock: trio.abc.Clock) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=60)})
    async with open_local_server(backend=slow) as server:
        transport = httpx.ASGITransport(app=server.app)
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "local/tiny", "prompt": "hello", "max_tokens": 4}
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            with trio.move_on_after(5):  # the client's own timeout, long before the sample ends
                await client.post("/oai/api/v1/completions", json=body, headers=headers)
            totals = server.counters()["totals"]
            assert isinstance(totals, dict)
            assert totals["received:Sample"] == 1
            futures = server.engine.core.futures
            states = [r.state for r in futures._records.values() if r.request_type == "Sample"]
            assert states == ["cancelled"]
            # and the next request is answered as usual
            with trio.fail_after(120):
                answer = await client.post("/oai/api/v1/completions", json=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["finish_reason"] in ("stop", "length")
