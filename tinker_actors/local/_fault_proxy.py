"""A loopback TCP proxy that injects connection-level faults, reproducibly.

Status faults (429, 5xx, 408, ...) are injected inside the local server's ASGI app; what an
ASGI app cannot do is misbehave at the TCP level. This proxy sits between a client and the
server on 127.0.0.1 and, for each request it forwards, rolls a seeded die:

* ``reset``: read the request, then abort the connection with an RST (``SO_LINGER`` 0), which
  httpx reports as ``ReadError: Connection reset by peer``;
* ``close``: read the request, then close cleanly without answering
  (``RemoteProtocolError: Server disconnected without sending a response``);
* ``stall``: read the request and hold the connection silent for ``stall_seconds``, then close
  (the client's read timeout fires first when it is shorter);
* ``drop_response``: forward the request, let the server apply it, and abort the connection
  with an RST when its response starts to arrive, so the client never learns the outcome of a
  request that took effect: the fault that tests idempotency (a retry must not apply it twice);
* otherwise forward both ways, optionally delaying each chunk by ``delay_seconds``.

A "request" is each burst of client bytes that follows a server answer on the same
connection, so faults hit keep-alive connections per request, not only per connection.

Example::

    proxy = FaultProxy(upstream_port=port, faults=ConnectionFaults(reset=0.05, seed=7))
    url = await nursery.start(proxy.serve)     # "http://127.0.0.1:<proxy port>"
    ...
    print(proxy.statistics())                  # forwarded, reset, closed, stalled, dropped
"""

from __future__ import annotations

import random
import socket
import struct
from dataclasses import dataclass, replace

import trio

__all__ = ["ConnectionFaults", "FaultProxy", "FaultProxyStatistics"]

_CHUNK = 65536


