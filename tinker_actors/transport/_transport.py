"""The single request path: retries, auth and errors over httpx requests under trio.

Requests are ``httpx.Request`` objects; they go straight to the HTTP transport (our h11 one by
default, see :mod:`._dispatch`) or, for the httpx backend, through ``httpx.AsyncClient.send``.

Every request goes through :meth:`Transport.request` (whole body) or
:meth:`Transport.stream` (body read as it arrives). One *logical* request may take several
*attempts*; the attempts share one ``X-Idempotency-Key`` and count up in
``x-stainless-retry-count``. Per attempt, in order (protocol.md §7):

1. get the credential (the API key, or a JWT; see :mod:`._auth`);
2. send; a transport failure (timeout, reset, refused) is retried with backoff, then raised as
   :class:`~tinker_actors.errors.APITimeoutError` / :class:`~tinker_actors.errors.APIConnectionError`;
3. 401 ``invalid_token`` in JWT mode: new token, replay once (not counted as a retry);
4. 402 with ``billing_pause``: sleep 5 s and resend until the pause budget runs out;
5. 400 with an empty body (a proxy's rejection) while the shared budget of 16 lasts: retried
   like a connection failure; each success earns one unit back;
6. 408/409/429/5xx, or ``x-should-retry: true`` (never with ``false``): sleep
   ``http_retry_delay`` (Retry-After honoured in (0, 60] s) and retry;
7. anything else >= 400 raises the mapped status exception.

Sleeping is ``trio.sleep`` and jitter comes from the injected ``rng``, so a test with
``autojump_clock`` and a seeded ``random.Random`` replays exactly.

Each logical request's time, from its first attempt to its outcome, goes into
:attr:`Transport.latency` under its route (``POST /api/v1/asample``, ids masked: see
:mod:`._route`); a request cancelled before its outcome is not recorded.
"""

from __future__ import annotations

import collections
import logging
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Final, final

import httpx
import trio

from tinker_actors.backoff import BillingPause, http_retry_delay, parse_retry_after, retryable
from tinker_actors.config import display_url, jwt_claims
from tinker_actors.errors import APIConnectionError, InvalidInputError
from tinker_actors.latency import LatencyBook
from tinker_actors.transport import _prebuilt
from tinker_actors.transport._auth import TokenCache, is_invalid_token, run_credential_cmd
from tinker_actors.transport._dispatch import send_direct, send_through
from tinker_actors.transport._errors import connection_error, is_empty_400, scrub, status_error
from tinker_actors.transport._headers import (
    base_headers,
    is_credential_header,
    redact_headers,
)
from tinker_actors.transport._options import (
    RequestOptions,
    Response,
    StreamingResponse,
    TransportStatistics,
)
from tinker_actors.transport._request import (
    Prepared,
    build_request,
    prepare,
    request_headers,
    to_response,
)
from tinker_actors.transport._route import route_name
from tinker_actors.types._auth import AuthTokenRequest, AuthTokenResponse

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Callable, Mapping

    import msgspec

    from tinker_actors.config import Config
    from tinker_actors.transport._pool import ClientPool

__all__ = ["AUTH_TOKEN_PATH", "CONSTRUCT_TOKEN", "EMPTY_400_BUDGET", "Transport"]

logger = logging.getLogger("tinker_actors.transport")

AUTH_TOKEN_PATH: Final = "/api/v1/auth/token"
#: Shared budget of empty-400 retries (protocol.md §7.5).
EMPTY_400_BUDGET: Final = 16
#: At most one billing-pause warning per this many seconds.
BILLING_LOG_INTERVAL: Final = 60.0
#: Proves a Transport is built by open_transport (the only constructor).
CONSTRUCT_TOKEN: Final = object()


def _log_deprecation(headers: httpx.Headers) -> None:
    note = _prebuilt.header(headers, "x-deprecation-note")
    if not note:
        return
    level_name = headers.get("x-deprecation-level", "").strip().lower()
    level = logging.ERROR if level_name == "error" else logging.WARNING
    logger.log(level, "Deprecation notice: %s", note)


