"""The local server's HTTP/1.1 framing (local/_http1_server.py) reads and writes what h11 did.

Request heads, well formed and not, are read twice: by ``parse_request`` and by an
``h11.Connection(h11.SERVER)`` given the same bytes. Where h11 yields a request, ours must yield
the same method, target, version and fields, the same body framing, persistence and
``Expect: 100-continue``, and consume as many bytes; where h11 refuses, ours must refuse with
h11's status hint; where h11 waits for more, ours must too. Leading blank lines, which h11
refused and we skip (the one documented difference), are left out and tested on their own.

Responses to a parsed request are written twice: by ``response_head`` and its body writer and
by the h11 connection that read the request. Head bytes, body bytes and whether the connection
may be reused must agree, and app headers h11 refuses must be refused; where h11 wrote the same
answer in other bytes (``_cosmetic``), an h11 client must read both alike.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tinker_actors.local._http1_server import (
    MAX_HEAD,
    BadRequest,
    Request,
    parse_request,
    response_head,
)
from tinker_actors.transport._http1 import CHUNKED

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=10).map(str.encode)
#: visible ASCII, spaces and tabs inside, sometimes obs-text or a stray control byte
value_chars = st.one_of(
    st.sampled_from([bytes([c]) for c in range(0x21, 0x7F)]),
    st.sampled_from([b" ", b"\t", b"  "]),
    st.sampled_from([b"\x80", b"\xa0", b"\xff", b"\x85", b"\x01", b"\x1c", b"\x1f", b"\x7f"]),
)
values = st.lists(value_chars, max_size=12).map(b"".join)
ows = st.sampled_from([b"", b"", b" ", b"\t", b" \t "])
_LENGTHS = [b"0", b"5", b"05", b"5, 5", b"5,5", b"5, 6", b"5,", b"", b"-1", b"+5", b"0x5",
            b"5 5", b"1" * 20, b"9" * 20, b"1" * 21, b"abc"]  # fmt: skip
_CODINGS = [b"chunked", b"chunked", b"CHUNKED", b"Chunked", b"gzip", b"gzip, chunked",
            b"chunked, chunked", b"identity", b"", b"chunked;q=1"]  # fmt: skip
_CONNECTIONS = [b"close", b"Close", b"keep-alive", b"keep-alive, close", b"upgrade",
                b"x,  CLOSE ,y", b"closed", b"", b","]  # fmt: skip
#: bytes that no well-formed head has where they land
hostile = st.sampled_from(
    [b"\x00", b"\r", b"\x0b", b"\x0c", b"\x1b", b" ", b"\t", b":", b"\xff", b"\x80", b"\n"]
)


@st.composite
def fields(draw: st.DrawFn) -> bytes:
    """One header line (without its line end): ordinary, framing, or broken."""
    kind = draw(
        st.sampled_from(
            ["plain"] * 4
            + ["length", "length", "coding", "connection", "expect", "fold", "fold", "broken"]
        )
    )
    if kind == "plain":
        name = draw(st.one_of(tokens, st.sampled_from([b"Upgrade", b"Content-Type"])))
        return name + b":" + draw(ows) + draw(values) + draw(ows)
    if kind == "length":
        name = draw(st.sampled_from([b"Content-Length", b"content-length", b"CONTENT-LENGTH"]))
        value = draw(
            st.one_of(
                st.integers(0, 99).map(b"%d".__mod__),
                st.sampled_from(_LENGTHS),
            )
        )
        return name + b":" + draw(ows) + value + draw(ows)
    if kind == "coding":
        name = draw(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"]))
        value = draw(st.sampled_from(_CODINGS))
        return name + b":" + draw(ows) + value + draw(ows)
    if kind == "connection":
        name = draw(st.sampled_from([b"Connection", b"connection"]))
        value = draw(st.sampled_from(_CONNECTIONS))
        return name + b":" + draw(ows) + value + draw(ows)
    if kind == "expect":
        value = draw(
            st.sampled_from(
                [b"100-continue", b"100-Continue", b"foo, 100-continue", b"100-continuex", b""]
            )
        )
        return b"Expect:" + draw(ows) + value + draw(ows)
    if kind == "fold":  # obsolete line folding: continues the line before (if any)
        return draw(st.sampled_from([b" ", b"\t", b"  \t"])) + draw(values)
    # a line broken somewhere: a hostile byte put into an otherwise fine line, often at its end
    line = draw(tokens) + b":" + draw(ows) + draw(values)
    at = draw(st.one_of(st.integers(0, len(line)), st.just(len(line))))
    return line[:at] + draw(hostile) + line[at:]


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    method = draw(
        st.one_of(
            st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"CONNECT", b"get", b"M-SEARCH"]),
            tokens,
        )
    )
    target = draw(
        st.one_of(
            st.sampled_from([b"/", b"/a/b?c=d&e", b"*", b"http://h/x", b"h:443", b"/%41"]),
            st.lists(st.sampled_from([bytes([c]) for c in range(0x21, 0x7F)]), min_size=1).map(
                b"".join
            ),
        )
    )
    version = draw(
        st.sampled_from(
            [b"HTTP/1.1"] * 6
            + [b"HTTP/1.0"] * 3
            + [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1", b"http/1.1", b"HTTP/1.10", b"HTTP/a.b"]
        )
    )
    line = method + b" " + target + b" " + version
    if draw(st.integers(0, 9)) == 0:  # garble it
        at = draw(st.integers(0, len(line)))
        line = line[:at] + draw(hostile) + line[at:]
    return line


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """The bytes of a request head (well formed or not) and what follows it."""
    lines = [draw(request_lines())]
    headers = draw(st.lists(fields(), max_size=8))
    for _ in range(draw(st.sampled_from([1, 1, 1, 1, 0, 2]))):
        host = b"Host:" + draw(ows) + draw(st.sampled_from([b"h", b"example.org:80", b""]))
        headers.insert(draw(st.integers(0, len(headers))), host)
    lines += headers
    style = draw(st.sampled_from(["crlf", "crlf", "lf", "mixed"]))
    ends = {"crlf": [b"\r\n"], "lf": [b"\n"], "mixed": [b"\r\n", b"\n"]}[style]
    wire = b""
    for line in lines:
        wire += line + draw(st.sampled_from(ends))
    wire += draw(st.sampled_from(ends))
    rest = draw(st.sampled_from([b"", b"hello", b"0\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n", b"\r\n"]))
    return wire + rest


# (method, target, version, headers, framing, keep_alive, expects_continue, size)
Parsed = tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]], int, bool, bool, int]
#: a parsed request, None (the head is incomplete), or the refusal's status
Outcome = Parsed | None | int


def _h11_outcome(data: bytes) -> Outcome:
    conn = h11.Connection(h11.SERVER)
    if data:  # (b"" would say the client closed)
        conn.receive_data(data)
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        return exc.error_status_hint
    if event is h11.NEED_DATA:
        return None
    assert isinstance(event, h11.Request)
    headers = list(event.headers)
    names = [name for name, _ in headers]
    if b"transfer-encoding" in names:
        framing = CHUNKED
    elif b"content-length" in names:
        framing = int(headers[names.index(b"content-length")][1])
    else:
        framing = 0
    expects = conn.they_are_waiting_for_100_continue
    size = len(data) - len(conn.trailing_data[0])
    # persistence as h11's states show it: answer, and see whether the server side may go on
    conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")]))
    conn.send(h11.EndOfMessage())
    assert conn.our_state in (h11.DONE, h11.MUST_CLOSE)
    keep = conn.our_state is h11.DONE
    return (event.method, event.target, event.http_version, headers, framing, keep, expects, size)


def _our_outcome(data: bytes) -> Outcome:
    buf = bytearray(data)
    try:
        parsed = parse_request(buf)
    except BadRequest as exc:
        return exc.status
    assert buf == data  # the caller removes the head itself
    if parsed is None:
        return None
    request, size = parsed
    return (
        request.method,
        request.target,
        request.version,
        request.headers,
        request.length,
        request.keep_alive,
        request.expects_continue,
        size,
    )


def _leading_blank(data: bytes) -> bool:
    """The one documented difference: h11 refused a blank line before the request line."""
    return data.startswith((b"\n", b"\r\n"))


@settings(max_examples=500, deadline=None)
@given(requests(), st.integers(0, 400))
def test_request_heads_are_read_as_h11_reads_them(data: bytes, cut: int) -> None:
    assume(not _leading_blank(data))
    assert _our_outcome(data) == _h11_outcome(data)
    if 0 < cut < len(data):  # a head still arriving: a prefix is read alike too
        assert _our_outcome(data[:cut]) == _h11_outcome(data[:cut])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.0\n"]))
def test_arbitrary_bytes_are_read_as_h11_reads_them(tail: bytes, start: bytes) -> None:
    data = start + tail
    assume(not _leading_blank(data + b"\r\n"))
    assert _our_outcome(data) == _h11_outcome(data)
    assert _our_outcome(data + b"\r\n\r\n") == _h11_outcome(data + b"\r\n\r\n")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=1, max_size=4).map(b"".join), requests()
)
def test_blank_lines_before_a_request_are_skipped(blank: bytes, data: bytes) -> None:
    """The documented difference: RFC 9112 §2.2 asks a server to ignore empty lines before the
    request line, which h11 refused (400). What follows them is read as h11 reads it alone."""
    assume(not _leading_blank(data))
    ours, h11s = _our_outcome(blank + data), _h11_outcome(data)
    if isinstance(h11s, tuple):
        assert isinstance(ours, tuple)
        assert ours[:-1] == h11s[:-1]
        assert ours[-1] == len(blank) + h11s[-1]  # the skipped lines are consumed with the head
    else:
        assert ours == h11s
    assert _our_outcome(blank) is None
    assert _h11_outcome(blank) == 400


def test_blank_lines_then_a_request_example() -> None:
    buf = bytearray(b"\r\n\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\nNEXT")
    parsed = parse_request(buf)
    assert parsed is not None
    request, size = parsed
    assert request == Request(b"GET", b"/x", b"1.1", [(b"host", b"h")], 0, True, False)
    assert buf[size:] == b"NEXT"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\r\nX: a\r\n b\r\n\r\n",
    ],
)
def test_a_stray_cr_is_refused_in_a_folded_head(data: bytes) -> None:
    assert _h11_outcome(data) == 400
    assert _our_outcome(data) == 400


# -- heads near and over the size limit -------------------------------------------------------


def _h11_in_pieces(data: bytes, piece: int) -> Outcome:
    """h11 given ``data`` as a server reads it: a piece at a time, parsing after each."""
    conn = h11.Connection(h11.SERVER)
    for at in range(0, len(data), piece):
        conn.receive_data(data[at : at + piece])
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            return exc.error_status_hint
        if event is not h11.NEED_DATA:
            return _h11_outcome(data)  # (complete: read it whole for the comparison)
    return None


@pytest.mark.parametrize("extra", [-100, -1, 0, 1, 100, 5000])
def test_an_unfinished_head_over_the_limit_is_431(extra: int) -> None:
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    data = start + b"a" * (MAX_HEAD + extra - len(start))
    assert len(data) == MAX_HEAD + extra
    expected = 431 if extra > 0 else None
    assert _h11_outcome(data) == _our_outcome(data) == expected


@pytest.mark.parametrize("size", [MAX_HEAD // 2, MAX_HEAD - 10])
def test_a_long_head_under_the_limit_is_read_alike(size: int) -> None:
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    data = start + b"a" * (size - len(start) - 4) + b"\r\n\r\nrest"
    assert isinstance(_our_outcome(data), tuple)
    assert _our_outcome(data) == _h11_outcome(data) == _h11_in_pieces(data, 4096)


@pytest.mark.parametrize("size", [MAX_HEAD + 4096, 3 * MAX_HEAD])
def test_a_finished_head_over_the_limit_is_431(size: int) -> None:
    """Refused whatever the reads. h11 looked at the size only while a head was unfinished: it
    refused this head when it arrived in pieces (as here), but read it when all of it came in
    one ``receive_data`` (up to 64 KiB with the old server's reads)."""
    start = b"GET / HTTP/1.1\r\nHost: h\r\nX: "
    data = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    assert _our_outcome(data) == _h11_in_pieces(data, 1024) == 431
    assert isinstance(_h11_outcome(data), tuple)  # the difference: h11 given it whole


def test_an_unfinished_head_that_starts_badly_is_400_whatever_its_size() -> None:
    """h11 looked at the first byte before the size."""
    for data in (b" " + b"a" * MAX_HEAD, b"\x16\x03\x01" + b"a" * MAX_HEAD, b" GET"):
        assert _our_outcome(data) == _h11_outcome(data) == 400


def test_blank_lines_count_towards_the_size_limit() -> None:
    """Skipped blank lines cannot grow the buffer without bound (h11 refused the first)."""
    assert _our_outcome(b"\r\n" * (MAX_HEAD // 2)) is None
    assert _our_outcome(b"\r\n" * (MAX_HEAD // 2) + b"\n") == 431
    head = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"
    assert isinstance(_our_outcome(b"\n" * (MAX_HEAD - len(head)) + head), tuple)
    assert _our_outcome(b"\n" * MAX_HEAD + head) == 431


# -- responses --------------------------------------------------------------------------------

#: app header values: visible bytes (obs-text too) with spaces or tabs inside
good_values = st.sampled_from([b"v", b"a b", b"x\ty", b"", b"\x80\xff", b"1", b"a,  b"])
bad_values = st.sampled_from([b" v", b"v ", b"a\r\nb", b"a\nb", b"a\x00b", b"\x0b", b"a\rb"])


@st.composite
def app_headers(draw: st.DrawFn, length: int) -> list[tuple[bytes, bytes]]:
    """What an app answers with: ordinary fields, framing and Connection fields, some broken."""
    kinds = ["plain"] * 3 + ["length", "coding", "connection", "broken"]
    headers: list[tuple[bytes, bytes]] = []
    for kind in draw(st.lists(st.sampled_from(kinds), max_size=5)):
        if kind == "plain":
            name = draw(st.one_of(tokens, st.sampled_from([b"Content-Type", b"x-id", b"Host"])))
            headers.append((name, draw(good_values)))
        elif kind == "length":
            name = draw(st.sampled_from([b"Content-Length", b"content-length"]))
            wrong = [b"%d, %d" % (length, length), b"%d" % (length + 1000), b"abc", b"-1", b""]
            value = draw(st.sampled_from([b"%d" % length] * 4 + wrong + [b"1" * 21]))
            headers.append((name, value))
        elif kind == "coding":
            name = draw(st.sampled_from([b"Transfer-Encoding", b"transfer-encoding"]))
            value = draw(
                st.sampled_from([b"chunked"] * 3 + [b"CHUNKED", b"gzip", b"gzip, chunked"])
            )
            headers.append((name, value))
        elif kind == "connection":
            name = draw(st.sampled_from([b"Connection", b"connection"]))
            value = draw(
                st.sampled_from([b"close", b"keep-alive", b"Upgrade, Close", b"foo", b"Keep-Alive"])
            )
            headers.append((name, value))
        elif draw(st.booleans()):
            headers.append((draw(tokens), draw(bad_values)))
        else:
            headers.append((draw(st.sampled_from([b"bad name", b"", b"x:y", b"\xff"])), b"v"))
    return headers


@st.composite
def exchanges(draw: st.DrawFn) -> tuple[bytes, int, bytes, list[tuple[bytes, bytes]], bytes]:
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    wire = method + b" /x HTTP/" + version + b"\r\nHost: h\r\n"
    wire += draw(
        st.sampled_from([b"", b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n"])
    )
    if method == b"POST":
        wire += b"Content-Length: 0\r\n"
    wire += b"\r\n"
    status = draw(st.sampled_from([200, 201, 204, 304, 404, 500]))
    reason = draw(st.sampled_from([b"OK", b"", b"Not Found"]))
    body = draw(st.sampled_from([b"hello", b"", b"x" * 300]))
    if method == b"HEAD" or status in (204, 304):
        body = b""  # (the app's Content-Length may still say what a GET would get)
        length = draw(st.sampled_from([0, 5]))
    else:
        length = len(body)
    return wire, status, reason, draw(app_headers(length)), body


#: (head, body bytes, the connection can be reused); None: the app's headers are refused;
#: "short": its body disagrees with its own Content-Length
Answer = tuple[bytes, bytes, bool] | str | None


def _h11_answer(
    wire: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Answer:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(wire)
    assert type(conn.next_event()) is h11.Request
    assert type(conn.next_event()) is h11.EndOfMessage
    try:
        head = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
    except h11.LocalProtocolError:
        return None
    try:
        data = conn.send(h11.Data(data=body)) if body else b""
        data += conn.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return "short"
    return head, data, conn.our_state is h11.DONE and conn.their_state is h11.DONE


def _our_answer(
    wire: bytes, status: int, reason: bytes, headers: list[tuple[bytes, bytes]], body: bytes
) -> Answer:
    parsed = parse_request(bytearray(wire))
    assert parsed is not None
    try:
        head, writer, keep = response_head(status, reason, headers, parsed[0])
    except ValueError:
        return None
    try:
        data = b"".join(writer.frame(body)) + writer.end()
    except RuntimeError:
        return "short"
    return head, data, keep


def _lists(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [value for n, value in headers if n.lower() == name]


def _cosmetic(wire: bytes, status: int, headers: list[tuple[bytes, bytes]]) -> bool:
    """Cases where h11 wrote the same answer in other bytes: it lowercased the transfer coding of a 204 or 304 (which keep the app's
    fields), wrote Host fields first, and left the app's own ``Connection: close`` where it
    stood on a connection the request kept open (we rewrite it as ``Connection: close``)."""
    codings = _lists(headers, b"transfer-encoding")
    close = any(b"close" in v.lower() for v in _lists(headers, b"connection"))
    return (
        (status in (204, 304) and any(v.lower() == b"chunked" != v for v in codings))
        or bool(_lists(headers, b"host"))
        or (close and b"Connection: close" not in wire and b" HTTP/1.0\r\n" not in wire)
    )


@settings(max_examples=400, deadline=None)
@given(exchanges())
def test_answers_are_written_as_h11_writes_them(
    case: tuple[bytes, int, bytes, list[tuple[bytes, bytes]], bytes],
) -> None:
    wire, status, _, headers, _ = case
    assume(not _cosmetic(wire, status, headers))
    assert _our_answer(*case) == _h11_answer(*case)


def _as_read(wire: bytes, answer: Answer) -> tuple[object, ...]:
    """An answer as an h11 client reads it: status, reason, fields (Connection as a set of
    tokens, the rest in any order), body, and whether the server keeps the connection."""
    assert isinstance(answer, tuple)
    head, data, keep = answer
    method = wire.split(b" ", 1)[0]
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/x", headers=[(b"host", b"h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(head + data)
    client.receive_data(b"")
    response = client.next_event()
    assert type(response) is h11.Response
    body = b""
    while type(event := client.next_event()) is h11.Data:
        body += event.data
    assert type(event) is h11.EndOfMessage
    fields = sorted((n, v) for n, v in response.headers if n != b"connection")
    tokens = {
        t.strip().lower()
        for v in _lists(list(response.headers), b"connection")
        for t in v.split(b",")
    }
    if b"close" in tokens:
        tokens.discard(b"keep-alive")  # (said beside close, it means nothing)
    return response.status_code, response.reason, fields, tokens, body, keep


@settings(max_examples=400, deadline=None)
@given(exchanges())
def test_answers_mean_what_h11s_meant(
    case: tuple[bytes, int, bytes, list[tuple[bytes, bytes]], bytes],
) -> None:
    """Where the bytes differ in form only (see ``_cosmetic``), a client reads the same."""
    wire = case[0]
    ours, h11s = _our_answer(*case), _h11_answer(*case)
    if not isinstance(ours, tuple) or not isinstance(h11s, tuple):
        assert ours == h11s
    else:
        assert _as_read(wire, ours) == _as_read(wire, h11s)


REQUEST_10 = b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n"
REQUEST_11 = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"


def test_no_chunked_answer_to_an_http10_client() -> None:
    """RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, even when the app says so."""
    case = (REQUEST_10, 200, b"OK", [(b"Transfer-Encoding", b"chunked")], b"hello")
    expected = (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"hello", False)
    assert _our_answer(*case) == _h11_answer(*case) == expected


def test_no_content_length_beside_chunked() -> None:
    """RFC 9112 §6.2: the app's Content-Length goes when its Transfer-Encoding wins."""
    headers = [(b"transfer-encoding", b"CHUNKED"), (b"Content-Length", b"5"), (b"X", b"1")]
    case = (REQUEST_11, 200, b"OK", headers, b"hello")
    head = b"HTTP/1.1 200 OK\r\nX: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
    expected = (head, b"5\r\nhello\r\n0\r\n\r\n", True)
    assert _our_answer(*case) == _h11_answer(*case) == expected
