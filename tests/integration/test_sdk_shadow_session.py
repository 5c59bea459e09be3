"""Sampler handles in another runtime join the original session as a shadow holder (§2, §9.9)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
from sdk_support import BufferedTap, open_runtime

from tinker_actors.clients import SamplingClient
from tinker_actors.local import LocalServer, open_local_server
from tinker_actors.types import ClientConfigResponse, ModelInput, SamplingParams

PROMPT = ModelInput.from_ints([5, 6, 7])
PARAMS = SamplingParams(max_tokens=2, seed=9)


class Paths(BufferedTap):
    """ASGI middleware: records (path, JSON body) of one runtime's requests."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.requests: list[tuple[str, Any]] = []

    def bodies(self, path: str) -> list[Any]:
        return [body for p, body in self.requests if p == path]

    async def inspect(self, path: str, raw: bytes) -> int | None:
        self.requests.append((path, json.loads(raw) if raw else None))
        return None


def sessions(server: LocalServer) -> dict[str, Any]:
    out: dict[str, Any] = server.engine.core.store.sessions
    return out


@pytest.mark.parametrize("batched", [False, True])
async def test_handle_in_second_runtime_shadows_the_session(
    autojump_clock: trio.abc.Clock, batched: bool
) -> None:
    flags = ClientConfigResponse(sample_use_retrieve_futures=batched)
    async with open_local_server(client_config=flags) as server:
        one, two = Paths(server.app), Paths(server.app)
        with trio.fail_after(600):
            async with open_runtime(one) as first:
                original = await first.create_sampling_client(base_model="local/tiny")
                session_id = await first.session_id()
                handle = original.get_sampler_handle()
                async with open_runtime(two) as second:
                    clone = await SamplingClient.from_sampler_handle(handle, second)
                    out = await (await clone.sample(PROMPT, 1, PARAMS)).result()
                    assert len(out.sequences) == 1
                    # exactly one session: the second runtime created none of its own
                    assert list(sessions(server)) == [session_id]
                    paths = [p for p, _ in two.requests]
                    assert "/api/v1/create_session" not in paths
                    assert paths[:2] == ["/api/v1/client/config", "/api/v1/client/dynamic_config"]
                    # the sample landed on the original sampling session, in a clone's range
                    (body,) = two.bodies("/api/v1/asample")
                    assert body["sampling_session_id"] == original.sampling_session_id
                    assert body["seq_id"] >= 1_000_000_000
                    # the shadow heartbeats the original session
                    await trio.sleep(35)
                    beats = two.bodies("/api/v1/session_heartbeat")
                    assert len(beats) >= 3
                    assert {b["session_id"] for b in beats} == {session_id}
                    assert second.service._ctx.shadows is not None
                    assert second.service._ctx.shadows.session_ids == [session_id]
                    # a second handle on the same session shares the one heartbeat
                    again = await SamplingClient.from_sampler_handle(handle, second)
                    assert again.sampling_session_id == original.sampling_session_id
                    await trio.sleep(10)
                    assert len(two.bodies("/api/v1/session_heartbeat")) == len(beats) + 1
                # leaving the second runtime does not finish the session: the owner does
                assert two.bodies(f"/api/v1/sessions/{session_id}/finish") == []
                assert sessions(server)[session_id].finished is None
                more = await (await original.sample(PROMPT, 1, PARAMS)).result()
                assert len(more.sequences) == 1
                # the shadow's heartbeat stopped with its runtime
                beats_after = len(two.bodies("/api/v1/session_heartbeat"))
                await trio.sleep(30)
                assert len(two.bodies("/api/v1/session_heartbeat")) == beats_after
            assert sessions(server)[session_id].finished is not None
            assert len(one.bodies(f"/api/v1/sessions/{session_id}/finish")) == 1


async def test_handle_in_the_owning_runtime_uses_its_own_session(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Paths(server.app)
        with trio.fail_after(600):
            async with open_runtime(app) as rt:
                original = await rt.create_sampling_client(base_model="local/tiny")
                clone = await SamplingClient.from_sampler_handle(original.get_sampler_handle(), rt)
                await (await clone.sample(PROMPT, 1, PARAMS)).result()
                assert rt.service._ctx.shadows is not None
                assert rt.service._ctx.shadows.session_ids == []
                assert [p for p, _ in app.requests].count("/api/v1/client/config") == 1
        assert len(sessions(server)) == 1


async def test_shadow_stops_beating_a_finished_session(autojump_clock: trio.abc.Clock) -> None:
    async with open_local_server() as server:
        one, two = Paths(server.app), Paths(server.app)
        with trio.fail_after(600):
            async with open_runtime(two) as second:
                async with open_runtime(one) as first:
                    original = await first.create_sampling_client(base_model="local/tiny")
                    handle = original.get_sampler_handle()
                    clone = await SamplingClient.from_sampler_handle(handle, second)
                    await (await clone.sample(PROMPT, 1, PARAMS)).result()
                # the owner left and finished the session: the shadow's next beat gets 410
                await trio.sleep(25)
                beats = len(two.bodies("/api/v1/session_heartbeat"))
                await trio.sleep(60)
                assert len(two.bodies("/api/v1/session_heartbeat")) == beats
                assert second.service._ctx.shadows is not None
                assert second.service._ctx.shadows.session_ids == []
