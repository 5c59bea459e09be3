"""API-key and JWT checks of the local server (protocol.md §1.3).

Plain mode: every request carries a raw key in ``X-API-Key``; it must start with ``tml-`` and,
when the server was given a key set, be one of them. JWT mode (``jwt_auth``): clients exchange
their raw key at ``/api/v1/auth/token`` for a short-lived HS256 JWT signed with a per-server
secret, and every request except ``/client/config`` and ``/auth/token`` must carry a valid one.
An expired or foreign token is refused with ``WWW-Authenticate: Bearer error="invalid_token"``,
which tells clients to exchange again and replay once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["AuthError", "Authenticator"]

_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class AuthError(Exception):
    """A request is not authenticated; answered 401."""

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Checks keys and issues / verifies the server's JWTs."""

    def __init__(
        self,
        *,
        api_keys: frozenset[str] | None = None,
        jwt_auth: bool = False,
        jwt_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = api_keys
        self.jwt_auth = jwt_auth
        self._lifetime = jwt_lifetime
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self.issued = 0

    def _check_raw(self, key: str) -> None:
        if not key.startswith("tml-"):
            raise AuthError(
                "the API key must start with 'tml-'; set TINKER_API_KEY to a key such as "
                "tml-local (the local server accepts any tml- key unless started with a key list)"
            )
        if self._keys is not None and key not in self._keys:
            raise AuthError("this API key is not accepted by the local server")

    def check(self, key: str | None, *, raw_key_allowed: bool) -> None:
        """Accept or refuse the ``X-API-Key`` of one request.

        Raises:
            AuthError: with the reason (the key itself is never echoed).
        """
        if not key:
            raise AuthError("missing X-API-Key header")
        if self.jwt_auth and not raw_key_allowed:
            self._verify(key)
            return
        if self.jwt_auth and key.startswith("eyJ"):
            self._verify(key)
            return
        self._check_raw(key)

    def issue(self, key: str | None) -> str:
        """Exchange a raw key for a JWT (``/auth/token``)."""
        if not key:
            raise AuthError("missing X-API-Key header")
        if not self.jwt_auth:
            raise AuthError("this local server runs without JWT auth; use the API key directly")
        self._check_raw(key)
        now = self._clock()
        claims = {
            "sub": "tml:user:local",
            "org_id": "local",
            "email": "",
            "iss": "passport-local",
            "iat": int(now),
            "exp": int(now + self._lifetime),
            "key": hashlib.sha256(key.encode()).hexdigest()[:16],
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256)
        self.issued += 1
        return f"{header}.{payload}.{_b64(signature.digest())}"

    def _verify(self, token: str) -> None:
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError(
                "a JWT is required; exchange the API key at /auth/token", _INVALID_TOKEN
            )
        header, payload, signature = parts
        expected = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        try:
            valid = hmac.compare_digest(expected, _unb64(signature))
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            valid, claims = False, {}
        if not valid:
            raise AuthError("the JWT was not issued by this server", _INVALID_TOKEN)
        if float(claims.get("exp", 0)) <= self._clock():
            raise AuthError("the JWT has expired; exchange the API key again", _INVALID_TOKEN)
