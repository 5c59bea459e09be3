"""The request path: headers, bodies, retries, error mapping (protocol.md §1.2, §7.1, §7.5, §7.6).

Every test runs against an in-process ``httpx.MockTransport`` under trio's virtual clock
(``autojump_clock``), with a seeded random source, so sleeps are measured exactly.
"""

from __future__ import annotations

import email.utils
import logging
import platform
import random
import re

import httpx
import msgspec
import pytest
import trio
from test_transport_support import (
    BASE,
    EPOCH,
    KEY,
    Server,
    make_config,
    ok,
    opened,
    status,
)

from tinker_actors._version import PROTOCOL_VERSION, __version__
from tinker_actors.backoff import http_retry_delay
from tinker_actors.errors import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BillingError,
    ConflictError,
    InternalServerError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from tinker_actors.transport import RequestOptions, Transport, open_transport
from tinker_actors.transport._transport import EMPTY_400_BUDGET

IDEMPOTENCY = re.compile(
    r"^stainless-python-retry-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"
)


class Body(msgspec.Struct, kw_only=True):
    model_id: str
    seq_id: int = 1


class Reply(msgspec.Struct):
    name: str
    value: int


# -- headers and bodies ----------------------------------------------------------------------


async def test_standard_header_set_on_post(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok({"ok": True})])
    async with opened(server) as transport:
        response = await transport.request(
            "POST", "/api/v1/create_session", json=Body(model_id="m")
        )
    (seen,) = server.seen
    h = seen.headers
    assert seen.method == "POST"
    assert str(seen.url) == f"{BASE}/api/v1/create_session"
    assert seen.json() == {"model_id": "m", "seq_id": 1}
    assert h["accept"] == "application/json"
    assert h["content-type"] == "application/json"
    assert h["user-agent"] == f"tinker-actors/{__version__} (tinker-protocol {PROTOCOL_VERSION})"
    assert h["x-stainless-package-version"] == PROTOCOL_VERSION
    assert h["x-stainless-os"] in {"Linux", "MacOS", "Windows", "FreeBSD", "OpenBSD"}
    assert h["x-stainless-arch"] in {"x64", "arm64", "arm", "x32"} or h[
        "x-stainless-arch"
    ].startswith("other:")
    assert h["x-stainless-runtime"] == platform.python_implementation()
    assert h["x-stainless-runtime-version"] == platform.python_version()
    assert h["x-stainless-async"] == "async:trio"
    assert h["x-stainless-retry-count"] == "0"
    assert h["x-stainless-read-timeout"] == "60"
    assert IDEMPOTENCY.match(h["x-idempotency-key"])
    assert h["x-api-key"] == KEY
    assert "x-sdk-method" not in h
    assert "x-sdk-version" not in h
    assert "cf-access-client-id" not in h
    assert response.status == 200
    assert response.json() == {"ok": True}
    assert response.http_version == "HTTP/1.1"
    assert response.retries_taken == 0
    assert response.idempotency_key == h["x-idempotency-key"]


async def test_get_has_no_body_content_type_or_idempotency_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request(
            "GET",
            "api/v1/training_runs",
            params={"limit": 20, "ids": ["a", "b", 3], "flag": True, "off": False, "gone": None},
        )
    (seen,) = server.seen
    assert seen.method == "GET"
    assert seen.content == b""
    assert "content-type" not in seen.headers
    assert "x-idempotency-key" not in seen.headers
    assert seen.url.path == "/services/tinker/api/v1/training_runs"
    assert seen.url.query == b"limit=20&ids=a%2Cb%2C3&flag=true&off=false"


