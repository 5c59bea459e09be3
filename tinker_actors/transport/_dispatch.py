"""Hand one built request to an httpx transport directly, without ``httpx.AsyncClient.send``.

The client layer of httpx (auth flow, redirect loop, cookie jar bridging through
``urllib.request``, event hooks, the elapsed-time stream wrapper) cost about as much client CPU
per request as the whole HTTP/1.1 exchange in a 2,048-sample burst, while the SDK uses none of
it but cookies and redirects: auth headers are ours, there are no hooks, and retries live in
:mod:`._transport`. So for transports that need nothing else from the client (our h11
transport, and the in-process transports tests inject) a request goes straight to
``handle_async_request``, and the two client features that matter are kept here:

* cookies: a ``Set-Cookie`` answer is stored in the client's jar and the jar's cookies go out
  with later requests, as httpx does (only a response that sets one pays for the jar);
* redirects: 301/302/303/307/308 with a ``Location`` are followed, up to
  :data:`MAX_REDIRECTS`, with the method and body rules of RFC 9110 §15.4 as browsers and httpx
  apply them (303, and 301/302 after a POST, become a body-less GET). Unlike httpx, every
  credential header (``X-API-Key``, ``Authorization``, Cloudflare Access, cookies) is dropped
  when the redirect leaves the origin: the audit log's 302 to a signed storage URL must not
  carry the API key to the storage host.

The httpx backend (HTTP/2, proxies from the environment) keeps ``client.send``, which mounts
proxy transports per URL, but one hop at a time (:func:`send_through`): redirects follow the
same rules on both backends.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx

from tinker_actors.errors import APIConnectionError
from tinker_actors.transport import _prebuilt
from tinker_actors.transport._h11 import read_whole
from tinker_actors.transport._headers import API_KEY_HEADER

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tinker_actors.transport._request import Timeouts

__all__ = ["MAX_REDIRECTS", "REDIRECT_STATUSES", "redirect_request", "send_direct", "send_through"]

#: Redirects followed for one attempt before giving up (httpx's default too).
MAX_REDIRECTS: Final = 20
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
#: Headers that identify the caller; never sent to another origin.
_CREDENTIAL_HEADERS: Final = (
    API_KEY_HEADER,
    "Authorization",
    "CF-Access-Client-Id",
    "CF-Access-Client-Secret",
)


def _read_as(response: httpx.Response, body: bytes) -> None:
    # what ``Response.aread`` leaves behind: the body, the stream consumed and closed
    response._content = body  # private: see _SETS_CONTENT
    response.is_stream_consumed = True
    response.is_closed = True


def _sets_content() -> bool:
    probe = httpx.Response(200, stream=httpx.ByteStream(b""))
    try:
        _read_as(probe, b"probe")
        return probe.content == b"probe" and probe.read() == b"probe"
    except Exception:  # any other httpx: the public way below
        return False


#: Whether httpx keeps a read body where :func:`_read_as` puts it (true of httpx 0.23-0.28):
#: handing it over there costs nothing, while a new ``Response(content=...)`` or httpx's own
#: ``aread`` of a one-piece stream costs 8-11 µs per request, a few % of a small request.
_SETS_CONTENT: Final = _sets_content()


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """``response`` with ``body`` as its content, read (``body`` is not copied)."""
    if _SETS_CONTENT:
        _read_as(response, body)
        return response
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=body,
        request=response.request,
        extensions=response.extensions,
    )


async def send_direct(
    transport: httpx.AsyncBaseTransport,
    cookies: httpx.Cookies,
    request: httpx.Request,
    *,
    stream: bool,
) -> httpx.Response:
    """Send ``request`` through ``transport``, following redirects and keeping cookies.

    Args:
        transport: sends one request and returns its response with the body unread.
        cookies: the jar of the client this request was leased with (read and updated).
        request: the first request; its ``timeout`` extension applies to every hop.
        stream: leave the final body unread (the caller closes the response) instead of
            reading it whole.

    Raises:
        APIConnectionError: more than :data:`MAX_REDIRECTS` redirects.
        httpx.TransportError: the transport's own failures, unchanged (the caller retries).
    """

    async def hop(request: httpx.Request) -> httpx.Response:
        response = await transport.handle_async_request(request)
        response.request = request
        if _prebuilt.header(response.headers, "set-cookie") is not None:
            cookies.extract_cookies(response)
        return response

    return await _follow(hop, cookies, request, stream=stream)


async def send_through(
    client: httpx.AsyncClient, request: httpx.Request, *, stream: bool
) -> httpx.Response:
    """Send ``request`` with ``client`` (which picks proxies and keeps cookies), one hop at a
    time, so redirects follow the same rules as :func:`send_direct`."""

    async def hop(request: httpx.Request) -> httpx.Response:
        return await client.send(request, stream=True, follow_redirects=False)

    return await _follow(hop, client.cookies, request, stream=stream)


async def _follow(
    hop: Callable[[httpx.Request], Awaitable[httpx.Response]],
    cookies: httpx.Cookies,
    request: httpx.Request,
    *,
    stream: bool,
) -> httpx.Response:
    for _ in range(MAX_REDIRECTS + 1):
        response = await hop(request)
        try:
            if response.status_code in REDIRECT_STATUSES and "location" in response.headers:
                await response.aread()  # small; reading it lets the connection be reused
                request = redirect_request(request, response, cookies)
                continue
            if not stream:
                whole = await read_whole(response)
                if whole is None:
                    await response.aread()
                else:
                    response = _with_body(response, whole)
        except BaseException:
            await response.aclose()
            raise
        return response
    raise APIConnectionError(
        f"gave up after {MAX_REDIRECTS} redirects (last to {request.url}); the server or a "
        "proxy in between redirects in a loop",
        method=request.method,
        url=str(request.url),
    )


def redirect_request(
    request: httpx.Request, response: httpx.Response, cookies: httpx.Cookies
) -> httpx.Request:
    """Build the request that follows ``response``, a redirect answer to ``request``."""
    url = request.url.join(response.headers["location"])
    method = request.method
    status = response.status_code
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method = "GET"
    headers = request.headers.copy()
    for name in ("Host", "Cookie"):  # Host follows the new URL; cookies come from the jar
        headers.pop(name, None)
    if (url.scheme, url.host, url.port) != (request.url.scheme, request.url.host, request.url.port):
        for name in _CREDENTIAL_HEADERS:
            headers.pop(name, None)
    body: bytes | None = None
    if method != request.method:
        for name in ("Content-Length", "Transfer-Encoding", "Content-Type"):
            headers.pop(name, None)
    else:
        body = request.content  # our bodies are bytes, so this is the same body again
    timeouts: Timeouts = request.extensions.get("timeout", {})
    follow = httpx.Request(
        method, url, headers=headers, content=body, extensions={"timeout": timeouts}
    )
    if cookies:
        cookies.set_cookie_header(follow)
    return follow
