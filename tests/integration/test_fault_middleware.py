"""The fault-injecting ASGI middleware in front of a tiny starlette app, driven by httpx under
trio: each fault's status, headers and body as a client sees them, exact virtual-time latency,
try_again polls with the body replayed intact, and seeded reproducibility over many requests."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tinker_actors.local._fault_middleware import FaultEngine, FaultInjector
from tinker_actors.local._faults import FaultPlan, FaultRule, Latency

BASE = "http://local.test"


class FakeServer:
    """A tiny Tinker-shaped app that records every request that reached it."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.bodies: list[bytes] = []
        self.app = Starlette(
            routes=[
                Route("/api/v1/asample", self.asample, methods=["POST"]),
                Route("/api/v1/retrieve_future", self.retrieve_future, methods=["POST"]),
                Route("/api/v1/healthz", self.healthz, methods=["GET"]),
                Route("/api/v1/training_runs/{rest:path}", self.training_run, methods=["GET"]),
            ]
        )

    async def asample(self, request: Request) -> JSONResponse:
        self.calls["asample"] += 1
        return JSONResponse({"request_id": "sample-1", "echo": await request.json()})

    async def retrieve_future(self, request: Request) -> JSONResponse:
        self.calls["retrieve_future"] += 1
        raw = await request.body()
        self.bodies.append(raw)
        return JSONResponse({"result": "done", "raw": raw.decode("latin-1")})

    async def healthz(self, request: Request) -> JSONResponse:
        self.calls["healthz"] += 1
        return JSONResponse({"status": "ok"})

    async def training_run(self, request: Request) -> JSONResponse:
        self.calls["training_runs"] += 1
        return JSONResponse({"path": request.path_params["rest"]})


def _client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


async def test_no_plan_passes_everything_through(server: FakeServer) -> None:
    injector = FaultInjector(server.app)
    with trio.fail_after(10):
        async with _client(injector) as client:
            response = await client.post("/api/v1/asample", json={"prompt": [1, 2]})
    assert response.status_code == 200
    assert response.json() == {"request_id": "sample-1", "echo": {"prompt": [1, 2]}}
    assert "x-injected-fault" not in response.headers
    assert server.calls == {"asample": 1}
    assert injector.statistics().as_dict() == {
        "requests": 1,
        "passed": 1,
        "replaced": 0,
        "delayed": 0,
        "injected": 0,
        "by_kind": {"pass": 1},
        "by_rule": {},
    }


@pytest.mark.parametrize(
    ("rule", "headers"),
    [
        (FaultRule(status=429, retry_after=2), {"retry-after": "2"}),
        (FaultRule(status=429, retry_after_ms=250.5), {"retry-after-ms": "250.5"}),
        (FaultRule(status=503, should_retry=False), {"x-should-retry": "false"}),
        (
            FaultRule(status=500, should_retry=True, retry_after=0.5),
            {"x-should-retry": "true", "retry-after": "0.5"},
        ),
        (FaultRule(status=408), {}),
        (FaultRule(status=409), {}),
        (FaultRule(status=402), {}),
        (FaultRule(status=410), {}),
        (FaultRule(status=502), {}),
    ],
    ids=lambda v: getattr(v, "status", None) or "",
)
async def test_status_faults_as_httpx_sees_them(
    server: FakeServer, rule: FaultRule, headers: dict[str, str]
) -> None:
    plan = FaultPlan(rules=(FaultRule(endpoint="healthz", status=404), rule))
    injector = FaultInjector(server.app, plan)
    with trio.fail_after(10):
        async with _client(injector) as client:
            response = await client.post("/api/v1/asample", json={"prompt": [1]})
    assert response.status_code == rule.status
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"detail": f"injected fault: {rule.status} by rule 1"}
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-injected-fault"] == "rule=1"
    for name, value in headers.items():
        assert response.headers[name] == value
    for name in {"retry-after", "retry-after-ms", "x-should-retry"} - set(headers):
        assert name not in response.headers
    assert server.calls == {}  # the app never saw it
    stats = injector.statistics()
    assert stats.by_kind == {str(rule.status): 1}
    assert stats.by_rule == {0: 0, 1: 1}
    assert stats.replaced == stats.requests == 1


