"""The HTTP layer: httpx requests under trio, with retries, auth and error mapping.

Open it with :func:`open_transport` and send through :meth:`Transport.request` (whole body) or
:meth:`Transport.stream` (body as it arrives)::

    async with open_transport(resolve_config()) as transport:
        response = await transport.request("POST", "/api/v1/client/config",
                                           json={"sdk_version": "0.38.0"})
        flags = response.decode(ClientConfigResponse)

The transport knows HTTP, headers, credentials and the wire types; it knows nothing about
actors, sessions or futures. Its retry policy comes from :mod:`tinker_actors.backoff`.

Requests are ``httpx.Request`` objects; the default (``http_backend="auto"``) sends them
straight to our lean HTTP/1.1 transport over trio sockets (:mod:`._h11`, :mod:`._dispatch`),
which takes well under half the client CPU of a sampling burst that httpx's client and httpcore
pool take. ``auto`` falls back to httpx's
transport when HTTP/2 or an environment proxy is wanted; ``http_backend="httpx"`` (or
``TINKER_HTTP_BACKEND=httpx``) selects it always.
"""

from __future__ import annotations

from tinker_actors.transport._headers import shareable_headers as shareable_headers
from tinker_actors.transport._open import open_transport as open_transport
from tinker_actors.transport._options import RequestOptions as RequestOptions
from tinker_actors.transport._options import Response as Response
from tinker_actors.transport._options import StreamingResponse as StreamingResponse
from tinker_actors.transport._options import TransportStatistics as TransportStatistics
from tinker_actors.transport._transport import Transport as Transport

__all__ = [
    "RequestOptions",
    "Response",
    "StreamingResponse",
    "Transport",
    "TransportStatistics",
    "open_transport",
    "shareable_headers",
]
