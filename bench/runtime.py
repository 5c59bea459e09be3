"""Benchmark the actor kernel: call round-trip cost and actor start rate (not a test).

Prints, from one run on one trio loop:

* the floor: a bare trio memory-channel request/response round trip (a server task receives
  a request on one channel and answers on another), written plainly and with send_nowait;
* ``ActorRef.call`` round trip to an actor that answers at once, and the ratio to the floor
  (target: at most 3x);
* ``ActorRef.cast_nowait`` cost per message;
* actors started (and stopped) per second under a dynamic supervisor.

Run: ``python bench/runtime.py [--calls N] [--actors N]``.
"""

from __future__ import annotations

import argparse
import functools
import time

import msgspec
import trio

from tinker_actors.supervisors import (
    Actor,
    ActorRef,
    Reply,
    Restart,
    SupervisorRef,
    actor_spec,
    run_actor,
    run_supervisor,
)


class Ping(msgspec.Struct, frozen=True):
    reply: Reply[int]


class Note(msgspec.Struct, frozen=True):
    pass


class Echo(Actor[Ping | Note]):
    async def handle(self, message: Ping | Note) -> None:
        if isinstance(message, Ping):
            message.reply.send(1)


async def bare_channel(n: int, *, nowait: bool = False) -> float:
    """Seconds per request/response over two bare trio memory channels.

    With ``nowait`` both sides use ``send_nowait`` (as ActorRef.call does when the mailbox has
    room), which saves a schedule point per send: the strictest floor.
    """
    req_send, req_recv = trio.open_memory_channel[int](64)
    rsp_send, rsp_recv = trio.open_memory_channel[int](64)

    async def server() -> None:
        async for value in req_recv:
            if nowait:
                rsp_send.send_nowait(value)
            else:
                await rsp_send.send(value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        start = time.perf_counter()
        for i in range(n):
            if nowait:
                req_send.send_nowait(i)
            else:
                await req_send.send(i)
            await rsp_recv.receive()
        elapsed = time.perf_counter() - start
        await req_send.aclose()
    return elapsed / n


async def actor_call(n: int) -> float:
    """Seconds per ``ActorRef.call`` round trip."""
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Ping | Note] = await nursery.start(run_actor, Echo)
        start = time.perf_counter()
        for _ in range(n):
            await ref.call(Ping)
        elapsed = time.perf_counter() - start
        ref.request_stop()
    return elapsed / n


async def actor_cast(n: int) -> float:
    """Seconds per ``cast_nowait`` including the actor handling it."""
    async with trio.open_nursery() as nursery:
        ref: ActorRef[Ping | Note] = await nursery.start(run_actor, Echo)
        note = Note()
        start = time.perf_counter()
        for i in range(n):
            ref.cast_nowait(note)
            if i % 32 == 31:
                await ref.call(Ping)  # drain: the mailbox holds 64
        await ref.call(Ping)
        elapsed = time.perf_counter() - start
        ref.request_stop()
    return elapsed / n


async def actor_starts(n: int) -> float:
    """Actors started and stopped per second under a dynamic supervisor."""
    async with trio.open_nursery() as nursery:
        sup: SupervisorRef = await nursery.start(functools.partial(run_supervisor, name="bench"))
        start = time.perf_counter()
        for i in range(n):
            await sup.start_child(actor_spec(f"a{i}", Echo, restart=Restart.TEMPORARY))
        started = time.perf_counter() - start
        sup.request_stop()
        await sup.wait_stopped()
    return n / started


async def main(calls: int, actors: int) -> None:
    # Warm up, then take the best of three for each, interleaved so drift hits both alike.
    await bare_channel(1000)
    await actor_call(1000)
    bare = min([await bare_channel(calls) for _ in range(3)])
    strict = min([await bare_channel(calls, nowait=True) for _ in range(3)])
    call = min([await actor_call(calls) for _ in range(3)])
    cast = min([await actor_cast(calls) for _ in range(3)])
    rate = max([await actor_starts(actors) for _ in range(3)])
    ratio = call / bare
    print(f"bare channel round trip : {bare * 1e6:8.2f} us  (await send / await receive)")
    print(f"  strict floor          : {strict * 1e6:8.2f} us  (send_nowait / await receive)")
    print(f"ActorRef.call round trip: {call * 1e6:8.2f} us  ({ratio:.2f}x the bare channel,")
    print(f"                                       {call / strict:.2f}x the strict floor)")
    print(f"  target <= 3x          : {'met' if max(ratio, call / strict) <= 3 else 'NOT met'}")
    print(f"ActorRef.cast_nowait    : {cast * 1e6:8.2f} us per message (handled)")
    print(f"actors started/s        : {rate:8.0f}  ({actors} dynamic children, TEMPORARY)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=2_000)
    args = parser.parse_args()
    trio.run(main, args.calls, args.actors)