async def test_post_without_body_has_no_content_type(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request("POST", "/api/v1/training_runs/r/checkpoints/weights/x/publish")
    (seen,) = server.seen
    assert seen.content == b""
    assert "content-type" not in seen.headers
    assert IDEMPOTENCY.match(seen.headers["x-idempotency-key"])
    # the checkpoint id keeps its slash, unescaped
    assert seen.url.path.endswith("/checkpoints/weights/x/publish")


@pytest.mark.parametrize(
    ("per_call", "header"), [(None, "60"), (45, "45"), (10, "10"), (5.0, "5.0"), (45.0, "45.0")]
)
async def test_read_timeout_header_forms(
    autojump_clock: trio.testing.MockClock, per_call: float | None, header: str
) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request("POST", "/x", json={}, options=RequestOptions(timeout=per_call))
    (seen,) = server.seen
    assert seen.headers["x-stainless-read-timeout"] == header
    applied = seen.extensions["timeout"]
    assert applied["read"] == (per_call if per_call is not None else 60)
    assert applied["connect"] == min(5.0, per_call if per_call is not None else 60)


async def test_raw_content_and_accept(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request(
            "POST",
            "/api/v1/forward_backward",
            content=b"\x08\x01proto",
            content_type="application/x-protobuf",
            options=RequestOptions(accept="application/x-protobuf"),
        )
    (seen,) = server.seen
    assert seen.content == b"\x08\x01proto"
    assert seen.headers["content-type"] == "application/x-protobuf"
    assert seen.headers["accept"] == "application/x-protobuf"


async def test_sdk_method_headers(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request("POST", "/x", json={}, sdk_method="TrainingClient.forward_backward")
        await transport.request("POST", "/x", json={})
    first, second = server.seen
    assert first.headers["x-sdk-method"] == "TrainingClient.forward_backward"
    assert first.headers["x-sdk-version"] == PROTOCOL_VERSION
    assert "x-sdk-method" not in second.headers


async def test_cf_access_and_override_precedence(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok()])
    env = {"CLOUDFLARE_ACCESS_CLIENT_ID": "cf-id", "CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-secret"}
    async with opened(
        server,
        env=env,
        default_headers={"User-Agent": "custom/1", "X-Team": "a", "x-stainless-async": "async:x"},
    ) as transport:
        await transport.request(
            "POST",
            "/x",
            json={},
            options=RequestOptions(
                extra_headers={"X-Team": "b", "X-API-Key": "tml-hijack", "X-Extra": "1"}
            ),
        )
    h = server.seen[0].headers
    assert h["cf-access-client-id"] == "cf-id"
    assert h["cf-access-client-secret"] == "cf-secret"
    assert h["user-agent"] == "custom/1"  # config overrides merge over the standard set
    assert h["x-stainless-async"] == "async:x"
    assert h["x-team"] == "b"  # per-call headers win over config defaults
    assert h["x-extra"] == "1"
    assert h["x-api-key"] == KEY  # the credential cannot be overridden
    assert len(h.get_list("x-team")) == 1


async def test_extra_query_body_and_explicit_idempotency_key(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        await transport.request(
            "POST",
            "/api/v1/copy_weights",
            json=Body(model_id="m"),
            params={"a": 1},
            options=RequestOptions(
                extra_query={"b": ["x", "y"], "a": 2},
                extra_body={"extra": True, "seq_id": 9},
                idempotency_key="3b7e0a4c-explicit",
            ),
        )
        await transport.request(
            "POST", "/y", json={"k": 1}, options=RequestOptions(extra_body={"j": 2})
        )
        await transport.request("POST", "/z", options=RequestOptions(extra_body={"only": 1}))
    first, second, third = server.seen
    assert first.url.query == b"a=2&b=x%2Cy"
    assert first.json() == {"model_id": "m", "seq_id": 9, "extra": True}
    assert first.headers["x-idempotency-key"] == "3b7e0a4c-explicit"
    assert second.json() == {"k": 1, "j": 2}
    assert third.json() == {"only": 1}
    assert third.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"method": "GET", "json": {"a": 1}}, "GET requests carry no body"),
        ({"method": "POST", "json": {}, "content": b"x"}, "either json= or content="),
        ({"method": "POST", "content_type": "text/plain"}, "pass content= too"),
        ({"method": "BREW"}, "unsupported HTTP method"),
        (
            {"method": "POST", "content": b"x", "options": RequestOptions(extra_body={"a": 1})},
            "JSON bodies only",
        ),
        (
            {"method": "POST", "json": [1, 2], "options": RequestOptions(extra_body={"a": 1})},
            "JSON object body",
        ),
    ],
)
async def test_bad_input_sends_nothing(
    autojump_clock: trio.testing.MockClock, kwargs: dict[str, object], match: str
) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        method = kwargs.pop("method")
        with pytest.raises(InvalidInputError, match=match):
            await transport.request(method, "/x", **kwargs)  # type: ignore[arg-type]
    assert server.seen == []


