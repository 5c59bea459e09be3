"""The HTTP layer: one ``httpx.AsyncClient`` under trio, with retries, auth and error mapping.

Open it with :func:`open_transport` and send through :meth:`Transport.request` (whole body) or
:meth:`Transport.stream` (body as it arrives)::

    async with open_transport(resolve_config()) as transport:
        response = await transport.request("POST", "/api/v1/client/config",
                                           json={"sdk_version": "0.1.0"})
        flags = response.decode(ClientConfigResponse)

The transport knows HTTP, headers, credentials and the wire types; it knows nothing about
actors, sessions or futures. Its retry policy comes from :mod:`tinker_actors.backoff`.
"""

from __future__ import annotations

from tinker_actors.transport._options import RequestOptions as RequestOptions
from tinker_actors.transport._options import Response as Response
from tinker_actors.transport._options import StreamingResponse as StreamingResponse
from tinker_actors.transport._options import TransportStatistics as TransportStatistics
from tinker_actors.transport._transport import Transport as Transport
from tinker_actors.transport._transport import open_transport as open_transport

__all__ = [
    "RequestOptions",
    "Response",
    "StreamingResponse",
    "Transport",
    "TransportStatistics",
    "open_transport",
]
