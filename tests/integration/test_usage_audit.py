"""Billing usage, checkpoint storage and the audit log: real answers from the server's records."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from test_local_server_extra import KEY, START, Api, WallClock, detail, open_api, trained_model

from tinker_actors.local import NullBackend
from tinker_actors.transport.proto import encode_forward_backward_request
from tinker_actors.types import (
    CreateSamplingSessionRequest,
    Datum,
    ForwardBackwardInput,
    ForwardBackwardRequest,
    ModelInput,
    SampleRequest,
    SampleResponse,
    SamplingParams,
    SaveWeightsRequest,
)

HOUR = 3600
# START (2023-11-14T22:13:20Z) is 800 s into its hour
T0 = "2023-11-14T22:00:00Z"


def iso(posix: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(posix, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def train(api: Api, model_id: str, seq_id: int, lengths: list[int]) -> None:
    data = [
        Datum(
            model_input=ModelInput.from_ints(list(range(10, 10 + n))),
            loss_fn_inputs={"target_tokens": list(range(11, 11 + n))},
        )
        for n in lengths
    ]
    request = ForwardBackwardRequest(
        forward_backward_input=ForwardBackwardInput(data=data, loss_fn="cross_entropy"),
        model_id=model_id,
        seq_id=seq_id,
    )
    response = await api.client.post(
        "/api/v1/forward_backward",
        content=encode_forward_backward_request(request, compress=False),
        headers={"X-API-Key": KEY, "Content-Type": "application/x-protobuf"},
    )
    assert response.status_code == 200, response.text
    await api.client.post(
        "/api/v1/retrieve_future",
        json={"request_id": response.json()["request_id"]},
        headers={"X-API-Key": KEY, "Accept": "application/x-protobuf"},
    )


async def sample(api: Api, session_id: str, prompt: int, n: int, max_tokens: int) -> None:
    create = CreateSamplingSessionRequest(
        session_id=session_id, sampling_session_seq_id=0, base_model="local/tiny"
    )
    sampler = (await api.ok("create_sampling_session", create))["sampling_session_id"]
    request = SampleRequest(
        sampling_session_id=sampler,
        seq_id=0,
        num_samples=n,
        prompt=ModelInput.from_ints(list(range(20, 20 + prompt))),
        sampling_params=SamplingParams(max_tokens=max_tokens, stop=[]),
    )
    future = await api.ok("asample", request)
    await api.client.post(
        "/api/v1/retrieve_future",
        json={"request_id": future["request_id"]},
        headers={"X-API-Key": KEY, "Accept": "application/x-protobuf"},
    )


def by_kind(answer: dict[str, Any]) -> dict[tuple[str, str], Any]:
    out = {}
    for row in answer["data"]:
        info = row["event_info"]
        quantity = info.get("token_count", info.get("count", info.get("gigabyte_hours")))
        out[(row["bucket_start"], info["type"])] = quantity
    return out


async def test_usage_counts_tokens_checkpoints_and_storage_per_hour(tmp_path: Path) -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock, data_dir=tmp_path) as (server, api):
        session_id, model_id = await trained_model(api)
        await train(api, model_id, 2, [5, 7])
        await sample(api, session_id, prompt=6, n=3, max_tokens=4)
        await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=3))
        run = server.engine.core.store.runs[model_id]
        (checkpoint,) = run.checkpoints
        size = checkpoint.size_bytes
        assert size > 0
        clock.now += 2 * HOUR  # the checkpoint lives on for two hours
        await train(api, model_id, 4, [3])
        window = {"starting_on": T0, "ending_before": iso(START - 800 + 3 * HOUR)}
        answer = (await api.get("billing/usage/events", **window)).json()
    first, third = T0, iso(START - 800 + 2 * HOUR)
    kinds = by_kind(answer)
    assert kinds[(first, "training")] == 12
    assert kinds[(first, "sampling_prefill")] == 6  # one prefill per request
    assert kinds[(first, "sampling_sample")] == 12
    assert kinds[(first, "checkpoint")] == 1
    assert kinds[(third, "training")] == 3
    # storage: alive from START (800 s into the first hour) to START + 2 h
    assert kinds[(first, "storage")] == pytest.approx(size / 1e9 * (HOUR - 800) / HOUR)
    assert kinds[(iso(START - 800 + HOUR), "storage")] == pytest.approx(size / 1e9)
    assert kinds[(third, "storage")] == pytest.approx(size / 1e9 * 800 / HOUR)
    row = answer["data"][0]
    assert row["session_id"] == session_id
    assert row["base_model"] == "local/tiny"
    assert row["estimated_cost_usd"] == 0.0
    assert answer["sessions"] == {session_id: {"user_metadata": None}}
    assert answer["cost_data_through"] is None

    # the notes survive a restart on the same data dir
    async with open_api(wall_clock=clock, data_dir=tmp_path) as (_, api):
        again = (await api.get("billing/usage/events", **window)).json()
    assert by_kind(again) == kinds


class SharedPrefillBackend(NullBackend):
    """Reports 4 prompt tokens of every sample as reused from another request's prefill."""

    async def sample(self, spec: Any, weights: Any, job: Any) -> SampleResponse:
        answer = await super().sample(spec, weights, job)
        return dataclasses.replace(answer, prompt_cache_hit_tokens=4)