def test_request_options_validation() -> None:
    with pytest.raises(InvalidInputError, match="timeout"):
        RequestOptions(timeout=0)
    with pytest.raises(InvalidInputError, match="max_retries"):
        RequestOptions(max_retries=-1)
    with pytest.raises(InvalidInputError, match="idempotency_key"):
        RequestOptions(idempotency_key="")


async def test_decode_and_validation_error(autojump_clock: trio.testing.MockClock) -> None:
    server = Server(
        [
            ok({"name": "a", "value": 3}),
            ok({"name": "a", "value": "three"}),
            httpx.Response(200, content=b"<html>oops</html>"),
        ]
    )
    async with opened(server) as transport:
        good = await transport.request("POST", "/x", json={})
        assert good.decode(Reply) == Reply("a", 3)
        bad = await transport.request("POST", "/x", json={})
        with pytest.raises(
            APIResponseValidationError, match=r"200.*not a valid Reply.*three"
        ) as info:
            bad.decode(Reply)
        assert info.value.status_code == 200
        html = await transport.request("POST", "/x", json={})
        with pytest.raises(APIResponseValidationError, match="<html>oops"):
            html.json()


async def test_follows_redirects(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/audit"):
            return httpx.Response(302, headers={"location": "http://storage.test/signed"})
        return ok({"where": request.url.host})

    async with opened(handler) as transport:
        response = await transport.request("GET", "/api/v1/audit")
    assert response.json() == {"where": "storage.test"}


async def test_httpx_pool_is_http11_with_sdk_limits() -> None:
    config = make_config(http_backend="httpx")
    async with open_transport(config) as transport:
        # connections are spread over clients of 50 each, up to the configured 1000 in all
        async with transport._pool.lease() as client:
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert pool._http1 is True
            assert pool._http2 is False
            assert pool._max_connections == 50
            assert pool._max_keepalive_connections == 20
            assert client.follow_redirects is False  # followed in _dispatch.py
        assert transport._pool._max_clients == 20


def test_no_public_constructor() -> None:
    with pytest.raises(TypeError, match="open_transport"):
        Transport(make_config(), None, rng=random.Random(), clock=lambda: 0.0)  # type: ignore[arg-type]


async def test_closed_transport_refuses(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        pass
    with pytest.raises(trio.ClosedResourceError):
        await transport.request("GET", "/x")
    await transport.aclose()  # idempotent
    assert server.seen == []


# -- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize("code", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses_keep_one_key_and_count_up(
    autojump_clock: trio.testing.MockClock, code: int
) -> None:
    server = Server([status(code), status(code), ok({"done": 1})])
    async with opened(server) as transport:
        response = await transport.request("POST", "/x", json={})
    assert response.json() == {"done": 1}
    assert response.retries_taken == 2
    assert [s.headers["x-stainless-retry-count"] for s in server.seen] == ["0", "1", "2"]
    keys = {s.headers["x-idempotency-key"] for s in server.seen}
    assert len(keys) == 1
    assert response.idempotency_key in keys
    stats = transport.statistics()
    assert (stats.requests, stats.attempts, stats.retries) == (1, 3, 2)
    assert stats.by_status == {code: 2, 200: 1}


async def test_new_key_per_logical_request(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([ok()])
    async with opened(server) as transport:
        for _ in range(3):
            await transport.request("POST", "/x", json={})
    keys = [s.headers["x-idempotency-key"] for s in server.seen]
    assert len(set(keys)) == 3


async def test_backoff_schedule_matches_policy(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(503)] * 5 + [ok()])
    async with opened(server, seed=11) as transport:
        await transport.request("POST", "/x", json={})
    expected_rng = random.Random(11)
    expected = [http_retry_delay(k, rng=expected_rng) for k in range(5)]
    assert server.gaps() == pytest.approx(expected, abs=1e-9)
    assert all(
        0.75 * 0.5 * 2**k < gap <= min(0.5 * 2**k, 10) for k, gap in enumerate(server.gaps())
    )


async def test_should_retry_header_overrides_status(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(503, {"e": 1}, **{"x-should-retry": "false"})])
    async with opened(server) as transport:
        with pytest.raises(InternalServerError):
            await transport.request("POST", "/x", json={})
    assert len(server.seen) == 1

    server = Server([status(400, {"e": 1}, **{"x-should-retry": "true"}), ok()])
    async with opened(server) as transport:
        response = await transport.request("POST", "/x", json={})
    assert response.retries_taken == 1
    assert len(server.seen) == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "2"}, 2.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "700", "retry-after": "9"}, 0.7),
        ({"retry-after": email.utils.formatdate(EPOCH + 7, usegmt=True)}, 7.0),
    ],
)
async def test_retry_after_is_honoured(
    autojump_clock: trio.testing.MockClock, headers: dict[str, str], expected: float
) -> None:
    server = Server([status(429, {"detail": "slow"}, **headers), ok()])
    async with opened(server) as transport:
        await transport.request("POST", "/x", json={})
    assert server.gaps() == [pytest.approx(expected, abs=1e-6)]


