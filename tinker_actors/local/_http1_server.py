"""HTTP/1.1 server framing (RFC 9112) without I/O: request heads in, response heads out.

The local server's connections (:mod:`._http_connection`) used ``h11``'s state machine for
this. Per request that cost about 90 µs of server CPU with the ~20 headers the SDKs send (47 µs
with 4): event objects, a header normalisation pass each way, a state-machine step per event.
On a null backend that is a fifth of a request's whole cost, and it grows with the header
count, so every client that sends the official header set paid it twice per sample. These
functions do the same job over bytes, with the same acceptance rules, so that any request h11
accepted is accepted here with the same meaning, and anything h11 refused is refused with the
same status (:class:`BadRequest`):

* request line ``method SP target SP HTTP/d.d``: method a token, target visible ASCII;
* fields: token names, values without NUL, CR, LF or other control whitespace, optional
  whitespace around values trimmed, obsolete line folding joined with one space; names are
  handed on lowercased (as ASGI wants them);
* lines end in CRLF or a bare LF; a head over :data:`MAX_HEAD` bytes is ``431``;
* ``Host``: exactly one in an HTTP/1.1 request, at most one otherwise;
* framing: ``Transfer-Encoding`` only ``chunked`` (anything else, or two of them, is ``501``)
  and it wins over ``Content-Length``; ``Content-Length`` digits only (at most 20), repeats and
  comma lists must agree; neither means no body;
* persistence: HTTP/1.1 and no ``Connection: close``; ``Expect: 100-continue`` noticed.

One deliberate difference: blank lines before a request line are skipped, as RFC 9112 §2.2
asks of a server, where h11 refused them (they count towards the head's size limit).

Responses follow h11's rules for what it would have sent: the app's ``Content-Length`` frames
the body; without one, or beside ``Transfer-Encoding: chunked`` (which wins), the body is
chunked for an HTTP/1.1 peer and close-delimited for an HTTP/1.0 one, with only the framing
header that says so; HEAD, 204 and 304 answers carry no body; ``Connection: close`` is added
whenever the connection will close after the answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final, NamedTuple, final

from tinker_actors.transport._http1 import (
    BLANK_LINE,
    CHUNKED,
    FIELD_VALUE,
    MAX_HEAD,
    TARGET,
    TOKEN,
    UNTIL_CLOSE,
    ChunkedBody,
    head_start,
    take,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "CONTINUE",
    "FRAMING",
    "MAX_HEAD",
    "BadRequest",
    "BodyReader",
    "BodyWriter",
    "Request",
    "error_head",
    "parse_request",
    "response_head",
]

#: The interim answer to ``Expect: 100-continue``.
CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
#: The headers that frame a body.
FRAMING: Final = frozenset({b"content-length", b"transfer-encoding"})

# The grammar (TOKEN, TARGET, FIELD_VALUE) and the 16 KiB head limit (MAX_HEAD, h11's) are
# the client's, from transport/_http1; here they make request-line, field and block patterns.
_REQUEST_LINE: Final = re.compile(
    rb"(%s) (%s) HTTP/([0-9]\.[0-9])" % (TOKEN.pattern, TARGET.pattern)
)
#: one field line with its line end: the name, then the value without surrounding whitespace
_FIELD: Final = re.compile(rb"(%s):[ \t]*(%s)[ \t]*\r?\n" % (TOKEN.pattern, FIELD_VALUE.pattern))
#: a block of field lines, checked whole in one call before they are picked apart
_FIELDS: Final = re.compile(rb"(?:%s:[ \t]*%s[ \t]*\r?\n)*" % (TOKEN.pattern, FIELD_VALUE.pattern))
_TOKEN_BYTES: Final = bytes(c for c in range(256) if TOKEN.fullmatch(bytes([c])))
_DIGITS: Final = re.compile(rb"[0-9]{1,20}")
#: lowercased names whose values change how the request is read
_SPECIAL: Final = frozenset(
    {b"content-length", b"transfer-encoding", b"host", b"connection", b"expect"}
)


class BadRequest(ValueError):
    """A request the server refuses to read; answer ``status`` and close."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Request(NamedTuple):
    """A parsed request head."""

    method: bytes
    target: bytes
    #: ``b"1.1"``, ``b"1.0"``, ...
    version: bytes
    #: (lowercased name, value) pairs in arrival order
    headers: list[tuple[bytes, bytes]]
    #: the body's length, 0 for none, or :data:`~tinker_actors.transport._http1.CHUNKED`
    length: int
    #: the client allows another request on this connection after this one
    keep_alive: bool
    #: the client waits for ``100 Continue`` before sending its body
    expects_continue: bool


def _comma_tokens(value: bytes) -> list[bytes]:
    return [t for t in (part.strip() for part in value.lower().split(b",")) if t]


