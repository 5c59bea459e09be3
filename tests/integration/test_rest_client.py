"""RestClient / AdminClient against the local server in-process, and against a recording mock.

Runs and checkpoints are made with raw protocol calls (as examples/train_and_sample_local.py
does); then every RestClient method the local server implements is exercised and its answer
checked against what was made. The calls the local server lacks (copy, project moves, trace
export, search, admin) go to an ``httpx.MockTransport`` that checks method, path, query and body.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, TypeVar

import httpx
import msgspec
import pytest
import trio

import tinker_actors as ta
from tinker_actors.clients._rest import (
    AdminClient,
    RestClient,
    TraceExportError,
    WhoamiUnavailableError,
)
from tinker_actors.config import resolve_config
from tinker_actors.errors import ConflictError, InvalidInputError, NotFoundError
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.transport import RequestOptions, Transport, open_transport
from tinker_actors.types import (
    CreateModelRequest,
    CreateModelResponse,
    CreateSamplingSessionRequest,
    CreateSamplingSessionResponse,
    CreateSessionRequest,
    CreateSessionResponse,
    FutureRetrieveRequest,
    LoraConfig,
    OwnSearchOwner,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsForSamplerResponseInternal,
    SaveWeightsRequest,
    SaveWeightsResponse,
    SessionSearchRequest,
    TryAgainResponse,
    UntypedAPIFuture,
    decode_future_answer,
)

KEY = "tml-rest-client-test"
BASE = "http://local"
T = TypeVar("T")


# -- fixtures: a server with one run and three checkpoints -----------------------------------------


@dataclass
class World:
    server: LocalServer
    transport: Transport
    rest: RestClient
    session_id: str
    run_id: str
    sampler_id: str
    training_path: str
    sampler_path: str
    external_path: str


async def _wait(transport: Transport, future: UntypedAPIFuture, kind: type[T]) -> T:
    while True:
        response = await transport.request(
            "POST",
            "/api/v1/retrieve_future",
            json=FutureRetrieveRequest(request_id=future.request_id),
            options=RequestOptions(max_retries=0),
        )
        answer = decode_future_answer(response.content, kind)
        if not isinstance(answer, TryAgainResponse):
            assert isinstance(answer, kind), answer
            return answer


async def _post(transport: Transport, path: str, body: msgspec.Struct) -> UntypedAPIFuture:
    return (await transport.request("POST", path, json=body)).decode(UntypedAPIFuture)


@asynccontextmanager
async def open_world(**settings: Any) -> AsyncIterator[World]:
    async with open_local_server(**settings) as server:
        config = resolve_config(base_url=BASE, api_key=KEY)
        asgi = httpx.ASGITransport(app=server.app)
        async with open_transport(config, http_transport=asgi) as transport:
            if settings.get("jwt_auth"):
                transport.configure(jwt_auth=True)
            v1 = "/api/v1"
            session = (
                await transport.request(
                    "POST", v1 + "/create_session", json=CreateSessionRequest(sdk_version="0.38.0")
                )
            ).decode(CreateSessionResponse)
            sid = session.session_id
            created = await _post(
                transport,
                v1 + "/create_model",
                CreateModelRequest(
                    session_id=sid,
                    model_seq_id=0,
                    base_model="local/tiny",
                    lora_config=LoraConfig(rank=8),
                ),
            )
            run_id = (await _wait(transport, created, CreateModelResponse)).model_id
            saved = await _post(
                transport,
                v1 + "/save_weights",
                SaveWeightsRequest(model_id=run_id, path="step-1", seq_id=1),
            )
            training_path = (await _wait(transport, saved, SaveWeightsResponse)).path
            for_sampler = await _post(
                transport,
                v1 + "/save_weights_for_sampler",
                SaveWeightsForSamplerRequest(model_id=run_id, path="sampler-1", seq_id=2),
            )
            sampler_path = (
                await _wait(transport, for_sampler, SaveWeightsForSamplerResponseInternal)
            ).path
            assert isinstance(sampler_path, str)
            external = await _post(
                transport,
                v1 + "/save_weights_external",
                SaveWeightsExternalRequest(model_id=run_id, path="export-1", seq_id=3),
            )
            external_answer = await _wait(transport, external, dict)
            external_path = external_answer["path"]
            sampler = (
                await transport.request(
                    "POST",
                    v1 + "/create_sampling_session",
                    json=CreateSamplingSessionRequest(
                        session_id=sid, sampling_session_seq_id=0, model_path=sampler_path
                    ),
                )
            ).decode(CreateSamplingSessionResponse)
            yield World(
                server=server,
                transport=transport,
                rest=RestClient(transport, project_id="proj-default"),
                session_id=sid,
                run_id=run_id,
                sampler_id=sampler.sampling_session_id,
                training_path=training_path,
                sampler_path=sampler_path,
                external_path=external_path,
            )


# -- against the local server -----------------------------------------------------------------------


async def test_reads_against_the_local_server(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_world() as w:
            rest = w.rest
            caps = await rest.get_server_capabilities()
            assert "local/tiny" in [m.model_name for m in caps.supported_models]

            run = await rest.get_training_run(w.run_id)
            assert run.training_run_id == w.run_id
            assert run.base_model == "local/tiny"
            assert run.lora_rank == 8
            assert await rest.get_training_run_by_tinker_path(w.training_path) == run
            assert (await rest.get_training_run(w.run_id, "accessible")).training_run_id == w.run_id

            info = await rest.get_weights_info_by_tinker_path(w.training_path)
            assert (info.base_model, info.is_lora, info.lora_rank) == ("local/tiny", True, 8)

            runs = await rest.list_training_runs()
            assert [r.training_run_id for r in runs.training_runs] == [w.run_id]
            assert runs.cursor.total_count == 1
            assert (await rest.list_training_runs(limit=0)).training_runs == []
            assert (await rest.list_training_runs(offset=1)).training_runs == []

            ckpts = await rest.list_checkpoints(w.run_id)
            by_path = {c.tinker_path: c for c in ckpts.checkpoints}
            assert set(by_path) == {w.training_path, w.sampler_path, w.external_path}
            assert by_path[w.training_path].checkpoint_type == "training"
            assert by_path[w.sampler_path].checkpoint_id == "sampler_weights/sampler-1"
            mine = await rest.list_user_checkpoints()
            assert {c.tinker_path for c in mine.checkpoints} == set(by_path)
            assert len((await rest.list_user_checkpoints(limit=1)).checkpoints) == 1

            urls = await rest.get_external_weights_urls(w.external_path)
            assert urls.urls

            session = await rest.get_session(w.session_id)
            assert session.training_run_ids == [w.run_id]
            assert session.sampler_ids == [w.sampler_id]
            assert w.session_id in (await rest.list_sessions()).sessions

            sampler = await rest.get_sampler(w.sampler_id)
            assert (sampler.base_model, sampler.model_path) == ("local/tiny", w.sampler_path)

            with pytest.raises(NotFoundError):
                await rest.get_training_run("no-such-run")


async def test_checkpoint_changes_against_the_local_server(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_world() as w:
            rest = w.rest

            async def checkpoint(path: str) -> Any:
                listed = (await rest.list_checkpoints(w.run_id)).checkpoints
                return next(c for c in listed if c.tinker_path == path)

            await rest.publish_checkpoint_from_tinker_path(w.training_path)
            assert (await checkpoint(w.training_path)).public
            with pytest.raises(ConflictError):
                await rest.publish_checkpoint_from_tinker_path(w.training_path)
            await rest.unpublish_checkpoint_from_tinker_path(w.training_path)
            assert not (await checkpoint(w.training_path)).public

            await rest.set_checkpoint_ttl_from_tinker_path(w.training_path, 7200)
            assert (await checkpoint(w.training_path)).expires_at is not None
            await rest.set_checkpoint_ttl_from_tinker_path(w.training_path, None)
            assert (await checkpoint(w.training_path)).expires_at is None

            await rest.delete_checkpoint(w.run_id, "sampler_weights/sampler-1")
            await rest.delete_checkpoint_from_tinker_path(w.external_path)
            left = {c.tinker_path for c in (await rest.list_checkpoints(w.run_id)).checkpoints}
            assert left == {w.training_path}
            with pytest.raises(NotFoundError):
                await rest.delete_checkpoint_from_tinker_path(w.external_path)


async def test_whoami_reads_the_exchanged_jwt(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_world(jwt_auth=True) as w:
            me = await w.rest.whoami()
    assert me.user_urn == "tml:user:local"
    assert me.org_urn == "tml:organization:local"
    assert me.email is None  # the server's empty email claim means "not a user"


async def test_whoami_with_a_plain_key_explains(autojump_clock: trio.abc.Clock) -> None:
    with trio.fail_after(120):
        async with open_world() as w:
            with pytest.raises(WhoamiUnavailableError, match="plain API key"):
                await w.rest.whoami()


# -- against a recording mock -----------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: httpx.Headers


Handler = Callable[[httpx.Request], httpx.Response]


@asynccontextmanager
async def mock_rest(
    answers: dict[tuple[str, str], Any], *, api_key: str = KEY
) -> AsyncIterator[tuple[RestClient, AdminClient, list[Seen]]]:
    seen: list[Seen] = []

    def handle(request: httpx.Request) -> httpx.Response:
        raw_path = request.url.raw_path.decode().split("?")[0]
        body = json.loads(request.content) if request.content else None
        seen.append(Seen(request.method, raw_path, dict(request.url.params), body, request.headers))
        answer = answers.get((request.method, raw_path))
        if answer is None:
            return httpx.Response(404, json={"detail": f"no mock for {raw_path}"})
        if callable(answer):
            answer = answer()
        return httpx.Response(200, json=answer)

    config = resolve_config(base_url=BASE, api_key=api_key)
    async with open_transport(config, http_transport=httpx.MockTransport(handle)) as transport:
        yield RestClient(transport), AdminClient(transport), seen


NOW = "2026-07-13T10:00:00Z"
CKPT = {
    "checkpoint_id": "weights/step-10",
    "checkpoint_type": "training",
    "time": NOW,
    "tinker_path": "tinker://s:train:0/weights/step-10",
}


async def test_paths_are_interpolated_unescaped() -> None:
    run = "sess-1:train:0"
    answers: dict[tuple[str, str], Any] = {
        ("DELETE", f"/api/v1/training_runs/{run}/checkpoints/weights/step-10"): {},
        ("POST", f"/api/v1/training_runs/{run}/checkpoints/weights/step-10/publish"): {},
        ("DELETE", f"/api/v1/training_runs/{run}/checkpoints/sampler_weights/s/publish"): {},
        ("PUT", f"/api/v1/training_runs/{run}/checkpoints/weights/step-10/ttl"): {},
        (
            "GET",
            f"/api/v1/training_runs/{run}/checkpoints/external_weights/final/external_weights_urls",
        ): {
            "urls": {"model.safetensors": "https://signed"},
            "expires": NOW,
        },
    }
    async with mock_rest(answers) as (rest, _, seen):
        await rest.delete_checkpoint(run, "weights/step-10")
        await rest.publish_checkpoint_from_tinker_path(f"tinker://{run}/weights/step-10")
        await rest.unpublish_checkpoint_from_tinker_path(f"tinker://{run}/sampler_weights/s")
        await rest.set_checkpoint_ttl_from_tinker_path(f"tinker://{run}/weights/step-10", None)
        urls = await rest.get_external_weights_urls(f"tinker://{run}/external_weights/final")
    assert urls.urls == {"model.safetensors": "https://signed"}
    assert [(s.method, s.path) for s in seen] == list(answers)
    assert seen[3].body == {"ttl_seconds": None}
    assert seen[0].headers["x-sdk-method"] == "RestClient.delete_checkpoint"
    assert seen[4].headers["x-sdk-method"] == "RestClient.get_external_weights_urls"


async def test_query_parameters_and_bodies() -> None:
    answers: dict[tuple[str, str], Any] = {
        ("GET", "/api/v1/training_runs"): {
            "training_runs": [],
            "cursor": {"offset": 40, "limit": 20, "total_count": 0},
        },
        ("GET", "/api/v1/checkpoints"): {"checkpoints": [CKPT]},
        ("GET", "/api/v1/sessions"): {"sessions": ["a", "b"]},
        ("GET", "/api/v1/sessions/sess-9"): {"training_run_ids": [], "sampler_ids": []},
        ("POST", "/api/v1/weights_info"): {"base_model": "m", "is_lora": True, "lora_rank": 4},
        ("PUT", "/api/v1/sessions/sess-9/project"): {},
        ("POST", "/api/v1/sessions/search"): {"sessions": []},
    }
    async with mock_rest(answers) as (rest, _, seen):
        await rest.list_training_runs(
            limit=20, offset=40, access_scope="accessible", project_id="p1"
        )
        await rest.list_training_runs()
        user = await rest.list_user_checkpoints(limit=5, offset=10)
        assert user.checkpoints[0].checkpoint_id == "weights/step-10"
        assert (await rest.list_sessions(limit=2)).sessions == ["a", "b"]
        await rest.get_session("sess-9", access_scope="accessible")
        info = await rest.get_weights_info_by_tinker_path("tinker://r:train:0/weights/w")
        assert info.lora_rank == 4
        await rest.assign_session_project("sess-9", "proj-2")
        await rest.search_sessions(SessionSearchRequest(display_name="x", owner=OwnSearchOwner()))
    queries = [(s.method, s.path, s.query) for s in seen]
    assert queries[:5] == [
        (
            "GET",
            "/api/v1/training_runs",
            {"limit": "20", "offset": "40", "access_scope": "accessible", "project_id": "p1"},
        ),
        ("GET", "/api/v1/training_runs", {"limit": "20", "offset": "0", "access_scope": "owned"}),
        ("GET", "/api/v1/checkpoints", {"limit": "5", "offset": "10"}),
        ("GET", "/api/v1/sessions", {"limit": "2", "offset": "0", "access_scope": "owned"}),
        ("GET", "/api/v1/sessions/sess-9", {"access_scope": "accessible"}),
    ]
    assert seen[5].body == {"tinker_path": "tinker://r:train:0/weights/w"}
    assert seen[6].body == {"project_id": "proj-2"}
    assert seen[7].body["display_name"] == "x"
    assert seen[7].body["owner"] == msgspec.to_builtins(OwnSearchOwner())


async def test_copy_weights_reuses_one_idempotency_key_and_sends_the_token(
    autojump_clock: trio.abc.Clock,
) -> None:
    # the first attempt gets a 503: the transport retries it as the same logical request
    seen_keys: list[str] = []
    bodies: list[Any] = []
    tokens: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen_keys.append(request.headers["x-idempotency-key"])
        bodies.append(json.loads(request.content))
        tokens.append(request.headers.get("x-tinker-weights-access-token"))
        if len(seen_keys) == 1:
            return httpx.Response(503, json={"detail": "busy"}, headers={"retry-after": "1"})
        return httpx.Response(200, json={"tinker_path": "tinker://copy:train:0/weights/step-10"})

    config = resolve_config(base_url=BASE, api_key=KEY)
    async with open_transport(config, http_transport=httpx.MockTransport(handle)) as transport:
        rest = RestClient(transport, project_id="proj-default")
        with trio.fail_after(30):
            copied = await rest.copy_weights(
                "tinker://s:train:0/weights/step-10", ttl_seconds=7200, weights_access_token="tok"
            )
        with pytest.raises(InvalidInputError, match="TINKER_PROJECT_ID"):
            await RestClient(transport).copy_weights("tinker://s:train:0/weights/step-10")
        explicit = await RestClient(transport).copy_weights(
            "tinker://s:train:0/weights/step-10", "proj-x"
        )
    assert copied == explicit == "tinker://copy:train:0/weights/step-10"
    assert seen_keys[0] == seen_keys[1]  # one logical request: the same key on the retry
    assert seen_keys[2] != seen_keys[0]
    assert bodies[0] == {
        "destination_project_id": "proj-default",
        "source_path": "tinker://s:train:0/weights/step-10",
        "ttl_seconds": 7200,
    }
    assert bodies[2]["destination_project_id"] == "proj-x"
    assert tokens == ["tok", "tok", None]


async def test_export_session_trace_polls_until_ready(autojump_clock: trio.abc.Clock) -> None:
    states = iter(
        [{"status": "pending"}, {"status": "pending"}, {"status": "ready", "url": "https://t"}]
    )
    answers: dict[tuple[str, str], Any] = {
        ("GET", "/api/v1/sessions/s1/trace_export"): lambda: next(states),
        ("GET", "/api/v1/sessions/s2/trace_export"): {"status": "failed", "error": "too big"},
    }
    async with mock_rest(answers) as (rest, _, seen):
        start = trio.current_time()
        with trio.fail_after(60):
            assert await rest.export_session_trace("s1") == "https://t"
        assert trio.current_time() - start == pytest.approx(10.0)
        assert len(seen) == 3
        with pytest.raises(TraceExportError, match="too big"):
            await rest.export_session_trace("s2")


async def test_admin_calls() -> None:
    answers: dict[tuple[str, str], Any] = {
        ("GET", "/api/v1/audit"): {"entries": [{"timestamp": NOW, "event": "checkpoint_read"}]},
        ("GET", "/api/v1/billing/usage/events"): {"data": []},
        ("GET", "/api/v1/billing/usage/checkpoints/current"): {"data": []},
    }
    async with mock_rest(answers) as (rest, admin, seen):
        log = await admin.get_audit_log()
        assert log.entries[0].event == "checkpoint_read"
        await admin.get_audit_log("checkpoints", date(2026, 1, 15))
        await admin.get_billing_usage(
            datetime(2026, 7, 13, tzinfo=UTC), "2026-07-14T00:00:00+00:00"
        )
        await admin.get_current_checkpoint_storage_usage()
        await admin.get_current_checkpoint_storage_usage("p1")
        with pytest.warns(DeprecationWarning, match="AdminClient"):
            await rest.get_audit_log(day="2026-01-16")
    assert [(s.path, s.query) for s in seen] == [
        ("/api/v1/audit", {"event_type": "all"}),
        ("/api/v1/audit", {"event_type": "checkpoints", "day": "2026-01-15"}),
        (
            "/api/v1/billing/usage/events",
            {"starting_on": "2026-07-13T00:00:00Z", "ending_before": "2026-07-14T00:00:00Z"},
        ),
        ("/api/v1/billing/usage/checkpoints/current", {}),
        ("/api/v1/billing/usage/checkpoints/current", {"project_id": "p1"}),
        ("/api/v1/audit", {"event_type": "all", "day": "2026-01-16"}),
    ]
    assert seen[0].headers["x-sdk-method"] == "AdminClient.get_audit_log"
    assert seen[-1].headers["x-sdk-method"] == "RestClient.get_audit_log"


def _jwt(claims: dict[str, Any]) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


async def test_whoami_from_a_service_issued_key() -> None:
    key = _jwt({"sub": "tml:user:u1", "org_id": "o1", "email": "a@b.c", "iss": "passport-x"})
    async with mock_rest({}, api_key=key) as (rest, _, seen):
        me = await rest.whoami()
    assert (me.user_urn, me.org_urn, me.email) == ("tml:user:u1", "tml:organization:o1", "a@b.c")
    assert seen == []  # no request


# -- bad input --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r: r.get_training_run_by_tinker_path("s3://x"), "tinker://"),
        (lambda r: r.get_weights_info_by_tinker_path("tinker://a/b"), "three"),
        (lambda r: r.delete_checkpoint_from_tinker_path("tinker://r/blobs/x"), "segment"),
        (lambda r: r.get_external_weights_urls("tinker://r/weights/x"), "external"),
        (lambda r: r.list_training_runs(limit=1001), "limit"),
        (lambda r: r.list_training_runs(limit=-1), "limit"),
        (lambda r: r.list_sessions(offset=-1), "offset"),
        (lambda r: r.list_user_checkpoints(limit=True), "limit"),
        (lambda r: r.list_training_runs(access_scope="everyone"), "access_scope"),
        (lambda r: r.get_training_run("run?x=1"), "URL path"),
        (lambda r: r.get_training_run(""), "non-empty"),
        (lambda r: r.get_session("a/b"), "URL path"),
        (lambda r: r.delete_checkpoint("r", "step-10"), "segment"),
        (lambda r: r.delete_checkpoint("r", "models/step-10"), "segment"),
        (lambda r: r.delete_checkpoint("r", "weights/a b"), "URL path"),
        (lambda r: r.set_checkpoint_ttl_from_tinker_path("tinker://r/weights/x", 10), "ttl"),
        (lambda r: r.copy_weights("tinker://r/weights/x", "p", ttl_seconds=5), "ttl"),
        (lambda r: r.get_billing_usage("yesterday", NOW), "RFC 3339"),
        (lambda r: r.get_billing_usage(NOW, NOW), "after"),
        (lambda r: r.get_audit_log("everything"), "event_type"),
        (lambda r: r.get_audit_log(day="15/01/2026"), "YYYY-MM-DD"),
        (lambda r: r.assign_session_project("s", ""), "project_id"),
    ],
)
async def test_bad_arguments_are_refused_before_sending(
    call: Callable[[RestClient], Any], match: str
) -> None:
    async with mock_rest({}) as (rest, _, seen):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            with pytest.raises(InvalidInputError, match=match):
                await call(rest)
    assert seen == []


async def test_wrong_types_are_refused() -> None:
    with pytest.raises(TypeError, match="Transport"):
        RestClient(object())  # type: ignore[arg-type]
    async with mock_rest({}) as (rest, _, seen):
        with pytest.raises(TypeError, match="SessionSearchRequest"):
            await rest.search_sessions({"display_name": "x"})  # type: ignore[arg-type]
    assert seen == []


async def test_whoami_before_any_session_learns_jwt_mode_from_the_flags(
    autojump_clock: trio.abc.Clock,
) -> None:
    # A runtime's REST client asks for the server's flags first (no session is created), so
    # whoami works in JWT mode before anything else was sent.
    with trio.fail_after(120):
        async with open_local_server(jwt_auth=True) as server:
            async with ta.open(
                base_url=BASE, api_key=KEY, http_transport=httpx.ASGITransport(app=server.app)
            ) as runtime:
                me = await runtime.create_rest_client().whoami()
                assert runtime.current_session_id() is None
            assert "http:/api/v1/create_session" not in server.counters()["totals"]
    assert me.user_urn == "tml:user:local"
