"""Supervisors: strategies, restart types, intensity in virtual time, the shutdown ladder."""

from __future__ import annotations

import functools
import math

import msgspec
import pytest
import trio
import trio.testing

from tinker_actors.supervisors import (
    Actor,
    ActorExited,
    ActorRef,
    ChildSpec,
    ExitReason,
    Restart,
    Strategy,
    SupervisorGaveUp,
    SupervisorRef,
    actor_spec,
    run_supervisor,
    supervisor_spec,
    track_actors,
)


class Crash(msgspec.Struct, frozen=True):
    error: Exception


class Quit(msgspec.Struct, frozen=True):
    pass


class Busy(msgspec.Struct, frozen=True):
    seconds: float


Msg = Crash | Quit | Busy

Log = list[tuple[str, ...]]


class Worker(Actor[Msg]):
    """Records its starts and stops (with the exit reason's kind) into a shared log."""

    def __init__(self, name: str, log: Log) -> None:
        self.name = name
        self.log = log

    async def init(self) -> None:
        self.log.append(("start", self.name))

    async def handle(self, message: Msg) -> None:
        match message:
            case Crash(error=error):
                raise error
            case Quit():
                self.stop()
            case Busy(seconds=seconds):
                await trio.sleep(seconds)

    async def terminate(self, reason: ExitReason) -> None:
        kind = type(reason).__name__.lower()
        self.log.append(("stop", self.name, kind))


def worker(
    name: str, log: Log, restart: Restart = Restart.PERMANENT, grace: float = 5.0
) -> ChildSpec[ActorRef[Msg]]:
    return actor_spec(name, lambda: Worker(name, log), restart=restart, shutdown=grace)


def ref_of(sup: SupervisorRef, child_id: str) -> ActorRef[Msg]:
    ref = sup.child(child_id)
    assert isinstance(ref, ActorRef)
    return ref


async def crash(sup: SupervisorRef, child_id: str, error: Exception | None = None) -> None:
    """Crash a child and let the supervisor finish reacting (restart delays are virtual)."""
    ref = ref_of(sup, child_id)
    await ref.cast(Crash(error or RuntimeError(f"{child_id} crashed")))
    await ref.wait_exited()
    await trio.sleep(1.0)


async def start(
    nursery: trio.Nursery, children: list[ChildSpec[object]], **options: object
) -> SupervisorRef:
    sup: SupervisorRef = await nursery.start(
        functools.partial(run_supervisor, children, name="sup", **options)
    )  # type: ignore[arg-type]
    return sup


async def escalation_expected() -> None:
    """Wait for the supervisor to escalate; fail (not hang) if it never does."""
    with trio.fail_after(1000):
        await trio.sleep_forever()


START = [("start", "a"), ("start", "b"), ("start", "c")]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (Strategy.ONE_FOR_ONE, [("stop", "b", "runtimeerror"), ("start", "b")]),
        (
            Strategy.ONE_FOR_ALL,
            [
                ("stop", "b", "runtimeerror"),
                ("stop", "c", "shutdown"),
                ("stop", "a", "shutdown"),
                ("start", "a"),
                ("start", "b"),
                ("start", "c"),
            ],
        ),
        (
            Strategy.REST_FOR_ONE,
            [
                ("stop", "b", "runtimeerror"),
                ("stop", "c", "shutdown"),
                ("start", "b"),
                ("start", "c"),
            ],
        ),
    ],
)
async def test_strategy_restarts_the_right_children_in_order(
    autojump_clock: object, strategy: Strategy, expected: Log
) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [worker(n, log) for n in "abc"], strategy=strategy)
        assert log == START
        before = {n: ref_of(sup, n) for n in "abc"}
        await crash(sup, "b")
        assert log[3:] == expected
        restarted = {n for n in "abc" if ref_of(sup, n) is not before[n]}
        assert restarted == {e[1] for e in expected if e[0] == "start"}
        assert sup.statistics().restarts == 1
        sup.request_stop()
        await sup.wait_stopped()
    # Stopping goes in reverse start order.
    assert log[-3:] == [
        ("stop", "c", "shutdown"),
        ("stop", "b", "shutdown"),
        ("stop", "a", "shutdown"),
    ]


