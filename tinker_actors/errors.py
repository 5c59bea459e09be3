"""Exceptions raised by tinker_actors, with the official SDK's names so ported code still works.

Hierarchy::

    TinkerError
    ├── InvalidInputError            bad input caught client-side; nothing was sent (also ValueError)
    ├── APIError                     something went wrong talking to the service
    │   ├── APIConnectionError       no usable response (connection reset, DNS, refused, ...)
    │   │   ├── APITimeoutError      the request timed out
    │   │   └── SessionLostError     the server confirmed the session is gone (410s)
    │   ├── APIResponseValidationError  a response arrived but did not decode as expected
    │   └── APIStatusError           the service answered 4xx / 5xx (after any retries)
    │       ├── BadRequestError              400
    │       ├── AuthenticationError          401
    │       ├── BillingError                 402
    │       ├── PermissionDeniedError        403
    │       ├── NotFoundError                404
    │       ├── ConflictError                409
    │       ├── UnprocessableEntityError     422
    │       ├── RateLimitError               429
    │       └── InternalServerError          >= 500
    └── RequestFailedError           a future resolved to a server-side failure

The actor runtime adds three more (defined in :mod:`tinker_actors.supervisors`, which knows
nothing about Tinker, and re-exported from the package root)::

    Exception
    ├── ActorExited        the actor a call or cast addressed has exited (``reason`` says why)
    ├── MailboxFull        ``cast_nowait`` found the actor's bounded mailbox full
    └── SupervisorGaveUp   a supervisor's children exited normally more often than it allows

A supervisor whose child *crashed* too often re-raises the child's own exception, so it leaves
``tinker_actors.open()`` inside an exception group with its original type.

No exception the runtime raises holds the API key: messages are built from status, body and
ids only, and an error keeps the request's method and URL but not its headers (its
``request`` and ``response`` are rebuilt from those). The constructors also take the official
SDK's arguments (an ``httpx.Request`` or ``httpx.Response``), kept as given, so code that builds
these errors for its own tests moves over unchanged. Every exception survives pickling.
"""

from __future__ import annotations

import json
from typing import Literal

import httpx

from tinker_actors._pickling import PicklableError

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BillingError",
    "ConflictError",
    "InternalServerError",
    "InvalidInputError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "RequestFailedError",
    "SessionLostError",
    "TinkerError",
    "UnprocessableEntityError",
    "status_error_class",
]


class TinkerError(PicklableError):
    """Base of every exception tinker_actors raises on purpose (each survives pickling)."""


class InvalidInputError(TinkerError, ValueError):
    """The caller passed something the API cannot accept; the message says what and how to fix.

    Raised before anything is sent, so nothing was consumed or half-applied.
    """


