"""Run the local server's CPU-bound work off the event loop, except under a virtual clock.

Decoding large bodies, computing null-backend outputs, building tokenizers and archives run in
a worker thread so the server keeps answering other requests meanwhile. Under trio's
``MockClock`` (the SDK's and users' tests), a worker thread is invisible to the clock: while it
runs, no task is runnable, so an autojumping clock leaps to the next deadline, and a thread
that takes a second of real time under load can carry a test past its heartbeats, session
timeouts and ``fail_after`` budgets. There the work runs inline instead: it then takes no
virtual time, and a test's outcome does not depend on how busy the machine is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar, TypeVarTuple

import trio
from trio.testing import MockClock

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["offload"]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


async def offload(fn: Callable[[*Ts], T], *args: *Ts) -> T:
    """Return ``fn(*args)``, computed in a worker thread (inline under a ``MockClock``)."""
    if isinstance(trio.lowlevel.current_clock(), MockClock):
        await trio.lowlevel.checkpoint()
        return fn(*args)
    return await trio.to_thread.run_sync(fn, *args)
