"""Wire types of the Tinker API as msgspec Structs, grouped by domain in private modules."""

from __future__ import annotations

from tinker_actors.types._auth import AuthTokenRequest as AuthTokenRequest
from tinker_actors.types._auth import AuthTokenResponse as AuthTokenResponse

__all__ = [
    "AuthTokenRequest",
    "AuthTokenResponse",
]
