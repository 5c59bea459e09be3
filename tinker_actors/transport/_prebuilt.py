"""``httpx.Headers`` handed over as built, when this httpx keeps them the way we build them.

``httpx.Headers(pairs)`` normalises every name and value again (type checks, encoding, a
lowercased copy of each name), about 2.5 µs for a request's 17 headers and 1 µs for a small
answer's 5, on every request. The SDK already has them normalised: a request's headers come
from a template that went through ``httpx.Headers`` once (:mod:`._template`), and an answer's
from our own parser (:mod:`._http1`), so they are handed over as the (name, lowercased name,
value) triples httpx keeps in its private ``_list``. A probe at import checks that this httpx
keeps them so and reads them back the same; otherwise (:data:`PREBUILT` false) callers pass
pairs the public way.
"""

from __future__ import annotations

from typing import Final

import httpx

__all__ = ["PREBUILT", "Triple", "headers_from"]

Triple = tuple[bytes, bytes, bytes]  # a header as httpx keeps it: name, lowercased name, value


def headers_from(items: list[Triple]) -> httpx.Headers:
    """``httpx.Headers`` holding ``items`` (owned by it from now on); only when
    :data:`PREBUILT`. Every value must be bytes and every lowercased name ``name.lower()``."""
    headers = httpx.Headers.__new__(httpx.Headers)
    headers._list = items  # private: see PREBUILT
    headers._encoding = None
    return headers


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
        )
    except Exception:  # any other httpx: the public way
        return False


#: Whether this httpx keeps headers as (name, lowercased name, value) triples in ``_list``
#: (true of httpx 0.23-0.29).
PREBUILT: Final = _works()