async def test_prompt_tokens_a_backend_reused_are_billed_as_cached() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock, backend=SharedPrefillBackend()) as (_, api):
        session_id, _ = await trained_model(api)
        await sample(api, session_id, prompt=6, n=2, max_tokens=3)
        window = {"starting_on": T0, "ending_before": iso(START - 800 + HOUR)}
        answer = (await api.get("billing/usage/events", **window)).json()
    prefill = {
        row["event_info"]["cached"]: row["event_info"]["token_count"]
        for row in answer["data"]
        if row["event_info"]["type"] == "sampling_prefill"
    }
    assert prefill == {False: 2, True: 4}


async def test_deleted_checkpoints_stop_accruing_storage() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        _, model_id = await trained_model(api)
        await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=2))
        size = server.engine.core.store.runs[model_id].checkpoints[0].size_bytes
        clock.now += 100
        deleted = await api.client.delete(
            f"/api/v1/training_runs/{model_id}/checkpoints/weights/w", headers={"X-API-Key": KEY}
        )
        assert deleted.status_code == 200
        clock.now += 5 * HOUR
        window = {"starting_on": T0, "ending_before": iso(START - 800 + 6 * HOUR)}
        kinds = by_kind((await api.get("billing/usage/events", **window)).json())
    storage = {k: v for k, v in kinds.items() if k[1] == "storage"}
    assert storage == {(T0, "storage"): pytest.approx(size / 1e9 * 100 / HOUR)}


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"starting_on": T0}, "needs the query parameters ['ending_before']"),
        ({"starting_on": "2023-11-14T22:30:00Z", "ending_before": T0}, "whole UTC hour"),
        ({"starting_on": "2023-11-14T22:00:00", "ending_before": T0}, "needs a time zone"),
        ({"starting_on": "yesterday", "ending_before": T0}, "RFC 3339"),
        ({"starting_on": T0, "ending_before": T0}, "must be after starting_on"),
        ({"starting_on": T0, "ending_before": "2023-11-29T23:00:00Z"}, "at most 14 days"),
        (
            {"starting_on": "2023-11-15T01:00:00Z", "ending_before": "2023-11-15T02:00:00Z"},
            "future",
        ),
    ],
)
async def test_bad_usage_windows_are_400s(params: dict[str, str], needle: str) -> None:
    async with open_api(wall_clock=WallClock()) as (_, api):
        assert needle in detail(await api.get("billing/usage/events", **params), 400)


