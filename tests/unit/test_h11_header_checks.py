"""The h11 transport remembers header pairs that passed h11's checks; it must still refuse bad ones."""

from __future__ import annotations

import h11
import httpx
import pytest

from tinker_actors.transport import _h11


def _request(headers: dict[str, str], path: str = "/api/v1/asample") -> httpx.Request:
    return httpx.Request("POST", f"http://127.0.0.1{path}", headers=headers, content=b"{}")


def test_a_pair_seen_before_skips_the_checks_and_gives_the_same_event() -> None:
    first = _h11._h11_request(_request({"x-sdk-method": "SamplingClient.sample"}))
    again = _h11._h11_request(_request({"x-sdk-method": "SamplingClient.sample"}))
    full = h11.Request(
        method=b"POST",
        target=b"/api/v1/asample",
        headers=_request({"x-sdk-method": "SamplingClient.sample"}).headers.raw,
    )
    assert list(first.headers) == list(again.headers) == list(full.headers)
    assert (b"x-sdk-method", b"SamplingClient.sample") in _h11._CHECKED


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\x00b", "a\nb"])
def test_bad_values_are_refused_after_good_ones_of_the_same_name(value: str) -> None:
    _h11._h11_request(_request({"x-custom": "fine"}))
    with pytest.raises(h11.LocalProtocolError, match="Illegal header value"):
        _h11._h11_request(_request({"x-custom": value}))


def test_volatile_headers_are_checked_but_not_remembered() -> None:
    _h11._h11_request(_request({"Idempotency-Key": "stainless-python-retry-1234"}))
    assert (b"Idempotency-Key", b"stainless-python-retry-1234") not in _h11._CHECKED
    with pytest.raises(h11.LocalProtocolError):
        _h11._h11_request(_request({"Idempotency-Key": "k\r\nX: y"}))


def test_bad_header_names_are_refused() -> None:
    with pytest.raises(h11.LocalProtocolError, match="Illegal header name"):
        _h11._h11_request(_request({"bad name": "x"}))
