"""API-key and JWT checks of the local server (protocol.md §1.3).

Plain mode: every request carries a raw key in ``X-API-Key``; it must start with ``tml-`` and,
when the server was given a key set, be one of them. JWT mode (``jwt_auth``): clients exchange
their raw key at ``/api/v1/auth/token`` for a short-lived HS256 JWT signed with a per-server
secret, and every request except ``/client/config`` and ``/auth/token`` must carry a valid one.
An expired or foreign token is refused with ``WWW-Authenticate: Bearer error="invalid_token"``,
which tells clients to exchange again and replay once.

Authorisation: every accepted request has a *principal*, a digest of the raw key it was made
with (a JWT carries the digest of the key it was exchanged for), never the key itself. The app
puts it in :data:`CALLER` while it serves the request; the engine stamps it on every session it
creates and answers 404 for anything (session, run, sampler, checkpoint, future) that belongs to
another principal, as if it did not exist. Code that runs outside a request (background work,
tests driving the engine directly) sees ``None`` and is not restricted.

Admin keys: the debug routes (``/_local/*``: counters and fault plans) need a key too, and when
the server was given admin keys, one of those (otherwise a non-admin key gets 403).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["CALLER", "AuthError", "Authenticator", "principal_of"]

_INVALID_TOKEN = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

#: The principal of the request being served (None outside a request: no restriction).
CALLER: ContextVar[str | None] = ContextVar("tinker_actors_local_caller", default=None)


#: Most accepted raw keys remembered (any tml- key is accepted without a key list).
_MAX_ACCEPTED = 4096


def principal_of(key: str) -> str:
    """The principal a raw key stands for: a digest, so no record ever holds a key."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


class AuthError(Exception):
    """A request is not authenticated (401) or not allowed (``status`` 403)."""

    def __init__(
        self, message: str, headers: dict[str, str] | None = None, *, status: int = 401
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers
        self.status = status


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
        admin_keys: frozenset[str] | None = None,
        jwt_auth: bool = False,
        jwt_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = api_keys
        self._admins = (
            frozenset(principal_of(key) for key in admin_keys) if admin_keys is not None else None
        )
        self.jwt_auth = jwt_auth
        self._lifetime = jwt_lifetime
        self._clock = clock
        self._secret = secrets.token_bytes(32)
        self.issued = 0
        # raw keys already accepted, with their principals: a sha256 per request was 2 % of a
        # null-backend request; an accepted key stays accepted until it is deleted
        self._accepted: dict[str, str] = {}
        # principals of keys deleted through DELETE /auth/apikey/me (for this server's life)
        self._deleted: set[str] = set()

    def _check_raw(self, key: str) -> None:
        if not key.startswith("tml-"):
            raise AuthError(
                "the API key must start with 'tml-'; set TINKER_API_KEY to a key such as "
                "tml-local (the local server accepts any tml- key unless started with a key list)"
            )
        if self._keys is not None and key not in self._keys:
            raise AuthError("this API key is not accepted by the local server")

    def check(self, key: str | None, *, raw_key_allowed: bool) -> str:
        """Accept or refuse the ``X-API-Key`` of one request; return its principal.

        Raises:
            AuthError: with the reason (the key itself is never echoed).
        """
        if not key:
            raise AuthError("missing X-API-Key header")
        if self.jwt_auth and (not raw_key_allowed or key.startswith("eyJ")):
            return self._verify(key)
        principal = self._accepted.get(key)
        if principal is None:
            self._check_raw(key)
            principal = principal_of(key)
            self._refuse_deleted(principal)
            if len(self._accepted) < _MAX_ACCEPTED:
                self._accepted[key] = principal
        return principal

    def _refuse_deleted(self, principal: str) -> None:
        if principal in self._deleted:
            raise AuthError("this API key was deleted; log in with another key")

    def delete(self, principal: str) -> None:
        """Refuse the key of ``principal`` from now on (and every JWT issued for it)."""
        self._deleted.add(principal)
        for key in [k for k, p in self._accepted.items() if p == principal]:
            del self._accepted[key]

    def describe(self, principal: str) -> dict[str, object]:
        """What ``GET /auth/apikey/me`` says of the key of ``principal`` (protocol.md §11)."""
        return {
            "key_id": int(principal[:12], 16),
            "name": f"local-{principal[:8]}",
            "note": "a key of the local tinker-actors server",
            "details": {
                "org_details": {"name": "local"},
                "user_details": {"email": "local@localhost"},
            },
        }

    def check_admin(self, key: str | None) -> str:
        """Accept the key of a ``/_local/*`` request: an admin key where any are configured.

        Raises:
            AuthError: 401 no or a refused key, 403 a valid key that is not an admin key.
        """
        if not key:
            raise AuthError("missing X-API-Key header (the /_local/ routes need a key too)")
        if self._admins is None:
            return self.check(key, raw_key_allowed=True)
        principal = self._verify(key) if self.jwt_auth and key.startswith("eyJ") else None
        if principal is None:
            principal = principal_of(key)
            self._refuse_deleted(principal)
        if principal not in self._admins:
            raise AuthError(
                "the /_local/ routes need an admin key (the server was started with "
                "--admin-key); this key is not one",
                status=403,
            )
        return principal

    def issue(self, key: str | None) -> str:
        """Exchange a raw key for a JWT (``/auth/token``)."""
        if not key:
            raise AuthError("missing X-API-Key header")
        if not self.jwt_auth:
            raise AuthError("this local server runs without JWT auth; use the API key directly")
        self._check_raw(key)
        self._refuse_deleted(principal_of(key))
        now = self._clock()
        claims = {
            "sub": "tml:user:local",
            "org_id": "local",
            "email": "",
            "iss": "passport-local",
            "iat": int(now),
            "exp": int(now + self._lifetime),
            "key": principal_of(key),
        }
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._secret, f"{header}.{payload}".encode(), hashlib.sha256)
        self.issued += 1
        return f"{header}.{payload}.{_b64(signature.digest())}"

    def _verify(self, token: str) -> str:
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
        principal = claims.get("key")
        if not isinstance(principal, str) or not principal:
            raise AuthError("the JWT names no key; exchange the API key again", _INVALID_TOKEN)
        self._refuse_deleted(principal)
        return principal
