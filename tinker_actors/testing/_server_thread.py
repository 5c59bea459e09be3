"""Run a local server in a background thread, for synchronous code such as the official client.

The official ``tinker`` client blocks and runs its own event loop, so tests that drive it need
the server outside the test's thread. :func:`server_in_thread` starts one
(:class:`~tinker_actors.testing.LocalServerThread`), serves on 127.0.0.1, yields
``(url, server)`` and stops the server on exit::

    with server_in_thread() as (url, server):
        client = tinker.ServiceClient(base_url=url, api_key="tml-test")
        ...
        print(server.counters())
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from tinker_actors.testing._local_thread import LocalServerThread

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tinker_actors.local import LocalServer

__all__ = ["server_in_thread"]


@contextmanager
def server_in_thread(**server_options: Any) -> Iterator[tuple[str, LocalServer]]:
    """Serve a local server on a loopback port from a background thread.

    ``server_options`` are :func:`~tinker_actors.local.open_local_server`'s (``backend``,
    ``faults``, ``data_dir`` and settings overrides). Without ``data_dir`` the state lives in
    a temporary directory removed on exit.
    """
    thread = LocalServerThread(**server_options)
    try:
        thread.start()
        yield thread.url, thread.server
    finally:
        thread.close()