async def test_custom_json_body_for_408_with_queue_state(server: FakeServer) -> None:
    body = {"queue_state": "paused_capacity", "queue_state_reason": "draining"}
    injector = FaultInjector(
        server.app,
        FaultPlan(rules=(FaultRule(endpoint="retrieve_future", status=408, body=body),)),
    )
    with trio.fail_after(10):
        async with _client(injector) as client:
            response = await client.post("/api/v1/retrieve_future", json={"request_id": "r"})
    assert response.status_code == 408
    assert response.json() == body


async def test_empty_body_400_has_content_length_zero(server: FakeServer) -> None:
    plan = FaultPlan.from_flags(["asample:400,empty"])
    injector = FaultInjector(server.app, plan)
    with trio.fail_after(10):
        async with _client(injector) as client:
            response = await client.post("/api/v1/asample", json={"prompt": [1]})
    assert response.status_code == 400
    assert response.headers["content-length"] == "0"
    assert response.content == b""
    assert "content-type" not in response.headers
    assert injector.statistics().by_kind == {"400_empty": 1}
    assert server.calls == {}


async def test_fixed_latency_advances_virtual_time_exactly(
    server: FakeServer, autojump_clock: trio.testing.MockClock
) -> None:
    injector = FaultInjector(server.app, FaultPlan.from_flags(["asample:latency=0.75"]))
    async with _client(injector) as client:
        for _ in range(3):
            start = trio.current_time()
            response = await client.post("/api/v1/asample", json={"prompt": [1]})
            assert response.status_code == 200
            assert trio.current_time() - start == pytest.approx(0.75, abs=1e-9)
        start = trio.current_time()
        assert (await client.get("/api/v1/healthz")).status_code == 200
        assert trio.current_time() - start == 0  # other endpoints are not delayed
    stats = injector.statistics()
    assert stats.delayed == 3
    assert stats.passed == 4
    assert server.calls == {"asample": 3, "healthz": 1}


async def test_distributed_latency_matches_the_seeded_plan(
    server: FakeServer, autojump_clock: trio.testing.MockClock
) -> None:
    plan = FaultPlan(
        seed=21,
        rules=(
            FaultRule(latency=Latency(uniform=(0.01, 0.05))),
            FaultRule(endpoint="asample", status=503, probability=0.3, latency=1.0),
        ),
    )
    twin = FaultEngine(plan)
    injector = FaultInjector(server.app, plan)
    async with _client(injector) as client:
        for _ in range(40):
            expected = twin.decide("POST", "/api/v1/asample")
            start = trio.current_time()
            response = await client.post("/api/v1/asample", json={})
            assert trio.current_time() - start == pytest.approx(expected.delay, abs=1e-9)
            assert response.status_code == (503 if expected.kind == "503" else 200)
    assert injector.statistics() == twin.statistics()
    assert 0 < injector.statistics().by_kind["503"] < 40


async def test_try_again_for_n_polls_then_the_original_body_reaches_the_app(
    server: FakeServer,
) -> None:
    plan = FaultPlan.from_flags(
        ["retrieve_future:try_again=3,queue_state=paused_capacity,queue_state_reason=full"]
    )
    injector = FaultInjector(server.app, plan)
    # exact bytes, with spacing a re-encoder would not reproduce
    sent = b'{"request_id": "req-7",  "allow_metadata_only": true}'
    with trio.fail_after(10):
        async with _client(injector) as client:
            answers = [await client.post("/api/v1/retrieve_future", content=sent) for _ in range(5)]
            other = await client.post("/api/v1/retrieve_future", json={"request_id": "req-8"})
    for answer in answers[:3]:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == {
            "type": "try_again",
            "request_id": "req-7",
            "queue_state": "paused_capacity",
            "queue_state_reason": "full",
        }
    for answer in answers[3:]:
        assert answer.json() == {"result": "done", "raw": sent.decode()}
    assert other.json()["type"] == "try_again"  # a new future is held in its turn
    assert server.bodies == [sent, sent]
    stats = injector.statistics()
    assert stats.by_kind == {"try_again": 4, "pass": 2}
    assert stats.by_rule == {0: 4}


