"""A local server in a benchmark's own child process: print its URL, serve until SIGTERM."""

from __future__ import annotations

import signal
from typing import Any


def serve_until_terminated(**options: Any) -> None:
    """Run ``open_local_server(**options)`` on a free loopback port; its URL is the first line
    on stdout. SIGTERM stops it cleanly (its temporary state is removed)."""
    import trio

    from tinker_actors.local import open_local_server

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async with open_local_server(**options) as server, trio.open_nursery() as nursery:
                url = await nursery.start(server.serve)
                print(url, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
