"""A checkpoint save that fails half-way (a full disk) leaves nothing, and breaks nothing.

The backend below writes part of a save's files and then fails as a full disk does. The save
fails alone, with a server-side error that says the disk is full and what to do; no files are
left behind; a checkpoint it was replacing keeps its files; training and later saves go on.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from sdk_support import served_runtime

from tinker_actors.errors import RequestFailedError
from tinker_actors.local import LocalServer, NullBackend, ServerSettings
from tinker_actors.types import AdamParams, Datum, ModelInput

DISK_FULL = OSError(errno.ENOSPC, "No space left on device")


class FlakyDiskBackend(NullBackend):
    """Writes a save's files plus a partial one, then raises ``fail`` (while it is set)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail: BaseException | None = None

    async def _then_fail(self, directory: Path, size: int) -> int:
        if self.fail is not None:
            (directory / "partial.bin").write_bytes(b"\0" * 4096)
            raise self.fail
        return size

    async def save_state(self, model_id: str, directory: Path, *, optimizer: bool) -> int:
        size = await super().save_state(model_id, directory, optimizer=optimizer)
        return await self._then_fail(directory, size)

    async def save_external(self, model_id: str, directory: Path) -> int:
        return await self._then_fail(directory, await super().save_external(model_id, directory))


def _files(data_dir: Path) -> dict[str, str]:
    """Every file under the runs' checkpoints, hidden ones included, with its digest."""
    return {
        str(p.relative_to(data_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(data_dir.glob("runs/*/checkpoints/**/*"))
        if p.is_file()
    }


def _hidden(data_dir: Path) -> list[Path]:
    return list(data_dir.glob("runs/*/checkpoints/*/.*"))


def _listed(server: LocalServer) -> set[str]:
    runs = server.engine.core.store.runs.values()
    return {c.checkpoint_id for run in runs for c in run.checkpoints}


async def _step(tc: Any) -> None:
    datum = Datum(
        model_input=ModelInput.from_ints([5, 6, 7]), loss_fn_inputs={"target_tokens": [6, 7, 8]}
    )
    await (await tc.forward_backward([datum], "cross_entropy")).result()
    await (await tc.optim_step(AdamParams(learning_rate=1e-3))).result()


@asynccontextmanager
async def _training(tmp_path: Path) -> AsyncIterator[tuple[FlakyDiskBackend, LocalServer, Any]]:
    """A server on ``tmp_path`` with a :class:`FlakyDiskBackend`, and a LoRA training client."""
    backend = FlakyDiskBackend()
    settings = ServerSettings(data_dir=tmp_path)
    async with served_runtime(lambda app: app, backend=backend, settings=settings) as (
        rt,
        server,
        _app,
    ):
        yield backend, server, await rt.create_lora_training_client("local/tiny", rank=4)


async def test_a_save_on_a_full_disk_fails_alone_and_leaves_no_files(tmp_path: Path) -> None:
    async with _training(tmp_path) as (backend, server, tc):
        with trio.fail_after(60):
            await (await tc.save_state("before")).result()
            kept = _files(tmp_path)
            backend.fail = DISK_FULL
            with pytest.raises(RequestFailedError) as caught:
                await (await tc.save_state("during")).result()
            assert caught.value.category == "server"
            message = caught.value.message
            assert "weights/during failed: the local server's data directory is out of space" in (
                message
            )
            assert "nothing was saved" in message
            assert "--ephemeral-samplers" in message
            assert _files(tmp_path) == kept  # no partial file, no staging directory
            assert _listed(server) == {"weights/before"}
            backend.fail = None
            await _step(tc)  # the model trains on
            await (await tc.save_state("after")).result()
        assert _listed(server) == {"weights/before", "weights/after"}
        assert not _hidden(tmp_path)


async def test_a_failed_overwrite_keeps_the_checkpoint_it_was_replacing(tmp_path: Path) -> None:
    async with _training(tmp_path) as (backend, server, tc):
        with trio.fail_after(60):
            first = await (await tc.save_weights_external("export")).result()
            old = _files(tmp_path)
            await _step(tc)  # the next export's contents differ
            backend.fail = ValueError("the storage layer gave up")
            with pytest.raises(RequestFailedError) as caught:
                await (await tc.save_weights_external("export")).result()
            assert "failed writing its files (ValueError('the storage layer gave up'))" in (
                caught.value.message
            )
            assert "an earlier checkpoint of that name is unchanged" in caught.value.message
            assert _files(tmp_path) == old  # byte for byte
            backend.fail = None
            second = await (await tc.save_weights_external("export")).result()
        assert second.path == first.path
        new = _files(tmp_path)
        assert new.keys() == old.keys()  # nothing left aside
        assert new != old  # replaced whole
        assert _listed(server) == {"external_weights/export"}


async def test_a_record_that_cannot_be_written_is_a_507_that_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from tinker_actors.local import open_local_server
    from tinker_actors.local._records import RecordStore

    def no_room(self: RecordStore, record: object) -> None:
        raise DISK_FULL

    async with open_local_server(settings=ServerSettings(data_dir=tmp_path)) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            monkeypatch.setattr(RecordStore, "save_session", no_room)
            with trio.fail_after(60):
                answer = await client.post(
                    "/api/v1/create_session",
                    json={"sdk_version": "0.38.0", "tags": [], "type": "create_session"},
                    headers={"X-API-Key": "tml-local-test"},
                )
    assert answer.status_code == 507
    detail = answer.json()["detail"]
    assert "the local server's data directory is out of space" in detail
    assert "Free space on that disk" in detail