@pytest.mark.parametrize("value", ["120", "0", "-3", "soon"])
async def test_retry_after_out_of_range_falls_back(
    autojump_clock: trio.testing.MockClock, value: str
) -> None:
    server = Server([status(429, **{"retry-after": value}), ok()])
    async with opened(server, seed=3) as transport:
        await transport.request("POST", "/x", json={})
    assert server.gaps() == [pytest.approx(http_retry_delay(0, rng=random.Random(3)))]


async def test_exhausted_retries_raise_mapped_error(autojump_clock: trio.testing.MockClock) -> None:
    body = {"detail": "too many requests"}
    server = Server([status(429, body, **{"x-request-id": "req-42"})])
    async with opened(server, max_retries=3) as transport:
        with pytest.raises(RateLimitError) as info:
            await transport.request("POST", "/api/v1/asample", json={})
    err = info.value
    assert len(server.seen) == 4
    assert err.status_code == 429
    assert err.body == body
    assert err.request_id == "req-42"
    assert err.idempotency_key == server.seen[0].headers["x-idempotency-key"]
    assert str(err) == "Error code: 429 - {'detail': 'too many requests'}"
    assert err.method == "POST"
    assert err.url == f"{BASE}/api/v1/asample"
    assert err.headers["x-request-id"] == "req-42"


async def test_per_call_max_retries(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(503)])
    async with opened(server) as transport:
        with pytest.raises(InternalServerError):
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=0))
        assert len(server.seen) == 1
        with pytest.raises(InternalServerError):
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=2))
        assert len(server.seen) == 4
        with pytest.raises(InternalServerError):
            await transport.request("POST", "/x", json={})  # config default: 10
        assert len(server.seen) == 4 + 11


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, BillingError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (599, InternalServerError),
        (418, APIStatusError),
    ],
)
async def test_status_mapping(
    autojump_clock: trio.testing.MockClock, code: int, cls: type[APIStatusError]
) -> None:
    server = Server([status(code, {"detail": "no"})])
    async with opened(server) as transport:
        with pytest.raises(cls) as info:
            await transport.request(
                "POST", "/x", json={}, options=RequestOptions(max_retries=0, billing_pause=False)
            )
    assert type(info.value) is cls
    assert info.value.status_code == code
    assert str(info.value) == f"Error code: {code} - {{'detail': 'no'}}"