def parse_request(buf: bytearray) -> tuple[Request, int] | None:
    """Parse the request head at the start of ``buf``: the request and how many bytes of
    ``buf`` it took, or None when its blank line has not arrived yet.

    Raises:
        BadRequest: a malformed head (400), one over :data:`MAX_HEAD` bytes (431), or a
            transfer coding other than ``chunked`` (501).
    """
    start = head_start(buf)
    found = BLANK_LINE.search(buf, start)
    if found is None:
        if start < len(buf) and buf[start] < 0x21:  # no request line starts with these
            raise BadRequest("illegal request line")
        if len(buf) > MAX_HEAD:  # (skipped blank lines count: they cannot grow the buffer)
            raise BadRequest("the request head is too long", 431)
        return None
    end = found.start()
    if end > MAX_HEAD:
        raise BadRequest("the request head is too long", 431)
    head = bytes(buf[start : end + 1])  # the request line and the field lines, each with its LF
    first = head.index(b"\n")
    request_line = head[: first - 1] if head[first - 1 : first] == b"\r" else head[:first]
    line = _REQUEST_LINE.fullmatch(request_line)
    if line is None:
        raise BadRequest(f"illegal request line {request_line[:100]!r}")
    method, target, version = line.groups()
    block = head[first + 1 :]
    if b"\n " in head or b"\n\t" in head:  # obsolete line folding: rare, so checked apart
        block = _unfold(block)
    fields = _plain_fields(block)
    if fields is None:
        fields = _fields(block)
    headers: list[tuple[bytes, bytes]] = []
    length: bytes | None = None
    chunked = close = expects = False
    hosts = 0
    for raw_name, value in fields:
        name = raw_name.lower()
        if name in _SPECIAL:
            if name == b"content-length":
                lengths = {part.strip() for part in value.split(b",")}
                value = lengths.pop()
                if lengths or _DIGITS.fullmatch(value) is None:
                    raise BadRequest("bad Content-Length")
                if length is not None:
                    if value != length:
                        raise BadRequest("conflicting Content-Length headers")
                    continue  # a repeat says nothing new (h11 kept the first only)
                length = value
            elif name == b"transfer-encoding":
                if chunked:
                    raise BadRequest("multiple Transfer-Encoding headers", 501)
                value = value.lower()
                if value != b"chunked":
                    raise BadRequest("only Transfer-Encoding: chunked is supported", 501)
                chunked = True
            elif name == b"host":
                hosts += 1
            elif name == b"connection":
                close = close or b"close" in _comma_tokens(value)
            else:
                expects = expects or b"100-continue" in _comma_tokens(value)
        headers.append((name, value))
    if hosts > 1 or (hosts == 0 and version == b"1.1"):
        raise BadRequest("an HTTP/1.1 request needs exactly one Host header")
    old = version < b"1.1"
    framing = CHUNKED if chunked else int(length) if length is not None else 0
    request = Request(method, target, version, headers, framing, not close and not old,
                      expects and not old)  # fmt: skip
    return request, found.end()


def _plain_fields(block: bytes) -> list[tuple[bytes, bytes]] | None:
    """The (name, value) pairs of a block of CRLF-ended field lines, read without a regex;
    None when the block is not plainly well formed (the careful :func:`_fields` decides).

    The grammar's checks become whole-block scans: no NUL, vertical tab or form feed
    anywhere, every CR in a CRLF and every LF after a CR, and all names together made of
    token characters. What is left in a value between its trimmed ends is visible bytes,
    spaces and tabs: exactly what the field-value rule allows.
    """
    lines = block.count(b"\n")
    if (
        block.count(b"\r\n") != lines
        or block.count(b"\r") != lines
        or b"\x00" in block
        or b"\x0b" in block
        or b"\x0c" in block
    ):
        return None
    fields: list[tuple[bytes, bytes]] = []
    for line in block.split(b"\r\n")[:-1]:
        name, colon, value = line.partition(b":")
        if not name or not colon:
            return None
        fields.append((name, value.strip(b" \t")))
    if b"".join([name for name, _ in fields]).translate(None, _TOKEN_BYTES):
        return None
    return fields


def _fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """The (name, value) pairs of a block of field lines, by the grammar's regex.

    Raises:
        BadRequest: a line that is not a well-formed field.
    """
    if _FIELDS.fullmatch(block) is None:
        lines = block.split(b"\n")
        bad = next((f for f in lines if _FIELD.fullmatch(f + b"\n") is None), block)
        raise BadRequest(f"illegal header line {bad[:100]!r}")
    return _FIELD.findall(block)


def _unfold(block: bytes) -> bytes:
    """Join obsolete folded lines (a line starting with SP or HTAB continues the previous
    one) into one line each, with a single space where the fold was."""
    out: list[bytes] = []
    for line in block.split(b"\n")[:-1]:
        line = line[:-1] if line.endswith(b"\r") else line
        if b"\r" in line:  # (rejoined, a stray CR before the LF would pass for a line end)
            raise BadRequest(f"illegal header line {line[:100]!r}")
        if line[:1] in (b" ", b"\t"):
            if not out:
                raise BadRequest("continuation line at start of headers")
            out[-1] += b" " + line.lstrip(b" \t")
        else:
            out.append(line)
    return b"".join(line + b"\n" for line in out)


