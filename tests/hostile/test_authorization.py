"""One key cannot see or touch another key's sessions, runs, samplers, checkpoints or futures.

The audit, with ``--api-key tml-alice --api-key tml-bob``: bob listed and ``optim_step``-ed
alice's model. Now everything belongs to the key that created it and other keys get 404, as if
it did not exist; a checkpoint alice publishes is readable (not editable) by bob. The debug
routes need a key, and an admin key where admin keys are configured.
"""

from __future__ import annotations

import pytest
import trio
from hostile_support import KEY, OTHER, World, in_process, sample_body

from tinker_actors.types import AdamParams, LoadWeightsRequest, OptimStepRequest

KEYS = frozenset({KEY, OTHER})


def bob_calls(w: World) -> list[tuple[str, str, object]]:
    """(method, path, body) of requests that name alice's things, each of which must be 404."""
    ckpt = f"training_runs/{w.model_id}/checkpoints/weights/w"
    step = {"model_id": w.model_id, "seq_id": w.next_seq, "adam_params": {}}
    return [
        ("POST", "optim_step", step),
        ("POST", "get_info", {"model_id": w.model_id, "type": "get_info"}),
        ("POST", "save_weights", {"model_id": w.model_id, "path": "b", "seq_id": w.next_seq}),
        ("POST", "session_heartbeat", {"session_id": w.session_id, "type": "session_heartbeat"}),
        (
            "POST",
            "create_model",
            {"session_id": w.session_id, "model_seq_id": 7, "base_model": "local/tiny"},
        ),
        (
            "POST",
            "create_sampling_session",
            {"session_id": w.session_id, "sampling_session_seq_id": 7, "base_model": "local/tiny"},
        ),
        ("POST", "asample", sample_body(w)),
        ("POST", "join_sampling_session", {"sampling_session_id": w.sampler_id}),
        ("GET", f"samplers/{w.sampler_id}", None),
        ("GET", f"training_runs/{w.model_id}", None),
        ("GET", f"training_runs/{w.model_id}/checkpoints", None),
        ("DELETE", ckpt, None),
        ("POST", f"{ckpt}/publish", None),
        ("PUT", f"{ckpt}/ttl", {"ttl_seconds": 7200}),
        ("GET", f"{ckpt}/archive", None),
        ("POST", "weights_info", {"tinker_path": w.weights_path}),
        (
            "POST",
            "load_weights",
            {
                "model_id": w.model_id,
                "path": w.weights_path,
                "seq_id": w.next_seq,
                "optimizer": False,
            },
        ),
        ("GET", f"sessions/{w.session_id}", None),
        ("PUT", f"sessions/{w.session_id}/project", {"project_id": "bobs"}),
        ("GET", f"sessions/{w.session_id}/trace_export", None),
        ("POST", f"sessions/{w.session_id}/finish", {"reason": {"type": "success"}}),
        (
            "POST",
            "copy_weights",
            {"source_path": w.weights_path, "destination_project_id": "bobs"},
        ),
    ]


async def test_another_key_gets_404_for_everything_and_changes_nothing() -> None:
    async with in_process(KEY, OTHER, api_keys=KEYS) as (server, (alice, bob)):
        world = await alice.build_world()
        before = server.counters()["models"]
        for method, path, body in bob_calls(world):
            response = await bob.request(method, path, body)
            assert response.status_code == 404, (method, path, response.text)
        # bob's own lists are empty; alice's are whole
        for path, field in (("training_runs", "training_runs"), ("sessions", "sessions")):
            assert (await bob.get(path)).json()[field] == []
            assert len((await alice.get(path)).json()[field]) == 1
        assert (await bob.get("checkpoints")).json()["checkpoints"] == []
        found = await bob.post("sessions/search", {"limit": 10})
        assert found.json()["sessions"] == []
        # nothing of alice's moved: no op applied, the checkpoint and the session as they were
        assert server.counters()["models"] == before
        listed = (await alice.get(f"training_runs/{world.model_id}/checkpoints")).json()
        assert [c["checkpoint_id"] for c in listed["checkpoints"]] == [
            "weights/w",
            "sampler_weights/s",
        ]
        assert not listed["checkpoints"][0]["public"]
        await alice.still_serving(world)


