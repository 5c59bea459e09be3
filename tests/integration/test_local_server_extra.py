"""The local server's less common REST endpoints, over raw HTTP (httpx + ASGI under trio).

Archive URLs (0.25), copy_weights (0.38), session projects, session search and trace exports:
each happy path is checked for content (the archive holds the checkpoint's bytes, the copy's
files equal the source's and load, the search pages through exactly the matching sessions),
state changes are checked to survive a restart on the same ``data_dir``, and every refusal is
checked for its status and for a message that says what was wrong.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import msgspec
import pytest
import trio
import trio.testing

from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.types import (
    AdamParams,
    CreateModelRequest,
    CreateSamplingSessionRequest,
    CreateSessionRequest,
    FinishSessionRequest,
    LoadWeightsRequest,
    LoraConfig,
    OptimStepRequest,
    SaveWeightsExternalRequest,
    SaveWeightsForSamplerRequest,
    SaveWeightsRequest,
)

KEY = "tml-extra-test"
BASE = "http://local"
START = 1_700_000_000.0


class WallClock:
    """A settable POSIX clock for REST timestamps and checkpoint expiry."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Api:
    """Raw HTTP calls against one server."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, path: str, body: object, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        return await self.client.post(
            f"/api/v1/{path}",
            content=msgspec.json.encode(body),
            headers={"X-API-Key": KEY, "Content-Type": "application/json", **(headers or {})},
        )

    async def get(self, path: str, **params: object) -> httpx.Response:
        return await self.client.get(
            f"/api/v1/{path}",
            params={k: str(v) for k, v in params.items()},
            headers={"X-API-Key": KEY},
        )

    async def put(self, path: str, body: object) -> httpx.Response:
        return await self.client.put(
            f"/api/v1/{path}",
            content=msgspec.json.encode(body),
            headers={"X-API-Key": KEY, "Content-Type": "application/json"},
        )

    async def ok(self, path: str, body: object, headers: Mapping[str, str] | None = None) -> Any:
        response = await self.post(path, body, headers)
        assert response.status_code == 200, response.text
        return response.json()

    async def result(self, future: Mapping[str, Any]) -> Any:
        for _ in range(100):
            response = await self.post(
                "retrieve_future",
                {"request_id": future["request_id"], "allow_metadata_only": False},
            )
            assert response.status_code == 200, response.text
            if response.json().get("type") != "try_again":
                return response.json()
        raise AssertionError(f"{future} never settled")

    async def session(self, **fields: Any) -> str:
        answer = await self.ok(
            "create_session", CreateSessionRequest(sdk_version="0.38.0", **fields)
        )
        session_id: str = answer["session_id"]
        return session_id

    async def model(self, session_id: str, model_seq_id: int = 0) -> str:
        request = CreateModelRequest(
            session_id=session_id,
            model_seq_id=model_seq_id,
            base_model="local/tiny",
            lora_config=LoraConfig(rank=4),
        )
        answer = await self.result(await self.ok("create_model", request))
        model_id: str = answer["model_id"]
        return model_id

    async def save(self, request: Any, endpoint: str = "save_weights") -> str:
        answer = await self.result(await self.ok(endpoint, request))
        path: str = answer["path"]
        return path


@asynccontextmanager
async def open_api(**settings: Any) -> AsyncIterator[tuple[LocalServer, Api]]:
    """A server with ``settings`` and a raw HTTP client on its ASGI app."""
    async with open_local_server(**settings) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            with trio.fail_after(600):
                yield server, Api(client)


async def download(api: Api, url: str) -> bytes:
    """Fetch a signed URL the way a client on another host would: plain HTTP, no API key."""
    parsed = urlparse(url)
    assert parsed.scheme == "http", url
    assert parsed.path.startswith("/_local/files/"), url
    response = await api.client.get(url)
    assert response.status_code == 200, response.text
    return response.content


def untar(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def checkpoint_dir(server: LocalServer, tinker_path: str) -> Path:
    run_id, segment, name = tinker_path.removeprefix("tinker://").split("/")
    run = server.engine.core.store.runs[run_id]
    (checkpoint,) = [c for c in run.checkpoints if c.checkpoint_id == f"{segment}/{name}"]
    return server.engine.core.store.checkpoint_dir(checkpoint)


def detail(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["detail"]
    return message


async def trained_model(api: Api) -> tuple[str, str]:
    """A session with a model that took one optimizer step."""
    session_id = await api.session()
    model_id = await api.model(session_id)
    step = OptimStepRequest(model_id=model_id, seq_id=1, adam_params=AdamParams(learning_rate=1e-3))
    await api.result(await api.ok("optim_step", step))
    return session_id, model_id


# -- archive ------------------------------------------------------------------------------------


async def test_archive_is_built_once_rebuilt_on_change_and_removed_with_the_checkpoint() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        _, model_id = await trained_model(api)
        path = await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=2))
        archive = f"training_runs/{model_id}/checkpoints/weights/w/archive"

        response = await api.get(archive)
        assert response.status_code == 200, response.text
        answer = response.json()
        expires = datetime.fromisoformat(answer["expires"])
        assert expires == datetime.fromtimestamp(START, tz=UTC) + timedelta(minutes=15)
        unpacked = untar(await download(api, answer["url"]))
        directory = checkpoint_dir(server, path)
        assert unpacked == files_of(directory)
        assert unpacked  # the null backend writes its state file

        # cached: a new link to the same archive, no second build
        clock.now += 60
        again = (await api.get(archive)).json()
        assert again["url"] != answer["url"]
        assert again["url"].rsplit("/", 1)[1] == answer["url"].rsplit("/", 1)[1]
        assert datetime.fromisoformat(again["expires"]) == expires + timedelta(seconds=60)
        assert server.engine.core.counters["archives_built"] == 1

        # saved again under the same name: a new archive, the stale one removed
        step = OptimStepRequest(
            model_id=model_id, seq_id=3, adam_params=AdamParams(learning_rate=1e-3)
        )
        await api.result(await api.ok("optim_step", step))
        clock.now += 1
        save = SaveWeightsRequest(model_id=model_id, path="w", seq_id=4, overwrite=True)
        await api.save(save)
        rebuilt = (await api.get(archive)).json()
        assert rebuilt["url"].rsplit("/", 1)[1] != answer["url"].rsplit("/", 1)[1]
        # the stale archive is gone, so its link answers 404
        assert (await api.client.get(answer["url"])).status_code == 404
        assert server.engine.core.counters["archives_built"] == 2
        assert untar(await download(api, rebuilt["url"])) == files_of(checkpoint_dir(server, path))

        deleted = await api.client.delete(
            f"/api/v1/training_runs/{model_id}/checkpoints/weights/w", headers={"X-API-Key": KEY}
        )
        assert deleted.status_code == 200, deleted.text
        gone = await api.client.get(rebuilt["url"])
        assert gone.status_code == 404
        assert "unknown or expired download link" in gone.json()["detail"]
        assert "no checkpoint" in detail(await api.get(archive), 404)


async def test_archive_refusals() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        _, model_id = await trained_model(api)
        sampler = SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=2)
        await api.save(sampler, "save_weights_for_sampler")
        ttl = SaveWeightsRequest(model_id=model_id, path="short", seq_id=3, ttl_seconds=3600)
        await api.save(ttl)
        base = f"training_runs/{model_id}/checkpoints"

        message = detail(await api.get(f"{base}/sampler_weights/s/archive"), 400)
        assert "sampler weights" in message
        assert "cannot be downloaded" in message
        assert "no training run" in detail(
            await api.get("training_runs/nope:train:0/checkpoints/weights/w/archive"), 404
        )
        assert "no checkpoint 'weights/missing'" in detail(
            await api.get(f"{base}/weights/missing/archive"), 404
        )
        assert (await api.get(f"{base}/weights/short/archive")).status_code == 200
        clock.now += 3601
        assert "no checkpoint 'weights/short'" in detail(
            await api.get(f"{base}/weights/short/archive"), 404
        )


# -- copy_weights -------------------------------------------------------------------------------


async def test_copy_into_a_project_makes_a_non_trainable_run_with_the_same_files() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        _, model_id = await trained_model(api)
        source = await api.save(
            SaveWeightsRequest(model_id=model_id, path="w", seq_id=2, ttl_seconds=7200)
        )
        clock.now += 10
        copied = await api.ok(
            "copy_weights",
            {"source_path": source, "destination_project_id": "proj-a", "ttl_seconds": 86400},
            {"X-Idempotency-Key": "k1", "X-Tinker-Weights-Access-Token": "t"},
        )
        path = copied["tinker_path"]
        run_id = path.removeprefix("tinker://").split("/")[0]
        assert path == f"tinker://{run_id}/weights/w"
        assert run_id != model_id

        store = server.engine.core.store
        run = store.runs[run_id]
        assert run.trainable is False
        assert (run.base_model, run.lora_rank) == ("local/tiny", 4)
        assert run.copied_from == source
        (checkpoint,) = run.checkpoints
        # the copy's own ttl, counted from the copy, not the source's expiry
        assert checkpoint.expires_at == clock.now + 86400
        assert checkpoint.has_optimizer is True
        assert files_of(checkpoint_dir(server, path)) == files_of(checkpoint_dir(server, source))
        holder = store.sessions[run.session_id]
        assert holder.project_id == "proj-a"
        assert holder.training_run_ids == [run_id]

        listed = (await api.get("training_runs", project_id="proj-a")).json()
        assert [r["training_run_id"] for r in listed["training_runs"]] == [run_id]
        info = await api.ok("weights_info", {"tinker_path": path})
        assert info["base_model"] == "local/tiny"
        assert info["lora_rank"] == 4

        # the copy loads: a new model created from it
        session_id = await api.session()
        load = LoadWeightsRequest(path=path, session_id=session_id, model_seq_id=0, optimizer=True)
        loaded = await api.result(await api.ok("load_weights", load))
        assert loaded["model_id"] == f"{session_id}:train:0"


async def test_copy_sampler_weights_into_a_session_slot_and_sample_from_them() -> None:
    async with open_api() as (server, api):
        session_id, model_id = await trained_model(api)
        source = await api.save(
            SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=2),
            "save_weights_for_sampler",
        )
        copied = await api.ok(
            "copy_weights", {"source_path": source, "session_id": session_id, "model_seq_id": 1}
        )
        assert copied == {"tinker_path": f"tinker://{session_id}:train:1/sampler_weights/s"}
        session = server.engine.core.store.sessions[session_id]
        assert session.training_run_ids == [model_id, f"{session_id}:train:1"]
        assert session.model_counter == 2
        assert (
            server.engine.core.store.runs[f"{session_id}:train:1"].checkpoints[0].expires_at is None
        )
        request = CreateSamplingSessionRequest(
            session_id=session_id, sampling_session_seq_id=0, model_path=copied["tinker_path"]
        )
        sampler = await api.ok("create_sampling_session", request)
        assert sampler["sampling_session_id"] == f"{session_id}:sample:0"
        # the copy's slot is taken: a model created on it must not overwrite the copy
        reuse = CreateModelRequest(session_id=session_id, model_seq_id=1, base_model="local/tiny")
        message = detail(await api.post("create_model", reuse), 409)
        assert "next model_seq_id" in message
        assert server.engine.core.store.runs[f"{session_id}:train:1"].trainable is False


async def test_copy_is_idempotent_on_its_key_across_a_restart(tmp_path: Path) -> None:
    async with open_api(data_dir=tmp_path) as (server, api):
        _, model_id = await trained_model(api)
        first = await api.save(SaveWeightsRequest(model_id=model_id, path="a", seq_id=2))
        second = await api.save(SaveWeightsRequest(model_id=model_id, path="b", seq_id=3))
        body = {"source_path": first, "destination_project_id": "p"}
        copied = await api.ok("copy_weights", body, {"X-Idempotency-Key": "key-1"})
        assert await api.ok("copy_weights", body, {"X-Idempotency-Key": "key-1"}) == copied
        runs_before = len(server.engine.core.store.runs)
        # without a key every request is a new copy
        other = await api.ok("copy_weights", body)
        assert other != copied
        reused = await api.post(
            "copy_weights",
            {"source_path": second, "destination_project_id": "p"},
            {"X-Idempotency-Key": "key-1"},
        )
        message = detail(reused, 409)
        assert "key-1" in message
        assert first in message
        assert "fresh key" in message

    async with open_api(data_dir=tmp_path) as (server, api):
        assert await api.ok("copy_weights", body, {"X-Idempotency-Key": "key-1"}) == copied
        assert len(server.engine.core.store.runs) == runs_before + 1
        run_id = copied["tinker_path"].removeprefix("tinker://").split("/")[0]
        run = server.engine.core.store.runs[run_id]
        assert run.trainable is False
        assert run.copy_key == "key-1"
        listed = (await api.get(f"training_runs/{run_id}/checkpoints")).json()["checkpoints"]
        assert [c["tinker_path"] for c in listed] == [copied["tinker_path"]]
        assert files_of(checkpoint_dir(server, copied["tinker_path"])) == files_of(
            checkpoint_dir(server, first)
        )


async def test_copy_refusals() -> None:
    async with open_api() as (_, api):
        session_id, model_id = await trained_model(api)
        source = await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=2))
        await api.save(
            SaveWeightsExternalRequest(model_id=model_id, path="x", seq_id=3),
            "save_weights_external",
        )
        project = {"destination_project_id": "p"}

        async def refused(body: dict[str, Any], status: int, **headers: str) -> str:
            return detail(await api.post("copy_weights", body, headers), status)

        assert "no training run" in await refused(
            {"source_path": "tinker://nope:train:0/weights/w", **project}, 404
        )
        assert "no checkpoint 'weights/gone'" in await refused(
            {"source_path": f"tinker://{model_id}/weights/gone", **project}, 404
        )
        assert "not a tinker:// path" in await refused(
            {"source_path": "s3://x/y/z", **project}, 400
        )
        assert "external_weights" in await refused(
            {"source_path": f"tinker://{model_id}/external_weights/x", **project}, 400
        )
        assert "unknown session" in await refused(
            {"source_path": source, "session_id": "nope", "model_seq_id": 0}, 404
        )
        assert "already holds a training run" in await refused(
            {"source_path": source, "session_id": session_id, "model_seq_id": 0}, 409
        )
        assert "not destination_project_id 'p'" in await refused(
            {"source_path": source, "session_id": session_id, "model_seq_id": 5, **project}, 400
        )
        assert "must not be empty" in await refused(
            {"source_path": source, "destination_project_id": " "}, 400
        )
        assert "send the token once" in await refused(
            {"source_path": source, "weights_access_token": "a", **project},
            400,
            **{"X-Tinker-Weights-Access-Token": "b"},
        )
        assert "ttl_seconds" in await refused(
            {"source_path": source, "ttl_seconds": 5, **project}, 422
        )
        assert "destination" in await refused({"source_path": source}, 422)

        finished = await api.session()
        await api.ok(f"sessions/{finished}/finish", FinishSessionRequest.for_status("success"))
        assert "finished" in await refused(
            {"source_path": source, "session_id": finished, "model_seq_id": 0}, 410
        )


# -- session project ----------------------------------------------------------------------------


async def test_session_project_is_persisted_and_filters_training_runs(tmp_path: Path) -> None:
    async with open_api(data_dir=tmp_path) as (_, api):
        session_id, model_id = await trained_model(api)
        other_session, _ = await trained_model(api)
        assert (await api.get("training_runs", project_id="p2")).json()["training_runs"] == []
        response = await api.put(f"sessions/{session_id}/project", {"project_id": "p2"})
        assert response.status_code == 200, response.text
        listed = (await api.get("training_runs", project_id="p2")).json()
        assert [r["training_run_id"] for r in listed["training_runs"]] == [model_id]

        assert "unknown session 'nope'" in detail(
            await api.put("sessions/nope/project", {"project_id": "p"}), 404
        )
        assert "project_id must name a project" in detail(
            await api.put(f"sessions/{other_session}/project", {"project_id": ""}), 400
        )
        assert "SetSessionProjectRequest" in detail(
            await api.put(f"sessions/{other_session}/project", {"project": "p"}), 422
        )

    async with open_api(data_dir=tmp_path) as (server, api):
        assert server.engine.core.store.sessions[session_id].project_id == "p2"
        listed = (await api.get("training_runs", project_id="p2")).json()
        assert [r["training_run_id"] for r in listed["training_runs"]] == [model_id]


# -- session search -----------------------------------------------------------------------------


async def search(api: Api, **body: Any) -> Any:
    return await api.ok("sessions/search", {"owner": {"type": "own"}, **body})


async def test_session_search_filters_statuses_and_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock, session_timeout=30.0) as (_, api):
        expired = await api.session(display_name="Old run")
        await trio.sleep(120)  # no heartbeat: the sweeper expires it
        ids = {}
        for name, metadata, project in (
            ("Alpha Tuning Run", {"team": "a", "env": "prod"}, "p1"),
            ("beta tuning", {"team": "a"}, "p2"),
            ("Gamma", {"team": "b"}, None),
        ):
            clock.now += 1
            ids[name] = await api.session(
                display_name=name, user_metadata=metadata, project_id=project
            )
        clock.now += 1
        errored = await api.session()
        await api.ok(
            f"sessions/{errored}/finish", FinishSessionRequest.for_status("errored", "boom")
        )
        model_id = await api.model(ids["Gamma"])
        await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=1))
        await api.save(
            SaveWeightsForSamplerRequest(model_id=model_id, path="s", seq_id=2),
            "save_weights_for_sampler",
        )

        every = (await search(api))["sessions"]
        assert [s["session_id"] for s in every] == [
            errored,
            ids["Gamma"],
            ids["beta tuning"],
            ids["Alpha Tuning Run"],
            expired,
        ]
        by_id = {s["session_id"]: s for s in every}
        assert by_id[expired]["status"] == {"type": "cancelled", "detail": "no heartbeat"}
        assert by_id[errored]["status"] == {
            "type": "client_finished",
            "reason": {"type": "errored"},
            "detail": "boom",
        }
        gamma = by_id[ids["Gamma"]]
        assert gamma["status"] == {"type": "active"}
        assert gamma["owner"] == "tml:user:local"
        assert gamma["project_id"] == ""
        assert gamma["checkpoints_count"] == 2
        run = (await api.get(f"training_runs/{model_id}/checkpoints")).json()["checkpoints"]
        assert gamma["checkpoint_storage_bytes"] == sum(c["size_bytes"] for c in run) > 0
        assert by_id[ids["Alpha Tuning Run"]]["checkpoints_count"] == 0
        assert by_id[ids["Alpha Tuning Run"]]["user_metadata"] == {"team": "a", "env": "prod"}
        assert by_id[ids["Alpha Tuning Run"]]["created_at"] == "2023-11-14T22:13:21Z"

        async def found(**body: Any) -> list[str]:
            return [s["session_id"] for s in (await search(api, **body))["sessions"]]

        assert await found(display_name="TUNING") == [ids["beta tuning"], ids["Alpha Tuning Run"]]
        assert await found(display_name="run alpha") == [ids["Alpha Tuning Run"]]
        assert await found(display_name="run beta") == []
        assert await found(display_name="gamma", session_id=errored) == [errored, ids["Gamma"]]
        assert await found(session_id=expired) == [expired]
        assert await found(user_metadata={"team": "a"}) == [
            ids["beta tuning"],
            ids["Alpha Tuning Run"],
        ]
        assert await found(user_metadata={"team": "a", "env": "prod"}) == [ids["Alpha Tuning Run"]]
        assert await found(project_ids=["p1", "p2"]) == [
            ids["beta tuning"],
            ids["Alpha Tuning Run"],
        ]
        assert await found(owner={"type": "accessible"}, project_ids=["p2"]) == [ids["beta tuning"]]
        assert len(await found(owner={"type": "user", "owner_urns": ["tml:user:local"]})) == 5
        assert await found(owner={"type": "user", "owner_urns": ["tml:user:someone"]}) == []
        assert await found(statuses=[{"type": "cancelled"}]) == [expired]
        assert await found(statuses=[{"type": "failed"}]) == []
        assert await found(statuses=[{"type": "client_finished", "reasons": ["success"]}]) == []
        assert await found(statuses=[{"type": "client_finished"}, {"type": "cancelled"}]) == [
            errored,
            expired,
        ]
        assert len(await found(statuses=[{"type": "active"}])) == 3


async def test_session_search_pages_with_a_cursor_through_ties() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        created = []
        for i in range(7):
            if i % 3 == 0:
                clock.now += 1  # several sessions share a creation time: the id breaks ties
            created.append(await api.session(user_metadata={"n": str(i)}))
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            body: dict[str, Any] = {"limit": 3}
            if cursor is not None:
                body["cursor"] = cursor
            page = await search(api, **body)
            pages += 1
            seen.extend(s["session_id"] for s in page["sessions"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
            assert cursor["last_session_id"] == seen[-1]
        assert pages == 3
        assert sorted(seen) == sorted(created)
        assert len(seen) == 7
        created_at = [
            datetime.fromisoformat(s["created_at"]) for s in (await search(api))["sessions"]
        ]
        assert created_at == sorted(created_at, reverse=True)
        # an exact page leaves no cursor behind
        exact = await search(api, limit=7)
        assert len(exact["sessions"]) == 7
        assert exact["next_cursor"] is None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"limit": 0}, "limit must be between 1 and 200"),
        ({"limit": 201}, "limit must be between 1 and 200"),
        ({"statuses": []}, "statuses must list at least one"),
        ({"display_name": ""}, "display_name must not be empty"),
        ({"owner": {"type": "user", "owner_urns": []}}, "owner_urns must list 1 to 10"),
        ({"statuses": [{"type": "client_finished", "reasons": []}]}, "reasons must list"),
        (
            {"cursor": {"last_created_at": "2024-01-01T00:00:00", "last_session_id": "x"}},
            "timezone",
        ),
        ({"owner": {"type": "everyone"}}, "Invalid value 'everyone'"),
    ],
)
async def test_session_search_refuses_bad_requests(body: dict[str, Any], needle: str) -> None:
    async with open_api() as (_, api):
        assert needle in detail(await api.post("sessions/search", body), 422)


# -- trace export -------------------------------------------------------------------------------


async def test_trace_export_writes_the_session_runs_and_samplers() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        session_id, model_id = await trained_model(api)
        path = await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=2))
        sampler = await api.ok(
            "create_sampling_session",
            CreateSamplingSessionRequest(
                session_id=session_id, sampling_session_seq_id=0, base_model="local/tiny"
            ),
        )
        response = await api.get(f"sessions/{session_id}/trace_export")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "ready"
        export = msgspec.json.decode(await download(api, answer["url"]))
        assert export["exported_at"] == "2023-11-14T22:13:20Z"
        assert export["session"]["session_id"] == session_id
        assert [r["run_id"] for r in export["training_runs"]] == [model_id]
        assert [c["name"] for c in export["training_runs"][0]["checkpoints"]] == ["w"]
        assert path.endswith("/weights/w")
        assert [s["sampling_session_id"] for s in export["samplers"]] == [
            sampler["sampling_session_id"]
        ]

        # a later export sees what happened since
        clock.now += 5
        await api.save(SaveWeightsRequest(model_id=model_id, path="w2", seq_id=3))
        again = (await api.get(f"sessions/{session_id}/trace_export")).json()
        export = msgspec.json.decode(await download(api, again["url"]))
        assert [c["name"] for c in export["training_runs"][0]["checkpoints"]] == ["w", "w2"]

        assert "unknown session 'nope'" in detail(await api.get("sessions/nope/trace_export"), 404)


async def test_records_written_before_these_fields_existed_still_load(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "old~train~0"
    (run_dir / "checkpoints" / "weights" / "w").mkdir(parents=True)
    (run_dir / "checkpoints" / "weights" / "w" / "state.bin").write_bytes(b"old weights")
    old_run = {
        "run_id": "old:train:0",
        "session_id": "old",
        "base_model": "local/tiny",
        "created": START,
        "last_request_time": START,
        "checkpoints": [
            {"run_id": "old:train:0", "kind": "training", "name": "w", "created": START}
        ],
    }
    (run_dir / "run.json").write_bytes(msgspec.json.encode(old_run))
    (tmp_path / "sessions").mkdir()
    old_session = {"session_id": "old", "created": START, "finished": "success"}
    (tmp_path / "sessions" / "old.json").write_bytes(msgspec.json.encode(old_session))
    async with open_api(data_dir=tmp_path) as (server, api):
        run = server.engine.core.store.runs["old:train:0"]
        assert (run.copied_from, run.copy_key, run.trainable) == (None, None, True)
        copied = await api.ok(
            "copy_weights",
            {"source_path": "tinker://old:train:0/weights/w", "destination_project_id": "p"},
        )
        assert files_of(checkpoint_dir(server, copied["tinker_path"])) == {
            "state.bin": b"old weights"
        }
        archive = (await api.get("training_runs/old:train:0/checkpoints/weights/w/archive")).json()
        assert untar(await download(api, archive["url"])) == {"state.bin": b"old weights"}