async def test_checkpoint_storage_groups_live_checkpoints_by_project() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (server, api):
        session_a, model_a = await trained_model(api)
        session_b, model_b = await trained_model(api)
        await api.put(f"sessions/{session_b}/project", {"project_id": "proj-b"})
        await api.save(SaveWeightsRequest(model_id=model_a, path="a1", seq_id=2))
        await api.save(SaveWeightsRequest(model_id=model_a, path="a2", seq_id=3))
        await api.save(SaveWeightsRequest(model_id=model_b, path="b1", seq_id=2, ttl_seconds=HOUR))
        runs = server.engine.core.store.runs
        sizes = {r: sum(c.size_bytes for c in runs[r].checkpoints) for r in (model_a, model_b)}
        everything = (await api.get("billing/usage/checkpoints/current")).json()
        only_b = (await api.get("billing/usage/checkpoints/current", project_id="proj-b")).json()
        clock.now += HOUR  # b1 expires
        after = (await api.get("billing/usage/checkpoints/current")).json()
    groups = {row["project_id"]: row for row in everything["data"]}
    assert groups[None]["checkpoint_count"] == 2
    assert groups[None]["size_bytes"] == sizes[model_a]
    assert groups["proj-b"]["checkpoint_count"] == 1
    assert groups["proj-b"]["size_gigabytes"] == pytest.approx(sizes[model_b] / 1e9)
    assert groups[None]["org_user_urn"] == "local-user"
    assert everything["effective_rate_usd_per_gigabyte_month"] == 0.0
    assert [row["project_id"] for row in only_b["data"]] == ["proj-b"]
    assert [row["project_id"] for row in after["data"]] == [None]
    assert session_a != session_b


async def test_audit_log_records_checkpoint_and_project_events_by_day() -> None:
    clock = WallClock()
    async with open_api(wall_clock=clock) as (_, api):
        session_id, model_id = await trained_model(api)
        path = await api.save(SaveWeightsRequest(model_id=model_id, path="w", seq_id=2))
        await api.get(f"training_runs/{model_id}/checkpoints/weights/w/archive")
        await api.post(f"training_runs/{model_id}/checkpoints/weights/w/publish", {})
        ttl = {"ttl_seconds": 10 * 24 * HOUR}
        await api.put(f"training_runs/{model_id}/checkpoints/weights/w/ttl", ttl)
        await api.put(f"sessions/{session_id}/project", {"project_id": "p1"})
        clock.now += 24 * HOUR  # the next day
        await api.client.delete(
            f"/api/v1/training_runs/{model_id}/checkpoints/weights/w", headers={"X-API-Key": KEY}
        )
        first_day = (await api.get("audit", day="2023-11-14")).json()["entries"]
        checkpoints = (await api.get("audit", event_type="checkpoints", day="2023-11-14")).json()
        projects = (await api.get("audit", event_type="projects", day="2023-11-14")).json()
        today = (await api.get("audit")).json()["entries"]
        bad_type = detail(await api.get("audit", event_type="users"), 400)
        bad_day = detail(await api.get("audit", day="14/11/2023"), 400)
    assert [e["event"] for e in first_day] == [
        "checkpoint_create",
        "checkpoint_read",
        "checkpoint_publish",
        "checkpoint_ttl_set",
        "project_session_set",
    ]
    create, read = first_day[0], first_day[1]
    assert create["tinker_path"] == path
    assert create["model_id"] == model_id
    assert create["event_details"]["actor"] == "local-user"
    assert create["event_details"]["size_bytes"] > 0
    assert read["purpose"] == "archive"
    assert first_day[3]["event_details"]["ttl_seconds"] == 10 * 24 * HOUR
    assert len(checkpoints["entries"]) == 4
    assert [e["event_details"]["project_id"] for e in projects["entries"]] == ["p1"]
    assert [e["event"] for e in today] == ["checkpoint_delete"]
    assert "event_type must be one of all, checkpoints" in bad_type
    assert "day must be a date" in bad_day
