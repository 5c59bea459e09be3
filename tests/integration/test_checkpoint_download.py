"""download_checkpoint: a checkpoint's files into a new directory, through a loopback server.

The signed URLs the local server hands out point at itself, so the server runs on a real
loopback port (a thread) and the runtime talks to it over TCP. Real clock: the server thread's
answers do not follow a virtual one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

import tinker_actors as ta
from tinker_actors.local import FaultPlan
from tinker_actors.testing import server_in_thread
from tinker_actors.types import AdamParams, Datum, ModelInput

KEY = "tml-download-key"


@pytest.fixture
def url() -> Iterator[str]:
    with server_in_thread() as (served, _server):
        yield served


@asynccontextmanager
async def trained(url: str) -> AsyncIterator[tuple[ta.Runtime, ta.TrainingClient]]:
    tokens = np.arange(10, 27, dtype=np.int64)
    datum = Datum(
        model_input=ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": np.ones(16, np.float32)},
    )
    with trio.fail_after(60):
        async with ta.open(base_url=url, api_key=KEY) as runtime:
            training = await runtime.create_lora_training_client("local/tiny", rank=4)
            await (await training.forward_backward([datum], "cross_entropy")).result()
            await (await training.optim_step(AdamParams(learning_rate=1e-3))).result()
            yield runtime, training


def listing(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


async def test_a_training_checkpoint_lands_whole_with_progress(url: str, tmp_path: Path) -> None:
    events: list[ta.DownloadProgress] = []
    async with trained(url) as (runtime, training):
        path = (await (await training.save_state("final")).result()).path
        into = tmp_path / "adapters" / "final"
        done = await ta.download_checkpoint(runtime, path, into, on_progress=events.append)
        assert done.destination == into.resolve()
        assert done.files == listing(into) != []
        assert done.size_bytes == sum((into / f).stat().st_size for f in done.files) > 0
        assert [p.name for p in (tmp_path / "adapters").iterdir()] == ["final"]  # no staging
        assert {e.stage for e in events} == {"download"}
        assert [e.name for e in events][-1] == "weights/final"
        assert [e.done for e in events] == sorted(e.done for e in events)

        # an existing directory is refused before anything is sent, replaced with force
        with pytest.raises(ta.InvalidInputError, match="already exists; pass force=True"):
            await ta.download_checkpoint(runtime, path, into)
        (into / "stale.txt").write_text("old")
        again = await ta.download_checkpoint(runtime, path, into, force=True)
        assert again.files == done.files == listing(into)


async def test_external_weights_come_file_by_file(url: str, tmp_path: Path) -> None:
    async with trained(url) as (runtime, training):
        path = (await (await training.save_weights_external("ext")).result()).path
        names: set[str] = set()
        done = await ta.download_checkpoint(
            runtime, path, tmp_path / "ext", on_progress=lambda e: names.add(e.name)
        )
    assert done.files == listing(tmp_path / "ext") != []
    assert names == set(done.files)


async def test_bad_arguments_are_refused_before_anything_is_sent(url: str, tmp_path: Path) -> None:
    async with trained(url) as (runtime, training):
        sampler = (await (await training.save_weights_for_sampler("s")).result()).path
        state = (await (await training.save_state("s")).result()).path
        cases: list[tuple[dict[str, Any], str]] = [
            ({"path": sampler}, "sampler_weights checkpoint, which cannot be downloaded"),
            ({"path": "tinker://run/nope/x"}, "nope"),
            ({"path": state, "max_bytes": 0}, "max_bytes must be a positive int"),
            ({"path": state, "max_files": True}, "max_files must be a positive int"),
            ({"path": state, "on_progress": "bar"}, "on_progress must be callable"),
        ]
        for kwargs, message in cases:
            with pytest.raises(ta.InvalidInputError, match=message):
                await ta.download_checkpoint(runtime, into=tmp_path / "x", **kwargs)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's own temporary directory


async def test_failures_leave_nothing_behind(url: str, tmp_path: Path) -> None:
    async with trained(url) as (runtime, training):
        state = (await (await training.save_state("big")).result()).path
        external = (await (await training.save_weights_external("big")).result()).path
        missing = state.replace("/big", "/nope")
        with pytest.raises(ta.CheckpointDownloadError, match=f"no checkpoint {missing}"):
            await ta.download_checkpoint(runtime, missing, tmp_path / "a")
        with pytest.raises(ta.CheckpointDownloadError, match="larger than 16 bytes"):
            await ta.download_checkpoint(runtime, state, tmp_path / "b", max_bytes=16)
        with pytest.raises(ta.CheckpointDownloadError, match="larger than 16 bytes"):
            await ta.download_checkpoint(runtime, external, tmp_path / "c", max_bytes=16)

        def interrupt(event: ta.DownloadProgress) -> None:
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            await ta.download_checkpoint(runtime, state, tmp_path / "d", on_progress=interrupt)
        with pytest.raises(RuntimeError, match="stop"):
            await ta.download_checkpoint(runtime, external, tmp_path / "e", on_progress=interrupt)
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 - a test's own temporary directory


async def test_without_an_archive_endpoint_it_exports_and_cleans_up(tmp_path: Path) -> None:
    plan = FaultPlan.from_flags(["/api/v1/training_runs/*/archive:404"])
    with server_in_thread(faults=plan) as (url, _server):
        stages: list[str] = []
        async with trained(url) as (runtime, training):
            path = (await (await training.save_state("final")).result()).path
            done = await ta.download_checkpoint(
                runtime, path, tmp_path / "out", on_progress=lambda e: stages.append(e.stage)
            )
            run_id = path.removeprefix("tinker://").split("/", 1)[0]
            rest = runtime.create_rest_client()
            left = (await rest.list_user_checkpoints(limit=100)).checkpoints
    assert stages[0] == "export"
    assert set(stages[1:]) == {"download"}
    assert done.files == listing(tmp_path / "out") != []
    assert not [c for c in left if c.checkpoint_id == "external_weights/download"]
    assert run_id  # the checkpoint itself is still there (only the export was deleted)
