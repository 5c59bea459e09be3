"""Saving and finding a run's checkpoints: names, lookups, and files written aside.

A save writes the backend's files into a staging directory, moves them into place whole
(:mod:`._staging`), and only then records the checkpoint and notes it in the usage ledger, so a
failed save leaves neither files nor a record, and a failed overwrite leaves the checkpoint it
was replacing as it was.
"""

from __future__ import annotations

import re
import shutil
from typing import TYPE_CHECKING

from tinker_actors.errors import InvalidInputError
from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._core import EngineError, check_not_expired
from tinker_actors.local._records import CheckpointKind, CheckpointRecord, RunRecord
from tinker_actors.local._staging import commit, failure, staging_dir
from tinker_actors.types import TinkerPath

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from tinker_actors.local._core import EngineCore, _Model

__all__ = ["checkpoint_name", "find_checkpoint", "save_checkpoint"]

# fullmatch, never match: "$" also matches before a final newline ("evil\n")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def checkpoint_name(path: object, seq_id: object) -> str:
    """The checkpoint name a save request asks for (``checkpoint-<seq_id>`` when none)."""
    if not isinstance(path, str):
        return f"checkpoint-{seq_id}"
    if not _NAME.fullmatch(path):
        raise EngineError(
            400,
            f"invalid checkpoint name {path!r}: use 1-128 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (no '/')",
        )
    return path


def find_checkpoint(
    core: EngineCore, path: str, kind: CheckpointKind
) -> tuple[CheckpointRecord, RunRecord]:
    """The listed, readable, unexpired checkpoint at ``path`` of ``kind``, and its run."""
    try:
        parsed = TinkerPath.parse(path)
    except InvalidInputError as exc:
        raise EngineError(400, str(exc)) from None
    run = core.store.runs.get(parsed.training_run_id)
    if run is None or not core.readable_run(run):
        raise EngineError(404, f"no training run {parsed.training_run_id!r} (from {path})")
    if parsed.checkpoint_type != kind:
        raise EngineError(
            400,
            f"{path} is a {parsed.checkpoint_type} checkpoint; this operation needs a "
            f"{kind} one (save it with save_state)",
        )
    for checkpoint in run.checkpoints:
        if (
            checkpoint.kind == kind
            and checkpoint.name == parsed.name
            and not checkpoint.ephemeral
            and core.readable(run, checkpoint)
        ):
            check_not_expired(checkpoint, core.wall_time())
            return checkpoint, run
    raise EngineError(404, f"no checkpoint {path}")


async def save_checkpoint(
    core: EngineCore,
    model: _Model,
    kind: CheckpointKind,
    name: str,
    overwrite: bool,
    ttl: int | None,
    metadata: dict[str, str] | None,
    *,
    optimizer: bool = False,
    ephemeral: bool = False,
    finish: Callable[[Path], Awaitable[int]] | None = None,
) -> CheckpointRecord:
    """Write a checkpoint's files aside, move them into place, then record it.

    ``finish`` (encryption) runs on the complete files before they are moved; it returns
    their new size. A failed write leaves no files and no record (see ``_staging``).
    """
    run = model.record
    existing = [c for c in run.checkpoints if c.kind == kind and c.name == name]
    if existing and not overwrite:
        raise EngineError(
            409,
            f"checkpoint {existing[0].tinker_path} exists; pass overwrite=True to replace it",
        )
    now = core.wall_time()
    checkpoint = CheckpointRecord(
        run_id=run.run_id,
        kind=kind,
        name=name,
        created=now,
        expires_at=now + ttl if ttl is not None else None,
        user_metadata=metadata,
        has_optimizer=optimizer,
        ephemeral=ephemeral,
    )
    directory = core.store.checkpoint_dir(checkpoint)
    staging = staging_dir(directory)
    try:
        if kind == "training":
            size = await core.backend.save_state(run.run_id, staging, optimizer=optimizer)
        elif kind == "external":
            size = await core.backend.save_external(run.run_id, staging)
        else:
            size = await core.backend.save_sampler(run.run_id, staging)
        if finish is not None:
            size = await finish(staging)
        commit(staging, directory)
    except (BackendInputError, EngineError):
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:
        raise failure(staging, f"saving {checkpoint.tinker_path}", exc) from exc
    except BaseException:  # cancelled: nothing of this save may stay
        shutil.rmtree(staging, ignore_errors=True)
        raise
    checkpoint.size_bytes = size
    run.checkpoints = [c for c in run.checkpoints if c not in existing] + [checkpoint]
    core.store.save_run(run)
    core.usage.saved(run, checkpoint, existing)
    return checkpoint
