"""Sampler handles and pickling: a clone in another runtime samples on the same session."""

from __future__ import annotations

import base64
import json
import pickle
from typing import Any

import pytest
import trio
from sdk_support import KEY, BufferedTap, open_runtime

import tinker_actors as ta
from tinker_actors.clients import SamplingClient
from tinker_actors.local import open_local_server
from tinker_actors.types import ClientConfigResponse, ModelInput, SamplingParams

PROMPT = ModelInput.from_ints([21, 22, 23])


class Seqs(BufferedTap):
    """ASGI middleware that keeps the seq_id of every asample and join requests."""

    def __init__(self, app: Any) -> None:
        super().__init__(app)
        self.asample: list[tuple[str, int]] = []
        self.joins = 0

    async def inspect(self, path: str, raw: bytes) -> int | None:
        if path == "/api/v1/asample":
            body = json.loads(raw)
            self.asample.append((body["sampling_session_id"], body["seq_id"]))
        if path == "/api/v1/join_sampling_session":
            self.joins += 1
        return None


@pytest.mark.parametrize("join", [True, False])
async def test_a_handle_round_trips_into_a_second_runtime(
    autojump_clock: trio.abc.Clock, join: bool
) -> None:
    flags = ClientConfigResponse(sample_join_sampling_session=join)
    async with open_local_server(client_config=flags) as server:
        app = Seqs(server.app)

        async with open_runtime(app) as first, open_runtime(app) as second:
            original = await first.create_sampling_client(base_model="local/tiny")
            with trio.fail_after(120):
                params = SamplingParams(max_tokens=3, seed=5)
                await (await original.sample(PROMPT, 1, params)).result()
                handle = original.get_sampler_handle()
                clone = await SamplingClient.from_sampler_handle(handle, second)
                out = await (await clone.sample(PROMPT, 1, params)).result()
                again = await (await original.sample(PROMPT, 1, params)).result()
        assert len(out.sequences) == 1
        assert out.sequences[0].tokens == again.sequences[0].tokens  # same session, same seed
        assert clone.sampling_session_id == original.sampling_session_id
        assert clone.get_base_model() == "local/tiny"
        sid = original.sampling_session_id
        ids = [seq for session, seq in app.asample if session == sid]
        assert ids[0] == 0
        assert ids[2] == 1
        clone_id = ids[1] // 1_000_000_000
        assert ids[1] == clone_id * 1_000_000_000
        if join:
            assert app.joins == 1
            assert clone_id == 1  # the server's client_counter: the original is 0
        else:
            assert app.joins == 0
            assert 1 <= clone_id <= 1_000_000_000
    decoded = base64.urlsafe_b64decode(handle)
    assert KEY.encode() not in decoded
    assert json.loads(decoded)["api_key"] is None
    assert all(c.isalnum() or c in "-_=" for c in handle)


async def test_pickled_client_carries_no_key_and_attaches_to_a_runtime(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Seqs(server.app)
        async with open_runtime(app) as rt:
            original = await rt.create_sampling_client(base_model="local/tiny")
            blob = pickle.dumps(original)
            assert KEY.encode() not in blob
            copy = pickle.loads(blob)
            assert isinstance(copy, SamplingClient)
            assert copy.sampling_session_id == original.sampling_session_id
            assert copy.get_sampler_handle() == original.get_sampler_handle()
            with pytest.raises(ta.InvalidInputError, match="attach"):
                await copy.sample(PROMPT, 1, SamplingParams(max_tokens=2))
            with trio.fail_after(120):
                attached = await copy.attach(rt)
                out = await (
                    await attached.sample(PROMPT, 2, SamplingParams(max_tokens=2))
                ).result()
        assert len(out.sequences) == 2


async def test_bad_handles_are_refused_before_anything_is_sent(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with open_local_server() as server:
        app = Seqs(server.app)
        async with open_runtime(app) as rt, open_runtime(app, base_url="http://other") as other:
            original = await rt.create_sampling_client(base_model="local/tiny")
            for bad in ("", "not base64 !", base64.urlsafe_b64encode(b'{"x": 1}').decode()):
                with pytest.raises(ta.InvalidInputError, match="sampler handle"):
                    await SamplingClient.from_sampler_handle(bad, rt)
            with pytest.raises(ta.InvalidInputError, match="http://local"):
                await SamplingClient.from_sampler_handle(original.get_sampler_handle(), other)
