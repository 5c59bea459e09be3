"""HTTP/1.1 client framing (RFC 9112) without I/O: request heads out, response heads and bodies in.

The transport (:mod:`._h11`) used ``h11``'s state machine for this. Per request that cost about
45 µs of client CPU (event objects, a header normalisation pass on each side, a state
machine step per event): an eighth of a small request's whole cost, for a client that only ever
sends one request and reads its answer before the next. This module does the same job as plain
functions over bytes, with the same checks where they guard against something:

* request heads: method, target, header names and values are checked against RFC 9110's
  grammar (the guard against CR/LF injection), a pair that passed once is remembered (most of
  the SDK's headers repeat); a body is framed by the request's own ``Content-Length`` (the
  byte count must match) or ``Transfer-Encoding: chunked``, and a request with neither sends
  none;
* response heads: status line and fields parsed strictly (token names, no NUL or stray
  whitespace in values, a version 1.x), up to :data:`MAX_HEAD` bytes, lines ended by CRLF or
  a bare LF and obsolete line folding unfolded, as h11 accepts them;
* response bodies (§6.3): none for HEAD, 1xx, 204 and 304; chunked when
  ``Transfer-Encoding`` is exactly ``chunked``; else one consistent ``Content-Length``; else
  everything until the server closes; anything else (another transfer coding, two different
  lengths) is refused, as h11 refuses it;
* persistence: HTTP/1.1 on both sides, no ``Connection: close`` either way, and a body whose
  end is known.

Errors are :class:`LocalProtocolError` (what we were asked to send) and
:class:`RemoteProtocolError` (what the server sent); the transport raises the httpx ones.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, NamedTuple, final

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "BLANK_LINE",
    "CHUNKED",
    "FIELD_VALUE",
    "LAST_CHUNK",
    "MAX_HEAD",
    "PREBUILT_HEAD",
    "TARGET",
    "TOKEN",
    "UNTIL_CLOSE",
    "ChunkedBody",
    "Framing",
    "Head",
    "LocalProtocolError",
    "RemoteProtocolError",
    "check_request",
    "chunk",
    "head_start",
    "parse_head",
    "request_framing",
    "request_head",
    "response_framing",
    "take",
]

#: Most bytes a response head (status line and fields) may take: h11's limit too.
MAX_HEAD: Final = 16384
#: Most bytes a chunk-size line (with extensions) or a trailer line may take.
MAX_LINE: Final = 4096

#: a token (method, field name) and a request target, as RFC 9110 and 9112 define them
TOKEN: Final = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+")
#: a field value: visible bytes (obs-text allowed), single spaces or tabs only inside
FIELD_VALUE: Final = re.compile(rb"(?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?")
TARGET: Final = re.compile(rb"[\x21-\x7e]+")
_STATUS: Final = re.compile(rb"HTTP/(\d)\.(\d) ([0-9]{3})(?: ([^\x00\r]*))?")
#: the blank line that ends a head, after CRLF or bare-LF lines
BLANK_LINE: Final = re.compile(rb"\n\r?\n")
_HEX: Final = re.compile(rb"[0-9A-Fa-f]+")


class LocalProtocolError(ValueError):
    """The request cannot be sent as asked (a bad header, a body that disagrees with it)."""


class RemoteProtocolError(ValueError):
    """The server's answer breaks HTTP/1.1."""


class Head(NamedTuple):
    """A response head: status, reason, version (``b"1.1"``), fields as received."""

    status: int
    reason: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]


# -- requests ---------------------------------------------------------------------------------

#: Request extension: ``(head, content length, close)`` of a request whose head was built and
#: checked with it (the SDK's request templates); the connection writes it as it is.
PREBUILT_HEAD: Final = "tinker_actors.http1_head"

#: Request (method, target) and header pairs that passed the checks (bounded).
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_LIMIT: Final = 4096
#: Headers whose value changes with every request: checked each time, never remembered.
_VOLATILE: Final = frozenset({b"idempotency-key", b"x-idempotency-key", b"content-length",
                              b"x-tinker-create-promise-roundtrip-time"})  # fmt: skip


