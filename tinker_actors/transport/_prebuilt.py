"""``httpx.Headers`` handed over as built, when this httpx keeps them the way we build them.

``httpx.Headers(pairs)`` normalises every name and value again (type checks, encoding, a
lowercased copy of each name), about 2.5 µs for a request's 17 headers and 1 µs for a small
answer's 5, on every request. The SDK already has them normalised: a request's headers come
from a template that went through ``httpx.Headers`` once (:mod:`._template`), and an answer's
from our own parser (:mod:`._http1`), so they are handed over as the (name, lowercased name,
value) triples httpx keeps in its private ``_list``. A probe at import checks that this httpx
keeps them so and reads them back the same; otherwise (:data:`PREBUILT` false) callers pass
pairs the public way. A request is made the same way (:func:`request_from`): its attributes
set as ``httpx.Request.__init__`` would set them, the probe comparing every attribute.
"""

from __future__ import annotations

from typing import Final

import httpx

__all__ = ["PREBUILT", "Triple", "header", "headers_from", "request_from"]

Triple = tuple[bytes, bytes, bytes]  # a header as httpx keeps it: name, lowercased name, value


def headers_from(items: list[Triple]) -> httpx.Headers:
    """``httpx.Headers`` holding ``items`` (owned by it from now on); only when
    :data:`PREBUILT`. Every value must be bytes and every lowercased name ``name.lower()``."""
    headers = httpx.Headers.__new__(httpx.Headers)
    headers._list = items  # private: see PREBUILT
    headers._encoding = None
    return headers


def header(headers: httpx.Headers, lowered: str) -> str | None:
    """``headers.get(lowered)`` without httpx's KeyError when it is absent, the usual case for
    the few headers every answer is asked about (about 1 µs each). ``lowered`` is a lowercase
    ASCII name; repeated fields are joined with ``", "`` as httpx joins them."""
    if not PREBUILT or not lowered.isascii():
        value: str | None = headers.get(lowered)
        return value
    return _raw_header(headers, lowered)


def request_from(
    method: str, url: httpx.URL, items: list[Triple], body: bytes, extensions: dict[str, object]
) -> httpx.Request:
    """What ``httpx.Request(method, url, headers=..., stream=ByteStream(body),
    extensions=...)`` followed by ``read()`` makes, without re-normalising what is already
    normal (``method`` upper case, ``url`` parsed, ``items`` as :func:`headers_from` takes them;
    ``extensions`` is owned by the request from now on); only when :data:`PREBUILT`."""
    request = httpx.Request.__new__(httpx.Request)
    request.method = method
    request.url = url
    request.headers = headers_from(items)
    request.extensions = extensions
    request.stream = httpx.ByteStream(body)
    request._content = body  # private: what read() leaves (see PREBUILT)
    return request


def _works() -> bool:
    try:
        pairs = [(b"X-Ab", b"1"), (b"c", b"2")]
        made = httpx.Headers(pairs)
        fast = headers_from([(b"X-Ab", b"x-ab", b"1"), (b"c", b"c", b"2")])
        request = httpx.Request("POST", "http://h/", headers=fast, stream=httpx.ByteStream(b"b"))
        response = httpx.Response(200, headers=headers_from([(b"c", b"c", b"2")]))
        return (
            made._list == fast._list
            and fast.raw == made.raw == pairs
            and fast["x-ab"] == "1"
            and request.headers.raw == pairs
            and request.headers.get("C") == "2"
            and response.headers.raw == [(b"c", b"2")]
            and response.headers["C"] == "2"
            and _same_request()
            and _same_lookup()
        )
    except Exception:  # any other httpx: the public way
        return False


def _same_request() -> bool:
    url = httpx.URL("http://h:1/p?q=1")
    items: list[Triple] = [(b"Host", b"host", b"h:1"), (b"X-Ab", b"x-ab", b"1")]
    made = httpx.Request("POST", url, headers=[(n, v) for n, _, v in items],
                         stream=httpx.ByteStream(b"body"), extensions={"e": 1})  # fmt: skip
    made.read()
    fast = request_from("POST", url, list(items), b"body", {"e": 1})
    return (
        vars(made).keys() == vars(fast).keys()
        and (fast.method, fast.url, fast.headers.raw, fast.extensions, fast.content, fast.read())
        == (made.method, made.url, made.headers.raw, made.extensions, made.content, made.read())
        and isinstance(fast.stream, httpx.ByteStream)
        and b"".join(fast.stream) == b"body"
    )


def _same_lookup() -> bool:
    made = httpx.Headers([(b"A", b"1"), (b"b", b"\xc3\xa9"), (b"a", b"2")])
    return all(_raw_header(made, name) == made.get(name) for name in ("a", "b", "c"))


def _raw_header(headers: httpx.Headers, lowered: str) -> str | None:
    name = lowered.encode("ascii")
    found = [value for _, low, value in headers._list if low == name]  # private: see PREBUILT
    if not found:
        return None
    encoding = headers.encoding
    return ", ".join(value.decode(encoding) for value in found)


#: Whether this httpx keeps headers as (name, lowercased name, value) triples in ``_list``
#: (true of httpx 0.23-0.29).
PREBUILT: Final = _works()
