"""The RateLimiter wired into the clients: shared 429 deadline, dispatch byte budgets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio
from sdk_support import BufferedTap, json_or_none, lm_datum, served_runtime

import tinker_actors as ta
from tinker_actors.actors import RateLimiter, rate_limiter_for
from tinker_actors.local import LocalServer
from tinker_actors.types import ClientConfigResponse, Datum, ModelInput, SamplingParams

PROMPT = ModelInput.from_ints([3, 4, 5, 6])


class Probe(BufferedTap):
    """ASGI middleware: calls ``on_request(path, body)`` as each request arrives.

    A non-None return is sent back as that HTTP status instead of forwarding the request.
    """

    def __init__(self, app: Any, on_request: Callable[[str, Any], int | None]) -> None:
        super().__init__(app)
        self.on_request = on_request

    async def inspect(self, path: str, raw: bytes) -> int | None:
        return self.on_request(path, json_or_none(raw))


@asynccontextmanager
async def runtime(
    on_request: Callable[[str, Any], int | None], **server_options: Any
) -> AsyncIterator[tuple[ta.Runtime, LocalServer]]:
    async with served_runtime(lambda app: Probe(app, on_request), **server_options) as (
        rt,
        server,
        _probe,
    ):
        yield rt, server


async def limiter_of(rt: ta.Runtime) -> RateLimiter:
    return await rate_limiter_for(rt.registry, rt.limiter_key)


async def test_two_samplers_of_one_runtime_share_the_429_deadline(
    autojump_clock: trio.abc.Clock,
) -> None:
    arrivals: list[tuple[float, int]] = []
    refused = trio.Event()

    def on_request(path: str, body: Any) -> int | None:
        if path != "/api/v1/asample":
            return None
        arrivals.append((trio.current_time(), body["seq_id"]))
        if not refused.is_set():
            refused.set()
            return 429  # the first sample only: a backpressure answer
        return None

    flags = ClientConfigResponse(sample_dispatch_bytes_semaphore_size=777_777)
    async with runtime(on_request, client_config=flags) as (rt, _server):
        first = await rt.create_sampling_client(base_model="local/tiny")
        second = await rt.create_sampling_client(base_model="local/tiny")
        with trio.fail_after(300):
            params = SamplingParams(max_tokens=2, seed=1)
            fut_a = await first.sample(PROMPT, 1, params)
            await refused.wait()
            limiter = await limiter_of(rt)
            while limiter.statistics().backpressure_reports == 0:
                await trio.lowlevel.checkpoint()  # no virtual time passes meanwhile
            refused_at = arrivals[0][0]
            deadline = limiter.backoff_until
            assert deadline is not None
            assert deadline == refused_at + 1.0
            fut_b = await second.sample(PROMPT, 1, params)
            a, b = await fut_a.result(), await fut_b.result()
        assert len(a.sequences) == len(b.sequences) == 1
        # Both the resubmission of the first and the fresh sample of the second client waited
        # for the one deadline the first client's 429 set.
        assert len(arrivals) == 3
        assert all(at >= deadline for at, _seq in arrivals[1:])
        assert [seq for _at, seq in arrivals] == [0, 0, 0]  # same seq_id resubmitted; B's first
        stats = limiter.statistics()
        assert stats.backpressure_reports == 1
        assert stats.sample_bytes.total == 777_777  # sized by the server's flag
        assert stats.sample_bytes.holders == 0
        assert stats.sample_dispatching == 0
        assert stats.throttled  # within 10 s of the backoff's end


def datum(offset: int, n: int = 6) -> Datum:
    return lm_datum([(offset + 5 * i) % 3000 + 4 for i in range(n + 1)])


async def run_chunked_forward_backward(budget: int) -> tuple[list[tuple[int, int]], RateLimiter]:
    """Run one 4-chunk forward_backward; return (holders, bytes held) seen by each chunk POST."""
    seen: list[tuple[int, int]] = []
    box: list[RateLimiter] = []

    def on_request(path: str, _body: Any) -> int | None:
        if path == "/api/v1/forward_backward" and box:
            stats = box[0].statistics().fwdbwd_bytes
            seen.append((stats.holders, stats.total - stats.available))
        return None

    flags = ClientConfigResponse(
        fwdbwd_max_chunk_len=2, fwdbwd_dispatch_bytes_semaphore_size=budget
    )
    async with runtime(on_request, client_config=flags) as (rt, _server):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        box.append(await limiter_of(rt))
        with trio.fail_after(300):
            fut = await tc.forward_backward([datum(i) for i in range(8)], "cross_entropy")
            out = await fut.result()
        assert len(out.loss_fn_outputs) == 8
        return seen, box[0]


async def test_forward_backward_chunk_posts_hold_their_bytes(
    autojump_clock: trio.abc.Clock,
) -> None:
    seen, limiter = await run_chunked_forward_backward(50_000_000)
    assert len(seen) == 4
    assert all(holders >= 1 and held > 0 for holders, held in seen)
    stats = limiter.statistics().fwdbwd_bytes
    assert stats.total == 50_000_000
    assert stats.holders == 0
    assert stats.available == stats.total


async def test_a_tiny_fwdbwd_budget_sends_one_chunk_at_a_time(
    autojump_clock: trio.abc.Clock,
) -> None:
    # With a 1-byte budget the first holder overdraws it, so the other chunks wait their turn.
    seen, limiter = await run_chunked_forward_backward(1)
    assert len(seen) == 4
    assert [holders for holders, _held in seen] == [1, 1, 1, 1]
    assert limiter.statistics().fwdbwd_bytes.total == 1