def check_request(method: bytes, target: bytes, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Refuse a request head that would not be one HTTP/1.1 head as written.

    Raises:
        LocalProtocolError: a method that is not a token, a target with spaces or controls,
            a header name that is not a token, or a value with CR, LF, NUL or edge whitespace.
    """
    checked = _CHECKED
    fresh: list[tuple[bytes, bytes]] = []
    if (method, target) not in checked:
        if TOKEN.fullmatch(method) is None:
            raise LocalProtocolError(f"Illegal method {method!r}")
        if TARGET.fullmatch(target) is None:
            raise LocalProtocolError(f"Illegal target characters in {target!r}")
        fresh.append((method, target))
    for pair in headers:
        if pair in checked:
            continue
        name, value = pair
        if TOKEN.fullmatch(name) is None:
            raise LocalProtocolError(f"Illegal header name {name!r}")
        if FIELD_VALUE.fullmatch(value) is None:
            raise LocalProtocolError(f"Illegal header value {value!r}")
        if name.lower() not in _VOLATILE:
            fresh.append(pair)
    if fresh and len(checked) < _CHECKED_LIMIT:
        checked.update(fresh)


def request_head(method: bytes, target: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The request line and fields, ending in the blank line (checked by :func:`check_request`)."""
    parts = [method, b" ", target, b" HTTP/1.1\r\n"]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


#: lengths of the header names the framing reads: other names are skipped without a lower()
_FRAMING_NAME_LENGTHS: Final = frozenset(
    len(n)
    for n in (b"content-length", b"transfer-encoding", b"connection", b"content-encoding", b"host")
)


def request_framing(headers: Iterable[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """How the request's body goes out (its ``Content-Length``, or None for chunked; a request
    with neither carries no body) and whether it asks to close the connection after it.

    Raises:
        LocalProtocolError: no ``Host`` (HTTP/1.1 requires one), a transfer coding other than
            ``chunked``, or a bad length.
    """
    length: int | None = 0
    close = host = False
    for name, value in headers:
        if len(name) not in _FRAMING_NAME_LENGTHS:
            continue
        lower = name.lower()
        if lower == b"host":
            host = True
        elif lower == b"transfer-encoding":
            if value.strip().lower() != b"chunked":
                raise LocalProtocolError("Only Transfer-Encoding: chunked is supported")
            length = None
        elif lower == b"content-length" and length is not None:
            if not value.isdigit():
                raise LocalProtocolError(f"bad Content-Length {value!r}")
            length = int(value)
        elif lower == b"connection" and b"close" in _tokens(value):
            close = True
    if not host:
        raise LocalProtocolError("Missing mandatory Host: header")
    return length, close


def chunk(data: bytes | memoryview) -> list[bytes | memoryview]:
    """``data`` as one chunk of a chunked body."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


#: The end of a chunked body (no trailers).
LAST_CHUNK: Final = b"0\r\n\r\n"


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",")]


def head_start(buf: bytearray) -> int:
    """Where a head starts in ``buf``: after any blank lines (CRLF or bare LF) before it."""
    start = 0
    while buf.startswith(b"\r\n", start) or buf.startswith(b"\n", start):
        start += 2 if buf[start] == 13 else 1
    return start


# -- responses --------------------------------------------------------------------------------


def parse_head(buf: bytearray) -> tuple[Head, int] | None:
    """Parse the response head at the start of ``buf``: the head and its length in bytes, or
    None when the blank line has not arrived yet.

    Raises:
        RemoteProtocolError: a malformed head, or none within :data:`MAX_HEAD` bytes.
    """
    start = head_start(buf)
    found = BLANK_LINE.search(buf, start)  # the first blank line, CRLF or bare LF
    if found is None:
        if len(buf) - start > MAX_HEAD:
            raise RemoteProtocolError("the response head is too long")
        return None
    end, after = found.start(), found.end()
    lines = _lf_lines(bytes(buf[start:end]))
    if end - start > MAX_HEAD:
        raise RemoteProtocolError("the response head is too long")
    status = _STATUS.fullmatch(lines[0])
    if status is None:
        raise RemoteProtocolError(f"malformed status line {lines[0][:100]!r}")
    major, minor, code, reason = status.groups()
    if major != b"1":
        raise RemoteProtocolError(f"unsupported HTTP version {major + b'.' + minor!r}")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):  # obsolete line folding: one space, as RFC 9112 §5.2 says
            if not headers:
                raise RemoteProtocolError("a folded line before any header in the response")
            name, value = headers.pop()
            value = (value + b" " + line.strip(b" \t")).strip(b" ")
        else:
            name, colon, value = line.partition(b":")
            if not colon or TOKEN.fullmatch(name) is None:
                raise RemoteProtocolError(f"malformed header line {line[:100]!r}")
            value = value.strip(b" \t")
        if FIELD_VALUE.fullmatch(value) is None:
            raise RemoteProtocolError(f"illegal value for header {name!r}")
        headers.append((name, value))
    return Head(int(code), reason or b"", major + b"." + minor, headers), after


def _lf_lines(head: bytes) -> list[bytes]:
    return [line[:-1] if line.endswith(b"\r") else line for line in head.split(b"\n")]


#: :class:`Framing` lengths that are not a length
CHUNKED: Final = -1
UNTIL_CLOSE: Final = -2


class Framing(NamedTuple):
    """How a response body ends, and what the connection may do after it."""

    #: the body's length (0 for none), :data:`CHUNKED` or :data:`UNTIL_CLOSE`
    length: int
    #: the connection may carry another request once the body has ended (HTTP/1.1, no
    #: ``Connection: close``, an end that is not the server's close)
    keep: bool
    #: a ``Content-Encoding`` is set (the body is not the content as it is)
    coded: bool


def response_framing(method: bytes, head: Head) -> Framing:
    """Read :class:`Framing` off ``head``, the answer to ``method`` (RFC 9112 §6.3: no body for
    HEAD, 1xx, 204 and 304; chunked; one consistent length; else until the server closes).

    Raises:
        RemoteProtocolError: a transfer coding other than ``chunked``, or conflicting or
            malformed ``Content-Length`` values.
    """
    length: int | None = None
    chunked = close = coded = False
    for name, value in head.headers:
        if len(name) not in _FRAMING_NAME_LENGTHS:
            continue
        lower = name.lower()
        if lower == b"transfer-encoding":
            if _tokens(value) != [b"chunked"]:
                raise RemoteProtocolError("Only Transfer-Encoding: chunked is supported")
            chunked = True
        elif lower == b"content-length":
            for item in _tokens(value):
                if not item.isdigit():
                    raise RemoteProtocolError(f"bad Content-Length {value!r}")
                if length is not None and int(item) != length:
                    raise RemoteProtocolError("conflicting Content-Length values")
                length = int(item)
        elif lower == b"connection":
            close = close or b"close" in _tokens(value)
        elif lower == b"content-encoding":
            coded = True
    status = head.status
    if method == b"HEAD" or status < 200 or status in (204, 304):
        framing = 0
    elif chunked:
        framing = CHUNKED
    else:
        framing = UNTIL_CLOSE if length is None else length
    keep = head.version == b"1.1" and framing != UNTIL_CLOSE and not close
    return Framing(framing, keep, coded)


_SIZE: Final = 0
_DATA: Final = 1
_DATA_END: Final = 2
_TRAILER: Final = 3


@final
class ChunkedBody:
    """Decodes a chunked body from a receive buffer, as much as has arrived each time."""

    __slots__ = ("_left", "_state", "done")

    def __init__(self) -> None:
        self.done = False
        self._state = _SIZE
        self._left = 0

    def take(self, buf: bytearray) -> list[bytes]:
        """Remove what can be decoded from the front of ``buf``; return the data in it.

        Raises:
            RemoteProtocolError: a malformed chunk size, chunk end or trailer.
        """
        out: list[bytes] = []
        while not self.done and buf:
            state = self._state
            if state == _DATA:
                data = take(buf, self._left)
                out.append(data)
                self._left -= len(data)
                if not self._left:
                    self._state = _DATA_END
                continue
            line = _line(buf)
            if line is None:
                break
            if state == _SIZE:
                size = line.split(b";", 1)[0].strip(b" \t")
                if _HEX.fullmatch(size) is None:
                    raise RemoteProtocolError(f"bad chunk size line {line[:100]!r}")
                self._left = int(size, 16)
                self._state = _DATA if self._left else _TRAILER
            elif state == _DATA_END:
                if line:
                    raise RemoteProtocolError("chunk data runs past its declared size")
                self._state = _SIZE
            elif not line:  # _TRAILER: the blank line ends the body; trailer fields are dropped
                self.done = True
        return out


def _line(buf: bytearray) -> bytes | None:
    """Remove and return one line (without its CRLF or LF) from ``buf``; None if incomplete."""
    end = buf.find(b"\n")
    if end < 0:
        if len(buf) > MAX_LINE:
            raise RemoteProtocolError("a chunk-size or trailer line is too long")
        return None
    line = take(buf, end + 1)[:-1]
    return line[:-1] if line.endswith(b"\r") else line


def take(buf: bytearray, n: int) -> bytes:
    """Remove and return the first ``n`` bytes of ``buf`` (all of it if shorter), copied once."""
    if n >= len(buf):
        data = bytes(buf)
        buf.clear()
        return data
    with memoryview(buf) as view:
        data = bytes(view[:n])
    del buf[:n]
    return data
