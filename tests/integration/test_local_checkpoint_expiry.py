"""Checkpoints whose ttl passed are deleted from disk; a sampler over gone weights says so.

Every answer already treated an expired checkpoint as gone; the server's sweep now also frees
its files. A sampling session opened on sampler weights that were since deleted (by the user or
by their ttl) answers 404 with what happened, instead of failing inside the backend.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from sdk_support import served_runtime, totals

from tinker_actors.errors import NotFoundError
from tinker_actors.local import LocalServer, ServerSettings
from tinker_actors.types import ModelInput, SamplingParams

PROMPT = ModelInput.from_ints([11, 12, 13, 14])
PARAMS = SamplingParams(max_tokens=2, seed=1)
HOUR = 3600


class WallClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _names(server: LocalServer) -> set[str]:
    runs = server.engine.core.store.runs.values()
    return {c.checkpoint_id for run in runs for c in run.checkpoints if not c.ephemeral}


def _dirs(data_dir: Path) -> set[str]:
    found = data_dir.glob("runs/*/checkpoints/*/*")
    return {f"{p.parent.name}/{p.name}" for p in found if p.is_dir()}


async def test_expired_checkpoints_leave_the_disk_and_their_sampler_says_why(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    clock = WallClock()
    settings = ServerSettings(data_dir=tmp_path, wall_clock=clock)
    async with served_runtime(lambda app: app, settings=settings) as (rt, server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            await (await tc.save_state("kept")).result()
            await (await tc.save_state("hour", ttl_seconds=HOUR)).result()
            short = await (await tc.save_weights_for_sampler("s", ttl_seconds=HOUR)).result()
            sampler = await rt.create_sampling_client(model_path=short.path)
            await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            assert _dirs(tmp_path) == {"weights/kept", "weights/hour", "sampler_weights/s"}

            clock.now += HOUR + 1
            await trio.sleep(10)  # the server's sweep runs every few seconds
            assert _names(server) == {"weights/kept"}
            assert _dirs(tmp_path) == {"weights/kept"}
            assert totals(server)["checkpoints_expired"] == 2
            with pytest.raises(NotFoundError) as caught:
                await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            message = str(caught.value)
            assert "are gone: that checkpoint was deleted or its ttl passed" in message
            assert short.path in message


async def test_a_sampler_over_deleted_weights_is_a_404_not_a_backend_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with served_runtime(lambda app: app) as (rt, server, _app):
        tc = await rt.create_lora_training_client("local/tiny", rank=4)
        with trio.fail_after(600):
            saved = await (await tc.save_weights_for_sampler("s")).result()
            sampler = await rt.create_sampling_client(model_path=saved.path)
            await rt.create_rest_client().delete_checkpoint_from_tinker_path(saved.path)
            with pytest.raises(NotFoundError, match="are gone"):
                await (await sampler.sample(PROMPT, 1, PARAMS)).result()
            assert totals(server).get("applied:Sample", 0) == 0
