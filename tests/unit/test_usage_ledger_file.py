"""The usage ledger's file: every note on disk when it is noted, and read back on start.

It holds hourly sums, and its notes file is compacted to them: a sample request makes two usage
notes, and over a long run the ledger must not grow with the number of requests, in memory or
on disk, nor change what it answers when it compacts or is read back after a restart.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest

from tinker_actors.local._records import RecordStore
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


HOUR = 3600.0
START = 1_700_000_000.0  # 2023-11-14T22:13:20Z
WINDOW = ("2023-11-14T22:00:00Z", "2023-11-15T02:00:00Z")


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _answers(ledger: UsageLedger, store: RecordStore) -> tuple[object, object]:
    usage = ledger.billing_usage(store, *WINDOW)
    audit = ledger.audit_log("all", "2023-11-14")
    return usage, audit


def _file_lines(data_dir: Path) -> int:
    return _lines(data_dir / "usage" / "notes.jsonl")


def test_a_long_run_keeps_the_ledger_small_and_its_answers_exact(tmp_path: Path) -> None:
    clock, rng = Clock(), random.Random(0)
    store = RecordStore(tmp_path)
    ledger = UsageLedger(tmp_path, clock, compact_after=100)
    expected: dict[tuple[int, str], int] = {}
    for i in range(3_000):  # a sample request's two notes, spread over three hours
        clock.now = START + i * 3.0
        session = f"session-{rng.randrange(2)}"
        for kind, count in (("sampling_prefill", rng.randrange(1, 50)), ("sampling_sample", 4)):
            ledger.used(kind, count, base_model="local/tiny", session_id=session)  # type: ignore[arg-type]
            hour = int((clock.now - START + 800) // HOUR)
            expected[(hour, kind)] = expected.get((hour, kind), 0) + count
        if i % 500 == 0:
            ledger.audit("checkpoint_read", tinker_path=f"tinker://run/weights/{i}")
    # 6,000 usage notes, 3 hours x 2 kinds x 2 sessions = 12 sums, 6 audited events
    assert _file_lines(tmp_path) <= 12 + 100 + 6
    usage, audit = _answers(ledger, store)
    totals: dict[tuple[int, str], int] = {}
    for row in usage.data:  # type: ignore[attr-defined]
        hour = int((row.bucket_start.timestamp() - (START - 800)) // HOUR)
        key = (hour, row.event_info.type)
        totals[key] = totals.get(key, 0) + row.event_info.token_count
    assert totals == expected
    assert [e.event_details["tinker_path"] for e in audit.entries] == [  # type: ignore[attr-defined]
        f"tinker://run/weights/{i}"
        for i in range(0, 3_000, 500)
        if START + 3.0 * i < START - 800 + 2 * HOUR  # the events of 2023-11-14 (UTC)
    ]
    # read back after a restart (and compacted again then if due): the same answers
    again = UsageLedger(tmp_path, clock, compact_after=100)
    assert _answers(again, store) == (usage, audit)
    assert _file_lines(tmp_path) <= 12 + 100 + 6


def test_a_file_written_note_by_note_is_compacted_on_start(tmp_path: Path) -> None:
    clock = Clock()
    ledger = UsageLedger(tmp_path, clock)  # the default threshold: nothing compacted yet
    for _ in range(500):
        ledger.used("training", 7, base_model="local/tiny", session_id="s")
    assert _file_lines(tmp_path) == 500
    before = _answers(ledger, RecordStore(tmp_path))
    small = UsageLedger(tmp_path, clock, compact_after=10)
    assert _file_lines(tmp_path) == 1
    assert _answers(small, RecordStore(tmp_path)) == before


class FullDisk:
    """Makes the ledger's writes fail as a full disk does while ``full`` is set."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import errno

        import tinker_actors.local._usage as usage

        self.full = False
        self.attempts = 0
        error = OSError(errno.ENOSPC, "No space left on device")
        real_open, real_write = open, Path.write_bytes

        def fake_open(path: object, mode: str = "r", *args: object, **kwargs: object) -> object:
            if self.full and "a" in mode:
                self.attempts += 1
                raise error
            return real_open(path, mode, *args, **kwargs)  # type: ignore[call-overload]

        def fake_write(path: Path, data: bytes) -> int:
            if self.full and path.name.endswith(".compacting"):
                self.attempts += 1
                real_write(path, data[: len(data) // 2])  # a torn file aside
                raise error
            return real_write(path, data)

        monkeypatch.setattr(usage, "open", fake_open, raising=False)
        monkeypatch.setattr(Path, "write_bytes", fake_write)


def test_a_full_disk_never_fails_a_note_and_loses_none_once_there_is_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock, store = Clock(), RecordStore(tmp_path)
    ledger = UsageLedger(tmp_path, clock)
    disk = FullDisk(monkeypatch)
    ledger.used("training", 10, base_model="m", session_id="s")
    disk.full = True
    for step in range(20):  # noted while nothing can be written: no exception, kept in memory
        clock.now += 1
        ledger.used("training", 1, base_model="m", session_id="s")
        ledger.audit("checkpoint_create", tinker_path=f"tinker://r/weights/{step}")
    # the first append, then a rewrite every 5 s (at 6, 11, 16 s): not one per note (40)
    assert disk.attempts == 4
    warnings = [r for r in caplog.records if "could not be written" in r.getMessage()]
    assert len(warnings) == 1
    assert not list((tmp_path / "usage").glob("*.compacting"))  # the torn copy was removed
    disk.full = False
    clock.now += 5
    ledger.used("training", 2, base_model="m", session_id="s")  # room again: written whole
    assert any("written again, nothing lost" in r.getMessage() for r in caplog.records)
    assert len(ledger.audit_log("all", "2023-11-14").entries) == 20
    restarted = UsageLedger(tmp_path, clock)
    assert restarted.billing_usage(store, *WINDOW) == ledger.billing_usage(store, *WINDOW)
    assert restarted.audit_log("all", "2023-11-14") == ledger.audit_log("all", "2023-11-14")


def test_a_torn_line_is_skipped_on_start_and_the_file_rewritten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock, store = Clock(), RecordStore(tmp_path)
    ledger = UsageLedger(tmp_path, clock)
    ledger.used("training", 10, base_model="m", session_id="s")
    ledger.used("sampling_sample", 3, base_model="m", session_id="s")
    notes = tmp_path / "usage" / "notes.jsonl"
    whole = notes.read_bytes()
    with notes.open("ab") as handle:  # a write a crash or a full disk cut short
        handle.write(b'{"type":"usage","t":1700000000.0,"kind":"trai')
    again = UsageLedger(tmp_path, clock)
    assert any("skipped 1 torn line" in r.getMessage() for r in caplog.records)
    assert again.billing_usage(store, *WINDOW) == ledger.billing_usage(store, *WINDOW)
    assert notes.read_bytes() != whole  # rewritten...
    assert _lines(notes) == 2  # ...without the torn line
    UsageLedger(tmp_path, clock)  # and it reads back cleanly
