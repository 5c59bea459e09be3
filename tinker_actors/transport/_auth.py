"""JWT mode (protocol.md §1.3): trade the credential for a short-lived token, keep it fresh.

The transport owns no nursery, so there is no background refresh task. Instead every request
asks :meth:`TokenCache.get` for a token, which is free while the token is young and performs
the exchange when it is due:

* the first request exchanges (lazily);
* once ``(exp - iat) * U(0.45, 0.55)`` seconds have passed since issue (or 60 s before
  expiry, whichever is first), the next request refreshes;
* a failed refresh keeps serving the old token while it is unexpired, and tries again at most
  every 60 s; a rejected credential (401 from the exchange) is raised at once;
* a 401 with ``WWW-Authenticate: ... error="invalid_token"`` makes the request call
  :meth:`TokenCache.replace` and replay once.

Concurrent callers share one exchange: it runs under a :class:`trio.Lock`, and whoever waited
re-checks before exchanging again. Time is ``trio.current_time()``, so MockClock drives it; the
wall clock is read only to turn the token's ``exp`` into a remaining lifetime.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from tinker_actors.config import credential_from_output, jwt_claims
from tinker_actors.errors import APIError, AuthenticationError, InvalidInputError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.backoff import Rng

__all__ = [
    "REFRESH_MARGIN",
    "REFRESH_RETRY_DELAY",
    "TokenCache",
    "is_invalid_token",
    "run_credential_cmd",
]

logger = logging.getLogger("tinker_actors.transport")

#: Refresh no later than this many seconds before the token expires.
REFRESH_MARGIN: Final = 60.0
#: After a failed refresh, wait this long before trying again (the old token is still used).
REFRESH_RETRY_DELAY: Final = 60.0


def is_invalid_token(status: int, www_authenticate: str | None) -> bool:
    """Say whether a response rejected the token itself (RFC 6750 ``invalid_token``)."""
    return status == 401 and 'error="invalid_token"' in (www_authenticate or "")


async def run_credential_cmd(cmd: str) -> str:
    """Run ``TINKER_CREDENTIAL_CMD`` in a shell and return its trimmed stdout.

    Raises:
        InvalidInputError: the command failed or printed nothing. Its output is never quoted,
            since it is a credential.
    """
    done = await trio.run_process(
        cmd, shell=True, capture_stdout=True, capture_stderr=True, check=False
    )
    return credential_from_output(done.returncode, done.stdout)


class TokenCache:
    """The current JWT, when to refresh it, and the lock that serialises exchanges."""

    def __init__(
        self,
        exchange: Callable[[], Awaitable[str]],
        *,
        rng: Rng,
        wall_clock: Callable[[], float],
    ) -> None:
        self._exchange = exchange
        self._rng = rng
        self._wall_clock = wall_clock
        self._lock = trio.Lock()
        self._token: str | None = None
        # Both in trio time: when the next request should refresh, and when the token dies.
        self._refresh_at = 0.0
        self._expires_at = 0.0

    @property
    def token(self) -> str | None:
        """Return the cached token, if any (it may be due for refresh)."""
        return self._token

    async def get(self) -> str:
        """Return a usable token, exchanging first when none is cached or a refresh is due.

        Raises:
            AuthenticationError: the exchange rejected the credential.
            APIError: the exchange failed and no unexpired token is cached.
        """
        if self._token is not None and trio.current_time() < self._refresh_at:
            return self._token
        async with self._lock:
            now = trio.current_time()
            if self._token is not None and now < self._refresh_at:
                return self._token  # another caller refreshed while we waited
            try:
                return self._install(await self._exchange())
            except AuthenticationError:
                raise
            except APIError as exc:
                if self._token is None or trio.current_time() >= self._expires_at:
                    raise
                # Keep the old token while it lives; try again later, not on every request.
                self._refresh_at = min(
                    trio.current_time() + REFRESH_RETRY_DELAY,
                    max(self._expires_at - REFRESH_MARGIN, trio.current_time()),
                )
                logger.warning(
                    "JWT refresh failed (%s); using the current token until it expires",
                    type(exc).__name__,
                )
                return self._token

    async def replace(self, rejected: str) -> str:
        """Return a token other than ``rejected``, exchanging only if nobody else has yet."""
        if self._token is not None and self._token != rejected:
            return self._token
        async with self._lock:
            if self._token is not None and self._token != rejected:
                return self._token
            return self._install(await self._exchange())

    def _install(self, token: str) -> str:
        now = trio.current_time()
        try:
            claims = jwt_claims(token)
            exp = float(claims["exp"])
            iat = float(claims["iat"])
        except (InvalidInputError, KeyError, TypeError, ValueError):
            # Unreadable lifetime: use the token, but check back soon.
            logger.warning("the server's JWT has no readable exp/iat; refreshing in 60 s")
            self._token = token
            self._expires_at = now + REFRESH_RETRY_DELAY
            self._refresh_at = now + REFRESH_RETRY_DELAY
            return token
        self._token = token
        self._expires_at = now + (exp - self._wall_clock())
        lifetime = max(exp - iat, 0.0)
        # Half the lifetime, +-10 %; both claims come from the server, so local clock skew
        # cannot shorten it. Never later than REFRESH_MARGIN before expiry.
        half_life = lifetime * (0.45 + 0.1 * self._rng.random())
        self._refresh_at = max(now, min(now + half_life, self._expires_at - REFRESH_MARGIN))
        return token
