"""tinker_actors.open(): builds the tree, yields the runtime, lets escalations out, leaves nothing."""

from __future__ import annotations

import threading

import httpx
import msgspec
import pytest
import trio
import trio.testing

from tinker_actors._open import open
from tinker_actors._runtime import Runtime
from tinker_actors.errors import InvalidInputError
from tinker_actors.supervisors import (
    Actor,
    ActorExited,
    ActorRef,
    Registry,
    Reply,
    SupervisorRef,
    actor_spec,
)

BASE_URL = "http://127.0.0.1:9"
API_KEY = "tml-test"


def handler(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"ok": True})


def mock() -> httpx.MockTransport:
    return httpx.MockTransport(handler)


class Ping(msgspec.Struct, frozen=True):
    reply: Reply[str]


class Crash(msgspec.Struct, frozen=True):
    error: Exception


class Hang(msgspec.Struct, frozen=True):
    reply: Reply[str]


Msg = Ping | Crash | Hang


class Client(Actor[Msg]):
    async def handle(self, message: Msg) -> None:
        match message:
            case Ping(reply=reply):
                reply.send("pong")
            case Crash(error=error):
                raise error
            case Hang():
                await trio.sleep_forever()


class Limiter(Actor[Ping]):
    async def handle(self, message: Ping) -> None:
        message.reply.send("limited")


def all_tasks() -> list[trio.lowlevel.Task]:
    """Every task in the run, found by walking trio's task tree from the root."""
    found = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        assert task is not None
        found.append(task)
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


def opened(**kwargs: object) -> object:
    return open(base_url=BASE_URL, api_key=API_KEY, http_transport=mock(), **kwargs)


async def test_open_builds_the_tree_and_leaves_no_task_behind(autojump_clock: object) -> None:
    before = {id(t) for t in all_tasks()}
    async with open(base_url=BASE_URL, api_key=API_KEY, http_transport=mock()) as runtime:
        assert isinstance(runtime, Runtime)
        assert runtime.config.base_url == BASE_URL
        assert "tml-test" not in repr(runtime.config)
        assert [c.id for c in runtime.root.which_children()] == ["limiters", "pollers", "clients"]
        assert isinstance(runtime.registry, Registry)
        assert isinstance(runtime.clients, SupervisorRef)
        assert runtime.clients.name == "root/clients"
        ref = await runtime.start_actor("training-1", Client)
        assert await ref.call(Ping) == "pong"
        limiter = await runtime.registry.get(runtime.limiter_key, Limiter)
        assert await limiter.call(Ping) == "limited"
        assert runtime.limiter_key[1] != API_KEY
        assert len(runtime.limiter_key[1]) == 64
        response = await runtime.transport.request("GET", "/api/v1/healthz")
        assert response.status == 200
        stats = runtime.statistics()
        assert stats.actors == 2
        assert [s.name for s in stats.supervisors] == [
            "root",
            "root/limiters",
            "root/pollers",
            "root/clients",
        ]
        assert stats.limiters is not None
        assert stats.limiters.entries == 1
        assert len(all_tasks()) > len(before)
    assert not ref.alive
    assert not limiter.alive
    assert not runtime.root.alive
    assert {id(t) for t in all_tasks()} == before


async def test_dump_lists_live_actors_and_what_callers_wait_on(autojump_clock: object) -> None:
    async with open(base_url=BASE_URL, api_key=API_KEY, http_transport=mock()) as runtime:
        ref: ActorRef[Msg] = await runtime.start_actor("training-1", Client)

        async def trainer() -> None:
            with pytest.raises(ActorExited):
                await ref.call(Hang)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trainer, name="trainer")
            await trio.sleep(7.0)
            dump = runtime.dump()
            names = [a.name for a in dump.actors]
            assert names == [
                "root",
                "root/clients",
                "root/clients/training-1",
                "root/limiters",
                "root/pollers",
            ]
            (client,) = [a for a in dump.actors if a.name.endswith("training-1")]
            assert client.handling == "Hang"
            assert [(c.message, c.caller, c.age) for c in client.calls] == [
                ("Hang", "trainer", 7.0)
            ]
            assert "call Hang from task 'trainer', waiting 7.000s" in dump.render()
            await runtime.clients.terminate_child("training-1")
    assert runtime.dump().actors == ()


