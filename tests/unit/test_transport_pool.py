"""The transport spreads concurrent requests over small httpx clients (see transport/_pool.py)."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.lowlevel
import trio.testing

from tinker_actors.config import resolve_config
from tinker_actors.transport import open_transport
from tinker_actors.transport._pool import ClientPool


async def test_lease_fills_one_client_before_opening_another() -> None:
    made: list[httpx.AsyncClient] = []

    def factory() -> httpx.AsyncClient:
        made.append(httpx.AsyncClient())
        return made[-1]

    pool = ClientPool(factory, per_client=2, max_clients=2)
    async with pool.lease() as a, pool.lease() as b:
        assert a is b
        assert pool.clients == 1
        async with pool.lease() as c:
            assert c is not a
            assert pool.clients == 2
            assert pool.in_flight == 3
    assert pool.in_flight == 0
    async with pool.lease() as again:
        assert again is made[0]  # a quiet program goes back to the first, warm client


async def test_past_the_cap_requests_wait_in_arrival_order() -> None:
    pool = ClientPool(httpx.AsyncClient, per_client=1, max_clients=1)
    order: list[str] = []
    release = trio.Event()

    async def holder() -> None:
        async with pool.lease():
            order.append("holder")
            await release.wait()

    async def waiter(name: str) -> None:
        async with pool.lease():
            order.append(name)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(holder)
            await trio.testing.wait_all_tasks_blocked()
            for name in ("first", "second", "third"):
                nursery.start_soon(waiter, name)
                await trio.testing.wait_all_tasks_blocked()
            assert pool.waiting == 3
            assert pool.clients == 1  # the cap holds: nobody queued inside httpcore
            release.set()
    assert order == ["holder", "first", "second", "third"]
    assert pool.in_flight == 0
    assert pool.waiting == 0


async def test_take_now_never_overtakes_a_waiter() -> None:
    pool = ClientPool(httpx.AsyncClient, per_client=1, max_clients=1)
    slot = pool.take_now()
    assert slot is not None
    assert pool.in_flight == 1
    assert pool.take_now() is None  # full
    got: list[httpx.AsyncClient] = []

    async def waiter() -> None:
        async with pool.lease() as client:
            got.append(client)
            await trio.sleep(1)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            pool.give_back(slot)  # handed to the queued waiter, not freed
            assert pool.take_now() is None
            await trio.testing.wait_all_tasks_blocked()
            assert got == [slot.client]
    assert pool.in_flight == 0
    again = pool.take_now()
    assert again is not None
    assert again.client is slot.client
    pool.give_back(again)
    assert pool.in_flight == 0


async def test_a_cancelled_waiter_does_not_hold_its_place() -> None:
    pool = ClientPool(httpx.AsyncClient, per_client=1, max_clients=1)
    got: list[str] = []
    async with pool.lease():
        async with trio.open_nursery() as nursery:

            async def impatient() -> None:
                with trio.move_on_after(0.01):
                    async with pool.lease():
                        got.append("impatient")

            nursery.start_soon(impatient)
        assert pool.waiting == 0
    async with pool.lease():
        got.append("later")
    assert got == ["later"]
    assert pool.in_flight == 0


def test_bad_sizes_refused() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        ClientPool(httpx.AsyncClient, per_client=0, max_clients=1)


async def test_a_burst_uses_several_clients_and_all_answers_arrive() -> None:
    release = trio.Event()
    inside = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await release.wait()
        inside -= 1
        return httpx.Response(200, json={"ok": True})

    config = resolve_config(base_url="http://127.0.0.1:9", api_key="tml-pool-test")
    async with open_transport(config, http_transport=httpx.MockTransport(handler)) as transport:
        results: list[int] = []

        async def one() -> None:
            response = await transport.request("GET", "/api/v1/healthz")
            results.append(response.status)

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(120):
                    nursery.start_soon(one)
                while inside < 120:
                    await trio.lowlevel.checkpoint()
                assert transport._pool.clients == 3  # 120 requests, 50 per client
                release.set()
        assert results == [200] * 120
        assert peak == 120  # nothing was held back: concurrency is not capped at 50
        assert transport._pool.in_flight == 0