async def test_first_child_crash_under_rest_for_one_restarts_everyone(
    autojump_clock: object,
) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [worker(n, log) for n in "abc"], strategy=Strategy.REST_FOR_ONE)
        await crash(sup, "a")
        assert log[3:] == [
            ("stop", "a", "runtimeerror"),
            ("stop", "c", "shutdown"),
            ("stop", "b", "shutdown"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]
        sup.request_stop()


async def test_restart_types(autojump_clock: object) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(
            nursery,
            [
                worker("perm", log, Restart.PERMANENT),
                worker("trans", log, Restart.TRANSIENT),
                worker("temp", log, Restart.TEMPORARY),
            ],
            max_restarts=10,
        )
        log.clear()
        # A normal exit: PERMANENT restarts, TRANSIENT and TEMPORARY do not.
        for child_id in ("perm", "trans", "temp"):
            ref = ref_of(sup, child_id)
            await ref.cast(Quit())
            await ref.wait_exited()
            await trio.sleep(1.0)
        assert log == [
            ("stop", "perm", "normal"),
            ("start", "perm"),
            ("stop", "trans", "normal"),
            ("stop", "temp", "normal"),
        ]
        assert [(c.id, c.running) for c in sup.which_children()] == [
            ("perm", True),
            ("trans", False),
        ]
        sup.request_stop()
    log.clear()
    async with trio.open_nursery() as nursery:
        sup = await start(
            nursery,
            [worker("trans", log, Restart.TRANSIENT), worker("temp", log, Restart.TEMPORARY)],
            max_restarts=10,
        )
        log.clear()
        # A crash: TRANSIENT restarts, TEMPORARY still does not (and is forgotten).
        await crash(sup, "trans")
        await crash(sup, "temp")
        assert log == [
            ("stop", "trans", "runtimeerror"),
            ("start", "trans"),
            ("stop", "temp", "runtimeerror"),
        ]
        assert [c.id for c in sup.which_children()] == ["trans"]
        sup.request_stop()


async def test_temporary_sibling_is_not_restarted_by_one_for_all(autojump_clock: object) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(
            nursery,
            [worker("a", log), worker("t", log, Restart.TEMPORARY), worker("c", log)],
            strategy=Strategy.ONE_FOR_ALL,
        )
        log.clear()
        await crash(sup, "a")
        assert log == [
            ("stop", "a", "runtimeerror"),
            ("stop", "c", "shutdown"),
            ("stop", "t", "shutdown"),
            ("start", "a"),
            ("start", "c"),
        ]
        sup.request_stop()


async def test_intensity_exceeded_reraises_the_childs_exception(autojump_clock: object) -> None:
    log: Log = []
    original = ConnectionError("backend gone")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            sup = await start(
                nursery, [worker("a", log), worker("b", log)], max_restarts=2, period=10.0
            )
            await crash(sup, "b")
            await crash(sup, "b")
            await crash(sup, "b", original)
            await escalation_expected()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    # Exactly one level of group (from the test's nursery), holding the very same exception.
    assert info.value.exceptions == (original,)
    assert any("supervisor 'sup' gave up" in note for note in original.__notes__)
    # Every child was stopped before the escalation left, in reverse order.
    assert log[-2:] == [("stop", "b", "connectionerror"), ("stop", "a", "shutdown")]


async def test_restart_budget_is_measured_in_virtual_time(autojump_clock: object) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [worker("a", log)], max_restarts=1, period=10.0)
        for _ in range(5):
            await trio.sleep(10.5)  # each crash falls outside the previous one's window
            await crash(sup, "a")
        assert sup.statistics().restarts == 5
        assert sup.statistics().recent_restarts == 1
        sup.request_stop()

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            sup = await start(nursery, [worker("a", log)], max_restarts=1, period=10.0)
            await crash(sup, "a")
            await trio.sleep(8.0)  # still inside the 10 s window: the second crash is too many
            await crash(sup, "a")
            await escalation_expected()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert info.group_contains(RuntimeError, match="a crashed")


