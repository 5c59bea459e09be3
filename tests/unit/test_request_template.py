"""Requests built from a per-client header template equal the ones built the long way.

The template (``transport/_template.py``) must not change a byte of the head: same names, same
values, same order, same body, URL and extensions as ``httpx.Request`` over
``_request.merged_headers`` (the path every attempt took before it, and still the path for
calls with extra headers or cookies).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.config import resolve_config
from tinker_actors.transport import _prebuilt
from tinker_actors.transport._headers import base_headers
from tinker_actors.transport._http1 import (
    PREBUILT_HEAD,
    check_request,
    request_framing,
    request_head,
)
from tinker_actors.transport._options import RequestOptions, Response
from tinker_actors.transport._request import (
    Prepared,
    build_request,
    idempotency_key,
    merged_headers,
    prepare,
    request_headers,
)

CLIENT = httpx.AsyncClient().headers  # httpx's defaults (Accept-Encoding, Connection, ...)


def _base(overrides: dict[str, str] | None = None) -> httpx.Headers:
    return request_headers(CLIENT, base_headers(overrides=overrides))


def _slow(base: httpx.Headers, p: Prepared, retries: int, credential: str) -> httpx.Request:
    url = httpx.URL(p.url)
    if p.params:
        url = url.copy_merge_params(tuple(p.params))
    timeouts = {
        "connect": min(5.0, p.timeout),
        "read": p.timeout,
        "write": p.timeout,
        "pool": p.timeout,
    }
    return httpx.Request(p.method, url, headers=merged_headers(base, p, retries, credential),
                         content=p.body, extensions={"timeout": timeouts})  # fmt: skip


def _same(a: httpx.Request, b: httpx.Request) -> None:
    assert a.headers.raw == b.headers.raw
    assert a.method == b.method
    assert str(a.url) == str(b.url)
    assert a.content == b.content
    ours = {PREBUILT_HEAD}
    assert {k: v for k, v in a.extensions.items() if k not in ours} == {
        k: v for k, v in b.extensions.items() if k not in ours
    }
    for request in (a, b):
        _head_as_written(request)


def _head_as_written(request: httpx.Request) -> None:
    """A prebuilt head is exactly what the connection would check, frame and write."""
    prebuilt = request.extensions.get(PREBUILT_HEAD)
    if prebuilt is None:
        return
    method, target = request.method.encode(), request.url.raw_path
    raw = request.headers.raw
    check_request(method, target, raw)
    length, close = request_framing(raw)
    assert prebuilt == (request_head(method, target, raw), length, close)


OVERRIDES = st.sampled_from(
    [
        None,
        {"Accept": "text/plain"},
        {"x-stainless-retry-count": "7", "X-Custom": "1"},
        {"Content-Type": "application/x-custom"},
        {"X-API-Key": "from-defaults"},
        {"Host": "elsewhere.example"},  # a template never applies: the slow path
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    overrides=OVERRIDES,
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
    body=st.sampled_from([None, "json", b"", b"\x00\x01proto"]),
    accept=st.sampled_from([None, "application/x-protobuf"]),
    sdk_method=st.sampled_from([None, "sample", "retrieve_future"]),
    idempotency=st.sampled_from([None, "fixed-key"]),
    timeout=st.sampled_from([None, 1.5, 600.0]),
    params=st.sampled_from([None, {"a": "1", "b": "x y"}]),
    retries=st.lists(st.integers(0, 12), min_size=1, max_size=3),
    credential=st.sampled_from(["tml-abc", "eyJhbGciOi.jwt"]),
)
def test_template_matches_the_long_way(
    overrides: dict[str, str] | None,
    method: str,
    body: object,
    accept: str | None,
    sdk_method: str | None,
    idempotency: str | None,
    timeout: float | None,
    params: dict[str, str] | None,
    retries: list[int],
    credential: str,
) -> None:
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    if method == "GET":
        body = None
    json = {"x": 1} if body == "json" else None
    content = body if isinstance(body, bytes) else None
    options = RequestOptions(accept=accept, idempotency_key=idempotency, timeout=timeout)
    p = prepare(config, method, "/api/v1/thing", json, content, None, params, options, sdk_method)
    base = _base(overrides)
    for attempt in retries:  # the first call makes the template, the others reuse it
        fast = build_request(base, connect_timeout=5.0, p=p, retries_taken=attempt,
                             credential=credential, cookies=httpx.Cookies())  # fmt: skip
        _same(fast, _slow(base, p, attempt, credential))


def test_each_attempt_gets_its_own_values() -> None:
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    base = _base()
    one = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, None, "sample")
    two = prepare(config, "POST", "/api/v1/asample", {"a": 22}, None, None, None, None, "sample")
    r1 = build_request(base, connect_timeout=5.0, p=one, retries_taken=0, credential="k1")
    r2 = build_request(base, connect_timeout=5.0, p=two, retries_taken=3, credential="k2")
    assert r1.headers["X-Idempotency-Key"] == one.idempotency_key
    assert r2.headers["X-Idempotency-Key"] == two.idempotency_key != one.idempotency_key
    assert (r1.headers["x-stainless-retry-count"], r2.headers["x-stainless-retry-count"]) == (
        "0",
        "3",
    )
    assert (r1.headers["X-API-Key"], r2.headers["X-API-Key"]) == ("k1", "k2")
    assert (r1.headers["Content-Length"], r2.headers["Content-Length"]) == (
        str(len(one.body or b"")),
        str(len(two.body or b"")),
    )
    assert r1.content == one.body
    assert r2.content == two.body


EXTRA = st.sampled_from(
    [
        {"X-Tinker-Sampling-Backpressure": "1"},
        {"x-stainless-retry-count": "9", "X-Extra": "e"},
        {"X-Idempotency-Key": "callers", "x-stainless-read-timeout": "3", "accept": "a/b"},
        {"X-API-Key": "never-sent"},
        {"X-Tinker-Request-Iteration": "0", "X-Tinker-Create-Promise-Roundtrip-Time": "0.25"},
        {"X-Dup": "1", "x-dup": "2"},  # names equal but for case: the long way
    ]
)


@settings(max_examples=60, deadline=None)
@given(extra=EXTRA, retries=st.lists(st.integers(0, 5), min_size=1, max_size=3))
def test_extra_headers_keep_the_calls_values(extra: dict[str, str], retries: list[int]) -> None:
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    base = _base()
    for attempt in retries:  # same names, values that change from call to call
        varied = {name: f"{value}{attempt}" for name, value in extra.items()}
        options = RequestOptions(extra_headers=varied)
        p = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, options, "s")
        fast = build_request(base, connect_timeout=5.0, p=p, retries_taken=attempt, credential="k")
        _same(fast, _slow(base, p, attempt, "k"))
        assert fast.headers["X-API-Key"] == "k"


def test_cookies_take_the_long_way() -> None:
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    base = _base()
    jar = httpx.Cookies()
    jar.set("session", "abc", domain="127.0.0.1")
    q = prepare(config, "POST", "/api/v1/x", {"a": 1}, None, None, None, None, "x")
    with_cookie = build_request(base, connect_timeout=5.0, p=q, retries_taken=0, credential="k",
                                cookies=jar)  # fmt: skip
    assert with_cookie.headers["Cookie"] == "session=abc"


def test_the_public_way_builds_the_same_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # an httpx whose Headers are laid out otherwise gets pairs built the public way
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    options = RequestOptions(extra_headers={"X-Tinker-Sampling-Backpressure": "1"})
    p = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, options, "s")
    base = _base()
    assert _prebuilt.PREBUILT  # this httpx: the prebuilt path is the one the suite exercises
    built = build_request(base, connect_timeout=5.0, p=p, retries_taken=2, credential="k")
    monkeypatch.setattr(_prebuilt, "PREBUILT", False)
    public = build_request(base, connect_timeout=5.0, p=p, retries_taken=2, credential="k")
    _same(built, public)
    _same(public, _slow(base, p, 2, "k"))
    assert built.headers["x-tinker-sampling-backpressure"] == "1"
    assert dict(built.headers) == dict(public.headers)


def test_idempotency_keys_are_fresh_version_4_uuids() -> None:
    keys = {idempotency_key() for _ in range(5000)}
    assert len(keys) == 5000
    for key in keys:
        prefix, _, text = key.partition("stainless-python-retry-")
        assert prefix == ""
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical lowercase 8-4-4-4-12
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_the_head_is_prebuilt_only_when_the_connection_would_send_it() -> None:
    config = resolve_config(base_url="http://127.0.0.1:8123", api_key="tml-test")
    base = _base()
    p = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, None, "s")
    good = build_request(base, connect_timeout=5.0, p=p, retries_taken=0, credential="k")
    assert PREBUILT_HEAD in good.extensions
    _head_as_written(good)
    # a credential that would split the head: no prebuilt head, the connection refuses it
    bad = build_request(base, connect_timeout=5.0, p=p, retries_taken=0, credential="k\r\nX: 1")
    assert PREBUILT_HEAD not in bad.extensions
    # a call's own value or idempotency key that would split the head: the same
    for options in (
        RequestOptions(extra_headers={"X-Tinker-Request-Type": "a\nb"}),
        RequestOptions(idempotency_key="k\r\nX: 1"),
    ):
        q = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, options, "s")
        refused = build_request(base, connect_timeout=5.0, p=q, retries_taken=0, credential="k")
        assert PREBUILT_HEAD not in refused.extensions
    # a call's own header that decides framing: the connection frames the request itself
    options = RequestOptions(extra_headers={"Connection": "close"})
    q = prepare(config, "POST", "/api/v1/asample", {"a": 1}, None, None, None, options, "s")
    framed = build_request(base, connect_timeout=5.0, p=q, retries_taken=0, credential="k")
    assert PREBUILT_HEAD not in framed.extensions
    assert framed.headers["connection"] == "close"


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(
        st.tuples(
            st.sampled_from(
                ["Set-Cookie", "set-cookie", "Content-Type", "X-A", "x-deprecation-note"]
            ),
            st.text(alphabet="abc é;=", max_size=6),
        ),
        max_size=5,
    ),
    name=st.sampled_from(["set-cookie", "content-type", "x-a", "x-deprecation-note", "absent"]),
)
def test_header_lookup_is_httpx_get(pairs: list[tuple[str, str]], name: str) -> None:
    headers = httpx.Headers([(k.encode(), v.encode()) for k, v in pairs])
    assert _prebuilt.header(headers, name) == headers.get(name)
    response = Response(status=200, headers=headers, content=b"", http_version="HTTP/1.1",
                        elapsed=0.0, retries_taken=0, method="GET", url="http://h/",
                        idempotency_key=None)  # fmt: skip
    assert response.header(name.upper()) == headers.get(name)


def test_header_lookup_the_public_way(monkeypatch: pytest.MonkeyPatch) -> None:
    headers = httpx.Headers([(b"A", b"1"), (b"a", b"2")])
    monkeypatch.setattr(_prebuilt, "PREBUILT", False)
    assert _prebuilt.header(headers, "a") == "1, 2"
    assert _prebuilt.header(headers, "b") is None
