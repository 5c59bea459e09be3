"""Actors, mailboxes and replies: call/cast semantics, exits, monitors, back-pressure."""

from __future__ import annotations

import functools
import math

import msgspec
import pytest
import trio
import trio.testing

from tinker_actors.supervisors import (
    NORMAL,
    SHUTDOWN,
    Actor,
    ActorExited,
    ActorRef,
    Down,
    ExitReason,
    Mailbox,
    MailboxFull,
    Reply,
    run_actor,
    track_actors,
)


class Get(msgspec.Struct, frozen=True):
    reply: Reply[int]


class Add(msgspec.Struct, frozen=True):
    by: int


class Fail(msgspec.Struct, frozen=True):
    reply: Reply[int]


class Crash(msgspec.Struct, frozen=True):
    pass


class Slow(msgspec.Struct, frozen=True):
    seconds: float
    reply: Reply[str]


class Quit(msgspec.Struct, frozen=True):
    pass


Msg = Get | Add | Fail | Crash | Slow | Quit


class Counter(Actor[Msg]):
    mailbox_size = 4

    def __init__(self, log: list[str] | None = None) -> None:
        self.count = 0
        self.log = log if log is not None else []
        self.late_sends: list[bool] = []

    async def init(self) -> None:
        self.log.append("init")

    async def handle(self, message: Msg) -> None:
        match message:
            case Get(reply=reply):
                reply.send(self.count)
            case Add(by=by):
                self.count += by
            case Fail(reply=reply):
                reply.fail(KeyError("no such thing"))
            case Crash():
                raise ValueError("boom")
            case Slow(seconds=seconds, reply=reply):
                await trio.sleep(seconds)
                self.late_sends.append(reply.send("done"))
            case Quit():
                self.stop()

    async def terminate(self, reason: ExitReason) -> None:
        self.log.append(f"terminate:{type(reason).__name__}")


async def test_call_and_cast_round_trip() -> None:
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
        await ref.cast(Add(2))
        ref.cast_nowait(Add(3))
        assert await ref.call(Get) == 5
        stats = ref.statistics()
        assert stats.handled == 3
        assert stats.alive
        assert stats.capacity == 4
        ref.request_stop()
        assert await ref.wait_exited() == SHUTDOWN


async def test_reply_fail_reaches_the_caller_and_the_actor_survives() -> None:
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
        with pytest.raises(KeyError, match="no such thing"):
            await ref.call(Fail)
        assert await ref.call(Get) == 0
        ref.request_stop()


async def test_init_runs_before_started_and_init_failure_aborts_start() -> None:
    log: list[str] = []

    class BadInit(Counter):
        async def init(self) -> None:
            raise OSError("cannot init")

    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, lambda: Counter(log))
        assert log == ["init"]
        with pytest.raises(OSError, match="cannot init"):
            await nursery.start(run_actor, BadInit)
        ref.request_stop()


async def test_crash_fails_queued_callers_in_the_same_scheduling_pass(
    autojump_clock: object,
) -> None:
    results: list[str] = []

    async def caller(ref: ActorRef[Msg], seconds: float) -> None:
        try:
            await ref.call(lambda r: Slow(seconds, r))
            results.append(f"ok@{trio.current_time():g}")
        except ActorExited as exc:
            causes_ok = isinstance(exc.reason, ValueError) and exc.__cause__ is exc.reason
            results.append(f"exited@{trio.current_time():g}" + ("" if causes_ok else "!"))

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
            nursery.start_soon(caller, ref, 50.0)
            await trio.testing.wait_all_tasks_blocked()
            ref.cast_nowait(Crash())
            for _ in range(3):
                nursery.start_soon(caller, ref, 1.0)
            await trio.testing.wait_all_tasks_blocked()
            with trio.fail_after(1000):
                await trio.sleep_forever()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert info.group_contains(ValueError, match="boom")
    # The first call finishes at t=50, the crash is handled right after, and every queued
    # caller is failed in that same pass: no virtual time passes, no timer has to fire.
    assert results == ["ok@50", "exited@50", "exited@50", "exited@50"]


async def test_callers_after_a_crash_are_rejected_at_once() -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
            await ref.cast(Crash())
            await ref.wait_exited()
            with pytest.raises(ActorExited) as info:
                await ref.call(Get)
            assert isinstance(info.value.reason, ValueError)

    with pytest.raises(ExceptionGroup):
        await scenario()


async def test_later_operations_on_an_exited_actor_raise_actor_exited() -> None:
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
        await ref.cast(Quit())
        assert await ref.wait_exited() == NORMAL
        assert not ref.alive
        with pytest.raises(ActorExited) as info:
            await ref.call(Get)
        assert info.value.reason == NORMAL
        with pytest.raises(ActorExited):
            await ref.cast(Add(1))
        with pytest.raises(ActorExited):
            ref.cast_nowait(Add(1))


async def test_request_stop_fails_queued_callers_with_shutdown_and_runs_terminate(
    autojump_clock: object,
) -> None:
    log: list[str] = []
    reasons: list[ExitReason] = []

    async def caller(ref: ActorRef[Msg]) -> None:
        try:
            await ref.call(Get)
        except ActorExited as exc:
            reasons.append(exc.reason)

    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, lambda: Counter(log))
        nursery.start_soon(ref.call, lambda r: Slow(5.0, r))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(caller, ref)
        nursery.start_soon(caller, ref)
        await trio.testing.wait_all_tasks_blocked()
        ref.request_stop()
        assert await ref.wait_exited() == SHUTDOWN
        # The message in progress finished (polite stop), queued ones were not handled.
        assert trio.current_time() == 5.0
    assert reasons == [SHUTDOWN, SHUTDOWN]
    assert log == ["init", "terminate:Shutdown"]