class APIError(TinkerError):
    """A request to the service failed.

    Also constructible as the official SDK's ``APIError(message, request, *, body=...)``.

    Attributes:
        message: what went wrong, for humans.
        method: the HTTP method of the failed request, when known.
        url: the URL of the failed request (it never contains credentials), when known.
        body: the decoded response body, when there was one.
        request: an ``httpx.Request`` for the failed request (see :attr:`request`).
    """

    message: str
    method: str | None
    url: str | None
    body: object

    def __init__(
        self,
        message: str,
        request: httpx.Request | None = None,
        *,
        body: object = None,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self._request = request
        if request is not None:
            method = method or request.method
            url = url or str(request.url)
        self.method = method
        self.url = url
        self.body = body

    @property
    def request(self) -> httpx.Request:
        """The failed request: the one given to the constructor, else one rebuilt from its
        method and URL. A rebuilt request has no headers, so it never carries the API key."""
        if self._request is None:
            self._request = httpx.Request(self.method or "GET", self.url or "")
        return self._request


def _request_first(
    first: str | httpx.Request, second: str | httpx.Request | None, default: str
) -> tuple[str, httpx.Request | None]:
    """(message, request) from either argument order: ours puts the message first, the
    official SDK's connection errors put the request first."""
    if isinstance(first, httpx.Request):
        return (second if isinstance(second, str) else default), first
    return first, (second if isinstance(second, httpx.Request) else None)


class APIConnectionError(APIError):
    """No usable response arrived: the connection failed, was reset or closed early.

    Also constructible as the official SDK's ``APIConnectionError(request, message=...)``.
    """

    def __init__(
        self,
        message: str | httpx.Request = "Connection error.",
        request: httpx.Request | str | None = None,
        *,
        method: str | None = None,
        url: str | None = None,
    ):
        text, req = _request_first(message, request, "Connection error.")
        super().__init__(text, req, method=method, url=url)


class APITimeoutError(APIConnectionError):
    """The request timed out.

    Also constructible as the official SDK's ``APITimeoutError(request)``.
    """

    def __init__(
        self,
        message: str | httpx.Request = "Request timed out.",
        request: httpx.Request | str | None = None,
        *,
        method: str | None = None,
        url: str | None = None,
    ):
        text, req = _request_first(message, request, "Request timed out.")
        super().__init__(text, req, method=method, url=url)


class SessionLostError(APIConnectionError):
    """The server confirmed the session is gone; nothing more can be done on it.

    Raised by every later request to the runtime for its session (``create_*_client``,
    ``runtime.session_id()``, a new sampling session) once heartbeats were answered
    ``410 Gone`` several times in a row (a single 410 is not enough). Open a new runtime for a new session; checkpoints
    already saved can be loaded there.

    Attributes:
        session_id: the lost session.
    """

    session_id: str

    def __init__(self, session_id: str, message: str | None = None) -> None:
        super().__init__(
            message
            or (
                f"session {session_id} was lost: the server answered its heartbeats with "
                "410 Gone repeatedly; open a new runtime (tinker_actors.open()) for a new "
                "session, and load your last checkpoint there"
            )
        )
        self.session_id = session_id


def _response_request(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a Response built without one
        return None


def _rebuilt_response(error: APIError, status_code: int, headers: httpx.Headers) -> httpx.Response:
    body = error.body
    if body is None or isinstance(body, bytes):
        content = body or b""
    elif isinstance(body, str):
        content = body.encode()
    else:
        content = json.dumps(body, separators=(",", ":"), default=str).encode()
    return httpx.Response(status_code, headers=headers, content=content, request=error.request)


class APIResponseValidationError(APIError):
    """A response arrived but its body did not match the expected shape.

    Also constructible as the official SDK's ``APIResponseValidationError(response, body,
    message=None)``.
    """

    status_code: int

    def __init__(
        self,
        message: str | httpx.Response | None = None,
        body: object = None,
        response_message: str | None = None,
        *,
        response: httpx.Response | None = None,
        status_code: int | None = None,
        method: str | None = None,
        url: str | None = None,
    ):
        if isinstance(message, httpx.Response):  # the official order: (response, body, message)
            response, message = message, response_message
        text = message or "Data returned by API invalid for expected schema."
        request = _response_request(response) if response is not None else None
        super().__init__(text, request, body=body, method=method, url=url)
        if status_code is None:
            if response is None:
                raise TypeError("APIResponseValidationError needs status_code= or response=")
            status_code = response.status_code
        self.status_code = status_code
        self._response = response

    @property
    def response(self) -> httpx.Response:
        """The response that failed to decode (rebuilt from status and body when not given)."""
        if self._response is None:
            self._response = _rebuilt_response(self, self.status_code, httpx.Headers())
        return self._response


class APIStatusError(APIError):
    """The service answered with a 4xx or 5xx status (after the retries it was allowed).

    Also constructible as the official SDK's ``APIStatusError(message, response, body)``; a
    subclass for one status (``NotFoundError``, ...) needs neither ``response`` nor
    ``status_code``: its class attribute ``status_code`` is used, as in the official SDK.

    Attributes:
        status_code: the HTTP status.
        body: the decoded JSON body, or the raw text when it was not JSON, or None.
        request_id: the server's ``x-request-id`` response header, when present.
        idempotency_key: the ``X-Idempotency-Key`` the failed request carried, when any.
        headers: the response headers.
        response: an ``httpx.Response`` (see :attr:`response`).
    """

    status_code: int
    request_id: str | None
    idempotency_key: str | None
    headers: httpx.Headers

    def __init__(
        self,
        message: str,
        response: httpx.Response | None = None,
        body: object = None,
        *,
        status_code: int | None = None,
        headers: httpx.Headers | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ):
        request = _response_request(response) if response is not None else None
        super().__init__(message, request, body=body, method=method, url=url)
        if status_code is None:
            # the response's, else the class's own (NotFoundError: 404, as in the official SDK)
            given = response if response is not None else type(self)
            status_code = getattr(given, "status_code", None)
            if status_code is None:
                raise TypeError(f"{type(self).__name__} needs status_code= or response=")
        if headers is None:
            headers = response.headers if response is not None else httpx.Headers()
        self.status_code = status_code
        self.headers = headers
        self.request_id = request_id if request_id is not None else headers.get("x-request-id")
        self.idempotency_key = idempotency_key
        self._response = response

    @property
    def response(self) -> httpx.Response:
        """The error response: the one given to the constructor, else one rebuilt from the
        status, headers and body (its ``request`` is :attr:`request`)."""
        if self._response is None:
            self._response = _rebuilt_response(self, self.status_code, self.headers)
        return self._response


class BadRequestError(APIStatusError):
    """HTTP 400."""

    status_code: int = 400


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key or token was refused."""

    status_code: int = 401


class BillingError(APIStatusError):
    """HTTP 402, after the billing pause window ran out."""

    status_code: int = 402


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""

    status_code: int = 403


class NotFoundError(APIStatusError):
    """HTTP 404."""

    status_code: int = 404


class ConflictError(APIStatusError):
    """HTTP 409."""

    status_code: int = 409


class UnprocessableEntityError(APIStatusError):
    """HTTP 422."""

    status_code: int = 422


class RateLimitError(APIStatusError):
    """HTTP 429, after the retries it was allowed."""

    status_code: int = 429


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    cls.status_code: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        BillingError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        UnprocessableEntityError,
        RateLimitError,
    )
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """Return the exception class the official SDK maps ``status_code`` to."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


RequestFailedCategory = Literal["unknown", "server", "user"]


class RequestFailedError(TinkerError):
    """A future resolved to a failure reported by the service.

    Attributes:
        message: the server's error text.
        request_id: the future's request id.
        category: ``"user"`` when the request itself was at fault, ``"server"`` when the
            service failed, ``"unknown"`` otherwise.
    """

    message: str
    request_id: str
    category: RequestFailedCategory

    def __init__(self, message: str, request_id: str, category: RequestFailedCategory = "unknown"):
        super().__init__(f"{message} (request_id={request_id}, category={category})")
        self.message = message
        self.request_id = request_id
        self.category = category
