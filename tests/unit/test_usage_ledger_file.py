"""The usage ledger's file: every note on disk when it is noted, and read back on start."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tinker_actors.local._usage import UsageLedger


def _lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def test_each_note_is_on_disk_and_a_removed_directory_is_made_again(tmp_path: Path) -> None:
    ledger = UsageLedger(tmp_path, lambda: 1_700_000_000.0)
    notes = tmp_path / "usage" / "notes.jsonl"
    assert not notes.exists()  # nothing noted, nothing made
    ledger.used("sampling_sample", 5, base_model="m", session_id="s")
    ledger.used("training", 7, base_model="m", session_id="s")
    assert _lines(notes) == 2
    shutil.rmtree(tmp_path / "usage")  # e.g. a data directory cleaned under a running server
    ledger.used("sampling_sample", 3, base_model="m", session_id="s")
    assert _lines(notes) == 1
    again = UsageLedger(tmp_path, lambda: 1_700_000_000.0)
    again.used("sampling_sample", 1, base_model="m", session_id="s")
    assert _lines(notes) == 2  # read back on start, appended to


def test_zero_counts_write_nothing(tmp_path: Path) -> None:
    UsageLedger(tmp_path, lambda: 0.0).used("sampling_sample", 0, base_model="m", session_id="s")
    assert not (tmp_path / "usage").exists()


def test_an_unknown_kind_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ledger = UsageLedger(tmp_path, lambda: 0.0)
    with pytest.raises(ValueError, match="unknown usage kind 'sampling'"):
        ledger.used("sampling", 5, base_model="m", session_id="s")  # type: ignore[arg-type]
    assert not (tmp_path / "usage").exists()
    ledger.used("sampling_sample", 5, base_model="m", session_id="s")
    UsageLedger(tmp_path, lambda: 0.0)  # what was written reads back (a bad kind would raise)
    assert _lines(tmp_path / "usage" / "notes.jsonl") == 1
