"""Run a local server in a background thread, for synchronous code such as the official client.

The official ``tinker`` client blocks and runs its own event loop, so tests that drive it need
the server outside the test's thread. :func:`server_in_thread` starts ``trio.run`` on a daemon
thread, serves on 127.0.0.1, yields ``(url, server)`` and stops the server on exit::

    with server_in_thread() as (url, server):
        client = tinker.ServiceClient(base_url=url, api_key="tml-test")
        ...
        print(server.counters())
"""

from __future__ import annotations

import queue
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import trio

from tinker_actors.local import LocalServer, open_local_server

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["server_in_thread"]


@contextmanager
def server_in_thread(**server_options: Any) -> Iterator[tuple[str, LocalServer]]:
    """Serve a local server on a loopback port from a background thread."""
    ready: queue.Queue[tuple[str, LocalServer, trio.lowlevel.TrioToken] | BaseException] = (
        queue.Queue()
    )
    stop = threading.Event()

    async def main() -> None:
        try:
            async with (
                open_local_server(**server_options) as server,
                trio.open_nursery() as nursery,
            ):
                url = await nursery.start(server.serve)
                ready.put((url, server, trio.lowlevel.current_trio_token()))
                await trio.to_thread.run_sync(stop.wait, abandon_on_cancel=True)
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            ready.put(exc)
            raise

    thread = threading.Thread(
        target=trio.run, args=(main,), name="tinker-local-server", daemon=True
    )
    thread.start()
    item = ready.get(timeout=60)
    if isinstance(item, BaseException):
        raise RuntimeError("the local server failed to start") from item
    url, server, _token = item
    try:
        yield url, server
    finally:
        stop.set()
        thread.join(timeout=30)