async def test_cancelled_caller_abandons_its_reply_and_the_actor_survives(
    autojump_clock: object,
) -> None:
    actor = Counter()
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, lambda: actor)
        with trio.move_on_after(1.0) as scope:
            await ref.call(lambda r: Slow(3.0, r))
        assert scope.cancelled_caught
        assert ref.statistics().calls_pending == 0
        assert await ref.call(Get) == 0  # answered after the Slow one finished
        assert actor.late_sends == [False]  # the late answer was dropped, not an error
        ref.request_stop()


async def test_cancelled_caller_while_mailbox_full_does_not_enqueue(
    autojump_clock: object,
) -> None:
    actor = Counter()
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, lambda: actor)
        nursery.start_soon(ref.call, lambda r: Slow(10.0, r))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(4):
            ref.cast_nowait(Add(1))
        with trio.move_on_after(1.0):
            await ref.call(Get)
        assert ref.statistics().queued == 4
        assert ref.statistics().calls_pending == 1  # only the Slow call
        assert await ref.call(Get) == 4
        ref.request_stop()


async def test_back_pressure_cast_blocks_and_cast_nowait_raises(autojump_clock: object) -> None:
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
        nursery.start_soon(ref.call, lambda r: Slow(10.0, r))
        await trio.testing.wait_all_tasks_blocked()
        for _ in range(4):
            ref.cast_nowait(Add(1))
        with pytest.raises(MailboxFull) as info:
            ref.cast_nowait(Add(1))
        assert info.value.capacity == 4
        with trio.move_on_after(5.0) as blocked:
            await ref.cast(Add(1))
        assert blocked.cancelled_caught  # cast waited for room that never came in 5 s
        assert ref.statistics().queued == 4
        # Once the actor drains, a blocked cast gets through.
        await ref.cast(Add(10))
        assert trio.current_time() == 10.0
        assert await ref.call(Get) == 14
        ref.request_stop()


async def test_monitor_receives_down_once_for_crash_and_for_dead_actor() -> None:
    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            ref: ActorRef[Msg] = await nursery.start(run_actor, Counter)
            monitor = ref.monitor()
            await ref.cast(Crash())
            down = await monitor.receive()
            assert isinstance(down, Down)
            assert down.ref is ref
            assert isinstance(down.reason, ValueError)
            with pytest.raises(trio.EndOfChannel):
                await monitor.receive()
            late = ref.monitor()
            assert (await late.receive()).reason is down.reason

    with pytest.raises(ExceptionGroup):
        await scenario()


async def test_cancellation_is_shutdown_not_a_crash() -> None:
    log: list[str] = []
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Msg] = await nursery.start(run_actor, lambda: Counter(log))
        monitor = ref.monitor()
        nursery.cancel_scope.cancel()
    assert ref.exit_reason == SHUTDOWN
    assert (monitor.receive_nowait()).reason == SHUTDOWN
    assert log == ["init", "terminate:Shutdown"]


async def test_census_dump_lists_actor_and_in_flight_calls_with_age(
    autojump_clock: object,
) -> None:
    with track_actors() as census:
        async with trio.open_nursery() as nursery:
            ref: ActorRef[Msg] = await nursery.start(
                functools.partial(run_actor, name="counter"), Counter
            )
            nursery.start_soon(ref.call, lambda r: Slow(10.0, r), name="trainer")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(4.0)
            dump = census.dump()
            (info,) = dump.actors
            assert info.name == "counter"
            assert info.handling == "Slow"
            assert info.handling_for == 4.0
            (call,) = info.calls
            assert (call.message, call.caller, call.age) == ("Slow", "trainer", 4.0)
            text = dump.render()
            assert "actor counter" in text
            assert "call Slow from task 'trainer', waiting 4.000s" in text
            ref.request_stop()
        assert len(census) == 0


def test_runtime_classes_have_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        ActorRef(object(), None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no public constructor"):
        Reply(object(), None, "x", "y")
    with pytest.raises(TypeError, match="no public constructor"):
        Mailbox(object(), 3)


async def test_bad_factory_and_bad_capacity_are_clear_errors() -> None:
    class Huge(Counter):
        mailbox_size = math.inf  # type: ignore[assignment]

    class Negative(Counter):
        mailbox_size = -1

    async with trio.open_nursery() as nursery:
        with pytest.raises(TypeError, match="not an Actor subclass"):
            await nursery.start(run_actor, lambda: object())
        with pytest.raises(ValueError, match="must be finite"):
            await nursery.start(run_actor, Huge)
        with pytest.raises(ValueError, match=">= 0"):
            await nursery.start(run_actor, Negative)


async def test_reply_is_one_shot_and_fail_rejects_non_exceptions() -> None:
    seen: list[object] = []

    class Twice(Actor[Get]):
        async def handle(self, message: Get) -> None:
            seen.append(message.reply.send(1))
            seen.append(message.reply.send(2))
            seen.append(message.reply.fail(RuntimeError("late")))
            with pytest.raises(TypeError, match="Exception instance"):
                message.reply.fail(KeyboardInterrupt())  # type: ignore[arg-type]
            seen.append(message.reply.done)

    async with trio.open_nursery() as nursery:
        ref: ActorRef[Get] = await nursery.start(run_actor, Twice)
        assert await ref.call(Get) == 1
        ref.request_stop()
    assert seen == [True, False, False, True]