async def test_error_bodies_that_are_not_json(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(404, b"  plain text not found "), status(404, b"")])
    async with opened(server) as transport:
        with pytest.raises(NotFoundError) as info:
            await transport.request("GET", "/x")
        assert str(info.value) == "Error code: 404 - plain text not found"
        assert info.value.body == "plain text not found"
        with pytest.raises(NotFoundError) as info:
            await transport.request("GET", "/x")
        assert str(info.value) == "Error code: 404"
        assert info.value.body is None
        assert info.value.idempotency_key is None  # GET carries none


async def test_connection_errors_retried_then_raised(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof"), ok({"v": 1})])
    async with opened(server) as transport:
        response = await transport.request("POST", "/x", json={})
        assert response.retries_taken == 2
        assert len({s.headers["x-idempotency-key"] for s in server.seen}) == 1

        server.script, server.seen = [httpx.ConnectError("refused")], []
        with pytest.raises(APIConnectionError) as info:
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=2))
        assert type(info.value) is APIConnectionError
        assert isinstance(info.value.__cause__, httpx.ConnectError)
        assert len(server.seen) == 3

        server.script, server.seen = [httpx.ReadTimeout("slow")], []
        with pytest.raises(APITimeoutError) as timeout_info:
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=1))
        assert len(server.seen) == 2
        assert [s.headers["x-stainless-retry-count"] for s in server.seen] == ["0", "1"]
        assert timeout_info.value.url == f"{BASE}/x"
        stats = transport.statistics()
    assert stats.connection_errors == 2 + 3 + 2
    assert stats.timeouts == 2


# -- the empty-400 proxy heuristic (§7.5) ----------------------------------------------------


async def test_empty_400_retried_as_connection_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([status(400, **{"content-length": "0"}), status(400), ok()])
    async with opened(server) as transport:
        response = await transport.request("POST", "/x", json={})
        assert response.retries_taken == 2
        assert len({s.headers["x-idempotency-key"] for s in server.seen}) == 1
        stats = transport.statistics()
        # two units spent, one earned back by the success
        assert (stats.empty_400s, stats.empty_400_budget) == (2, EMPTY_400_BUDGET - 1)

        server.script, server.seen = [status(400, {"detail": "bad field"})], []
        with pytest.raises(BadRequestError):
            await transport.request("POST", "/x", json={})
        assert len(server.seen) == 1  # a 400 with a body is the API talking: no retry

        server.script, server.seen = [status(400)], []
        with pytest.raises(APIConnectionError, match="empty body"):
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=1))
        assert len(server.seen) == 2


