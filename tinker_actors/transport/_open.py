"""Build a :class:`Transport` from a config: the HTTP backend, its connection pool, the clients.

``http_backend="auto"`` picks our lean h11 transport (:mod:`._h11`), sent to directly
(:mod:`._dispatch`) from one httpx client that only keeps the cookie jar; HTTP/2 and proxies
from the environment need httpx's own transport, which is spread over several small clients
(:mod:`._pool` explains why). A transport injected by tests wins over both.
"""

from __future__ import annotations

import random
import time
import urllib.request
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Final, Literal

import httpx
import trio

from tinker_actors.transport._h11 import TrioH11Transport
from tinker_actors.transport._pool import ClientPool
from tinker_actors.transport._transport import CONSTRUCT_TOKEN, Transport

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tinker_actors.config import Config

__all__ = ["CONNECTIONS_PER_CLIENT", "H11_MAX_IDLE", "effective_http_backend", "open_transport"]

#: Requests one httpx client serves at once (the official SDK's per-instance cap, §7.2).
CONNECTIONS_PER_CLIENT: Final = 50
#: Most idle keep-alive connections the h11 backend keeps (fewer when max_connections is lower).
H11_MAX_IDLE: Final = 128


def effective_http_backend(config: Config) -> Literal["h11", "httpx"]:
    """Resolve ``http_backend="auto"``: the lean h11 transport unless HTTP/2 or a proxy is
    wanted, both of which only httpx's transport provides."""
    if config.http_backend != "auto":
        return config.http_backend
    if config.http2 or any(
        scheme in urllib.request.getproxies() for scheme in ("http", "https", "all")
    ):
        return "httpx"
    return "h11"


@asynccontextmanager
async def open_transport(
    config: Config,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Transport]:
    """Open the connection pool for ``config`` and yield the :class:`Transport` over it.

    Args:
        config: where to connect and how.
        http_transport: an httpx transport to send through instead of the network
            (``httpx.MockTransport`` / ``httpx.ASGITransport`` in tests); it wins over
            ``config.http_backend``. The config's connection limits and ``http2`` apply only
            to the network transports the backend builds.
        rng: the random source for retry jitter and JWT refresh timing.
        clock: the wall clock as POSIX seconds (default ``time.time``), read for Retry-After
            dates and JWT expiry; durations use ``trio.current_time()``.
    """
    timeout = httpx.Timeout(config.timeout, connect=config.connect_timeout)
    # Several small clients instead of one big pool: see _pool.py for why.
    per_client = min(CONNECTIONS_PER_CLIENT, config.max_connections)
    max_clients = max(1, config.max_connections // per_client)
    limits = httpx.Limits(
        max_connections=per_client,
        max_keepalive_connections=min(per_client, config.max_keepalive_connections),
        keepalive_expiry=config.keepalive_expiry,
    )
    shared = http_transport
    if shared is None and effective_http_backend(config) == "h11":
        # One client: TrioH11Transport's pool hands connections over in O(1), so there is no
        # rescan to keep short by spreading. The ClientPool still bounds requests in flight
        # at max_connections, so (as with httpx) the overflow waits in its FIFO queue with no
        # pool timeout rather than timing out behind long polls that hold connections.
        shared = TrioH11Transport(
            max_connections=config.max_connections,
            # Keep the connections a burst opened until keepalive_expiry, up to H11_MAX_IDLE:
            # reconnecting in the middle of a 2,048-sample burst cost more wall time than it
            # saved, but a thousand idle sockets per client are a burden on the server and
            # its proxies (config.max_keepalive_connections is the per-client figure of the
            # httpx path, the official SDK's 20).
            max_keepalive_connections=min(config.max_connections, H11_MAX_IDLE),
            keepalive_expiry=config.keepalive_expiry,
        )
        per_client, max_clients = config.max_connections, 1

    def new_client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=shared
            if shared is not None
            else httpx.AsyncHTTPTransport(http2=config.http2, limits=limits),
            timeout=timeout,
            follow_redirects=False,  # followed hop by hop in _dispatch.py, on every backend
        )

    pool = ClientPool(new_client, per_client=per_client, max_clients=max_clients)
    transport = Transport(
        config,
        pool,
        rng=rng if rng is not None else random.Random(),
        clock=clock if clock is not None else time.time,
        # httpx's own network transport needs the client (it mounts proxies per URL); ours
        # and injected in-process transports are sent to directly
        direct=shared,
        _token=CONSTRUCT_TOKEN,
    )
    try:
        yield transport
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()
