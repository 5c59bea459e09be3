"""The HTTP/1.1 codec (transport/_http1.py) reads what h11 reads, byte for byte.

Responses are written by an h11 server (so they are valid HTTP/1.1 with the framing their
headers say), cut into arbitrary pieces, and read twice: by an h11 client and by our codec fed
the same pieces. Status, reason, headers, body and whether the connection may be reused must
agree. Malformed heads must be refused by both.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.transport import _http1
from tinker_actors.transport._http1 import CHUNKED, UNTIL_CLOSE, ChunkedBody

_TOKEN_CHARS = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_RESERVED = {"content-length", "transfer-encoding", "connection"}

names = st.text(_TOKEN_CHARS, min_size=1, max_size=12).filter(lambda n: n.lower() not in _RESERVED)
values = st.from_regex(r"\A([!-~]+( [!-~]+)*)?\Z", fullmatch=True).filter(lambda v: len(v) < 40)


@st.composite
def responses(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """(request method, wire bytes of a valid answer to it), in any framing and line style."""
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.0"]))
    status = draw(st.sampled_from([200, 201, 204, 304, 400, 404, 408, 429, 500, 503]))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if version == b"1.0" and framing == "chunked":
        framing = "length"
    body = draw(st.binary(max_size=3000))
    fields = [
        (n.encode(), v.encode()) for n, v in draw(st.lists(st.tuples(names, values), max_size=6))
    ]
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    ows = draw(st.sampled_from([b"", b" ", b"\t "]))
    no_body = method == b"HEAD" or status in (204, 304)
    if framing == "length":
        fields.append((b"Content-Length", str(len(body)).encode()))
    elif framing == "chunked":
        fields.append((b"Transfer-Encoding", b"chunked"))
    if draw(st.booleans()):
        fields.append((b"Connection", b"close"))
    head = [
        b"HTTP/%s %d %s" % (version, status, draw(st.sampled_from([b"OK", b"", b"Fine Thanks"])))
    ]
    head += [name + b":" + ows + value + ows for name, value in fields]
    interim = b"HTTP/1.1 100 Continue" + eol + eol if draw(st.booleans()) else b""
    wire = interim + eol.join(head) + eol + eol
    if no_body:
        return method, wire
    if framing == "chunked":
        drawn = draw(st.lists(st.integers(1, max(1, len(body))), max_size=4))
        cuts = sorted({c for c in drawn if c < len(body)})
        start = 0
        for cut in [*cuts, len(body)]:
            if cut > start:
                ext = draw(st.sampled_from([b"", b";x=1"]))
                wire += b"%x%s\r\n%s\r\n" % (cut - start, ext, body[start:cut])
                start = cut
        wire += b"0\r\n" + (b"Trailer-Field: 1\r\n" if draw(st.booleans()) else b"") + b"\r\n"
    else:
        wire += body
    return method, wire


def _h11_read(
    method: bytes, wire: bytes
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/x", headers=[(b"host", b"h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(wire)
    client.receive_data(b"")  # the server closes after writing: ends an until-close body
    body = b""
    head: h11.Response | None = None
    while True:
        event = client.next_event()
        if type(event) is h11.Response:
            head = event
        elif type(event) is h11.Data:
            body += event.data
        elif type(event) is h11.EndOfMessage:
            break
    assert head is not None
    framed = any(name in (b"content-length", b"transfer-encoding") for name, _ in head.headers)
    no_body = method == b"HEAD" or head.status_code in (204, 304)
    # h11 calls an answer ended by the server's close DONE too; such a connection is gone
    reusable = (
        client.our_state is h11.DONE and client.their_state is h11.DONE and (framed or no_body)
    )
    return head.status_code, head.reason, list(head.headers), body, reusable


def _our_read(
    method: bytes, pieces: list[bytes]
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    buffer = bytearray()
    feed = iter(pieces)
    while True:
        parsed = _http1.parse_head(buffer)
        if parsed is None:
            buffer += next(feed)
            continue
        head, used = parsed
        del buffer[:used]
        if head.status >= 200:
            break
    framing, keep, _ = _http1.response_framing(method, head)
    body = bytearray()
    if framing >= 0:
        while len(buffer) < framing:
            buffer += next(feed)
        body += buffer[:framing]
        del buffer[:framing]
    elif framing == CHUNKED:
        decoder = ChunkedBody()
        while True:
            for data in decoder.take(buffer):
                body += data
            if decoder.done:
                break
            buffer += next(feed)
    else:
        assert framing == UNTIL_CLOSE
        body += buffer
        buffer.clear()
        for rest in feed:
            body += rest
    reusable = keep and not buffer
    lowered = [(n.lower(), v) for n, v in head.headers]
    return head.status, head.reason, lowered, bytes(body), reusable


@settings(max_examples=300, deadline=None)
@given(responses(), st.lists(st.integers(0, 4000), max_size=6))
def test_our_reading_matches_h11s(made: tuple[bytes, bytes], cuts: list[int]) -> None:
    method, wire = made
    points = sorted({c for c in cuts if 0 < c < len(wire)})
    pieces = [wire[a:b] for a, b in zip([0, *points], [*points, len(wire)], strict=True)]
    assert _our_read(method, pieces) == _h11_read(method, wire)


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 20 OK\r\n\r\n",
        b"HTTPS/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded first\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\x00b\r\n\r\n",
    ],
)
def test_malformed_heads_are_refused(head: bytes) -> None:
    with pytest.raises(_http1.RemoteProtocolError):
        _http1.parse_head(bytearray(head))
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"h")]))
    client.send(h11.EndOfMessage())
    client.receive_data(head)
    with pytest.raises(h11.RemoteProtocolError):
        client.next_event()


@pytest.mark.parametrize(
    "fields",
    [
        [(b"Transfer-Encoding", b"gzip")],
        [(b"Transfer-Encoding", b"gzip, chunked")],
        [(b"Content-Length", b"5"), (b"Content-Length", b"6")],
        [(b"Content-Length", b"5, 6")],
        [(b"Content-Length", b"-1")],
    ],
)
def test_framing_h11_refuses_is_refused(fields: list[tuple[bytes, bytes]]) -> None:
    with pytest.raises(_http1.RemoteProtocolError):
        _http1.response_framing(b"GET", _http1.Head(200, b"OK", b"1.1", fields))


def test_agreeing_lengths_and_no_body_answers() -> None:
    head = _http1.Head(
        200, b"OK", b"1.1", [(b"Content-Length", b"5, 5"), (b"content-length", b"5")]
    )
    assert _http1.response_framing(b"GET", head) == (5, True, False)
    assert _http1.response_framing(b"HEAD", head).length == 0
    assert _http1.response_framing(b"GET", head._replace(status=304)).length == 0
    coded = head._replace(headers=[(b"Content-Encoding", b"gzip"), (b"Connection", b"x, Close")])
    assert _http1.response_framing(b"GET", coded) == (_http1.UNTIL_CLOSE, False, True)


def test_a_head_longer_than_the_limit_is_refused_before_it_ends() -> None:
    buffer = bytearray(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * (_http1.MAX_HEAD + 10))
    with pytest.raises(_http1.RemoteProtocolError, match="too long"):
        _http1.parse_head(buffer)
    assert _http1.parse_head(bytearray(b"HTTP/1.1 200 OK\r\nX: 1\r\n")) is None


@pytest.mark.parametrize(
    "body", [b"zz\r\n", b"3\r\nabcd\r\n", b"3\r\nabc" + b"x" * 5000, b"1" * (_http1.MAX_LINE + 10)]
)
def test_bad_chunks_are_refused(body: bytes) -> None:
    with pytest.raises(_http1.RemoteProtocolError):
        ChunkedBody().take(bytearray(body))


def test_chunk_extensions_and_trailers_are_read_past() -> None:
    buffer = bytearray(b"3;name=v\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT")
    decoder = ChunkedBody()
    assert b"".join(decoder.take(buffer)) == b"abcde"
    assert decoder.done
    assert buffer == b"NEXT"


def test_folded_lines_are_unfolded_as_h11_does() -> None:
    wire = b"HTTP/1.1 200 OK\r\nX: a\r\n  folded\r\n\tagain\r\nContent-Length: 0\r\n\r\n"
    assert _our_read(b"GET", [wire]) == _h11_read(b"GET", wire)
    parsed = _http1.parse_head(bytearray(wire))
    assert parsed is not None
    assert parsed[0].headers[0] == (b"X", b"a folded again")


def test_a_version_other_than_1x_is_refused() -> None:
    """Stricter than h11, which reads any ``HTTP/d.d``: an HTTP/2 status line on an HTTP/1.1
    connection means the server speaks something else."""
    with pytest.raises(_http1.RemoteProtocolError, match="version"):
        _http1.parse_head(bytearray(b"HTTP/2.0 200 OK\r\n\r\n"))
