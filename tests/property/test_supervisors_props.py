"""Property: whatever callers, casts, crashes and cancellations do, no caller waits forever.

Hypothesis draws a random script of operations against a supervised actor inside
``tinker_actors.open()``. Every call that was accepted must end with a value, ``ActorExited`` or
its own cancellation; once ``open()`` has exited (normally or by escalation), every caller has
finished without any further time passing, and trio's task tree holds no task we started.
"""

from __future__ import annotations

import contextlib

import httpx
import msgspec
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors._open import open
from tinker_actors.supervisors import (
    Actor,
    ActorExited,
    ActorRef,
    MailboxFull,
    Reply,
    Restart,
    SupervisorRef,
)


class Boom(Exception):
    pass


class Work(msgspec.Struct, frozen=True):
    seconds: float
    reply: Reply[float]


class Note(msgspec.Struct, frozen=True):
    pass


class Crash(msgspec.Struct, frozen=True):
    pass


Msg = Work | Note | Crash


class Echo(Actor[Msg]):
    mailbox_size = 2

    async def handle(self, message: Msg) -> None:
        match message:
            case Work(seconds=seconds, reply=reply):
                await trio.sleep(seconds)
                reply.send(seconds)
            case Note():
                pass
            case Crash():
                raise Boom("crash requested")


ops_strategy = st.lists(
    st.one_of(
        st.tuples(st.just("call"), st.sampled_from([0.0, 0.5, 2.0, 10.0])),
        st.tuples(st.just("cast"), st.just(0)),
        st.tuples(st.just("crash"), st.just(0)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
        st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.1, 1.0, 3.0])),
    ),
    max_size=40,
)


def task_ids() -> set[int]:
    found: set[int] = set()
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        assert task is not None
        found.add(id(task))
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


def current(runtime_root: SupervisorRef) -> ActorRef[Msg] | None:
    clients = runtime_root.child("clients")
    if not isinstance(clients, SupervisorRef):
        return None
    ref = clients.child("echo")
    return ref if isinstance(ref, ActorRef) else None


async def scenario(ops: list[tuple[str, float]]) -> None:
    accepted: set[int] = set()
    outcomes: dict[int, str] = {}
    scopes: list[trio.CancelScope] = []
    before = task_ids()

    async def caller(i: int, ref: ActorRef[Msg], seconds: float) -> None:
        with trio.CancelScope() as scope:
            scopes.append(scope)
            accepted.add(i)
            try:
                value = await ref.call(lambda r: Work(seconds, r))
            except ActorExited:
                outcomes[i] = "exited"
            else:
                assert value == seconds
                outcomes[i] = "value"
        if scope.cancelled_caught:
            outcomes[i] = "cancelled"

    async with trio.open_nursery() as callers:
        try:
            async with open(
                base_url="http://127.0.0.1:9",
                api_key="tml-test",
                http_transport=httpx.MockTransport(lambda request: httpx.Response(200)),
                shutdown_grace=1.0,
            ) as runtime:
                await runtime.start_actor("echo", Echo, restart=Restart.PERMANENT)
                for i, (op, arg) in enumerate(ops):
                    ref = current(runtime.root)
                    if op == "call" and ref is not None:
                        callers.start_soon(caller, i, ref, arg)
                    elif op in ("cast", "crash") and ref is not None:
                        with contextlib.suppress(MailboxFull, ActorExited):
                            ref.cast_nowait(Note() if op == "cast" else Crash())
                    elif op == "cancel" and scopes:
                        scopes[int(arg) % len(scopes)].cancel()
                    elif op == "sleep":
                        await trio.sleep(arg)
                    await trio.testing.wait_all_tasks_blocked()
        except* Boom:
            pass  # the crashes used up the tree's restart budget: a legitimate way out
        # open() has exited: every caller must end now, without any virtual time passing.
        t_exit = trio.current_time()
        await trio.testing.wait_all_tasks_blocked()
        assert trio.current_time() == t_exit
        assert not callers.child_tasks, "a caller is still waiting after open() exited"
    assert set(outcomes) == accepted
    assert task_ids() == before


@settings(deadline=None, max_examples=75)
@given(ops=ops_strategy)
def test_no_caller_waits_forever_and_nothing_outlives_open(ops: list[tuple[str, float]]) -> None:
    trio.run(scenario, ops, clock=trio.testing.MockClock(autojump_threshold=0))
