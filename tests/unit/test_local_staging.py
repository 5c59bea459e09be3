"""Checkpoint writes go aside and into place whole (tinker_actors.local._staging)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tinker_actors.local._staging import commit, failure, recover, staging_dir


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def _write(directory: Path, text: str) -> None:
    directory.mkdir(parents=True)
    (directory / "adapter.json").write_text(text)


def test_commit_replaces_a_checkpoint_whole_and_leaves_nothing_aside(tmp_path: Path) -> None:
    target = tmp_path / "weights" / "latest"
    _write(target, "old")
    (target / "optimizer.pt").write_text("old state")
    staging = staging_dir(target)
    assert staging.parent == target.parent
    assert staging.name.startswith(".staging-latest-")
    _write(staging, "new")
    commit(staging, target)
    assert _tree(tmp_path) == {"weights/latest/adapter.json": "new"}  # no stale optimizer.pt


def test_commit_into_a_new_name(tmp_path: Path) -> None:
    target = tmp_path / "weights" / "first"
    staging = staging_dir(target)  # makes the parent
    _write(staging, "new")
    commit(staging, target)
    assert _tree(tmp_path) == {"weights/first/adapter.json": "new"}


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), True),
        (RuntimeError("Error while serializing: I/O error: No space left on device"), True),
        (PermissionError(errno.EACCES, "Permission denied"), False),
        (ValueError("boom"), False),
    ],
)
def test_failure_removes_the_staging_files_and_names_a_full_disk(
    tmp_path: Path, error: BaseException, full: bool
) -> None:
    staging = staging_dir(tmp_path / "weights" / "x")
    _write(staging, "partial")
    err = failure(staging, "saving tinker://r/weights/x", error)
    assert not staging.exists()
    assert err.full is full
    text = str(err)
    assert text.startswith("saving tinker://r/weights/x failed")
    assert "an earlier checkpoint of that name is unchanged" in text
    assert ("out of space" in text) is full


def test_recover_undoes_a_swap_cut_between_its_renames_and_drops_the_rest(
    tmp_path: Path,
) -> None:
    kind = tmp_path / "runs" / "s~train~0" / "checkpoints" / "weights"
    _write(kind / ".staging-a-1234abcd", "abandoned")
    _write(kind / ".old-b-with-dashes-1234abcd", "b, moved aside before the crash")
    _write(kind / ".staging-b-with-dashes-99999999", "b's replacement, never moved in")
    _write(kind / "c", "c, replaced")
    _write(kind / ".old-c-00000000", "c's predecessor")
    (kind / ".c.0123456789abcdef.tar.gz").write_text("an archive, not a directory")
    recover(tmp_path / "runs")
    assert _tree(kind) == {
        "b-with-dashes/adapter.json": "b, moved aside before the crash",
        "c/adapter.json": "c, replaced",
        ".c.0123456789abcdef.tar.gz": "an archive, not a directory",
    }
    recover(tmp_path / "nothing-here")  # a new data directory


def test_the_store_recovers_when_the_server_starts(tmp_path: Path) -> None:
    from tinker_actors.local._records import RecordStore

    kind = tmp_path / "runs" / "s~train~0" / "checkpoints" / "sampler_weights"
    _write(kind / ".staging-s-1234abcd", "a save the crash cut short")
    RecordStore(tmp_path)
    assert list(kind.iterdir()) == []