async def test_a_body_read_in_chunks_is_replayed_whole(server: FakeServer) -> None:
    injector = FaultInjector(server.app, FaultPlan.from_flags(["retrieve_future:try_again=1"]))
    payload = json.dumps({"request_id": "big", "pad": "x" * 100_000}).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), 8192):
            yield payload[start : start + 8192]

    with trio.fail_after(10):
        async with _client(injector) as client:
            first = await client.post("/api/v1/retrieve_future", content=chunks())
            second = await client.post("/api/v1/retrieve_future", content=chunks())
    assert first.json()["type"] == "try_again"
    assert first.json()["request_id"] == "big"
    assert second.json()["result"] == "done"
    assert server.bodies == [payload]


async def test_try_again_passes_bodies_without_a_request_id(server: FakeServer) -> None:
    injector = FaultInjector(server.app, FaultPlan.from_flags(["retrieve_future:try_again=5"]))
    with trio.fail_after(10):
        async with _client(injector) as client:
            not_json = await client.post("/api/v1/retrieve_future", content=b"\x00\x01proto")
            no_id = await client.post("/api/v1/retrieve_future", json={"id": "x"})
    assert not_json.json() == {"result": "done", "raw": "\x00\x01proto"}
    assert no_id.json()["result"] == "done"
    assert server.bodies == [b"\x00\x01proto", b'{"id":"x"}']


async def test_endpoint_globs_and_methods(server: FakeServer) -> None:
    plan = FaultPlan.from_flags(
        ["training_runs/*:503,method=GET", "asample:429,method=GET", "/api/v1/healthz:500,count=1"]
    )
    injector = FaultInjector(server.app, plan)
    with trio.fail_after(10):
        async with _client(injector) as client:
            run = await client.get("/api/v1/training_runs/tinker:abc/checkpoints/weights/s1")
            sample = await client.post("/api/v1/asample", json={})  # rule is GET-only
            health = [(await client.get("/api/v1/healthz")).status_code for _ in range(2)]
    assert run.status_code == 503
    assert sample.status_code == 200
    assert health == [500, 200]
    assert injector.statistics().by_rule == {0: 1, 1: 0, 2: 1}


async def test_set_plan_at_run_time(server: FakeServer) -> None:
    injector = FaultInjector(server.app, FaultPlan.from_flags(["*:503"]))
    with trio.fail_after(10):
        async with _client(injector) as client:
            assert (await client.get("/api/v1/healthz")).status_code == 503
            old = injector.set_plan(FaultPlan.from_flags(["*:429"]))
            assert injector.plan.rules[0].status == 429
            assert (await client.get("/api/v1/healthz")).status_code == 429
            injector.reset_counters()
            injector.set_plan(FaultPlan())
            assert (await client.get("/api/v1/healthz")).status_code == 200
    assert old.by_kind == {"503": 1}
    assert injector.statistics().by_kind == {"pass": 1}


async def _statuses(plan: FaultPlan, n: int) -> tuple[list[int], FaultInjector, FakeServer]:
    server = FakeServer()
    injector = FaultInjector(server.app, plan)
    with trio.fail_after(60):
        async with _client(injector) as client:
            statuses = [
                (await client.post("/api/v1/asample", json={"i": i})).status_code for i in range(n)
            ]
    return statuses, injector, server


