"""TelemetryReporter against the local server (in-process) and failing mocks, in virtual time."""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trio

from tinker_actors.actors._telemetry import (
    FLUSH_INTERVAL,
    TelemetryReporter,
    scrub_text,
    telemetry_spec,
)
from tinker_actors.config import resolve_config
from tinker_actors.errors import BadRequestError, InternalServerError, RequestFailedError
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.supervisors import run_supervisor
from tinker_actors.transport import Transport, open_transport

KEY = "tml-telemetry-secret-key-123456"
BASE = "http://local"


@dataclass
class Recorder(httpx.AsyncBaseTransport):
    """Forwards to the local server's ASGI app and keeps every telemetry body."""

    inner: httpx.AsyncBaseTransport
    bodies: list[dict[str, Any]] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        if request.url.path == "/api/v1/telemetry":
            self.raw.append(content)
            self.bodies.append(json.loads(content))
        return await self.inner.handle_async_request(request)


@asynccontextmanager
async def open_reporter(
    **kwargs: Any,
) -> AsyncIterator[tuple[TelemetryReporter, LocalServer, Recorder, trio.Nursery]]:
    async with open_local_server() as server:
        recorder = Recorder(httpx.ASGITransport(app=server.app))
        config = resolve_config(base_url=BASE, api_key=KEY)
        async with open_transport(config, http_transport=recorder) as transport:
            reporter = TelemetryReporter.for_config(transport, config, **kwargs)
            async with trio.open_nursery() as nursery:
                await nursery.start(functools.partial(reporter.run))
                yield reporter, server, recorder, nursery
                reporter.request_stop()


def batches(server: LocalServer) -> int:
    totals: dict[str, int] = server.counters()["totals"]  # type: ignore[assignment]
    return totals.get("telemetry_batches", 0)


