"""Direct dispatch (transport/_dispatch.py): same requests as httpx's client, redirects, cookies.

The h11 backend and injected in-process transports are sent to without
``httpx.AsyncClient.send``; these tests pin down that nothing a server can see changes, and that
the two client features kept (redirects, cookies) behave as httpx's do, except that credentials
never follow a redirect to another origin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import trio
from test_transport_support import BASE, KEY, Server, ok, opened

from tinker_actors.errors import APIConnectionError
from tinker_actors.transport import RequestOptions, Transport
from tinker_actors.transport._dispatch import MAX_REDIRECTS

pytestmark = pytest.mark.usefixtures("autojump_clock")

PREFIX = httpx.URL(BASE).path.rstrip("/")
#: Headers whose values differ per request by design.
PER_REQUEST = ("x-idempotency-key",)


@asynccontextmanager
async def via(path: str, handler: Any, **overrides: Any) -> AsyncIterator[Transport]:
    """Open a transport over ``handler`` sending directly, or through httpx's client."""
    async with opened(handler, **overrides) as transport:
        if path == "client":
            transport._direct = None  # the httpx backend's path: client.send, hop by hop
        yield transport


PATHS = pytest.mark.parametrize("path", ["direct", "client"])


def _comparable(headers: httpx.Headers) -> list[tuple[str, str]]:
    return [(k, v) for k, v in headers.multi_items() if k not in PER_REQUEST]


async def test_direct_requests_equal_those_httpx_client_builds() -> None:
    """The same call through the direct path and through ``AsyncClient.send`` looks the same."""
    seen: dict[str, Server] = {}
    for path in ("direct", "client"):
        server = seen[path] = Server([ok({"ok": True})])
        async with opened(server, cf_access_client_id="cf-id") as transport:
            if path == "client":
                transport._direct = None  # the httpx backend's path
            assert (transport._direct is None) == (path == "client")
            await transport.request(
                "POST",
                "/api/v1/create_session",
                json={"tags": ["a"]},
                params={"q": [1, 2], "skip": None},
                options=RequestOptions(extra_headers={"X-Extra": "1"}, timeout=12.5),
                sdk_method="ServiceClient.create",
            )
    direct, client = seen["direct"].seen[0], seen["client"].seen[0]
    assert (direct.method, direct.url, direct.content) == (
        client.method,
        client.url,
        client.content,
    )
    assert _comparable(direct.headers) == _comparable(client.headers)
    # httpx's client defaults are there too, under ours
    assert direct.headers["accept-encoding"] == httpx.AsyncClient().headers["accept-encoding"]
    assert direct.headers["connection"] == "keep-alive"
    assert direct.extensions["timeout"] == client.extensions["timeout"]
    assert direct.extensions["timeout"] == {
        "connect": 5.0,
        "read": 12.5,
        "write": 12.5,
        "pool": 12.5,
    }
    assert str(direct.url) == f"{BASE}/api/v1/create_session?q=1%2C2"


def _redirecting(status: int, location: str, final: dict[str, object] | None = None) -> Server:
    return Server([_step(status, location), ok(final or {"ok": True})])


def _step(status: int, location: str) -> httpx.Response:
    return httpx.Response(status, headers={"location": location}, content=b"moved")


@PATHS
@pytest.mark.parametrize("status", [307, 308])
async def test_307_and_308_resend_the_same_post_with_its_credential(path: str, status: int) -> None:
    server = Server([_step(status, "/api/v1/other"), ok({"ok": True})])
    async with via(path, server) as transport:
        response = await transport.request("POST", "/api/v1/first", json={"n": 1})
    first, second = server.seen
    assert (second.method, second.url.path, second.content) == ("POST", "/api/v1/other", b'{"n":1}')
    assert second.headers["x-api-key"] == KEY
    assert second.headers["content-type"] == "application/json"
    assert second.headers["x-idempotency-key"] == first.headers["x-idempotency-key"]
    assert response.url == f"{httpx.URL(BASE).copy_with(path='/api/v1/other')}"


