"""The single request path: one ``httpx.AsyncClient`` under trio, retries, auth and errors.

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
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Final, final

import httpx
import msgspec
import trio

from tinker_actors._version import __version__
from tinker_actors.backoff import BillingPause, http_retry_delay, parse_retry_after, retryable
from tinker_actors.config import jwt_claims
from tinker_actors.errors import APIConnectionError, InvalidInputError
from tinker_actors.transport._auth import TokenCache, is_invalid_token, run_credential_cmd
from tinker_actors.transport._errors import connection_error, is_empty_400, scrub, status_error
from tinker_actors.transport._headers import (
    API_KEY_HEADER,
    IDEMPOTENCY_HEADER,
    base_headers,
    encode_query,
    redact_headers,
)
from tinker_actors.transport._options import (
    RequestOptions,
    Response,
    StreamingResponse,
    TransportStatistics,
)
from tinker_actors.types._auth import AuthTokenRequest, AuthTokenResponse

if TYPE_CHECKING:
    from tinker_actors.config import Config

__all__ = ["AUTH_TOKEN_PATH", "EMPTY_400_BUDGET", "Transport", "open_transport"]

logger = logging.getLogger("tinker_actors.transport")

AUTH_TOKEN_PATH: Final = "/api/v1/auth/token"
#: Shared budget of empty-400 retries (protocol.md §7.5).
EMPTY_400_BUDGET: Final = 16
#: At most one billing-pause warning per this many seconds.
BILLING_LOG_INTERVAL: Final = 60.0
_METHODS: Final = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
_JSON: Final = "application/json"
_encoder: Final = msgspec.json.Encoder()
_CONSTRUCT_TOKEN: Final = object()


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    """Everything about one logical request that does not change between attempts."""

    method: str
    url: str
    params: list[tuple[str, str]]
    body: bytes | None
    content_type: str | None
    accept: str | None
    extra_headers: Mapping[str, str]
    timeout: float
    max_retries: int
    idempotency_key: str | None
    billing_pause: bool
    raw_credential: bool
    sdk_method: str | None
    #: A credential to send instead of the normal one (the JWT exchange's raw credential).
    credential: str | None = None


def _encode_json(json: object, extra_body: Mapping[str, object] | None) -> bytes:
    if extra_body is None:
        if isinstance(json, Mapping) and not isinstance(json, dict):
            json = dict(json)
        return _encoder.encode(json)
    merged = msgspec.to_builtins(json) if json is not None else {}
    if not isinstance(merged, dict):
        raise InvalidInputError(
            f"extra_body can only be merged into a JSON object body, not {type(json).__name__}"
        )
    merged.update(extra_body)
    return _encoder.encode(merged)


def _log_deprecation(headers: httpx.Headers) -> None:
    note = headers.get("x-deprecation-note")
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
        client: httpx.AsyncClient,
        *,
        rng: random.Random,
        clock: Callable[[], float],
        _token: object = None,
    ) -> None:
        if _token is not _CONSTRUCT_TOKEN:
            raise TypeError("Transport has no public constructor; use open_transport(config)")
        self._config = config
        self._client = client
        self._rng = rng
        self._clock = clock
        self._closed = False
        self._api_key = config.api_key.reveal()
        cf_secret = config.cf_access_client_secret
        self._fixed_secrets: tuple[str, ...] = (self._api_key,) + (
            (cf_secret.reveal(),) if cf_secret else ()
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

    def _secrets(self) -> tuple[str, ...]:
        return (*self._fixed_secrets, *self._tokens_seen)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Transport {self._config.base_url} jwt={self._jwt_auth} {state}>"

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
        prepared = self._prepare(
            method, path, json, content, content_type, params, options, sdk_method
        )
        raw, retries, elapsed = await self._send(prepared, stream=False)
        return self._to_response(raw, retries, elapsed, prepared)

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
        prepared = self._prepare(
            method, path, json, content, content_type, params, options, sdk_method
        )
        return self._stream(prepared)

    @asynccontextmanager
    async def _stream(self, prepared: _Prepared) -> AsyncIterator[StreamingResponse]:
        raw, retries, _ = await self._send(prepared, stream=True)
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
        await self._client.aclose()

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

    # -- building ----------------------------------------------------------------------------

    def _prepare(
        self,
        method: str,
        path: str,
        json: object,
        content: bytes | None,
        content_type: str | None,
        params: Mapping[str, object] | None,
        options: RequestOptions | None,
        sdk_method: str | None,
        *,
        credential: str | None = None,
    ) -> _Prepared:
        opts = options if options is not None else RequestOptions()
        verb = method.upper()
        if verb not in _METHODS:
            raise InvalidInputError(
                f"unsupported HTTP method {method!r}; use one of {sorted(_METHODS)}"
            )
        if not isinstance(path, str) or not path:
            raise InvalidInputError(
                f"path must be a non-empty str like '/api/v1/...', got {path!r}"
            )
        if json is not None and content is not None:
            raise InvalidInputError("pass either json= or content=, not both")
        if content_type is not None and content is None:
            raise InvalidInputError("content_type= describes content=; pass content= too")
        if content is not None and not isinstance(content, bytes | bytearray | memoryview):
            raise InvalidInputError(f"content must be bytes, got {type(content).__name__}")
        body: bytes | None = None
        ctype: str | None = None
        if content is not None:
            body, ctype = bytes(content), content_type or "application/octet-stream"
        elif json is not None or opts.extra_body is not None:
            body, ctype = _encode_json(json, opts.extra_body), _JSON
        if body is not None and verb == "GET":
            raise InvalidInputError("GET requests carry no body; drop json=/content=/extra_body")
        if opts.extra_body is not None and content is not None:
            raise InvalidInputError("extra_body merges into JSON bodies only, not content=")

        query: dict[str, object] = dict(params or {})
        query.update(opts.extra_query or {})
        if path.startswith(("http://", "https://")):
            url = path
        else:
            url = f"{self._config.base_url}/{path.lstrip('/')}"
        key = opts.idempotency_key
        if key is None and verb != "GET":
            key = f"stainless-python-retry-{uuid.uuid4()}"
        return _Prepared(
            method=verb,
            url=url,
            params=encode_query(query),
            body=body,
            content_type=ctype,
            accept=opts.accept,
            extra_headers=dict(opts.extra_headers or {}),
            timeout=opts.timeout if opts.timeout is not None else self._config.timeout,
            max_retries=(
                opts.max_retries if opts.max_retries is not None else self._config.max_retries
            ),
            idempotency_key=key,
            billing_pause=opts.billing_pause,
            raw_credential=opts.raw_credential,
            sdk_method=sdk_method,
            credential=credential,
        )

    def _build(self, p: _Prepared, retries_taken: int, credential: str) -> httpx.Request:
        headers = httpx.Headers(self._base_headers)
        if p.sdk_method is not None:
            headers["x-sdk-version"] = __version__
            headers["x-sdk-method"] = p.sdk_method
        if p.accept is not None:
            headers["Accept"] = p.accept
        if p.content_type is not None:
            headers["Content-Type"] = p.content_type
        headers.update(p.extra_headers)
        custom = {name.lower() for name in p.extra_headers}
        if p.idempotency_key is not None and IDEMPOTENCY_HEADER.lower() not in custom:
            headers[IDEMPOTENCY_HEADER] = p.idempotency_key
        if "x-stainless-retry-count" not in custom:
            headers["x-stainless-retry-count"] = str(retries_taken)
        if "x-stainless-read-timeout" not in custom:
            headers["x-stainless-read-timeout"] = str(p.timeout)
        # The credential goes last: no override may replace or leak it.
        headers[API_KEY_HEADER] = credential
        connect = min(self._config.connect_timeout, p.timeout)
        return self._client.build_request(
            p.method,
            p.url,
            params=httpx.QueryParams(tuple(p.params)) if p.params else None,
            content=p.body,
            headers=headers,
            timeout=httpx.Timeout(p.timeout, connect=connect),
        )

    def _to_response(
        self, raw: httpx.Response, retries: int, elapsed: float, p: _Prepared
    ) -> Response:
        return Response(
            status=raw.status_code,
            headers=raw.headers,
            content=raw.content,
            http_version=raw.http_version,
            elapsed=elapsed,
            retries_taken=retries,
            method=p.method,
            url=str(raw.request.url),
            idempotency_key=p.idempotency_key,
        )

    # -- credentials -------------------------------------------------------------------------

    async def _credential(self, p: _Prepared) -> str:
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
        prepared = self._prepare(
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
        raw, retries, elapsed = await self._send(prepared, stream=False)
        token = self._to_response(raw, retries, elapsed, prepared).decode(AuthTokenResponse).jwt
        self._tokens_seen.append(token)
        self._counts["jwt_exchanges"] += 1
        logger.debug("obtained a new JWT (exchange #%d)", self._counts["jwt_exchanges"])
        return token

    # -- the retry loop ----------------------------------------------------------------------

    async def _send(
        self, p: _Prepared, *, stream: bool
    ) -> tuple[httpx.Response, int, float]:
        """Run the attempts of one logical request; return the response, retries, elapsed."""
        if self._closed:
            raise trio.ClosedResourceError("the transport is closed")
        self._counts["requests"] += 1
        retries = 0
        replayed = False
        while True:
            credential = await self._credential(p)
            request = self._build(p, retries, credential)
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
                response = await self._client.send(request, stream=stream)
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
        self, p: _Prepared, retries: int, headers: httpx.Headers | None, reason: str
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


@asynccontextmanager
async def open_transport(
    config: Config,
    *,
    http_transport: httpx.AsyncBaseTransport | None = None,
    rng: random.Random | None = None,
    clock: Callable[[], float] | None = None,
) -> AsyncIterator[Transport]:
    """Open the connection pool for ``config`` and yield the :class:`Transport` over it.

    Args:
        config: where to connect and how.
        http_transport: an httpx transport to send through instead of the network
            (``httpx.MockTransport`` / ``httpx.ASGITransport`` in tests).
        rng: the random source for retry jitter and JWT refresh timing.
        clock: the wall clock as POSIX seconds (default ``time.time``), read for Retry-After
            dates and JWT expiry; durations use ``trio.current_time()``.
    """
    limits = httpx.Limits(
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry,
    )
    if http_transport is None:
        http_transport = httpx.AsyncHTTPTransport(http2=config.http2, limits=limits)
    client = httpx.AsyncClient(
        transport=http_transport,
        timeout=httpx.Timeout(config.timeout, connect=config.connect_timeout),
        follow_redirects=True,
    )
    transport = Transport(
        config,
        client,
        rng=rng if rng is not None else random.Random(),
        clock=clock if clock is not None else time.time,
        _token=_CONSTRUCT_TOKEN,
    )
    try:
        yield transport
    finally:
        with trio.CancelScope(shield=True):
            await transport.aclose()