async def test_escalation_leaves_open_with_the_childs_exception(autojump_clock: object) -> None:
    original = ConnectionResetError("server went away")
    before = {id(t) for t in all_tasks()}

    async def scenario() -> None:
        async with opened() as runtime:
            assert isinstance(runtime, Runtime)
            # Each round the client crash-loops until root/clients gives up; root restarts
            # clients (empty) and we start the client again, until root gives up too.
            with trio.fail_after(100):
                while True:
                    clients = runtime.root.child("clients")
                    if isinstance(clients, SupervisorRef):
                        client = clients.child("c")
                        if not clients.which_children():
                            await clients.start_child(actor_spec("c", Client))
                        elif isinstance(client, ActorRef):
                            client.cast_nowait(Crash(original))
                    await trio.sleep(0.01)

    with pytest.raises(ExceptionGroup) as info:
        await scenario()
    matched, rest = info.value.split(ConnectionResetError)
    assert rest is None
    assert matched is not None
    assert info.value.exceptions == (original,)
    notes = "\n".join(original.__notes__)
    assert "supervisor 'root/clients' gave up" in notes
    assert "supervisor 'root' gave up" in notes
    assert {id(t) for t in all_tasks()} == before


async def test_exit_is_bounded_by_the_grace_even_if_a_child_hangs(autojump_clock: object) -> None:
    before = {id(t) for t in all_tasks()}
    async with open(
        base_url=BASE_URL, api_key=API_KEY, http_transport=mock(), shutdown_grace=2.0
    ) as runtime:
        ref: ActorRef[Msg] = await runtime.start_actor("stuck", Client, shutdown=1000.0)
        await ref.cast(Hang(reply=None))  # type: ignore[arg-type]
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
    assert trio.current_time() - t0 == 2.0
    assert not ref.alive
    assert {id(t) for t in all_tasks()} == before


async def test_body_exception_comes_out_unwrapped() -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open(base_url=BASE_URL, api_key=API_KEY, http_transport=mock()):
            raise KeyError("mine")


async def test_outer_cancellation_stops_everything() -> None:
    before = {id(t) for t in all_tasks()}
    with trio.move_on_after(1.0) as scope:
        async with open(base_url=BASE_URL, api_key=API_KEY, http_transport=mock()) as runtime:
            await runtime.start_actor("c", Client)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert {id(t) for t in all_tasks()} == before


async def test_bad_settings_fail_before_anything_starts() -> None:
    with pytest.raises(InvalidInputError, match="shutdown_grace"):
        async with open(base_url=BASE_URL, api_key=API_KEY, shutdown_grace=-1):
            pass
    with pytest.raises(InvalidInputError, match="base_url"):
        async with open(base_url="ftp://x", api_key=API_KEY):
            pass
    with pytest.raises(TypeError, match="no public constructor"):
        Runtime(object(), config=None, transport=None, root=None, census=None)  # type: ignore[arg-type]


def test_a_runtime_that_cannot_be_built_leaves_open_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The tree runs shielded; a failure between starting it and yielding must stop it too,
    # or open() never returns. A shielded hang defeats trio.fail_after, so the run gets its own
    # thread and the test fails (rather than hangs) if it does not end.
    def broken(self: Runtime, *args: object, **kwargs: object) -> None:
        raise RuntimeError("cannot build")

    monkeypatch.setattr(Runtime, "__init__", broken)
    outcome: list[BaseException] = []

    async def body() -> None:
        try:
            async with opened():
                outcome.append(AssertionError("the body must not run"))
        except BaseException as exc:
            outcome.append(exc)

    runner = threading.Thread(target=trio.run, args=(body,), daemon=True)
    runner.start()
    runner.join(30)
    assert not runner.is_alive(), "open() hung after the runtime failed to build"
    assert len(outcome) == 1
    assert isinstance(outcome[0], RuntimeError), outcome
    assert str(outcome[0]) == "cannot build"


async def test_a_burst_of_first_users_starts_a_lazy_child_once(
    autojump_clock: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 64 tasks want a child nobody started yet: one starts it, the others wait for that
    # start instead of racing it into 63 refused start_child calls.
    starts: list[str] = []

    def spec() -> object:
        async def slow_start(*args: object, **kwargs: object) -> None:
            starts.append("start")
            await trio.sleep(1)  # a start that takes a while: the others arrive meanwhile
            await run(*args, **kwargs)

        real = actor_spec("lazy", Client)
        run = real.start
        return type(real)(real.id, slow_start, *real.args, restart=real.restart,
                          shutdown=real.shutdown)  # fmt: skip

    async with opened() as runtime:
        calls = 0
        start_child = type(runtime.pollers).start_child

        async def counting(self: SupervisorRef, spec: object) -> object:
            nonlocal calls
            calls += 1
            return await start_child(self, spec)  # type: ignore[arg-type]

        monkeypatch.setattr(type(runtime.pollers), "start_child", counting)
        refs: list[object] = []

        async def want() -> None:
            refs.append(await runtime._child_actor(runtime.pollers, "lazy", spec))  # type: ignore[arg-type]

        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                for _ in range(64):
                    nursery.start_soon(want)
        assert calls == 1
        assert starts == ["start"]
        assert len(refs) == 64
        assert all(ref is refs[0] for ref in refs)
        assert await refs[0].call(Ping) == "pong"  # type: ignore[attr-defined]
