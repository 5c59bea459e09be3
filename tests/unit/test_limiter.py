"""RateLimiter: shared backoff deadline, dispatch caps, byte budgets with overdraft (virtual time)."""

from __future__ import annotations

import functools

import pytest
import trio
import trio.testing

from tinker_actors.actors._limiter import (
    SAMPLE_DISPATCH_SLOTS,
    THROTTLED_DISPATCH_SLOTS,
    ByteBudget,
    RateLimiter,
    rate_limiter_for,
)
from tinker_actors.errors import InvalidInputError
from tinker_actors.supervisors import ActorExited, Registry, run_registry

SMALL = 1000  # <= 128 KiB: 1 s backoff
LARGE = 200 * 1024  # > 128 KiB: 5 s backoff


async def _hold_until(
    cm_factory: functools.partial[object],
    release: trio.Event,
    entered: list[int],
    index: int,
) -> None:
    async with cm_factory():  # type: ignore[operator]
        entered.append(index)
        await release.wait()


# -- backoff deadline ---------------------------------------------------------------------------


async def test_backoff_deadline_is_shared_by_every_user(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    woke: dict[str, float] = {}

    async def sampler(name: str) -> None:
        await limiter.wait_backoff()
        woke[name] = trio.current_time()

    start = trio.current_time()
    with trio.fail_after(60):
        await limiter.wait_backoff()  # nothing reported: returns at once
        assert trio.current_time() == start
        limiter.report_backpressure(SMALL)
        async with trio.open_nursery() as nursery:
            for name in ("a", "b", "c"):
                nursery.start_soon(sampler, name)
    assert woke == {"a": start + 1.0, "b": start + 1.0, "c": start + 1.0}


async def test_large_payload_backs_off_five_seconds_and_is_not_cut_short(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter()
    start = trio.current_time()
    assert limiter.report_backpressure(LARGE) == start + 5.0
    assert limiter.report_backpressure(SMALL) == start + 5.0  # never moves earlier
    with trio.fail_after(60):
        await limiter.wait_backoff()
    assert trio.current_time() == start + 5.0
    assert not limiter.in_backoff
    assert limiter.statistics().backpressure_reports == 2


async def test_deadline_extended_while_waiting_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    start = trio.current_time()
    limiter.report_backpressure(SMALL)

    async def extend() -> None:
        await trio.sleep(0.5)
        limiter.report_backpressure(LARGE)  # now + 5 = start + 5.5

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(extend)
            await limiter.wait_backoff()
    assert trio.current_time() == start + 5.5


async def test_throttled_from_backoff_start_until_ten_seconds_after_its_end(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter()
    assert not limiter.throttled
    limiter.report_backpressure(SMALL)
    assert limiter.throttled
    await trio.sleep(1.0 + 9.9)
    assert limiter.throttled
    assert not limiter.in_backoff
    await trio.sleep(0.2)
    assert not limiter.throttled


# -- concurrency caps ---------------------------------------------------------------------------


async def test_sample_dispatch_caps_at_400(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    release = trio.Event()
    entered: list[int] = []
    cm = functools.partial(limiter.sample_dispatch, 1)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(SAMPLE_DISPATCH_SLOTS + 5):
                nursery.start_soon(_hold_until, cm, release, entered, i)
            await trio.sleep(1)
            assert len(entered) == SAMPLE_DISPATCH_SLOTS
            stats = limiter.statistics()
            assert stats.sample_dispatching == SAMPLE_DISPATCH_SLOTS
            assert stats.sample_slots_waiting == 5
            release.set()
    assert len(entered) == SAMPLE_DISPATCH_SLOTS + 5
    assert limiter.statistics().sample_dispatching == 0


async def test_throttled_dispatch_caps_at_10_then_recovers(
    autojump_clock: trio.abc.Clock,
) -> None:
    limiter = RateLimiter(sample_dispatch_bytes=10**9)
    limiter.report_backpressure(SMALL)
    release = trio.Event()
    entered: list[int] = []
    cm = functools.partial(limiter.sample_dispatch, 1)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(THROTTLED_DISPATCH_SLOTS + 3):
                nursery.start_soon(_hold_until, cm, release, entered, i)
                await trio.sleep(0.01)  # fix the arrival order
            await trio.sleep(0.5)
            assert len(entered) == THROTTLED_DISPATCH_SLOTS
            assert limiter.statistics().throttled_slots_waiting == 3
            release.set()
    # the first ten arrivals got the slots; the other three entered after them
    assert entered[:THROTTLED_DISPATCH_SLOTS] == list(range(THROTTLED_DISPATCH_SLOTS))
    assert sorted(entered[THROTTLED_DISPATCH_SLOTS:]) == [10, 11, 12]

    # 10 s after the backoff ended the throttle is off: 50 concurrent dispatches all enter.
    await trio.sleep(11)
    assert not limiter.throttled
    release2 = trio.Event()
    entered2: list[int] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(_hold_until, cm, release2, entered2, i)
            await trio.sleep(0.5)
            assert len(entered2) == 50
            assert limiter.statistics().throttled_dispatching == 0
            release2.set()


# -- byte budgets -------------------------------------------------------------------------------


async def test_overdraft_admits_while_non_negative(autojump_clock: trio.abc.Clock) -> None:
    budget = ByteBudget(100)
    await budget.acquire(150)  # bigger than the whole budget: admitted, budget now -50
    assert budget.available == -50
    got_second = trio.Event()

    async def second() -> None:
        await budget.acquire(1)
        got_second.set()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(second)
            await trio.sleep(1)
            assert not got_second.is_set()
            assert budget.statistics().waiting == 1
            budget.release(150)
            await got_second.wait()
    assert budget.available == 99
    assert budget.statistics().holders == 1


async def test_waiters_are_admitted_in_order_and_small_ones_do_not_overtake(
    autojump_clock: trio.abc.Clock,
) -> None:
    budget = ByteBudget(10)
    await budget.acquire(11)  # overdrawn by 1
    order: list[str] = []

    async def take(name: str, nbytes: int) -> None:
        await budget.acquire(nbytes)
        order.append(name)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "big", 30)
            await trio.sleep(0.1)
            nursery.start_soon(take, "small", 1)
            await trio.sleep(0.1)
            assert order == []
            budget.release(11)  # available 10 >= 0: "big" enters (-> -20), "small" waits
            await trio.sleep(0.1)
            assert order == ["big"]
            budget.release(30)
    assert order == ["big", "small"]


async def test_throttled_samples_cost_20x(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(sample_dispatch_bytes=1_000_000)
    async with limiter.sample_dispatch(100):
        assert limiter.statistics().sample_bytes.available == 1_000_000 - 100
    limiter.report_backpressure(100)
    async with limiter.sample_dispatch(100):
        assert limiter.statistics().sample_bytes.available == 1_000_000 - 2000
    assert limiter.statistics().sample_bytes.available == 1_000_000


async def test_fwdbwd_budget_is_50_mb_with_overdraft(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter()
    assert limiter.statistics().fwdbwd_bytes.total == 50_000_000
    entered = trio.Event()

    async def second() -> None:
        async with limiter.fwdbwd_dispatch(10):
            entered.set()

    with trio.fail_after(60):
        async with (
            limiter.fwdbwd_dispatch(60_000_000),  # a single oversize chunk still goes
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(second)
            await trio.sleep(1)
            assert not entered.is_set()  # budget is negative: the next chunk waits
            nursery.cancel_scope.cancel()
        async with limiter.fwdbwd_dispatch(10):
            pass
    # backoff and throttling do not touch the fwd/bwd budget
    limiter.report_backpressure(SMALL)
    async with limiter.fwdbwd_dispatch(10):
        assert limiter.statistics().fwdbwd_bytes.available == 50_000_000 - 10


async def test_configure_resizes_budgets(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(sample_dispatch_bytes=100)
    async with limiter.sample_dispatch(80):
        limiter.configure(sample_dispatch_bytes=50, fwdbwd_dispatch_bytes=7)
        stats = limiter.statistics()
        assert (stats.sample_bytes.total, stats.sample_bytes.available) == (50, -30)
        assert stats.fwdbwd_bytes.total == 7
    assert limiter.statistics().sample_bytes.available == 50
    with pytest.raises(InvalidInputError, match="sample_dispatch_bytes"):
        limiter.configure(sample_dispatch_bytes=0)


@pytest.mark.parametrize("bad", [-1, 1.5, True, None])
async def test_bad_sizes_are_refused(bad: object) -> None:
    limiter = RateLimiter()
    with pytest.raises(InvalidInputError, match="nbytes"):
        async with limiter.sample_dispatch(bad):  # type: ignore[arg-type]
            pass
    with pytest.raises(InvalidInputError, match="nbytes"):
        async with limiter.fwdbwd_dispatch(bad):  # type: ignore[arg-type]
            pass
    with pytest.raises(InvalidInputError, match="nbytes"):
        limiter.report_backpressure(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        RateLimiter(sample_dispatch_bytes=bad)  # type: ignore[arg-type]


# -- cancellation -------------------------------------------------------------------------------


async def test_cancelled_holder_gives_everything_back(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(sample_dispatch_bytes=1000)
    limiter.report_backpressure(SMALL)
    with trio.move_on_after(0.5):
        async with limiter.sample_dispatch(10):
            stats = limiter.statistics()
            assert stats.sample_bytes.available == 1000 - 200
            assert (stats.sample_dispatching, stats.throttled_dispatching) == (1, 1)
            await trio.sleep_forever()
    stats = limiter.statistics()
    assert stats.sample_bytes.available == 1000
    assert stats.sample_bytes.holders == 0
    assert (stats.sample_dispatching, stats.throttled_dispatching) == (0, 0)


async def test_cancelled_waiter_leaves_the_queue_and_takes_nothing(
    autojump_clock: trio.abc.Clock,
) -> None:
    budget = ByteBudget(10)
    await budget.acquire(20)  # overdrawn: everyone waits
    admitted: list[str] = []

    async def take(name: str, nbytes: int) -> None:
        await budget.acquire(nbytes)
        admitted.append(name)

    scope_holder: list[trio.CancelScope] = []

    async def cancellable() -> None:
        with trio.CancelScope() as scope:
            scope_holder.append(scope)
            await take("cancelled", 5)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(take, "first", 15)
            await trio.sleep(0.1)
            nursery.start_soon(cancellable)
            await trio.sleep(0.1)
            nursery.start_soon(take, "last", 5)
            await trio.sleep(0.1)
            assert budget.statistics().waiting == 3
            scope_holder[0].cancel()
            await trio.sleep(0.1)
            assert budget.statistics().waiting == 2
            budget.release(20)  # available 10: "first" enters (-> -5), "last" must wait
            await trio.sleep(0.1)
            assert admitted == ["first"]
            budget.release(15)
    assert admitted == ["first", "last"]
    assert budget.available == 5
    assert budget.statistics().holders == 1


async def test_cancelled_slot_waiter_takes_nothing(autojump_clock: trio.abc.Clock) -> None:
    limiter = RateLimiter(sample_dispatch_bytes=100)
    release = trio.Event()
    entered: list[int] = []
    cm = functools.partial(limiter.sample_dispatch, 200)  # each overdraws the budget
    with trio.fail_after(60):
        async with trio.open_nursery() as outer:
            outer.start_soon(_hold_until, cm, release, entered, 0)
            await trio.sleep(0.1)
            with trio.move_on_after(1):
                async with limiter.sample_dispatch(1):  # waits for bytes, then is cancelled
                    pytest.fail("admitted while the budget was overdrawn")
            stats = limiter.statistics()
            assert stats.sample_dispatching == 1  # only the holder
            assert stats.sample_bytes.waiting == 0
            assert stats.sample_bytes.available == -100
            release.set()
    assert limiter.statistics().sample_bytes.available == 100


# -- the owning actor ---------------------------------------------------------------------------


async def test_registry_shares_one_limiter_per_key_and_closes_it_on_exit(
    autojump_clock: trio.abc.Clock,
) -> None:
    failures: list[ActorExited] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            registry: Registry[tuple[str, str]] = await nursery.start(
                functools.partial(run_registry, name="limiters", prefix="limiter")
            )
            key = ("http://a", "digest-1")
            a = await rate_limiter_for(registry, key)
            b = await rate_limiter_for(registry, key, fwdbwd_dispatch_bytes=123)
            other = await rate_limiter_for(registry, ("http://a", "digest-2"))
            assert a is b
            assert other is not a
            assert a.statistics().fwdbwd_bytes.total == 123
            assert len(registry) == 2

            async def overdraw(task_status: trio.TaskStatus[None]) -> None:
                async with a.fwdbwd_dispatch(124):  # budget now -1: the next one waits
                    task_status.started()
                    await trio.sleep_forever()

            async def blocked() -> None:
                try:
                    async with a.fwdbwd_dispatch(1):
                        pytest.fail("admitted while the budget was overdrawn")
                except ActorExited as exc:
                    failures.append(exc)

            await nursery.start(overdraw)
            nursery.start_soon(blocked)
            await trio.sleep(1)
            assert a.statistics().fwdbwd_bytes.waiting == 1
            await registry.remove(key)
            await trio.sleep(0.1)
            assert len(failures) == 1
            assert a.statistics().closed
            with pytest.raises(ActorExited):
                await a.wait_backoff()
            with pytest.raises(ActorExited):
                async with a.sample_dispatch(1):
                    pass
            fresh = await rate_limiter_for(registry, key)
            assert fresh is not a
            assert not fresh.statistics().closed
            nursery.cancel_scope.cancel()
    assert "limiter" in str(failures[0])


# -- the free path ------------------------------------------------------------------------------


async def test_free_dispatch_takes_everything_without_a_checkpoint() -> None:
    # the request sent inside the block is the sample's checkpoint; entering adds none
    limiter = RateLimiter(sample_dispatch_bytes=1000)
    dispatch = limiter.sample_dispatch(10)
    with trio.testing.assert_no_checkpoints():
        await dispatch.__aenter__()
    stats = limiter.statistics()
    assert (stats.sample_dispatching, stats.sample_bytes.available) == (1, 990)
    await dispatch.__aexit__(None, None, None)
    stats = limiter.statistics()
    assert (stats.sample_dispatching, stats.sample_bytes.available) == (0, 1000)
    assert stats.sample_bytes.holders == 0


async def test_try_acquire_admits_only_what_acquire_would_admit_at_once() -> None:
    budget = ByteBudget(10)
    assert budget.try_acquire(25)  # overdraft: admitted while non-negative
    assert budget.available == -15
    assert not budget.try_acquire(1)  # overdrawn: would wait
    assert budget.available == -15
    budget.release(25)
    assert budget.try_acquire(1)
    budget.close(ActorExited("limiter", "shutdown"))
    assert not budget.try_acquire(1)  # closed: acquire would raise
    assert budget.statistics().holders == 1


async def test_a_closed_limiter_refuses_a_free_dispatch() -> None:
    limiter = RateLimiter()
    assert not limiter.closed
    limiter.close(ActorExited("limiter", "shutdown"))
    assert limiter.closed
    with pytest.raises(ActorExited):
        async with limiter.sample_dispatch(1):
            pytest.fail("admitted by a closed limiter")
    assert limiter.statistics().sample_dispatching == 0
