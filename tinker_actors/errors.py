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

No exception here ever holds the API key: messages are built from status, body and ids only,
and :class:`APIStatusError` keeps the request's method and URL but not its headers.
"""

from __future__ import annotations

from typing import Literal

import httpx

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


class TinkerError(Exception):
    """Base of every exception tinker_actors raises on purpose."""


class InvalidInputError(TinkerError, ValueError):
    """The caller passed something the API cannot accept; the message says what and how to fix.

    Raised before anything is sent, so nothing was consumed or half-applied.
    """


class APIError(TinkerError):
    """A request to the service failed.

    Attributes:
        message: what went wrong, for humans.
        method: the HTTP method of the failed request, when known.
        url: the URL of the failed request (it never contains credentials), when known.
    """

    message: str
    method: str | None
    url: str | None

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None):
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url


class APIConnectionError(APIError):
    """No usable response arrived: the connection failed, was reset or closed early."""

    def __init__(
        self,
        message: str = "Connection error.",
        *,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message, method=method, url=url)


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    def __init__(
        self,
        message: str = "Request timed out.",
        *,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message, method=method, url=url)


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


class APIResponseValidationError(APIError):
    """A response arrived but its body did not match the expected shape."""

    status_code: int
    body: object

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.body = body


class APIStatusError(APIError):
    """The service answered with a 4xx or 5xx status (after the retries it was allowed).

    Attributes:
        status_code: the HTTP status.
        body: the decoded JSON body, or the raw text when it was not JSON, or None.
        request_id: the server's ``x-request-id`` response header, when present.
        idempotency_key: the ``X-Idempotency-Key`` the failed request carried, when any.
        headers: the response headers.
    """

    status_code: int
    body: object
    request_id: str | None
    idempotency_key: str | None
    headers: httpx.Headers

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object = None,
        headers: httpx.Headers | None = None,
        request_id: str | None = None,
        idempotency_key: str | None = None,
        method: str | None = None,
        url: str | None = None,
    ):
        super().__init__(message, method=method, url=url)
        self.status_code = status_code
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()
        self.request_id = request_id
        self.idempotency_key = idempotency_key


class BadRequestError(APIStatusError):
    """HTTP 400."""


class AuthenticationError(APIStatusError):
    """HTTP 401: the API key or token was refused."""


class BillingError(APIStatusError):
    """HTTP 402, after the billing pause window ran out."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404."""


class ConflictError(APIStatusError):
    """HTTP 409."""


class UnprocessableEntityError(APIStatusError):
    """HTTP 422."""


class RateLimitError(APIStatusError):
    """HTTP 429, after the retries it was allowed."""


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: BillingError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
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

    def __init__(
        self, message: str, *, request_id: str, category: RequestFailedCategory = "unknown"
    ):
        super().__init__(f"{message} (request_id={request_id}, category={category})")
        self.message = message
        self.request_id = request_id
        self.category = category
