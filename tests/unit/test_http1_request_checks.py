"""Request heads (transport/_http1.py): pairs that passed the checks are remembered; bad ones
are still refused, before anything is written."""

from __future__ import annotations

import httpx
import pytest

from tinker_actors.transport import _http1


def _raw(headers: dict[str, str], path: str = "/api/v1/asample") -> list[tuple[bytes, bytes]]:
    return httpx.Request(
        "POST", f"http://127.0.0.1{path}", headers=headers, content=b"{}"
    ).headers.raw


def _check(headers: dict[str, str], path: str = "/api/v1/asample") -> None:
    _http1.check_request(b"POST", path.encode(), _raw(headers, path))


def test_a_pair_seen_before_is_remembered_and_the_head_is_as_written() -> None:
    _check({"x-sdk-method": "SamplingClient.sample"})
    assert (b"x-sdk-method", b"SamplingClient.sample") in _http1._CHECKED
    _check({"x-sdk-method": "SamplingClient.sample"})
    head = _http1.request_head(b"POST", b"/api/v1/asample", [(b"Host", b"h"), (b"X-A", b"1 2")])
    assert head == b"POST /api/v1/asample HTTP/1.1\r\nHost: h\r\nX-A: 1 2\r\n\r\n"


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\x00b", "a\nb", " lead", "trail "])
def test_bad_values_are_refused_after_good_ones_of_the_same_name(value: str) -> None:
    _check({"x-custom": "fine"})
    with pytest.raises(_http1.LocalProtocolError, match="Illegal header value"):
        _http1.check_request(b"POST", b"/x", [(b"x-custom", value.encode())])


def test_volatile_headers_are_checked_but_not_remembered() -> None:
    _check({"Idempotency-Key": "stainless-python-retry-1234"})
    assert (b"Idempotency-Key", b"stainless-python-retry-1234") not in _http1._CHECKED
    with pytest.raises(_http1.LocalProtocolError):
        _http1.check_request(b"POST", b"/x", [(b"Idempotency-Key", b"k\r\nX: y")])


@pytest.mark.parametrize("name", [b"bad name", b"a:b", b"", b"x\r\ny"])
def test_bad_header_names_are_refused(name: bytes) -> None:
    with pytest.raises(_http1.LocalProtocolError, match="Illegal header name"):
        _http1.check_request(b"POST", b"/x", [(name, b"x")])


@pytest.mark.parametrize(
    ("method", "target"), [(b"PO ST", b"/x"), (b"POST", b"/a b"), (b"POST", b"/a\r\nX: 1")]
)
def test_bad_methods_and_targets_are_refused(method: bytes, target: bytes) -> None:
    with pytest.raises(_http1.LocalProtocolError, match="Illegal"):
        _http1.check_request(method, target, [])


def test_request_framing_reads_length_chunked_close_and_requires_host() -> None:
    host = (b"Host", b"h")
    assert _http1.request_framing([host, (b"Content-Length", b"12")]) == (12, False)
    assert _http1.request_framing([host, (b"Transfer-Encoding", b"chunked")]) == (None, False)
    assert _http1.request_framing([host, (b"Connection", b"keep-alive, close")]) == (0, True)
    with pytest.raises(_http1.LocalProtocolError, match="Host"):
        _http1.request_framing([(b"Content-Length", b"1")])
    with pytest.raises(_http1.LocalProtocolError, match="chunked"):
        _http1.request_framing([host, (b"Transfer-Encoding", b"gzip")])
    with pytest.raises(_http1.LocalProtocolError, match="Content-Length"):
        _http1.request_framing([host, (b"Content-Length", b"-1")])
