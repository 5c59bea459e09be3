"""Registry: one actor per key, started once on first use, forgotten when it exits."""

from __future__ import annotations

import functools

import msgspec
import pytest
import trio
import trio.testing

from tinker_actors.supervisors import (
    Actor,
    ActorExited,
    Registry,
    Reply,
    registry_spec,
    run_registry,
    run_supervisor,
)


class Whoami(msgspec.Struct, frozen=True):
    reply: Reply[int]


class Quit(msgspec.Struct, frozen=True):
    pass


class Limiter(Actor[Whoami | Quit]):
    started = 0

    def __init__(self) -> None:
        Limiter.started += 1
        self.serial = Limiter.started

    async def init(self) -> None:
        await trio.sleep(1.0)  # a slow init widens the window for a duplicate start

    async def handle(self, message: Whoami | Quit) -> None:
        match message:
            case Whoami(reply=reply):
                reply.send(self.serial)
            case Quit():
                self.stop()


class Broken(Limiter):
    async def init(self) -> None:
        await trio.sleep(1.0)
        raise ConnectionError("no backend")


@pytest.fixture(autouse=True)
def _reset_counter() -> None:
    Limiter.started = 0


async def test_concurrent_first_use_of_one_key_starts_exactly_one_actor(
    autojump_clock: object,
) -> None:
    refs = []
    async with trio.open_nursery() as nursery:
        registry: Registry[tuple[str, str]] = await nursery.start(
            functools.partial(run_registry, name="limiters", prefix="limiter")
        )

        async def use(key: tuple[str, str]) -> None:
            refs.append(await registry.get(key, Limiter))

        async with trio.open_nursery() as users:
            for _ in range(10):
                users.start_soon(use, ("http://a", "k1"))
            users.start_soon(use, ("http://a", "k2"))
        assert Limiter.started == 2
        assert len({id(ref._cell) for ref in refs}) == 2
        assert sorted({ref.name for ref in refs}) == ["limiters/limiter-1", "limiters/limiter-2"]
        assert registry.statistics().entries == 2
        registry.request_stop()


async def test_exited_actor_is_removed_and_next_use_starts_a_fresh_one(
    autojump_clock: object,
) -> None:
    async with trio.open_nursery() as nursery:
        registry: Registry[str] = await nursery.start(run_registry)
        first = await registry.get("k", Limiter)
        assert await first.call(Whoami) == 1
        await first.cast(Quit())
        await first.wait_exited()
        assert registry.lookup("k") is None
        second = await registry.get("k", Limiter)
        assert await second.call(Whoami) == 2
        await registry.remove("k")
        assert not second.alive
        assert len(registry) == 0
        registry.request_stop()


async def test_failed_start_propagates_and_the_next_use_retries(autojump_clock: object) -> None:
    async with trio.open_nursery() as nursery:
        registry: Registry[str] = await nursery.start(run_registry)
        results: list[str] = []

        async def use() -> None:
            try:
                await registry.get("k", Broken)
            except ConnectionError:
                results.append("failed")

        async with trio.open_nursery() as users:
            users.start_soon(use)
            users.start_soon(use)
        # Both uses tried once each (one waited for the other's failed start, then retried).
        assert results == ["failed", "failed"]
        assert Limiter.started == 2
        ref = await registry.get("k", Limiter)
        assert ref.alive
        assert registry.statistics().starting == 0
        registry.request_stop()


async def test_registry_under_a_supervisor_and_after_it_stopped(autojump_clock: object) -> None:
    async with trio.open_nursery() as nursery:
        sup = await nursery.start(functools.partial(run_supervisor, [registry_spec("reg")]))
        registry = sup.child("reg")
        assert isinstance(registry, Registry)
        ref = await registry.get("k", Limiter)
        sup.request_stop()
        await sup.wait_stopped()
        assert not ref.alive
        with pytest.raises(ActorExited):
            await registry.get("other", Limiter)