async def test_empty_400_budget_is_shared_and_bounded(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = Server([status(400)])
    async with opened(server) as transport:
        with pytest.raises(BadRequestError):
            await transport.request("POST", "/x", json={}, options=RequestOptions(max_retries=40))
        # 16 empty 400s retried, the 17th surfaces as what it is
        assert len(server.seen) == EMPTY_400_BUDGET + 1
        assert transport.statistics().empty_400_budget == 0

        server.script, server.seen = [status(400)], []
        with pytest.raises(BadRequestError):
            await transport.request("POST", "/x", json={})
        assert len(server.seen) == 1  # budget spent: no retry for the next request either

        server.script = [ok()]
        for _ in range(EMPTY_400_BUDGET + 5):
            await transport.request("GET", "/x")
        assert transport.statistics().empty_400_budget == EMPTY_400_BUDGET  # capped


# -- billing pause (§7.6) --------------------------------------------------------------------


async def test_billing_pause_then_success(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    server = Server([status(402, {"detail": "pay"}), status(402, {"detail": "pay"}), ok()])
    caplog.set_level(logging.WARNING, logger="tinker_actors.transport")
    async with opened(server) as transport:
        response = await transport.request("POST", "/x", json={})
    assert response.retries_taken == 0  # pauses are not retries
    assert server.gaps() == [5.0, 5.0]
    assert [s.headers["x-stainless-retry-count"] for s in server.seen] == ["0", "0", "0"]
    assert transport.statistics().billing_pauses == 2
    warnings = [r for r in caplog.records if "billing" in r.getMessage()]
    assert len(warnings) == 1  # at most one warning per 60 s


async def test_billing_pause_gives_up(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(402, {"detail": "pay"}, **{"x-request-id": "r402"})])
    async with opened(server, billing_max_pause=30) as transport:
        start = trio.current_time()
        with pytest.raises(BillingError) as info:
            await transport.request("POST", "/x", json={})
        assert trio.current_time() - start == pytest.approx(30.0)
        assert len(server.seen) == 7  # t = 0, 5, ..., 30
        assert info.value.request_id == "r402"

        server.seen = []
        transport.configure(billing_max_pause=0)
        with pytest.raises(BillingError):
            await transport.request("POST", "/x", json={})


async def test_billing_pause_off_per_request(autojump_clock: trio.testing.MockClock) -> None:
    server = Server([status(402, {"detail": "pay"})])
    async with opened(server) as transport:
        with pytest.raises(BillingError):
            await transport.request(
                "POST",
                "/api/v1/retrieve_future",
                json={},
                options=RequestOptions(billing_pause=False),
            )
    assert len(server.seen) == 1


async def test_configure_validation() -> None:
    async with opened(Server()) as transport:
        with pytest.raises(InvalidInputError, match="jwt_credential_source"):
            transport.configure(jwt_credential_source="magic")
        with pytest.raises(InvalidInputError, match="TINKER_CREDENTIAL_CMD"):
            transport.configure(jwt_credential_source="credential_cmd")
        with pytest.raises(InvalidInputError, match="billing_max_pause"):
            transport.configure(billing_max_pause=-1)


# -- logging ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [("error", logging.ERROR), ("warn", logging.WARNING), ("", logging.WARNING)],
)
async def test_deprecation_notes_logged(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    level: str,
    expected: int,
) -> None:
    server = Server([ok(**{"x-deprecation-note": "use v2", "x-deprecation-level": level})])
    caplog.set_level(logging.DEBUG, logger="tinker_actors.transport")
    async with opened(server) as transport:
        await transport.request("GET", "/x")
    notes = [r for r in caplog.records if "use v2" in r.getMessage()]
    assert [r.levelno for r in notes] == [expected]
    assert notes[0].name == "tinker_actors.transport"


async def test_key_never_leaks_into_logs_or_errors(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    echo = {"detail": f"key {KEY} is not allowed", "key": KEY}
    server = Server(
        [
            httpx.ConnectError(f"refused while sending {KEY}"),
            status(503),
            status(400),
            status(429, **{"retry-after": "1"}),
            ok(),
            status(403, echo),
            httpx.ReadTimeout("slow"),
        ]
    )
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    async with opened(
        server, env={"CLOUDFLARE_ACCESS_CLIENT_SECRET": "cf-TOP-SECRET"}
    ) as transport:
        await transport.request("POST", "/x", json={})
        for _ in range(2):
            try:
                await transport.request(
                    "POST", "/x", json={}, options=RequestOptions(max_retries=1)
                )
            except Exception as exc:  # collected for inspection below
                errors.append(exc)
        texts = [repr(transport), repr(transport.statistics())]
    assert [type(e) for e in errors] == [PermissionDeniedError, APITimeoutError]
    assert errors[0].body == echo  # the body is the server's, kept as sent
    for exc in errors:
        texts += [str(exc), repr(exc), str(exc.args), str(getattr(exc, "headers", ""))]
    texts.append(caplog.text)
    texts += [str(r.args) for r in caplog.records]
    assert any("x-api-key" in r.getMessage().lower() for r in caplog.records)  # headers were logged
    for text in texts:
        assert KEY not in text
        assert "cf-TOP-SECRET" not in text
    assert "<redacted>" in str(errors[0])