async def test_restart_delays_follow_exponential_backoff(autojump_clock: object) -> None:
    times: list[tuple[str, float]] = []

    class Timed(Worker):
        async def init(self) -> None:
            times.append(("start", trio.current_time()))

        async def terminate(self, reason: ExitReason) -> None:
            times.append(("stop", trio.current_time()))

    async with trio.open_nursery() as nursery:
        sup = await start(
            nursery,
            [actor_spec("a", lambda: Timed("a", []))],
            max_restarts=10,
            period=100.0,
            restart_delay=1.0,
            max_restart_delay=4.0,
        )
        for _ in range(4):
            await crash(sup, "a")
            await trio.sleep(10.0)
        sup.request_stop()
    starts = [t for kind, t in times if kind == "start"][1:]
    stops = [t for kind, t in times if kind == "stop"][:4]
    assert [b - a for a, b in zip(stops, starts, strict=True)] == [1.0, 2.0, 4.0, 4.0]


async def test_normal_exit_storm_raises_supervisor_gave_up(autojump_clock: object) -> None:
    async def quitter(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            await start(nursery, [ChildSpec[None]("q", quitter)], max_restarts=3)
            await escalation_expected()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    (gave_up,) = info.value.exceptions
    assert isinstance(gave_up, SupervisorGaveUp)
    assert (gave_up.supervisor, gave_up.child, gave_up.max_restarts) == ("sup", "q", 3)


async def test_nested_escalation_keeps_the_original_exception_unwrapped(
    autojump_clock: object,
) -> None:
    log: Log = []
    original = OSError("disk")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            top = await start(
                nursery,
                [worker("x", log), supervisor_spec("inner", [worker("w", log)], max_restarts=0)],
                max_restarts=0,
            )
            inner = top.child("inner")
            assert isinstance(inner, SupervisorRef)
            assert inner.name == "sup/inner"
            await crash(inner, "w", original)
            await escalation_expected()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    assert info.value.exceptions == (original,)
    notes = "\n".join(original.__notes__)
    assert "supervisor 'sup/inner' gave up" in notes
    assert "supervisor 'sup' gave up" in notes


async def test_init_failure_at_startup_stops_started_children_and_raises(
    autojump_clock: object,
) -> None:
    log: Log = []

    class Broken(Worker):
        async def init(self) -> None:
            raise LookupError("no config")

    async with trio.open_nursery() as nursery:
        with pytest.raises(LookupError, match="no config"):
            await start(
                nursery,
                [worker("a", log), actor_spec("b", lambda: Broken("b", log)), worker("c", log)],
            )
    assert log == [("start", "a"), ("stop", "a", "shutdown")]


async def test_failed_restart_counts_as_a_crash(autojump_clock: object) -> None:
    attempts: list[float] = []

    class Flaky(Worker):
        async def init(self) -> None:
            attempts.append(trio.current_time())
            if len(attempts) > 1:
                raise TimeoutError(f"attempt {len(attempts)}")

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            sup = await start(
                nursery, [actor_spec("f", lambda: Flaky("f", []))], max_restarts=3, period=60.0
            )
            await crash(sup, "f")
            await escalation_expected()

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    # One first start, then 3 restarts that failed in init; the 4th restart is one too many.
    assert len(attempts) == 4
    assert info.group_contains(TimeoutError, match="attempt 4")


async def test_dynamic_children(autojump_clock: object) -> None:
    log: Log = []

    class Broken(Worker):
        async def init(self) -> None:
            raise PermissionError("nope")

    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [])
        ref = await sup.start_child(worker("d1", log, Restart.TRANSIENT))
        assert isinstance(ref, ActorRef)
        assert ref.name == "sup/d1"
        with pytest.raises(ValueError, match="already has a child 'd1'"):
            await sup.start_child(worker("d1", log))
        with pytest.raises(PermissionError):
            await sup.start_child(actor_spec("bad", lambda: Broken("bad", log)))
        assert [c.id for c in sup.which_children()] == ["d1"]
        await ref.cast(Quit())  # a TRANSIENT dynamic child that exits normally is forgotten
        await ref.wait_exited()
        await trio.testing.wait_all_tasks_blocked()
        assert sup.which_children() == []
        ref2 = await sup.start_child(worker("d2", log))
        await sup.terminate_child("d2")
        assert not ref2.alive
        assert sup.which_children() == []
        await sup.terminate_child("unknown")  # ignored
        sup.request_stop()
        await sup.wait_stopped()
        with pytest.raises(ActorExited):
            await sup.start_child(worker("late", log))
    assert log == [
        ("start", "d1"),
        ("stop", "d1", "normal"),
        ("start", "d2"),
        ("stop", "d2", "shutdown"),
    ]


