"""``runtime.latency()`` for code on the official surface (not part of 0.38).

Each ``ServiceClient`` runs one ``tinker_actors.open()`` block on the process runtime; its
training and sampling clients run in the same block. :func:`latency_of` returns that block's
:class:`~tinker_actors.latency.LatencyReport`::

    from tinker_actors.compat.latency import latency_of

    print(latency_of(service_client).render())          # or a training / sampling client
    window = latency_of(training_client, reset=True)    # and start a new window

The import names this package, so code that uses it fails at once, and clearly, on the
official SDK.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING

from tinker_actors.compat._host_of import AnyClient, host_of

if TYPE_CHECKING:
    from tinker_actors.latency import LatencyReport

__all__ = ["latency_of"]


def latency_of(
    client: AnyClient,
    *,
    reset: bool = False,
) -> LatencyReport:
    """Return the latency report of the runtime block ``client`` runs in.

    Args:
        client: a ``ServiceClient``, or a client made from one (training, sampling, REST).
        reset: start a new window after taking this report.

    Raises:
        InvalidInputError: ``client`` is not one of those, or is a sampling client that has not
            attached to a runtime yet (an unpickled one before its first call).
        RuntimeClosedError: its ``ServiceClient`` is closed.
    """
    host = host_of(client, "latency_of()")

    async def take() -> LatencyReport:
        return host.runtime.latency(reset=reset)

    # The runtime thread answers at once (no I/O), so this wait does not stall an asyncio
    # loop it is called from: no "blocks that loop" warning, unlike a future's .result().
    pending: Future[LatencyReport] = host.spawn(take)
    return Future.result(pending)