@dataclass(frozen=True, kw_only=True)
class ConnectionFaults:
    """Probabilities (each in [0, 1], summing to at most 1) of each connection-level fault."""

    reset: float = 0.0
    close: float = 0.0
    stall: float = 0.0
    stall_seconds: float = 60.0
    delay_seconds: float = 0.0
    seed: int = 0
    drop_response: float = 0.0

    def __post_init__(self) -> None:
        for name in ("reset", "close", "stall", "drop_response"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ConnectionFaults.{name} must be in [0, 1], got {value}")
        total = self.reset + self.close + self.stall + self.drop_response
        if total > 1.0:
            raise ValueError(
                f"ConnectionFaults.reset + close + stall + drop_response must be at most 1, got {total}"
            )
        if self.stall_seconds < 0 or self.delay_seconds < 0:
            raise ValueError("ConnectionFaults stall_seconds and delay_seconds must be >= 0")


@dataclass
class FaultProxyStatistics:
    """What the proxy did: connections accepted, requests forwarded and faults injected.

    ``dropped`` counts responses lost after the server applied their request (those requests
    are also counted in ``forwarded``).
    """

    connections: int = 0
    requests: int = 0
    forwarded: int = 0
    reset: int = 0
    closed: int = 0
    stalled: int = 0
    dropped: int = 0
    upstream_failures: int = 0
    broken: int = 0

    @property
    def injected(self) -> int:
        """Total faults injected."""
        return self.reset + self.closed + self.stalled + self.dropped

    def as_dict(self) -> dict[str, int]:
        """The counters as plain data (what ``/_local/counters`` and ``/_local/faults`` show)."""
        return {
            "connections": self.connections,
            "requests": self.requests,
            "forwarded": self.forwarded,
            "reset": self.reset,
            "closed": self.closed,
            "stalled": self.stalled,
            "dropped": self.dropped,
            "upstream_failures": self.upstream_failures,
            "broken": self.broken,
            "injected": self.injected,
        }


class FaultProxy:
    """Forward 127.0.0.1 TCP connections to an upstream port, injecting seeded faults."""

    def __init__(
        self,
        *,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        faults: ConnectionFaults | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._faults = faults if faults is not None else ConnectionFaults()
        self._rng = random.Random(self._faults.seed)
        self._host = host
        self._port = port
        self._stats = FaultProxyStatistics()

    @property
    def faults(self) -> ConnectionFaults:
        """The fault probabilities in force."""
        return self._faults

    def set_faults(self, faults: ConnectionFaults) -> None:
        """Replace the fault probabilities (and reseed) for requests from now on."""
        self._faults = faults
        self._rng = random.Random(faults.seed)

    def statistics(self) -> FaultProxyStatistics:
        """Return a snapshot of the counters."""
        return replace(self._stats)

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen until cancelled; report ``http://host:port`` through ``task_status``."""
        listeners = await trio.open_tcp_listeners(self._port, host=self._host)
        sockname = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.serve_listeners, self._handle, listeners)
            task_status.started(f"http://{sockname[0]}:{sockname[1]}")

    def _roll(self) -> str:
        f = self._faults
        u = self._rng.random()
        if u < f.reset:
            return "reset"
        if u < f.reset + f.close:
            return "close"
        if u < f.reset + f.close + f.stall:
            return "stall"
        if u < f.reset + f.close + f.stall + f.drop_response:
            return "drop_response"
        return "forward"

    async def _handle(self, client: trio.SocketStream) -> None:
        self._stats.connections += 1
        try:
            upstream = await trio.open_tcp_stream(*self._upstream)
        except OSError:
            self._stats.upstream_failures += 1
            await client.aclose()
            return
        # Flags shared by both pumps. answered: True once the server has answered, so the next
        # client bytes start a new request and get a fresh roll. drop: the response to the
        # request in flight is to be lost.
        state = {"answered": True, "drop": False}
        try:
            async with client, upstream, trio.open_nursery() as nursery:
                nursery.start_soon(self._client_to_upstream, client, upstream, state, nursery)
                nursery.start_soon(self._upstream_to_client, upstream, client, state, nursery)
        except* (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            # one side went away while the other pump was using it (often because a fault
            # closed it): that ends this connection only, never the proxy
            self._stats.broken += 1

    async def _client_to_upstream(
        self,
        client: trio.SocketStream,
        upstream: trio.SocketStream,
        state: dict[str, bool],
        nursery: trio.Nursery,
    ) -> None:
        while True:
            try:
                data = await client.receive_some(_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                nursery.cancel_scope.cancel()
                return
            if state["answered"]:
                state["answered"] = False
                self._stats.requests += 1
                action = self._roll()
                if action not in ("forward", "drop_response"):
                    await self._inject(action, client)
                    nursery.cancel_scope.cancel()
                    return
                state["drop"] = action == "drop_response"
                self._stats.forwarded += 1
            await self._delay()
            try:
                await upstream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                nursery.cancel_scope.cancel()
                return

    async def _upstream_to_client(
        self,
        upstream: trio.SocketStream,
        client: trio.SocketStream,
        state: dict[str, bool],
        nursery: trio.Nursery,
    ) -> None:
        while True:
            try:
                data = await upstream.receive_some(_CHUNK)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                # the server closed: pass the close on to the client
                await client.aclose()
                return
            if state["drop"]:
                # the server answers only once it has handled the request: it took effect,
                # and now its outcome is lost
                self._stats.dropped += 1
                _abort(client)
                nursery.cancel_scope.cancel()
                return
            state["answered"] = True
            await self._delay()
            try:
                await client.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return

    async def _delay(self) -> None:
        if self._faults.delay_seconds:
            await trio.sleep(self._faults.delay_seconds)

    async def _inject(self, action: str, client: trio.SocketStream) -> None:
        if action == "reset":
            self._stats.reset += 1
            _abort(client)
        elif action == "close":
            self._stats.closed += 1
        else:
            self._stats.stalled += 1
            await trio.sleep(self._faults.stall_seconds)
        await client.aclose()


def _abort(stream: trio.SocketStream) -> None:
    """Make the stream's close an RST ("connection reset by peer"): linger on, timeout 0."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
