"""Request heads from a per-client template: the same headers, in the same order, built cheaply.

:func:`~tinker_actors.transport._request.build_request` used to copy the client's
``httpx.Headers`` and set six to eight headers on the copy for every attempt (each ``__setitem__``
scans and re-normalises the list), then let ``httpx.Request`` merge ``Host`` and
``Content-Length`` in: about 27 µs per attempt, a tenth of a poll's client CPU. Nearly all of it
is the same from attempt to attempt of one kind of call. So the slow path runs once per kind of
call (client headers, method, URL, SDK method, Accept, Content-Type, whether there is an
idempotency key and a body) and its result is remembered as raw header pairs plus the positions
of the values that change per attempt: the idempotency key, ``x-stainless-retry-count``,
``x-stainless-read-timeout``, the credential and ``Content-Length``. An attempt copies the pairs
and writes those values in place.

Invariant: the head is byte for byte what the slow path builds (names, values, order), so the
wire is unchanged (``tests/unit/test_request_template.py`` compares the two; the wire parity
tests compare with the official client). The names of a call's ``extra_headers`` are part of its
kind (the SDK's own have a fixed set of names per endpoint); their values, like the first poll's
``X-Tinker-Create-Promise-Roundtrip-Time``, are written per attempt, and a header they set keeps
the call's value. Calls with cookies, and client headers that carry ``Host``,
``Content-Length`` or ``Transfer-Encoding`` themselves, take the slow path.

The template also holds the HTTP/1.1 head as bytes between those values: the fixed headers are
checked once (:func:`._http1.check_request`) and joined once, and an attempt checks only its
varying values and joins a dozen pieces. The head travels with the request as the extension
:data:`._http1.PREBUILT_HEAD` (with its framing), so the connection writes it instead of
checking, framing and joining 17 headers again: about a tenth of a small request's client CPU.
Invariant: nothing changes a built request's headers (a redirect builds a new request, without
the extension); the head is byte for byte ``request_head`` of the request's headers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx

from tinker_actors.transport import _http1, _prebuilt
from tinker_actors.transport._headers import API_KEY_HEADER, IDEMPOTENCY_HEADER

if TYPE_CHECKING:
    from collections.abc import Callable

    from tinker_actors.transport._prebuilt import Triple
    from tinker_actors.transport._request import Prepared, Timeouts

__all__ = ["templated_request"]

_IDEMPOTENCY: Final = IDEMPOTENCY_HEADER.lower().encode("ascii")
_RETRY: Final = b"x-stainless-retry-count"
_READ_TIMEOUT: Final = b"x-stainless-read-timeout"
_CREDENTIAL: Final = API_KEY_HEADER.lower().encode("ascii")
_LENGTH: Final = b"content-length"
#: client headers that would change where httpx puts its own Host / Content-Length
_SELF_MANAGED: Final = frozenset({b"host", b"content-length", b"transfer-encoding"})
#: a call's own header with one of these names leaves the framing to the connection
_FRAMING: Final = _SELF_MANAGED | {b"connection"}
_LIMIT: Final = 512

#: kind of call -> (the client headers it was built from, template); ``None``: use the slow path.
#: The entry keeps its ``base`` alive, so an ``id`` in a key is never reused while it is here.
_TEMPLATES: dict[tuple[object, ...], tuple[httpx.Headers, _Template | None]] = {}


_Slot = tuple[int, bytes, bytes]  # (index in the pairs, the header's name as sent, lowercased)


class _Template:
    __slots__ = (
        "close",
        "credential",
        "extra",
        "head_slots",
        "idempotency",
        "length",
        "pieces",
        "read_timeout",
        "retry",
        "triples",
    )

    def __init__(
        self, method: bytes, pairs: list[tuple[bytes, bytes]], custom: list[bytes]
    ) -> None:
        self.triples: list[Triple] = [(name, name.lower(), value) for name, value in pairs]
        where = {low: (i, name, low) for i, (name, low, _) in enumerate(self.triples)}
        #: one slot per extra header, in the call's order (their values vary, e.g. a round trip)
        self.extra: list[_Slot] = [where[name] for name in custom]
        # a header the call's extra_headers set carries the call's value (its extra slot)
        self.idempotency = where.get(_IDEMPOTENCY) if _IDEMPOTENCY not in custom else None
        self.retry = where[_RETRY] if _RETRY not in custom else None
        self.read_timeout = where[_READ_TIMEOUT] if _READ_TIMEOUT not in custom else None
        self.credential = where[_CREDENTIAL]
        # absent on a GET; httpx's own "0" when there is no body (rewritten as "0")
        self.length = where.get(_LENGTH)
        # indexes of the headers whose values each attempt writes, in head order
        slots = (*self.extra, self.idempotency, self.retry, self.read_timeout,
                 self.credential, self.length)  # fmt: skip
        varying = sorted({slot[0] for slot in slots if slot is not None})
        #: (index in the head's pieces, index in the triples) of each varying value
        self.head_slots = [(2 * k + 2, i) for k, i in enumerate(varying)]
        self.pieces, self.close = _head(method, pairs, custom, set(varying))


def _head(
    method: bytes, pairs: list[tuple[bytes, bytes]], custom: list[bytes], varying: set[int]
) -> tuple[list[bytes] | None, bool]:
    """The head as pieces: [request line, fixed text, value, fixed text, ..., blank line]; the
    ``k``-th varying value (in head order) goes at index ``2 * k + 2``. None when the connection
    must check and frame the request itself (a refused fixed header, or a call's own header that
    decides framing: it is left to fail or frame there)."""
    if any(name in _FRAMING for name in custom):
        return None, False
    fixed = [pair for i, pair in enumerate(pairs) if i not in varying]
    try:
        _http1.check_request(method, b"/", fixed)
        _, close = _http1.request_framing(pairs)
    except _http1.LocalProtocolError:
        return None, False
    pieces: list[bytes] = [b""]
    text: list[bytes] = []
    for i, (name, value) in enumerate(pairs):
        if i in varying:
            pieces += (b"".join((*text, name, b": ")), b"")
            text = [b"\r\n"]
        else:
            text += (name, b": ", value, b"\r\n")
    pieces.append(b"".join((*text, b"\r\n")))
    return pieces, close


def _template(
    base: httpx.Headers,
    p: Prepared,
    url: httpx.URL,
    slow: Callable[[httpx.Headers, Prepared, int, str], httpx.Headers],
) -> _Template | None:
    if any(name.lower() in _SELF_MANAGED for name, _ in base.raw):
        return None
    # the call's own body: httpx places Content-Length by whether there is one and it is empty
    probe = httpx.Request(p.method, url, headers=slow(base, p, 0, "-"), content=p.body)
    custom = [name.lower().encode("utf-8") for name in p.extra_headers]
    if len(set(custom)) != len(custom):
        return None  # names that differ only in case: the last one's value wins, position varies
    return _Template(p.method.encode("ascii"), list(probe.headers.raw), custom)


def templated_request(
    base: httpx.Headers,
    p: Prepared,
    url: httpx.URL,
    retries_taken: int,
    credential: str,
    timeouts: Timeouts,
    slow: Callable[[httpx.Headers, Prepared, int, str], httpx.Headers],
) -> httpx.Request:
    """Build attempt ``retries_taken`` of ``p`` (a call without cookies) from a template.

    ``slow`` builds the headers the long way (``_request.merged_headers``); it runs once per
    kind of call, and for every attempt where no template applies.
    """
    extra = p.extra_headers
    key = (id(base), p.url, p.method, p.sdk_method, p.accept, p.content_type,
           p.idempotency_key is None, p.body is None, not p.body,
           tuple(extra) if extra else None)  # fmt: skip
    found = _TEMPLATES.get(key)
    if found is None or found[0] is not base:
        if len(_TEMPLATES) >= _LIMIT:
            _TEMPLATES.clear()
        found = (base, _template(base, p, url, slow))
        _TEMPLATES[key] = found
    tpl = found[1]
    body = p.body
    if tpl is None:
        return httpx.Request(p.method, url, headers=slow(base, p, retries_taken, credential),
                             content=body, extensions={"timeout": timeouts})  # fmt: skip
    items = tpl.triples.copy()
    #: the values that come from outside (the head checks them; ours are digits and keys)
    outside: list[tuple[bytes, bytes]] = []
    # httpx's Headers.__setitem__ (the slow path) encodes the values it sets as UTF-8; so do we.
    # The order matches the slow path's: extra headers, then ours, the credential last.
    if extra:
        for (i, name, low), value in zip(tpl.extra, extra.values(), strict=True):
            items[i] = triple = (name, low, value.encode("utf-8"))
            outside.append((name, triple[2]))
    if tpl.idempotency is not None and p.idempotency_key is not None:
        i, name, low = tpl.idempotency
        items[i] = triple = (name, low, p.idempotency_key.encode("utf-8"))
        outside.append((name, triple[2]))  # the call may have chosen it
    if tpl.retry is not None:
        i, name, low = tpl.retry
        items[i] = (name, low, str(retries_taken).encode("ascii"))
    if tpl.read_timeout is not None:
        i, name, low = tpl.read_timeout
        items[i] = (name, low, str(p.timeout).encode("ascii"))
    i, name, low = tpl.credential
    items[i] = triple = (name, low, credential.encode("utf-8"))
    outside.append((name, triple[2]))
    if tpl.length is not None:
        i, name, low = tpl.length
        items[i] = (name, low, str(len(body) if body is not None else 0).encode("ascii"))
    extensions: dict[str, object] = {"timeout": timeouts}
    if tpl.pieces is not None:
        head = _prebuilt_head(tpl.pieces, tpl.head_slots, items, outside, p.method, url)
        if head is not None:
            extensions[_http1.PREBUILT_HEAD] = (head, len(body) if body else 0, tpl.close)
    if _prebuilt.PREBUILT:
        return _prebuilt.request_from(p.method, url, items, body or b"", extensions)
    request = httpx.Request(
        p.method,
        url,
        headers=[(name, value) for name, _, value in items],
        stream=httpx.ByteStream(body if body is not None else b""),
        extensions=extensions,
    )
    request.read()  # as with content=: .content is there at once (the same bytes object)
    return request


def _prebuilt_head(
    pieces: list[bytes],
    head_slots: list[tuple[int, int]],
    items: list[Triple],
    outside: list[tuple[bytes, bytes]],
    method: str,
    url: httpx.URL,
) -> bytes | None:
    """The attempt's head from the template's pieces, or None if a value from outside (or the
    target) is refused: the connection then checks the request itself and raises. The values
    the template writes itself (retry count, read timeout, length) are digits: never refused."""
    verb, target = method.encode("ascii"), url.raw_path
    try:
        _http1.check_request(verb, target, outside)
    except _http1.LocalProtocolError:
        return None
    head = pieces.copy()
    head[0] = b"%s %s HTTP/1.1\r\n" % (verb, target)
    for at, i in head_slots:
        head[at] = items[i][2]
    return b"".join(head)
