"""Per-call options and the values a request returns: responses and statistics."""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

import msgspec

from tinker_actors.errors import APIResponseValidationError, InvalidInputError
from tinker_actors.transport import _prebuilt

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    import httpx

__all__ = ["RequestOptions", "Response", "StreamingResponse", "TransportStatistics"]

T = TypeVar("T")

#: How much of a body an error message quotes.
BODY_EXCERPT: Final = 200


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class RequestOptions:
    """How one call departs from the transport's defaults.

    Attributes:
        extra_headers: headers merged over everything else (the credential excepted).
        extra_query: query parameters merged over the call's own.
        extra_body: keys merged into a JSON body (top level).
        timeout: total timeout in seconds for each attempt; also sent, via ``str()``, as
            ``x-stainless-read-timeout`` (``45`` -> ``"45"``, ``5.0`` -> ``"5.0"``).
        max_retries: HTTP-layer retries for this call (0 sends once).
        idempotency_key: the ``X-Idempotency-Key`` to use instead of a generated one.
        accept: the ``Accept`` header (default ``application/json``).
        billing_pause: on HTTP 402 keep retrying every 5 s for up to the configured pause
            before raising :class:`~tinker_actors.errors.BillingError`; False raises at once.
        raw_credential: send the configured credential itself even in JWT mode (the
            ``/client/config`` bootstrap call).
    """

    extra_headers: Mapping[str, str] | None = None
    extra_query: Mapping[str, object] | None = None
    extra_body: Mapping[str, object] | None = None
    timeout: float | None = None
    max_retries: int | None = None
    idempotency_key: str | None = None
    accept: str | None = None
    billing_pause: bool = True
    raw_credential: bool = False

    def __post_init__(self) -> None:
        if self.timeout is not None and (
            isinstance(self.timeout, bool)
            or not isinstance(self.timeout, int | float)
            or not self.timeout > 0
        ):
            raise InvalidInputError(
                f"timeout must be a number of seconds > 0, got {self.timeout!r}"
            )
        if self.max_retries is not None and (
            isinstance(self.max_retries, bool)
            or not isinstance(self.max_retries, int)
            or self.max_retries < 0
        ):
            raise InvalidInputError(
                f"max_retries must be an int >= 0 (0 sends once), got {self.max_retries!r}"
            )
        if self.idempotency_key is not None and not self.idempotency_key:
            raise InvalidInputError("idempotency_key must be a non-empty string or None")