async def test_twenty_percent_storm_is_seeded_and_counted() -> None:
    plan = FaultPlan.from_flags(["seed=2024", "*:429|500|502|503|408@0.2,retry_after=1"])
    statuses, injector, server = await _statuses(plan, 500)
    injected = [s for s in statuses if s != 200]
    assert 60 <= len(injected) <= 140  # mean 100, sd ~9
    assert set(injected) <= {429, 500, 502, 503, 408}
    assert len(set(injected)) == 5
    stats = injector.statistics()
    assert stats.replaced == len(injected)
    assert stats.passed == server.calls["asample"] == 500 - len(injected)
    assert stats.by_kind == {"pass": 500 - len(injected)} | {
        str(code): count for code, count in Counter(injected).items()
    }
    again, _, _ = await _statuses(plan, 500)
    assert again == statuses
    other, _, _ = await _statuses(
        FaultPlan.from_flags(["seed=2025", "*:429|500|502|503|408@0.2"]), 500
    )
    assert other != statuses


async def test_non_http_scopes_pass_through_untouched() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        message = await receive()
        await send({"type": "echo", "got": message["type"]})

    injector = FaultInjector(app, FaultPlan.from_flags(["*:503"]))
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    await injector({"type": "lifespan"}, receive, send)
    await injector({"type": "websocket", "path": "/api/v1/asample"}, receive, send)
    assert seen == ["lifespan", "websocket"]
    assert sent == [{"type": "echo", "got": "lifespan.startup"}] * 2
    assert injector.statistics().requests == 0


async def test_client_gone_while_the_body_is_read_answers_nothing() -> None:
    called = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    injector = FaultInjector(app, FaultPlan.from_flags(["retrieve_future:try_again=1"]))
    messages = iter(
        [
            {"type": "http.request", "body": b'{"request', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive() -> Any:
        return next(messages)

    async def send(message: Any) -> None:
        raise AssertionError(f"nothing should be sent, got {message}")

    scope = {"type": "http", "method": "POST", "path": "/api/v1/retrieve_future"}
    await injector(scope, receive, send)
    assert not called
    assert injector.statistics().requests == 0


async def test_over_http_with_the_plans_connection_section(nursery: trio.Nursery) -> None:
    """One plan configures both layers: status faults in the app, resets in the TCP proxy."""
    from tinker_actors.local._fault_proxy import FaultProxy
    from tinker_actors.local._http_server import serve_asgi

    plan = FaultPlan.from_flags(
        ["seed=9", "asample:400,empty,count=1", "retrieve_future:try_again=1", "connection:reset=1"]
    )
    server = FakeServer()
    injector = FaultInjector(server.app, plan)
    with trio.fail_after(20):
        serving = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[list[str]]) -> None:
            with serving:
                await serve_asgi(injector, task_status=task_status)

        binds: list[str] = await nursery.start(run)
        url = binds[0]
        async with httpx.AsyncClient(base_url=url) as client:
            empty = await client.post("/api/v1/asample", json={})
            ok = await client.post("/api/v1/asample", json={})
            held = await client.post("/api/v1/retrieve_future", content=b'{"request_id": "q"}')
            done = await client.post("/api/v1/retrieve_future", content=b'{"request_id": "q"}')
        faults = plan.connection_faults()
        assert faults is not None
        assert faults.seed == 9
        proxy = FaultProxy(upstream_port=int(url.rsplit(":", 1)[1]), faults=faults)
        proxy_url = await nursery.start(proxy.serve)
        async with httpx.AsyncClient(base_url=proxy_url) as client:
            with pytest.raises(httpx.ReadError):
                await client.get("/api/v1/healthz")
        serving.cancel()
    assert (empty.status_code, empty.headers["content-length"], empty.content) == (400, "0", b"")
    assert ok.status_code == 200
    assert held.json() == {"type": "try_again", "request_id": "q", "queue_state": "active"}
    assert done.json() == {"result": "done", "raw": '{"request_id": "q"}'}
    assert proxy.statistics().reset == 1
    assert injector.statistics().by_kind == {"400_empty": 1, "try_again": 1, "pass": 2}
