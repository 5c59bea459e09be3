"""The local server's request-body reader: the body's bytes, however they arrive, and nothing
of what follows it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.local._http1_server import BodyReader
from tinker_actors.transport._http1 import CHUNKED, RemoteProtocolError


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out, at = [], 0
    for size in sizes:
        if at >= len(body):
            break
        piece = body[at : at + size]
        out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
        at += len(piece)
    if at < len(body):
        out.append(b"%x\r\n%s\r\n" % (len(body) - at, body[at:]))
    return b"".join(out) + b"0\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(
    body=st.binary(max_size=300),
    after=st.binary(max_size=40),
    chunked=st.booleans(),
    sizes=st.lists(st.integers(1, 50), max_size=10),
    cuts=st.lists(st.integers(1, 80), max_size=20),
    buffered=st.integers(0, 30),
)
def test_the_body_and_only_the_body_is_taken(
    body: bytes,
    after: bytes,
    chunked: bool,
    sizes: list[int],
    cuts: list[int],
    buffered: int,
) -> None:
    wire = (_chunked(body, sizes) if chunked else body) + after
    reader = BodyReader(CHUNKED if chunked else len(body))
    buf = bytearray(wire[:buffered])  # read with the head, before the body was asked for
    taken: list[bytes] = []
    at = buffered
    taken += reader.take(buf, b"")
    for cut in [*cuts, len(wire)]:  # then the rest, as the socket hands it over
        if reader.done:
            break
        data = wire[at : at + cut]
        at += len(data)
        taken += reader.take(buf, data)
    assert reader.done
    assert b"".join(taken) == body
    assert bytes(buf) + wire[at:] == after  # what follows stays for the next request


def test_a_malformed_chunk_size_is_refused() -> None:
    with pytest.raises(RemoteProtocolError):
        BodyReader(CHUNKED).take(bytearray(), b"zz\r\n")


def test_no_body_is_done_at_once() -> None:
    reader = BodyReader(0)
    buf = bytearray(b"GET / HTTP/1.1\r\n")
    assert reader.take(buf, b"") == []
    assert reader.done
    assert buf == b"GET / HTTP/1.1\r\n"