@final
class Transport:
    """Sends requests to the Tinker API; obtain one from :func:`open_transport`."""

    def __init__(
        self,
        config: Config,
        pool: ClientPool,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        direct: httpx.AsyncBaseTransport | None = None,
        _token: object = None,
    ) -> None:
        if _token is not CONSTRUCT_TOKEN:
            raise TypeError("Transport has no public constructor; use open_transport(config)")
        self._config = config
        self._pool = pool
        # Sent to without httpx's client layer when set (see _dispatch.py).
        self._direct = direct
        self._start_headers: httpx.Headers | None = None
        self._rng = rng
        self._clock = clock
        self._closed = False
        self._api_key = config.api_key.reveal()
        cf_secret = config.cf_access_client_secret
        # Values of credential-bearing default headers (Authorization: Bearer ...) count too.
        self._fixed_secrets: tuple[str, ...] = (
            self._api_key,
            *((cf_secret.reveal(),) if cf_secret else ()),
            *(v for k, v in config.default_headers.items() if is_credential_header(k)),
        )
        # Recent JWTs and command-made credentials, scrubbed from messages like the key.
        self._tokens_seen: collections.deque[str] = collections.deque(maxlen=8)
        self._base_headers = base_headers(
            cf_access_client_id=config.cf_access_client_id,
            cf_access_client_secret=cf_secret.reveal() if cf_secret else None,
            overrides=config.default_headers,
        )
        self._api_key_expiry: float | None = None
        if self._api_key.startswith("eyJ"):
            exp = jwt_claims(self._api_key).get("exp")
            if isinstance(exp, int | float) and not isinstance(exp, bool):
                self._api_key_expiry = float(exp)
        self._jwt_auth = config.jwt_auth
        self._credential_source = config.jwt_credential_source
        self._billing_max_pause = config.billing_max_pause
        self._billing: BillingPause | None = None
        self._billing_logged_at: float | None = None
        self._empty_400_budget = EMPTY_400_BUDGET
        self._tokens = TokenCache(self._exchange, rng=rng, wall_clock=clock)
        self._counts: collections.Counter[str] = collections.Counter()
        self._by_status: collections.Counter[int] = collections.Counter()
        #: each logical request's time, first attempt to outcome, by route (see _route.py)
        self.latency = LatencyBook()

    def _secrets(self) -> tuple[str, ...]:
        return (*self._fixed_secrets, *self._tokens_seen)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Transport {display_url(self._config.base_url)} jwt={self._jwt_auth} {state}>"

    # -- configuration the runtime learns from the server ------------------------------------

    def configure(
        self,
        *,
        jwt_auth: bool | None = None,
        jwt_credential_source: str | None = None,
        billing_max_pause: float | None = None,
    ) -> None:
        """Apply server-chosen settings (``/api/v1/client/config`` flags) to later requests.

        Args:
            jwt_auth: ``pjwt_auth_enabled``.
            jwt_credential_source: ``credential_default_source`` (``api_key`` or
                ``credential_cmd``).
            billing_max_pause: ``billing_exception_max_pause_duration_sec``.

        Raises:
            InvalidInputError: a value is out of range or ``credential_cmd`` is asked for
                without ``TINKER_CREDENTIAL_CMD`` configured.
        """
        if jwt_credential_source is not None:
            if jwt_credential_source not in ("api_key", "credential_cmd"):
                raise InvalidInputError(
                    "jwt_credential_source must be 'api_key' or 'credential_cmd', got "
                    f"{jwt_credential_source!r}"
                )
            if jwt_credential_source == "credential_cmd" and not self._config.credential_cmd:
                raise InvalidInputError(
                    "the server asks for credentials from TINKER_CREDENTIAL_CMD, which is not "
                    "set; set it to a command that prints a credential"
                )
            self._credential_source = (
                "credential_cmd" if jwt_credential_source == "credential_cmd" else "api_key"
            )
        if billing_max_pause is not None:
            if not billing_max_pause >= 0:
                raise InvalidInputError(f"billing_max_pause must be >= 0, got {billing_max_pause}")
            self._billing_max_pause = float(billing_max_pause)
        if jwt_auth is not None:
            self._jwt_auth = bool(jwt_auth)

    # -- public request API ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: msgspec.Struct | Mapping[str, object] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, object] | None = None,
        options: RequestOptions | None = None,
        sdk_method: str | None = None,
    ) -> Response:
        """Send one logical request and return the whole response.

        Args:
            method: the HTTP method.
            path: the API path (``/api/v1/...``), joined to the base URL.
            json: a JSON body (msgspec Struct or mapping). Not allowed with GET.
            content: a raw body, e.g. protobuf; exclusive with ``json``.
            content_type: the raw body's ``Content-Type`` (default
                ``application/octet-stream``).
            params: query parameters; lists are comma-joined, None values dropped.
            options: per-call overrides (timeout, retries, headers, ...).
            sdk_method: ``<Class>.<method>`` for the ``x-sdk-method`` header.

        Raises:
            APIStatusError: a subclass per status, after the retries allowed.
            APIConnectionError: no response after the retries allowed
                (:class:`~tinker_actors.errors.APITimeoutError` for timeouts).
            InvalidInputError: the arguments cannot make a request; nothing was sent.
        """
        prepared = prepare(
            self._config, method, path, json, content, content_type, params, options, sdk_method
        )
        pool = self._pool
        started = trio.current_time()
        try:
            slot = pool.take_now()
            if slot is None:
                async with pool.lease() as client:
                    raw, retries, elapsed = await self._send(prepared, client, stream=False)
            else:
                try:
                    raw, retries, elapsed = await self._send(prepared, slot.client, stream=False)
                finally:
                    pool.give_back(slot)
        except Exception:
            # a cancelled request (trio.Cancelled, a BaseException) had no outcome: not recorded
            self._record(method, path, started, failed=True)
            raise
        self._record(method, path, started, failed=False)
        return to_response(raw, retries, elapsed, prepared)

    def _record(self, method: str, path: str, started: float, *, failed: bool) -> None:
        self.latency.record(route_name(method, path), trio.current_time() - started, failed=failed)

    def stream(
        self,
        method: str,
        path: str,
        *,
        json: msgspec.Struct | Mapping[str, object] | None = None,
        content: bytes | None = None,
        content_type: str | None = None,
        params: Mapping[str, object] | None = None,
        options: RequestOptions | None = None,
        sdk_method: str | None = None,
    ) -> AbstractAsyncContextManager[StreamingResponse]:
        """Send like :meth:`request` but hand over the body unread, as it arrives.

        Retries and error mapping happen before the block is entered; a failure while reading
        the body inside the block is raised as is (``httpx`` errors), since the request cannot
        be replayed transparently at that point.
        """
        prepared = prepare(
            self._config, method, path, json, content, content_type, params, options, sdk_method
        )
        return self._stream(prepared, method, path)

    @asynccontextmanager
    async def _stream(
        self, prepared: Prepared, method: str, path: str
    ) -> AsyncIterator[StreamingResponse]:
        started = trio.current_time()  # as request(): the wait for a connection counts
        async with self._pool.lease() as client:  # held until the body is closed
            try:  # recorded to the response's head: the body is the caller's to read
                raw, retries, _ = await self._send(prepared, client, stream=True)
            except Exception:
                self._record(method, path, started, failed=True)
                raise
            self._record(method, path, started, failed=False)
            try:
                yield StreamingResponse(
                    raw, retries_taken=retries, idempotency_key=prepared.idempotency_key
                )
            finally:
                await raw.aclose()

    async def aclose(self) -> None:
        """Close the connection pool; later requests raise ``trio.ClosedResourceError``."""
        if self._closed:
            return
        self._closed = True
        await self._pool.aclose()

    async def identity_jwt(self) -> str | None:
        """Return the JWT that identifies the caller, or None when the credential is a plain key.

        In JWT mode that is the exchanged token (exchanged now if none is cached); otherwise the
        configured key itself when it is a JWT issued by the service (``iss`` ``passport-*``).
        Used to answer ``whoami`` from claims, without a request.
        """
        if self._jwt_auth:
            return await self._tokens.get()
        key = self._api_key
        if key.count(".") != 2:
            return None
        try:
            issuer = jwt_claims(key).get("iss", "")
        except InvalidInputError:
            return None
        return key if isinstance(issuer, str) and issuer.startswith("passport-") else None

    def statistics(self) -> TransportStatistics:
        """Return counters of requests, attempts, retries and outcomes so far."""
        c = self._counts
        return TransportStatistics(
            requests=c["requests"],
            attempts=c["attempts"],
            retries=c["retries"],
            by_status=dict(self._by_status),
            connection_errors=c["connection_errors"],
            timeouts=c["timeouts"],
            empty_400s=c["empty_400s"],
            empty_400_budget=self._empty_400_budget,
            billing_pauses=c["billing_pauses"],
            jwt_exchanges=c["jwt_exchanges"],
            jwt_replays=c["jwt_replays"],
        )

    # -- credentials -------------------------------------------------------------------------

    def _plain_credential(self, p: Prepared) -> str | None:
        """The credential when nothing needs awaiting or checking (the usual API key), else
        None: :meth:`_credential` decides then."""
        if p.credential is not None:
            return p.credential
        if self._jwt_auth or self._api_key_expiry is not None:
            return None
        return self._api_key or None

    async def _credential(self, p: Prepared) -> str:
        if p.credential is not None:
            return p.credential
        if self._jwt_auth and not p.raw_credential:
            return await self._tokens.get()
        if self._api_key_expiry is not None and self._clock() >= self._api_key_expiry:
            raise InvalidInputError(
                f"The api_key JWT from {self._config.api_key_source} has expired. Pass a fresh "
                "one, or remove it and set TINKER_CREDENTIAL_CMD to a command that prints one."
            )
        return self._api_key

    async def _exchange(self) -> str:
        """Trade the raw credential for a JWT at ``/api/v1/auth/token``."""
        if self._credential_source == "credential_cmd" and self._config.credential_cmd:
            raw_credential = await run_credential_cmd(self._config.credential_cmd)
            self._tokens_seen.append(raw_credential)
        else:
            raw_credential = self._api_key
        prepared = prepare(
            self._config,
            "POST",
            AUTH_TOKEN_PATH,
            AuthTokenRequest(),
            None,
            None,
            None,
            None,
            None,
            credential=raw_credential,
        )
        async with self._pool.lease() as client:
            raw, retries, elapsed = await self._send(prepared, client, stream=False)
        token = to_response(raw, retries, elapsed, prepared).decode(AuthTokenResponse).jwt
        self._tokens_seen.append(token)
        self._counts["jwt_exchanges"] += 1
        logger.debug("obtained a new JWT (exchange #%d)", self._counts["jwt_exchanges"])
        return token

    # -- the retry loop ----------------------------------------------------------------------

    async def _send(
        self, p: Prepared, client: httpx.AsyncClient, *, stream: bool
    ) -> tuple[httpx.Response, int, float]:
        """Run the attempts of one logical request; return the response, retries, elapsed."""
        if self._closed:
            raise trio.ClosedResourceError("the transport is closed")
        self._counts["requests"] += 1
        retries = 0
        replayed = False
        while True:
            credential = self._plain_credential(p) or await self._credential(p)
            if self._start_headers is None:  # every client the pool makes has these defaults
                self._start_headers = request_headers(client.headers, self._base_headers)
            request = build_request(
                self._start_headers,
                connect_timeout=self._config.connect_timeout,
                p=p,
                retries_taken=retries,
                credential=credential,
                cookies=client.cookies,
            )
            self._counts["attempts"] += 1
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug(
                    "sending %s %s (retry %d) headers=%s",
                    p.method,
                    request.url,
                    retries,
                    redact_headers(request.headers),
                )
            started = trio.current_time()
            try:
                if self._direct is not None:
                    response = await send_direct(
                        self._direct, client.cookies, request, stream=stream
                    )
                else:
                    response = await send_through(client, request, stream=stream)
                if response.status_code >= 400 and stream:
                    await response.aread()  # also closes the stream
            except httpx.TransportError as exc:
                self._counts["connection_errors"] += 1
                if isinstance(exc, httpx.TimeoutException):
                    self._counts["timeouts"] += 1
                if retries < p.max_retries:
                    await self._sleep_before_retry(p, retries, None, type(exc).__name__)
                    retries += 1
                    continue
                raise connection_error(
                    exc, method=p.method, url=str(request.url), secrets=self._secrets()
                ) from exc

            status = response.status_code
            self._by_status[status] += 1
            logger.debug("%s %s -> %d", p.method, request.url, status)
            if status < 400:
                self._empty_400_budget = min(self._empty_400_budget + 1, EMPTY_400_BUDGET)
                _log_deprecation(response.headers)
                return response, retries, trio.current_time() - started

            uses_jwt = self._jwt_auth and p.credential is None and not p.raw_credential
            if (
                uses_jwt
                and not replayed
                and is_invalid_token(status, response.headers.get("www-authenticate"))
            ):
                replayed = True
                self._counts["jwt_replays"] += 1
                logger.info("the server rejected the JWT (invalid_token); replaying once")
                await self._tokens.replace(credential)
                continue
            if status == 402 and p.billing_pause:
                pause = self._billing_pause(response)
                if pause is not None:
                    self._counts["billing_pauses"] += 1
                    await trio.sleep(pause)
                    continue
            elif is_empty_400(status, response.headers, response.content) and (
                self._empty_400_budget > 0
            ):
                # A proxy, not the API, refused this: treat it as a failed connection.
                self._empty_400_budget -= 1
                self._counts["empty_400s"] += 1
                if retries < p.max_retries:
                    await self._sleep_before_retry(p, retries, None, "empty 400")
                    retries += 1
                    continue
                raise APIConnectionError(
                    "Connection error (HTTP 400 with an empty body, probably from a proxy).",
                    method=p.method,
                    url=str(request.url),
                )
            elif retries < p.max_retries and retryable(status=status, headers=response.headers):
                await self._sleep_before_retry(p, retries, response.headers, f"HTTP {status}")
                retries += 1
                continue
            _log_deprecation(response.headers)
            raise status_error(response, idempotency_key=p.idempotency_key, secrets=self._secrets())

    async def _sleep_before_retry(
        self, p: Prepared, retries: int, headers: httpx.Headers | None, reason: str
    ) -> None:
        hint = parse_retry_after(headers, now=self._clock()) if headers is not None else None
        delay = http_retry_delay(retries, rng=self._rng, retry_after=hint)
        self._counts["retries"] += 1
        logger.debug(
            "retrying %s %s in %.3f s after %s (%d of %d retries left)",
            p.method,
            scrub(p.url, self._secrets()),
            delay,
            reason,
            p.max_retries - retries,
            p.max_retries,
        )
        await trio.sleep(delay)

    def _billing_pause(self, response: httpx.Response) -> float | None:
        now = trio.current_time()
        self._billing, pause = BillingPause.on_402(
            self._billing, now, max_pause=self._billing_max_pause
        )
        if pause is not None and (
            self._billing_logged_at is None or now - self._billing_logged_at >= BILLING_LOG_INTERVAL
        ):
            self._billing_logged_at = now
            logger.warning(
                "The job is paused because of its billing status (HTTP 402, request id %s); "
                "retrying every %g s for up to %g s",
                response.headers.get("x-request-id"),
                pause,
                self._billing_max_pause,
            )
        return pause
