"""The local server keeps only the most recently used ephemeral samplers of a training run.

RL loops call ``save_weights_and_get_sampling_client`` every step; each call writes a copy of the
sampler weights. These tests drive that pattern through the SDK and check what is left on disk
and in the records, which samplers go (least recently used, never one with a sample running),
and what a client hears when it samples from a retired one.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from sdk_support import served_runtime, totals

from tinker_actors.clients import SamplingClient, TrainingClient
from tinker_actors.errors import NotFoundError
from tinker_actors.local import LatencyModel, LocalServer, NullBackend, ServerSettings
from tinker_actors.types import ModelInput, SamplingParams

PROMPT = ModelInput.from_ints([11, 12, 13, 14])
PARAMS = SamplingParams(max_tokens=2, seed=1)


def _ephemeral_names(server: LocalServer) -> list[str]:
    store = server.engine.core.store
    return [c.name for run in store.runs.values() for c in run.checkpoints if c.ephemeral]


def _on_disk(data_dir: Path) -> tuple[int, int]:
    """(sampler weight directories, sampler records) under the data dir."""
    weights = [p for p in data_dir.glob("runs/*/checkpoints/sampler_weights/*") if p.is_dir()]
    records = list(data_dir.glob("samplers/*.json"))
    return len(weights), len(records)


async def _sample(client: SamplingClient) -> None:
    result = await (await client.sample(PROMPT, 1, PARAMS)).result()
    assert len(result.sequences) == 1


async def _new_sampler(tc: TrainingClient) -> SamplingClient:
    return await tc.save_weights_and_get_sampling_client()


async def test_an_rl_loop_leaves_only_the_last_samplers_on_disk(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    settings = ServerSettings(data_dir=tmp_path, ephemeral_samplers=3)
    async with served_runtime(lambda app: app, settings=settings) as (rt, server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            named = await (await tc.save_weights_for_sampler("kept")).result()
            samplers = []
            for _ in range(10):
                samplers.append(await _new_sampler(tc))
                await _sample(samplers[-1])
            assert len(_ephemeral_names(server)) == 3
            # the three newest weight copies and the named save; their sessions' records
            assert _on_disk(tmp_path) == (4, 3)
            assert totals(server)["ephemeral_samplers_retired"] == 7
            session = next(iter(server.engine.core.store.sessions.values()))
            assert session.sampler_ids == [s.sampling_session_id for s in samplers[-3:]]
            for client in samplers[-3:]:
                await _sample(client)
            # a named save is the user's to keep, and sampling from it still works
            from_path = await rt.create_sampling_client(model_path=named.path)
            await _sample(from_path)


async def test_a_retired_sampler_answers_404_saying_what_to_do(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with served_runtime(lambda app: app, ephemeral_samplers=1) as (rt, server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            old = await _new_sampler(tc)
            await _sample(old)
            await _sample(await _new_sampler(tc))
            with pytest.raises(NotFoundError) as caught:
                await _sample(old)
            message = str(caught.value)
            assert f"sampling session {old.sampling_session_id!r} was retired" in message
            assert "keeps the 1 most recently used" in message
            assert "--ephemeral-samplers" in message
            assert totals(server)["applied:Sample"] == 2


async def test_the_least_recently_used_goes_not_the_oldest(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with served_runtime(lambda app: app, ephemeral_samplers=2) as (rt, _server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            first, second = await _new_sampler(tc), await _new_sampler(tc)
            await _sample(first)  # first is now more recent than second
            third = await _new_sampler(tc)
            await _sample(first)
            await _sample(third)
            with pytest.raises(NotFoundError, match="was retired"):
                await _sample(second)


async def test_a_sampler_with_a_sample_running_is_kept_until_it_finishes(
    autojump_clock: trio.abc.Clock,
) -> None:
    slow = NullBackend(latency={"sample": LatencyModel(kind="fixed", a=30)})
    async with served_runtime(lambda app: app, backend=slow, ephemeral_samplers=1) as (
        rt,
        server,
        _app,
    ):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            busy = await _new_sampler(tc)
            running = await busy.sample(PROMPT, 1, PARAMS)
            await trio.sleep(1)  # accepted and running on the server
            newer = await _new_sampler(tc)
            assert len(_ephemeral_names(server)) == 2  # busy is over the limit but kept
            result = await running.result()
            assert len(result.sequences) == 1
            await _new_sampler(tc)  # now busy (and newer) are idle: both beyond keep=1 go
            assert len(_ephemeral_names(server)) == 1
            for gone in (busy, newer):
                with pytest.raises(NotFoundError, match="was retired"):
                    await _sample(gone)


async def test_none_keeps_every_ephemeral_sampler(autojump_clock: trio.abc.Clock) -> None:
    async with served_runtime(lambda app: app, ephemeral_samplers=None) as (rt, server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            samplers = [await _new_sampler(tc) for _ in range(40)]
            assert len(_ephemeral_names(server)) == 40
            await _sample(samplers[0])
            assert totals(server).get("ephemeral_samplers_retired", 0) == 0


def test_settings_refuse_keeping_none_by_zero() -> None:
    with pytest.raises(ValueError, match="ephemeral_samplers must be at least 1"):
        ServerSettings(ephemeral_samplers=0)