@functools.lru_cache(maxsize=512)
def _decoder(type_: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(type_)


def _excerpt(content: bytes) -> str:
    text = content[:BODY_EXCERPT].decode("utf-8", errors="replace")
    return text + ("..." if len(content) > BODY_EXCERPT else "")


@final
class Response:
    """A complete response: status, headers and the whole body, already read.

    Attributes:
        status: the HTTP status (2xx or 3xx: errors raise instead).
        headers: the response headers.
        content: the body bytes.
        http_version: ``"HTTP/1.1"`` or ``"HTTP/2"``.
        elapsed: seconds from sending the final attempt to reading the body.
        retries_taken: HTTP-layer retries before this response.
        method: the request method.
        url: the request URL.
        idempotency_key: the ``X-Idempotency-Key`` sent, or None (GET).
    """

    __slots__ = (
        "_url",
        "content",
        "elapsed",
        "headers",
        "http_version",
        "idempotency_key",
        "method",
        "retries_taken",
        "status",
    )

    def __init__(
        self,
        *,
        status: int,
        headers: httpx.Headers,
        content: bytes,
        http_version: str,
        elapsed: float,
        retries_taken: int,
        method: str,
        url: str | httpx.URL,
        idempotency_key: str | None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.http_version = http_version
        self.elapsed = elapsed
        self.retries_taken = retries_taken
        self.method = method
        self._url = url  # formatted on first use: most responses never show their URL
        self.idempotency_key = idempotency_key

    @property
    def url(self) -> str:
        """The request URL."""
        url = self._url
        if not isinstance(url, str):
            url = self._url = str(url)
        return url

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.method} {self.url} ({len(self.content)} bytes)>"

    @property
    def request_id(self) -> str | None:
        """Return the server's ``x-request-id`` header, when present."""
        return self.header("x-request-id")

    def header(self, name: str) -> str | None:
        """Return the value of header ``name`` (any case; repeated ones joined with ``", "``),
        or None when the response has none: ``headers.get(name)``, cheaper when it is absent."""
        return _prebuilt.header(self.headers, name.lower())

    def json(self) -> Any:
        """Decode the body as untyped JSON.

        Raises:
            APIResponseValidationError: the body is not JSON.
        """
        return self.decode(cast("type[Any]", Any))

    def decode(self, type_: type[T]) -> T:
        """Decode the JSON body into ``type_`` (a msgspec Struct or any msgspec type).

        Raises:
            APIResponseValidationError: the body is not valid JSON for ``type_``; the message
                holds the status, the reason and the start of the body.
        """
        try:
            return cast("T", _decoder(cast("Any", type_)).decode(self.content))
        except msgspec.DecodeError as exc:
            name = getattr(type_, "__name__", str(type_))
            raise APIResponseValidationError(
                f"{self.method} {self.url} answered {self.status} with a body that is not a "
                f"valid {name}: {exc}; body starts {_excerpt(self.content)!r}",
                status_code=self.status,
                body=_excerpt(self.content),
                method=self.method,
                url=self.url,
            ) from None


@final
class StreamingResponse:
    """A successful response whose body has not been read yet.

    Only valid inside ``async with transport.stream(...)``: leaving the block closes the
    connection's stream, read or not.
    """

    __slots__ = ("_raw", "idempotency_key", "retries_taken")

    def __init__(self, raw: httpx.Response, *, retries_taken: int, idempotency_key: str | None):
        self._raw = raw
        self.retries_taken = retries_taken
        self.idempotency_key = idempotency_key

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status} {self._raw.request.method} {self._raw.url}>"

    @property
    def status(self) -> int:
        """Return the HTTP status."""
        return self._raw.status_code

    @property
    def headers(self) -> httpx.Headers:
        """Return the response headers."""
        return self._raw.headers

    @property
    def http_version(self) -> str:
        """Return the HTTP version spoken."""
        return self._raw.http_version

    @property
    def request_id(self) -> str | None:
        """Return the server's ``x-request-id`` header, when present."""
        value: str | None = self._raw.headers.get("x-request-id")
        return value

    async def aiter_bytes(self, chunk_size: int | None = None) -> AsyncIterator[bytes]:
        """Yield the (decoded) body as it arrives, chunk by chunk."""
        async for chunk in self._raw.aiter_bytes(chunk_size):
            yield chunk

    async def aread(self) -> bytes:
        """Read and return the rest of the body."""
        return await self._raw.aread()


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class TransportStatistics:
    """Counters since the transport opened.

    Attributes:
        requests: logical requests started (each may take several attempts).
        attempts: HTTP requests actually sent, retries and replays included.
        retries: HTTP-layer retries taken.
        by_status: final responses and retried ones, counted by status code.
        connection_errors: attempts that failed without a response (timeouts included).
        timeouts: attempts that timed out.
        empty_400s: 400 responses with an empty body treated as a connection failure.
        empty_400_budget: how many more such 400s may be retried now (max 16).
        billing_pauses: 5-second pauses taken because of HTTP 402.
        jwt_exchanges: successful ``/api/v1/auth/token`` exchanges.
        jwt_replays: requests replayed after an ``invalid_token`` 401.
    """

    requests: int
    attempts: int
    retries: int
    by_status: Mapping[int, int]
    connection_errors: int
    timeouts: int
    empty_400s: int
    empty_400_budget: int
    billing_pauses: int
    jwt_exchanges: int
    jwt_replays: int