async def test_another_key_cannot_read_cancel_or_acknowledge_a_future(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with in_process(KEY, OTHER, api_keys=KEYS) as (_, (alice, bob)):
        world = await alice.build_world()
        future = await alice.ok("asample", sample_body(world))
        request_id = future["request_id"]
        peek = await bob.post("retrieve_future", {"request_id": request_id})
        assert peek.status_code == 404
        assert (await bob.post("cancel_future", {"request_id": request_id})).status_code == 200
        # bob acknowledges alice's result through his own sampler: her payload must stay
        bob_world = await bob.build_world()
        ack = {
            "target": {"sampling_session_id": bob_world.sampler_id, "cloned_sampler_id": 0},
            "prev_cursor": 0,
            "timeout": 0,
            "retrieved_request_ids": [request_id],
        }
        assert (await bob.post("retrieve_futures", ack)).status_code == 200
        answer = await alice.settle(request_id)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-protobuf", answer.text


async def test_idempotency_keys_are_private_to_each_key() -> None:
    async with in_process(KEY, OTHER, api_keys=KEYS) as (_, (alice, bob)):
        headers = {"X-Idempotency-Key": "same-key"}
        mine = await alice.ok("create_session", {"sdk_version": "x"}, headers=headers)
        theirs = await bob.ok("create_session", {"sdk_version": "x"}, headers=headers)
        assert mine["session_id"] != theirs["session_id"]
        again = await alice.ok("create_session", {"sdk_version": "x"}, headers=headers)
        assert again["session_id"] == mine["session_id"]


async def test_a_published_checkpoint_is_readable_not_editable_by_another_key() -> None:
    async with in_process(KEY, OTHER, api_keys=KEYS) as (_, (alice, bob)):
        world = await alice.build_world()
        ckpt = f"training_runs/{world.model_id}/checkpoints/weights/w"
        assert (await alice.post(f"{ckpt}/publish", None)).status_code == 200
        info = await bob.post("weights_info", {"tinker_path": world.weights_path})
        assert info.status_code == 200, info.text
        assert (await bob.get(f"{ckpt}/archive")).status_code == 200
        # bob loads it into a model of his own
        session = (await bob.ok("create_session", {"sdk_version": "x"}))["session_id"]
        load = LoadWeightsRequest(
            session_id=session, model_seq_id=0, path=world.weights_path, optimizer=False
        )
        loaded = await bob.ok("load_weights", load)
        assert (await bob.settle(loaded["request_id"])).status_code == 200
        # but it stays alice's to change
        for method, path in (("DELETE", ckpt), ("DELETE", f"{ckpt}/publish")):
            assert (await bob.request(method, path)).status_code == 404
        assert (await bob.request("PUT", f"{ckpt}/ttl", {"ttl_seconds": 7200})).status_code == 404
        # and the rest of alice's run stays invisible
        assert (await bob.get(f"training_runs/{world.model_id}")).status_code == 404
        private = await bob.post("weights_info", {"tinker_path": world.sampler_path})
        assert private.status_code == 404
        await alice.still_serving(world)


async def test_jwts_carry_the_key_they_were_exchanged_for() -> None:
    async with in_process(KEY, OTHER, jwt_auth=True) as (_, (alice, bob)):
        for api in (alice, bob):
            token = await api.post("auth/token", {})
            assert token.status_code == 200, token.text
            api.key = token.json()["jwt"]
        world = await alice.build_world()
        step = OptimStepRequest(model_id=world.model_id, seq_id=3, adam_params=AdamParams())
        assert (await bob.post("optim_step", step)).status_code == 404
        assert (await alice.post("optim_step", step)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/_local/faults"), ("PUT", "/_local/faults"), ("GET", "/_local/counters")],
)
async def test_the_debug_routes_need_a_key(method: str, path: str) -> None:
    plan = {"seed": 1, "rules": [{"endpoint": "telemetry", "status": 503}]}
    body = plan if method == "PUT" else None
    async with in_process(KEY, "", api_keys=KEYS) as (server, (alice, anonymous)):
        refused = await anonymous.request(method, path, body)
        assert refused.status_code == 401, refused.text
        assert "X-API-Key" in refused.json()["detail"]
        assert server.faults.plan.rules == ()  # the PUT did not replace the plan
        assert (await alice.request(method, path, body)).status_code == 200


async def test_with_admin_keys_only_those_reach_the_debug_routes() -> None:
    admin = "tml-hostile-admin"
    plan = {"seed": 1, "rules": [{"endpoint": "telemetry", "status": 503}]}
    async with in_process(KEY, admin, admin_keys=frozenset({admin})) as (server, (alice, root)):
        for method, path, body in (
            ("PUT", "/_local/faults", plan),
            ("GET", "/_local/faults", None),
            ("GET", "/_local/counters", None),
        ):
            before = server.faults.plan
            forbidden = await alice.request(method, path, body)
            assert forbidden.status_code == 403, forbidden.text
            assert "admin key" in forbidden.json()["detail"]
            assert server.faults.plan is before
            assert (await root.request(method, path, body)).status_code == 200
        assert len(server.faults.plan.rules) == 1


@pytest.mark.parametrize("jwt_auth", [False, True])
async def test_a_key_deleted_through_apikey_me_is_refused_from_then_on(jwt_auth: bool) -> None:
    admin = "tml-hostile-admin"
    async with in_process(KEY, OTHER, admin, jwt_auth=jwt_auth) as (_server, (alice, bob, root)):
        described = (await alice.get("auth/apikey/me")).json()
        assert set(described) == {"key_id", "name", "note", "details"}
        assert described != (await bob.get("auth/apikey/me")).json()  # each key its own record
        token = (await alice.ok("auth/token", {}))["jwt"] if jwt_auth else None
        deleted = await alice.request("DELETE", "auth/apikey/me", content_type=None)
        assert deleted.status_code == 200, deleted.text
        # the raw key, and a JWT issued for it before, are refused everywhere
        refused = [
            await alice.get("auth/apikey/me"),
            await alice.post("auth/token", {}),
            await alice.get("/_local/counters"),
        ]
        if token is not None:
            alice.key = token
            refused.append(await alice.get("get_server_capabilities"))
        for response in refused:
            assert response.status_code == 401, response.text
            assert "deleted" in response.json()["detail"]
        # no other key is touched
        assert (await bob.get("auth/apikey/me")).status_code == 200
        assert (await root.get("/_local/counters")).status_code == 200