async def test_batches_of_100_every_ten_seconds(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_reporter() as (reporter, server, recorder, _):
            start = trio.current_time()
            for i in range(250):
                assert reporter.log("step", {"i": i})
            await trio.sleep(FLUSH_INTERVAL - 0.1)
            assert batches(server) == 0
            await trio.sleep(0.2)
            assert batches(server) == 3
            assert [len(b["events"]) for b in recorder.bodies] == [100, 100, 50]
            assert trio.current_time() - start < FLUSH_INTERVAL + 1
            # the next flush comes ten seconds later
            reporter.log("later")
            await trio.sleep(FLUSH_INTERVAL)
            assert batches(server) == 4
    stats = reporter.statistics()
    assert (stats.sent_batches, stats.sent_events, stats.failed_batches) == (4, 251, 0)
    body = recorder.bodies[0]
    assert body["session_id"].startswith("sessionless-")
    assert body["sdk_version"]
    assert body["platform"]
    assert body["process_uuid"] == recorder.bodies[1]["process_uuid"]
    first = body["events"][0]
    assert (first["event"], first["event_name"], first["event_data"]) == (
        "GENERIC_EVENT",
        "step",
        {"i": 0},
    )
    assert [e["event_session_index"] for e in body["events"][:3]] == [0, 1, 2]


async def test_an_exception_flushes_at_once(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_reporter(session_id="sess-1") as (reporter, server, recorder, _):
            await trio.sleep(1)
            assert batches(server) == 0
            try:
                raise InternalServerError("boom", status_code=500)
            except InternalServerError as exc:
                reporter.log_exception(exc)
            await trio.sleep(0.01)
            assert batches(server) == 1
    events = recorder.bodies[0]["events"]
    assert [e["event"] for e in events] == ["SESSION_START", "UNHANDLED_EXCEPTION"]
    assert recorder.bodies[0]["session_id"] == "sess-1"
    crash = events[1]
    assert (crash["error_type"], crash["error_message"], crash["severity"]) == (
        "InternalServerError",
        "boom",
        "ERROR",
    )
    assert "Traceback" in crash["traceback"]


async def test_user_errors_and_fatal_exceptions(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_reporter(session_id="sess-2") as (reporter, _, recorder, _):
            await trio.sleep(2.5)
            bad = BadRequestError("Error code: 400", status_code=400, body={"echo": "prompt"})
            reporter.log_exception(bad)
            try:
                try:
                    raise RequestFailedError("no", request_id="r1", category="user")
                except RequestFailedError as inner:
                    raise RuntimeError("wrapped") from inner
            except RuntimeError as outer:
                reporter.log_exception(outer)
            timeout = InternalServerError("slow", status_code=408)
            reporter.log_exception(timeout)
            reporter.log_fatal_exception(ValueError("fatal"))
            await trio.sleep(0.01)
    events = [e for body in recorder.bodies for e in body["events"]]
    kinds = [(e["event"], e.get("event_name"), e["severity"]) for e in events]
    assert kinds == [
        ("SESSION_START", None, "INFO"),
        ("GENERIC_EVENT", "user_error", "WARNING"),
        ("GENERIC_EVENT", "user_error", "WARNING"),
        ("UNHANDLED_EXCEPTION", None, "ERROR"),
        ("UNHANDLED_EXCEPTION", None, "ERROR"),
        ("SESSION_END", None, "INFO"),
    ]
    assert events[1]["event_data"] == {
        "error_type": "BadRequestError",
        "message": "Error code: 400",
        "status_code": 400,
    }
    assert "prompt" not in json.dumps(events)  # the error body may echo the request: never sent
    assert events[2]["event_data"]["error_type"] == "RuntimeError"
    assert events[5]["duration"].startswith("0:00:02.")
    assert [e["event_session_index"] for e in events] == list(range(6))


async def test_secrets_and_payloads_never_leave(autojump_clock: trio.abc.Clock) -> None:
    jwt = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2ln"
    with trio.fail_after(120):
        async with open_reporter() as (reporter, _, recorder, _):
            reporter.log(
                "request",
                {
                    "api_key": "anything",
                    "headers": {"Authorization": "Bearer abc.def"},
                    "note": f"used {KEY} and {jwt}",
                    "body": b"\x00" * 4096,
                    "obj": object(),
                    "nested": [[[[["deep"]]]]],
                },
            )
            try:
                secret = KEY
                raise RuntimeError(f"failed with key {secret}")
            except RuntimeError as exc:
                reporter.log_exception(exc)
            await trio.sleep(0.01)
    dumped = b"".join(recorder.raw)
    assert KEY.encode() not in dumped
    assert b"tml-" not in dumped.replace(b"tml-telemetry", b"")  # nothing key-shaped
    assert jwt.encode() not in dumped
    assert b"\\u0000" not in dumped
    data = recorder.bodies[0]["events"][0]["event_data"]
    assert data["api_key"] == "[REDACTED]"
    assert data["headers"] == {"Authorization": "[REDACTED]"}
    assert data["note"] == "used [REDACTED] and [REDACTED]"
    assert data["body"] == "<4096 bytes>"
    assert data["obj"] == "<object>"
    assert "deep" not in json.dumps(data["nested"])
    crash = recorder.bodies[0]["events"][1]
    assert KEY not in crash["error_message"]
    assert KEY not in crash["traceback"]
    assert "[REDACTED]" in crash["traceback"]


def test_scrub_text_covers_the_shapes() -> None:
    assert scrub_text("k=tml-abcdef123 x", ()) == "k=[REDACTED] x"
    assert scrub_text("Authorization: Bearer a.b.c", ()) == "Authorization: [REDACTED]"
    assert scrub_text("plain-secret!", ["plain-secret"]) == "[REDACTED]!"


async def test_a_full_queue_drops_and_counts_without_blocking(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with open_reporter() as (reporter, server, _, _):
            start = trio.current_time()
            results = [reporter.log("e") for _ in range(10_005)]
            assert trio.current_time() == start  # synchronous: no checkpoint, no waiting
            assert results.count(False) == 5
            stats = reporter.statistics()
            assert (stats.queued, stats.dropped_full) == (10_000, 5)
            await trio.sleep(FLUSH_INTERVAL + 1)
            assert batches(server) == 100
    assert reporter.statistics().sent_events == 10_000


async def test_off_switch_sends_nothing(
    autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    with trio.fail_after(120):
        async with open_local_server() as server:
            config = resolve_config(base_url=BASE, api_key=KEY)
            assert not config.telemetry
            asgi = httpx.ASGITransport(app=server.app)
            async with open_transport(config, http_transport=asgi) as transport:
                reporter = TelemetryReporter.for_config(transport, config, session_id="s")
                async with trio.open_nursery() as nursery:
                    await nursery.start(reporter.run)
                    assert not reporter.log("x")
                    assert not reporter.log_exception(RuntimeError("y"))
                    await trio.sleep(3 * FLUSH_INTERVAL)
                    reporter.request_stop()
            assert batches(server) == 0
    assert reporter.statistics().accepted == 0


# -- failures -------------------------------------------------------------------------------------


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@asynccontextmanager
async def mock_transport(handler: Handler) -> AsyncIterator[Transport]:
    config = resolve_config(base_url=BASE, api_key=KEY)
    async with open_transport(config, http_transport=httpx.MockTransport(handler)) as transport:
        yield transport


async def test_a_failed_batch_is_dropped_and_counted(autojump_clock: trio.abc.Clock) -> None:
    calls: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(len(json.loads(request.content)["events"]))
        if len(calls) == 1:
            return httpx.Response(400, json={"detail": "bad batch"})  # not retryable
        return httpx.Response(200, json={"status": "accepted"})

    with trio.fail_after(120):
        async with mock_transport(handler) as transport, trio.open_nursery() as nursery:
            reporter = TelemetryReporter(transport)
            await nursery.start(reporter.run)
            for _ in range(150):
                reporter.log("e")
            await trio.sleep(FLUSH_INTERVAL + 1)
            reporter.log("after")
            await trio.sleep(FLUSH_INTERVAL)
            reporter.request_stop()
    assert calls == [100, 50, 1]  # the failed batch was not resent
    stats = reporter.statistics()
    assert (stats.failed_batches, stats.failed_events, stats.sent_events) == (1, 100, 51)


async def test_drain_on_stop_is_bounded(autojump_clock: trio.abc.Clock) -> None:
    async def hang(request: httpx.Request) -> httpx.Response:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    with trio.fail_after(120):
        async with mock_transport(hang) as transport:
            reporter = TelemetryReporter(transport, drain_timeout=3.0)
            async with trio.open_nursery() as nursery:
                await nursery.start(reporter.run)
                for _ in range(120):
                    reporter.log("e")
                start = trio.current_time()
                reporter.request_stop()
            assert trio.current_time() - start == pytest.approx(3.0)
    stats = reporter.statistics()
    assert stats.queued == 0
    assert stats.sent_events == 0
    assert stats.failed_events == 120  # the batch in flight and the one never sent


async def test_a_supervised_reporter_drains_when_its_supervisor_stops(
    autojump_clock: trio.abc.Clock,
) -> None:
    with trio.fail_after(120):
        async with open_local_server() as server:
            config = resolve_config(base_url=BASE, api_key=KEY)
            asgi = httpx.ASGITransport(app=server.app)
            async with open_transport(config, http_transport=asgi) as transport:
                reporter = TelemetryReporter.for_config(transport, config)
                async with trio.open_nursery() as nursery:
                    supervisor = await nursery.start(functools.partial(run_supervisor, name="sup"))
                    started = await supervisor.start_child(telemetry_spec(reporter))
                    assert started is reporter
                    reporter.log("before-stop")
                    await trio.sleep(1)
                    assert batches(server) == 0
                    supervisor.request_stop()
            assert batches(server) == 1
    assert reporter.statistics().sent_events == 1