@pytest.mark.parametrize(
    ("status", "method"), [(303, "POST"), (303, "PUT"), (302, "POST"), (301, "POST")]
)
@PATHS
async def test_see_other_and_post_redirects_become_a_bodyless_get(
    path: str, status: int, method: str
) -> None:
    server = Server([_step(status, "/api/v1/result"), ok({"ok": True})])
    async with via(path, server) as transport:
        await transport.request(method, "/api/v1/first", json={"n": 1})
    second = server.seen[1]
    assert (second.method, second.content) == ("GET", b"")
    for name in ("content-length", "content-type", "transfer-encoding"):
        assert name not in second.headers


@PATHS
async def test_a_redirect_to_another_origin_carries_no_credential(path: str) -> None:
    server = Server([_step(302, "https://storage.test/signed?sig=abc"), ok({"where": "storage"})])
    async with via(
        path, server, cf_access_client_id="cf-id", cf_access_client_secret="cf-secret"
    ) as t:
        response = await t.request(
            "GET",
            "/api/v1/audit",
            options=RequestOptions(extra_headers={"Authorization": "Bearer tok"}),
        )
    first, second = server.seen
    assert first.headers["x-api-key"] == KEY
    assert first.headers["cf-access-client-secret"] == "cf-secret"
    assert str(second.url) == "https://storage.test/signed?sig=abc"
    assert second.headers["host"] == "storage.test"
    for name in ("x-api-key", "authorization", "cf-access-client-id", "cf-access-client-secret"):
        assert name not in second.headers, name
    assert response.json() == {"where": "storage"}


@PATHS
async def test_a_redirect_within_the_origin_keeps_the_credential(path: str) -> None:
    server = _redirecting(302, f"{BASE}/api/v1/elsewhere")
    async with via(path, server) as transport:
        await transport.request("GET", "/api/v1/audit")
    assert server.seen[1].headers["x-api-key"] == KEY


@PATHS
async def test_a_redirect_loop_ends_in_a_typed_error_without_retries(path: str) -> None:
    server = Server([_step(302, "/api/v1/loop")])
    async with via(path, server) as transport:
        with pytest.raises(APIConnectionError, match="redirects in a loop") as caught:
            await transport.request("GET", "/api/v1/loop")
    assert len(server.seen) == MAX_REDIRECTS + 1
    assert KEY not in str(caught.value)


@PATHS
async def test_a_redirect_without_location_is_the_answer(path: str) -> None:
    server = Server([httpx.Response(304)])
    async with via(path, server) as transport:
        response = await transport.request("GET", "/api/v1/cached")
    assert response.status == 304
    assert len(server.seen) == 1


@PATHS
async def test_cookies_a_server_sets_go_out_with_later_requests_and_redirects(path: str) -> None:
    server = Server(
        [
            httpx.Response(200, headers={"set-cookie": "lb=node-7; Path=/"}, json={}),
            _step(302, "/api/v1/next"),
            ok({}),
        ]
    )
    async with via(path, server) as transport:
        await transport.request("GET", "/api/v1/one")
        await transport.request("GET", "/api/v1/two")
    first, second, third = server.seen
    assert "cookie" not in first.headers
    assert second.headers["cookie"] == "lb=node-7"
    assert third.headers["cookie"] == "lb=node-7"  # from the jar, on the redirect hop


class _Chunks(httpx.AsyncByteStream):
    """A body that counts how far it has been read."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.sent += 1
            yield chunk


@PATHS
async def test_streamed_responses_arrive_unread_and_follow_redirects(path: str) -> None:
    body = _Chunks([b"a" * 10, b"b" * 10])

    async def blob(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=body)

    server = Server([_step(307, "/api/v1/blob"), blob])
    async with via(path, server) as transport, transport.stream("GET", "/api/v1/start") as response:
        assert body.sent == 0  # handed over unread
        got = [chunk async for chunk in response.aiter_bytes()]
    assert b"".join(got) == b"a" * 10 + b"b" * 10
    assert [s.url.path for s in server.seen] == [f"{PREFIX}/api/v1/start", "/api/v1/blob"]


async def test_cancelling_a_direct_request_leaves_the_transport_usable() -> None:
    gate = trio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/slow"):
            await gate.wait()
        return ok({"path": request.url.path})

    async with opened(handler) as transport:
        with trio.move_on_after(1.0) as scope:
            await transport.request("GET", "/api/v1/slow")
        assert scope.cancelled_caught
        response = await transport.request("GET", "/api/v1/fast")
    assert response.json() == {"path": f"{PREFIX}/api/v1/fast"}
