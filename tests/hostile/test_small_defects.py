"""The audit's small findings, one regression test each.

Nested JSON answered 500 RecursionError; sample ``seq_id`` -1 and 10^30 accepted; checkpoint
names with a trailing newline accepted (``$`` with ``.match``); an empty protobuf body answered
"404 unknown model ''"; the null backend did not range-check ``target_tokens``; results and
dedupe entries were never forgotten (RSS grew with every request); ``/_local/counters`` over
HTTP had no fault counters and the proxy's statistics could not be read at all.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio
from hostile_support import (
    PROTO,
    datum,
    in_process,
    sample_body,
    serving,
    tracebacks,
)

from tinker_actors.local import FaultPlan, NullBackend
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.types import AdamParams, OptimStepRequest, SaveWeightsRequest

DEEP = 100_000


def names_with_line_breaks(root: Path) -> list[str]:
    return [p.name for p in root.rglob("*") if "\n" in p.name or "\r" in p.name]


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("create_session", b'{"sdk_version":"x","user_metadata":{"a":' + nested(DEEP) + b"}}"),
        ("telemetry", b'{"events":' + nested(DEEP) + b"}"),
        ("create_session", nested(DEEP)),
        ("asample", b'{"prompt":' + nested(DEEP) + b"}"),
    ],
    ids=["metadata", "telemetry", "top-level", "typed-field"],
)
async def test_deeply_nested_json_is_400_not_a_recursion_error(
    path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        response = await api.post(path, body)
        assert response.status_code == 400, response.text
        assert "max_json_depth = 64" in response.json()["detail"]
        await api.still_serving(world)
    assert tracebacks(caplog.records) == []


async def test_json_nesting_within_the_limit_is_accepted() -> None:
    async with in_process() as (server, (api,)):
        metadata = {"a": [[[[{"b": [1]}]]]]}
        created = await api.ok("create_session", {"sdk_version": "x", "user_metadata": metadata})
        record = server.engine.core.store.sessions[created["session_id"]]
        assert record.user_metadata == metadata


async def test_deeply_nested_fault_plans_are_400(caplog: pytest.LogCaptureFixture) -> None:
    plan = b'{"rules":[{"endpoint":"telemetry","status":503,"body":' + nested(DEEP) + b"}]}"
    async with in_process() as (server, (api,)):
        response = await api.request("PUT", "/_local/faults", plan)
        assert response.status_code == 400, response.text
        assert "max_json_depth" in response.json()["detail"]
        assert server.faults.plan.rules == ()
    assert tracebacks(caplog.records) == []


@pytest.mark.parametrize("seq_id", [-1, 10**30, 2**63])
async def test_a_sample_seq_id_out_of_range_is_400(seq_id: int) -> None:
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        response = await api.post("asample", sample_body(world, seq_id=seq_id))
        assert response.status_code == 400, response.text
        assert f"seq_id must be in [0, 2**63 - 1], got {seq_id}" in response.json()["detail"]
        assert server.engine.core.counters["received:Sample"] == 0
        largest = await api.post("asample", sample_body(world, seq_id=2**63 - 1))
        assert largest.status_code == 200, largest.text


@pytest.mark.parametrize(
    "field", ["model_seq_id", "sampling_session_seq_id"], ids=["model", "sampler"]
)
async def test_session_counters_out_of_range_are_400(field: str) -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        if field == "model_seq_id":
            body = {"session_id": world.session_id, "model_seq_id": -1, "base_model": "local/tiny"}
            path = "create_model"
        else:
            body = {
                "session_id": world.session_id,
                "sampling_session_seq_id": 10**30,
                "base_model": "local/tiny",
            }
            path = "create_sampling_session"
        response = await api.post(path, body)
        assert response.status_code == 400, response.text
        assert f"{field} must be in [0, 2**63 - 1]" in response.json()["detail"]


@pytest.mark.parametrize("name", ["evil\n", "evil\r\n", "ok\nevil"])
async def test_checkpoint_names_with_a_newline_are_refused(name: str, tmp_path: Path) -> None:
    async with in_process(data_dir=tmp_path) as (_, (api,)):
        world = await api.build_world()
        save = SaveWeightsRequest(model_id=world.model_id, path=name, seq_id=world.next_seq)
        response = await api.post("save_weights", save)
        assert response.status_code == 400, response.text
        assert "invalid checkpoint name" in response.json()["detail"]
        world.next_seq += 1  # the refused save consumed its seq_id (issue 14)
        await api.still_serving(world)
    assert names_with_line_breaks(tmp_path) == []


@pytest.mark.parametrize(
    "body",
    [b"", b"\x10\x05"],  # nothing at all; a seq_id and no model_id
    ids=["empty", "no-model-id"],
)
async def test_a_protobuf_body_without_a_model_is_400_not_404(body: bytes) -> None:
    async with in_process() as (_, (api,)):
        world = await api.build_world()
        response = await api.post("forward_backward", body, content_type=PROTO)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "unknown model" not in detail
        assert "empty" in detail or "no model_id" in detail
        await api.still_serving(world)


@pytest.mark.parametrize("target", [4096, -1, 10**12], ids=["vocab", "negative", "huge"])
async def test_target_tokens_outside_the_vocabulary_are_400_on_the_null_backend(
    target: int,
) -> None:
    async with in_process() as (server, (api,)):
        world = await api.build_world()
        data = [datum([10, 11, 12], [11, 12, target])]
        response = await api.forward_backward(world.model_id, world.next_seq, data=data)
        assert response.status_code == 400, response.text
        detail = response.json()["detail"]
        assert "target_tokens must be in [0, 4096)" in detail
        assert str(target) in detail
        assert server.counters()["models"][world.model_id]["received"] == 3  # type: ignore[index]
        world.next_seq += 1  # the refused request consumed its seq_id (issue 14)
        await api.still_serving(world)


async def test_the_null_backend_itself_checks_target_tokens() -> None:
    backend = NullBackend()
    spec = lookup_model("local/tiny")
    await backend.create_model("m", spec, None)
    with pytest.raises(ValueError, match=r"datum 1: target_tokens must be in \[0, 4096\)"):
        await backend.forward_backward(
            "m",
            [datum([1, 2]), datum([1, 2], [3, 9999])],
            "cross_entropy",
            {},
            forward_only=False,
        )


async def test_results_and_their_dedupe_entries_are_forgotten_after_result_ttl(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # the audit: core.dedupe never pruned, RSS +0.85 KB per request
    async with in_process(result_ttl=60) as (server, (api,)):
        core = server.engine.core
        world = await api.build_world()
        sampled = []
        for _ in range(20):
            future = await api.ok("asample", sample_body(world))
            sampled.append(future["request_id"])
            await api.settle(future["request_id"])
            step = OptimStepRequest(
                model_id=world.model_id, seq_id=world.next_seq, adam_params=AdamParams()
            )
            world.next_seq += 1
            await api.settle(
                (
                    await api.ok(
                        "optim_step", step, headers={"X-Idempotency-Key": f"k{world.next_seq}"}
                    )
                )["request_id"]
            )
        assert len(core.dedupe) == 20
        assert len(core.futures) > 40
        await trio.sleep(70)  # past result_ttl and a sweep
        assert core.dedupe == {}
        assert len(core.futures) == 0
        sequencer = core.models[world.model_id].sequencer
        assert sequencer._by_seq == {}
        assert sequencer._by_key == {}
        # a forgotten result answers 410 (expired), an id never issued 404
        gone = await api.post("retrieve_future", {"request_id": sampled[0]})
        assert gone.status_code == 410, gone.text
        unknown = await api.post("retrieve_future", {"request_id": f"{world.session_id}:req:99999"})
        assert unknown.status_code == 404
        await api.still_serving(world)


async def test_counters_over_http_carry_fault_and_proxy_statistics() -> None:
    plan = FaultPlan.from_flags(["telemetry:503", "connection:reset=0"])
    with trio.fail_after(30):
        async with serving(faults=plan) as (server, url):
            async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": "tml-x"}) as client:
                assert (await client.post("/api/v1/telemetry", json={})).status_code == 503
                counters = (await client.get("/_local/counters")).json()
                assert counters["faults"]["by_kind"] == {"503": 1}
                proxy = counters["connection_faults"]
                assert proxy["connections"] >= 1
                assert proxy["requests"] >= 2
                assert proxy["forwarded"] == proxy["requests"]
                faults = (await client.get("/_local/faults")).json()
                assert faults["replaced"] == 1
                assert faults["connection"]["forwarded"] >= 3
                assert faults["connection"]["dropped"] == 0
            assert server.proxy is not None