async def test_shutdown_ladder_cancels_a_child_that_ignores_the_stop(
    autojump_clock: object,
) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(
            nursery, [worker("polite", log, grace=3.0), worker("stubborn", log, grace=3.0)]
        )
        stubborn = ref_of(sup, "stubborn")
        await stubborn.cast(Busy(math.inf))  # busy for ever: never reaches the stop check
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        await sup.terminate_child("stubborn")
        assert trio.current_time() - t0 == 3.0  # waited exactly its grace, then cancelled
        assert log[-1] == ("stop", "stubborn", "shutdown")
        t1 = trio.current_time()
        await sup.terminate_child("polite")
        assert trio.current_time() == t1  # a cooperative child stops at once
        sup.request_stop()


async def test_plain_start_function_child_is_cancelled_at_once(autojump_clock: object) -> None:
    events: list[str] = []

    async def ticker(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await escalation_expected()
        finally:
            events.append(f"cancelled@{trio.current_time():g}")

    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [ChildSpec[None]("t", ticker, shutdown=10.0)])
        await trio.sleep(1.0)
        sup.request_stop()
        assert await sup.wait_stopped() is not None
    assert events == ["cancelled@1"]


async def test_cancellation_is_never_a_crash_and_base_exceptions_propagate(
    autojump_clock: object,
) -> None:
    log: Log = []
    async with trio.open_nursery() as nursery:
        sup = await start(nursery, [worker("a", log), worker("b", log)], max_restarts=0)
        nursery.cancel_scope.cancel()
    assert sup.statistics().restarts == 0
    assert ("stop", "a", "shutdown") in log
    assert ("stop", "b", "shutdown") in log

    class Fatal(BaseException):
        pass

    sups: list[SupervisorRef] = []

    async def scenario() -> None:
        async with trio.open_nursery() as nursery:
            sups.append(await start(nursery, [worker("a", log)], max_restarts=100))
            ref_of(sups[0], "a").cast_nowait(Crash(Fatal()))  # type: ignore[arg-type]
            await escalation_expected()

    with pytest.raises(BaseExceptionGroup) as info:
        await scenario()
    assert info.group_contains(Fatal)
    assert sups[0].statistics().restarts == 0  # a BaseException is never restarted
    assert not sups[0].alive


async def test_bad_options_are_rejected_before_anything_starts() -> None:
    async with trio.open_nursery() as nursery:
        with pytest.raises(ValueError, match="duplicate child id 'a'"):
            await start(nursery, [worker("a", []), worker("a", [])])
        with pytest.raises(ValueError, match="max_restarts"):
            await start(nursery, [], max_restarts=-1)
        with pytest.raises(ValueError, match="period"):
            await start(nursery, [], period=0)
        with pytest.raises(TypeError, match="Strategy"):
            await start(nursery, [], strategy="one_for_one")
    with pytest.raises(ValueError, match="child id"):
        worker("a/b", [])
    with pytest.raises(ValueError, match="shutdown grace"):
        worker("a", [], grace=-1)
    with pytest.raises(TypeError, match="Restart"):
        ChildSpec("a", run_supervisor, restart="permanent")  # type: ignore[arg-type]


async def test_statistics_and_dump_show_the_tree(autojump_clock: object) -> None:
    with track_actors() as census:
        async with trio.open_nursery() as nursery:
            sup = await start(
                nursery, [worker("a", []), supervisor_spec("inner", [worker("w", [])])]
            )
            await trio.sleep(2.0)
            stats = sup.statistics()
            assert (stats.name, stats.children, stats.running, stats.uptime) == ("sup", 2, 2, 2.0)
            names = [info.name for info in census.dump().actors]
            assert names == ["sup", "sup/a", "sup/inner", "sup/inner/w"]
            sup.request_stop()
        assert len(census) == 0
