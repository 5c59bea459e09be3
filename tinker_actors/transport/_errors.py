"""Turn failed attempts into the exceptions of :mod:`tinker_actors.errors`, with no secrets.

Messages follow the official SDK (``Error code: 429 - {'detail': 'slow down'}``) and carry the
status, the parsed body, the headers, ``x-request-id`` and the idempotency key. Every message
passes through :func:`scrub` first, so a server (or proxy) that echoes the credential back
cannot smuggle it into a traceback or a log line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx
import msgspec

from tinker_actors.config import secret_forms
from tinker_actors.errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    status_error_class,
)
from tinker_actors.transport._headers import REDACTED

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["MESSAGE_BODY_LIMIT", "connection_error", "is_empty_400", "scrub", "status_error"]

#: Longest body text quoted in an error message (the full body stays on ``.body``).
MESSAGE_BODY_LIMIT: Final = 2000


def scrub(text: str, secrets: Iterable[str], replacement: str = REDACTED) -> str:
    """Return ``text`` with each non-empty secret replaced, in any form it may be quoted in.

    The forms are those of :func:`~tinker_actors.config.secret_forms`: verbatim, ``repr``- and
    bytes-``repr``-escaped, JSON-escaped and URL-encoded, so "Illegal header value b'tml-..\\n'"
    is redacted as well as the raw key.
    """
    for secret in secrets:
        for form in secret_forms(secret):
            if form in text:
                text = text.replace(form, replacement)
    return text


def is_empty_400(status: int, headers: Mapping[str, str], content: bytes) -> bool:
    """Say whether a response looks like a proxy's bare rejection: 400 with an empty body.

    The official SDK keys on ``content-length: 0`` (protocol.md §7.5); a body-less 400 without
    the header counts too, a 400 with any body does not.
    """
    if status != 400 or content:
        return False
    length = headers.get("content-length")
    return length is None or length.strip() == "0"


def status_error(
    response: httpx.Response,
    *,
    idempotency_key: str | None,
    secrets: Iterable[str],
) -> APIStatusError:
    """Build the status exception for a read error response."""
    status = response.status_code
    text = response.content.decode("utf-8", errors="replace").strip()
    body: object = None
    if text:
        try:
            body = msgspec.json.decode(text)
        except msgspec.DecodeError:
            body = text
    shown = str(body) if body is not None else ""
    if len(shown) > MESSAGE_BODY_LIMIT:
        shown = shown[:MESSAGE_BODY_LIMIT] + "..."
    message = f"Error code: {status} - {shown}" if shown else f"Error code: {status}"
    return status_error_class(status)(
        scrub(message, secrets),
        status_code=status,
        body=body,
        headers=response.headers,
        request_id=response.headers.get("x-request-id"),
        idempotency_key=idempotency_key,
        method=response.request.method,
        url=str(response.request.url),
    )


def connection_error(
    exc: Exception, *, method: str, url: str, secrets: Iterable[str]
) -> APIConnectionError:
    """Build the exception for an attempt that got no response (after its retries)."""
    detail = scrub(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, secrets)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"Request timed out ({detail}).", method=method, url=url)
    return APIConnectionError(f"Connection error ({detail}).", method=method, url=url)