@final
class BodyReader:
    """Takes one request body out of what arrives: by its length, or chunked."""

    __slots__ = ("chunked", "done", "left")

    def __init__(self, framing: int) -> None:
        #: the decoder of a chunked body, else None
        self.chunked = ChunkedBody() if framing == CHUNKED else None
        #: Content-Length bytes not yet taken
        self.left = 0 if framing == CHUNKED else framing
        #: the body's end was taken
        self.done = False

    def take(self, buf: bytearray, data: bytes) -> list[bytes]:
        """The body bytes among ``data`` (just read) and ``buf`` (read before, kept), taken out;
        what follows the body stays in ``buf``. ``done`` is set once the end was among them.

        Raises:
            RemoteProtocolError: a malformed chunked body.
        """
        if data:
            if self.chunked is None and not buf and len(data) <= self.left:
                self.left -= len(data)  # all body: handed on without a copy
                self.done = not self.left
                return [data]
            buf += data
        if self.chunked is not None:
            pieces = self.chunked.take(buf)
            self.done = self.chunked.done
            return pieces
        if not self.left:
            self.done = True
            return []
        if not buf:
            return []
        piece = take(buf, self.left)
        self.left -= len(piece)
        self.done = not self.left
        return [piece]


@final
class BodyWriter:
    """Frames one response body: by its length, chunked, or until the connection closes."""

    __slots__ = ("left", "mode")

    def __init__(self, framing: int) -> None:
        #: CHUNKED, UNTIL_CLOSE, or a length (then ``left`` counts down)
        self.mode = framing
        self.left = framing

    def frame(self, data: bytes) -> list[bytes]:
        """The bytes that carry ``data``.

        Raises:
            RuntimeError: more data than the declared Content-Length.
        """
        if not data:
            return []
        if self.mode == CHUNKED:
            return [b"%x\r\n" % len(data), data, b"\r\n"]
        if self.mode != UNTIL_CLOSE:
            if len(data) > self.left:
                raise RuntimeError("too much data for the declared Content-Length")
            self.left -= len(data)
        return [data]

    def end(self) -> bytes:
        """The bytes that end the body.

        Raises:
            RuntimeError: less data than the declared Content-Length.
        """
        if self.mode == CHUNKED:
            return b"0\r\n\r\n"
        if self.mode != UNTIL_CLOSE and self.left:
            raise RuntimeError("too little data for the declared Content-Length")
        return b""


def response_head(
    status: int,
    reason: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    request: Request,
) -> tuple[bytes, BodyWriter, bool]:
    """The head of the final response to ``request``, the writer of its body, and whether the
    connection can take another request afterwards.

    Raises:
        ValueError: an illegal header name or value, or contradictory framing headers.
    """
    length: int | None = None
    chunked = close = False
    out: list[bytes] = [b"HTTP/1.1 %d %s\r\n" % (status, reason)]
    kept: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if TOKEN.fullmatch(name) is None or FIELD_VALUE.fullmatch(value) is None:
            raise ValueError(f"illegal response header {name!r}: {value!r}")
        lower = name.lower()
        if lower == b"content-length":  # (one value, as h11 wrote it: "5, 5" is "5")
            values = {part.strip() for part in value.split(b",")}
            value = values.pop()
            if values or _DIGITS.fullmatch(value) is None:
                raise ValueError(f"bad response Content-Length {value!r}")
            if length is not None:
                if int(value) != length:
                    raise ValueError("conflicting response Content-Length values")
                continue
            length = int(value)
        elif lower == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise ValueError("a response may only be Transfer-Encoding: chunked, once")
            chunked = True
        elif lower == b"connection":
            close = close or b"close" in _comma_tokens(value)
        kept.append((name, value))
    keep = request.keep_alive and not close
    method = request.method
    no_body = status in (204, 304) or (method == b"CONNECT" and 200 <= status < 300)
    framing = 0 if no_body else None if chunked or length is None else length
    if framing is None:  # chunked for an HTTP/1.1 peer, else until we close (RFC 9112 §6.1)
        kept = [(n, v) for n, v in kept if n.lower() not in FRAMING]
        if request.version >= b"1.1":
            framing = CHUNKED
            kept.append((b"Transfer-Encoding", b"chunked"))
        else:  # (an HTTP/1.0 peer: the connection closes after this answer anyway)
            framing = UNTIL_CLOSE
    if not keep:
        tokens = {b"close"}
        for name, value in kept:
            if name.lower() == b"connection":
                tokens.update(_comma_tokens(value))
        tokens.discard(b"keep-alive")
        kept = [(n, v) for n, v in kept if n.lower() != b"connection"]
        kept.extend((b"Connection", token) for token in sorted(tokens))
    out.extend(b"%s: %s\r\n" % pair for pair in kept)
    out.append(b"\r\n")
    writer = BodyWriter(0 if method == b"HEAD" else framing)
    return b"".join(out), writer, keep


def error_head(status: int, reason: bytes, body_length: int, json: bool) -> bytes:
    """The head of an answer the server gives on its own before closing (400, 408, 413, ...)."""
    ctype = b"content-type: application/json\r\n" if json else b""
    return b"HTTP/1.1 %d %s\r\n%scontent-length: %d\r\nconnection: close\r\n\r\n" % (
        status,
        reason,
        ctype,
        body_length,
    )
