"""The OpenAI-compatible routes in process: what a caller that goes away leaves behind.

(The answers themselves are checked with the openai SDK in tests/interop/test_openai_compatible.py.)
"""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from tinker_actors.local import LatencyModel, NullBackend, open_local_server

pytest.importorskip("tokenizers", reason="the server extra installs tokenizers")

KEY = "tml-oai-routes"


@pytest.mark.parametrize("stream", [False, True])
async def test_a_caller_that_gives_up_cancels_its_sample(
    autojump_clock: trio.abc.Clock, stream: bool
) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=60)})
    async with open_local_server(backend=slow) as server:
        transport = httpx.ASGITransport(app=server.app)
        headers = {"Authorization": f"Bearer {KEY}"}
        body = {"model": "local/tiny", "prompt": "hello", "max_tokens": 4, "stream": stream}
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
            if stream:  # a backend that decodes at once: each choice whole, at the end
                events = [line for line in answer.text.split("\n\n") if line]
                assert events[-1] == "data: [DONE]"
                last = json.loads(events[-2].removeprefix("data: "))
                assert last["choices"][0]["finish_reason"] in ("stop", "length")
            else:
                assert answer.json()["choices"][0]["finish_reason"] in ("stop", "length")
