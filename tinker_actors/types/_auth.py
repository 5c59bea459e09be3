"""JWT exchange bodies for ``POST /api/v1/auth/token``.

When the server's ``pjwt_auth_enabled`` flag is on, the client trades its raw credential for a
short-lived JWT: it posts an empty object with ``X-API-Key: <raw credential>`` and receives
``{"jwt": "<token>"}``. Every later request then carries the JWT in ``X-API-Key``::

    >>> import msgspec
    >>> msgspec.json.encode(AuthTokenRequest())
    b'{}'
    >>> msgspec.json.decode(b'{"jwt": "eyJ..."}', type=AuthTokenResponse).jwt
    'eyJ...'
"""

from __future__ import annotations

from tinker_actors.types._base import RequestStruct, ResponseStruct

__all__ = ["AuthTokenRequest", "AuthTokenResponse"]


class AuthTokenRequest(RequestStruct, kw_only=True, frozen=True):
    """Ask for a JWT in exchange for the credential sent in the ``X-API-Key`` header.

    The body carries nothing: the credential travels in the header only.
    """


class AuthTokenResponse(ResponseStruct, kw_only=True, frozen=True):
    """A freshly minted JWT."""

    jwt: str
    """The token to send as ``X-API-Key`` on every later request; read ``exp``/``iat`` from it."""
