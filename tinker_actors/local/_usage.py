"""What the local server used and did: billing usage, checkpoint storage and the audit log.

The engine notes every billable quantity when it happens (training tokens of each forward or
forward_backward, prompt and sampled tokens of each sample request, each checkpoint saved) and
every audited action (checkpoints created, read, published, deleted, their ttl changed,
sessions moved between projects). Notes go to an append-only JSON-lines file under the data
directory, so they survive a restart with it, and are aggregated when asked. Usage is held in
memory as hourly sums (what every answer is made of), and once the file holds
``compact_after`` more usage lines than there are sums it is rewritten with one line per sum,
so neither memory nor the file grows with the number of requests (a sample request makes two
notes): only with the hours, sessions and models used, and with the audited events.

Writing a note never fails the request that made it: the work it records is done. When the
file cannot be written (a full disk), the note is kept in memory, one warning is logged, and
the next note rewrites the whole file from memory (aside, then renamed over) once there is
room again. A line torn by such a failure or by a crash is skipped with a warning on start.

* ``GET /api/v1/billing/usage/events``: hourly buckets per (usage kind, base model, session)
  over a window of whole UTC hours, at most 14 days, not starting in the future. Storage is
  gigabyte-hours (10^9 bytes) of every checkpoint while it existed: live checkpoints from the
  records (until now or their expiry), deleted or replaced ones from the notes.
* ``GET /api/v1/billing/usage/checkpoints/current``: live checkpoints per project and owner.
* ``GET /api/v1/audit``: one UTC day of audited events, by resource.

A local server costs nothing, so every rate and estimated cost is 0.0 (a definite answer, not
"unknown"), and ``cost_data_through`` is None (there are no invoices).
"""

from __future__ import annotations

import logging
import math
import os
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, get_args

import msgspec

from tinker_actors.types import (
    AuditLogEntry,
    AuditLogResponse,
    BillingUsageEvent,
    BillingUsageResponse,
    BillingUsageSession,
    CheckpointBillingEvent,
    CurrentCheckpointStorageUsageItem,
    CurrentCheckpointStorageUsageResponse,
    SamplingPrefillBillingEvent,
    SamplingSampleBillingEvent,
    StorageBillingEvent,
    TrainingBillingEvent,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from tinker_actors.local._records import CheckpointRecord, RecordStore, RunRecord
    from tinker_actors.types import BillingEventInfo

__all__ = ["AUDIT_RESOURCES", "USER", "UsageError", "UsageLedger"]

log = logging.getLogger(__name__)

#: Seconds between attempts to rewrite a ledger file that could not be written.
_RETRY_AFTER = 5.0

#: The one user of a local server (owner of every run, actor of every event).
USER = "local-user"
#: ``event_type`` values of the audit log and the event prefixes they select.
AUDIT_RESOURCES = {
    "all": "",
    "checkpoints": "checkpoint_",
    "projects": "project_",
    "teams": "team_",
    "organizations": "organization_",
}
_MAX_WINDOW = timedelta(days=14)
_GB = 1e9
_HOUR = 3600.0
UsageKind = Literal["training", "sampling_prefill", "sampling_sample", "checkpoint"]
_KINDS: frozenset[str] = frozenset(get_args(UsageKind))


class UsageError(ValueError):
    """A billing or audit query the server cannot answer as asked (an HTTP 400)."""


class _Usage(msgspec.Struct, tag="usage"):
    t: float
    kind: UsageKind
    count: int
    base_model: str
    session_id: str
    cached: bool = False


class _Stored(msgspec.Struct, tag="stored"):
    """A checkpoint that stopped existing (deleted or replaced): its storage interval."""

    start: float
    end: float
    size_bytes: int
    base_model: str
    session_id: str


class _Audit(msgspec.Struct, tag="audit"):
    t: float
    event: str
    details: dict[str, Any]


_Note = _Usage | _Stored | _Audit
#: (hour start, kind, cached, base model, session id): the key of an hourly usage sum
_Bucket = tuple[float, UsageKind, bool, str, str]
#: Usage lines beyond one per hourly sum that the notes file may hold before it is compacted.
_COMPACT_AFTER = 50_000


def _when(posix: float) -> datetime:
    return datetime.fromtimestamp(posix, tz=UTC)


def _hour_start(posix: float) -> float:
    return math.floor(posix / _HOUR) * _HOUR


class UsageLedger:
    """The notes of one server (see the module docstring).

    Args:
        data_dir: notes go to ``data_dir/usage/notes.jsonl`` (read back on start).
        clock: POSIX seconds (the server's wall clock).
        compact_after: see the module docstring.
    """

    def __init__(
        self, data_dir: Path, clock: Callable[[], float], compact_after: int = _COMPACT_AFTER
    ) -> None:
        self._clock = clock
        self._path = data_dir / "usage" / "notes.jsonl"
        self._compact_after = compact_after
        self._usage: dict[_Bucket, int] = {}
        #: usage lines in the file (one per note since the last compaction, one per sum before)
        self._usage_lines = 0
        self._stored: list[_Stored] = []
        self._audit: list[_Audit] = []
        self._decoder = msgspec.json.Decoder(_Note)
        #: notes are in memory that the file lacks (a write failed): rewrite it whole
        self._behind = False
        self._retry_at = 0.0
        if self._path.is_file():
            torn = 0
            for line in self._path.read_bytes().splitlines():
                if not line.strip():
                    continue
                try:
                    note = self._decoder.decode(line)
                except msgspec.DecodeError:
                    torn += 1  # a write cut short by a full disk or a crash
                    continue
                self._keep(note)
            if torn:
                log.warning("usage ledger %s: skipped %d torn line(s)", self._path, torn)
                self._behind = True
            self._compact_if_due()

    def _keep(self, note: _Note) -> None:
        if isinstance(note, _Usage):
            key = (_hour_start(note.t), note.kind, note.cached, note.base_model, note.session_id)
            self._usage[key] = self._usage.get(key, 0) + note.count
            self._usage_lines += 1
        elif isinstance(note, _Stored):
            self._stored.append(note)
        else:
            self._audit.append(note)

    def _compact_if_due(self) -> None:
        if self._behind or self._usage_lines - len(self._usage) >= self._compact_after:
            self._rewrite()

    def _rewrite(self) -> None:
        # one line per hourly sum (its time is the hour's start), then every other note in the
        # order noted; written aside and renamed over, so a crash leaves the old or the new file
        sums = [_Usage(hour, kind, count, model, session, cached)
                for (hour, kind, cached, model, session), count in self._usage.items()]  # fmt: skip
        notes: list[_Note] = [*sums, *self._stored, *self._audit]
        aside = self._path.with_name(self._path.name + ".compacting")
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            aside.write_bytes(b"".join(msgspec.json.encode(note) + b"\n" for note in notes))
            os.replace(aside, self._path)
        except OSError as exc:
            aside.unlink(missing_ok=True)
            self._fell_behind(exc)
            return
        if self._behind:
            log.warning("usage ledger %s: written again, nothing lost", self._path)
        self._behind = False
        self._usage_lines = len(sums)

    def _fell_behind(self, exc: OSError) -> None:
        # a full disk stays full for a while: try the whole file again at most every few
        # seconds, not on every note
        self._retry_at = self._clock() + _RETRY_AFTER
        if not self._behind:
            log.warning(
                "usage ledger %s could not be written (%s); its notes are kept in memory and "
                "written once there is room (a restart before then loses them)",
                self._path,
                exc,
            )
        self._behind = True

    def _write(self, note: _Note) -> None:
        self._keep(note)
        if self._behind:
            if self._clock() >= self._retry_at:
                self._rewrite()  # the file then holds every note again, this one too
            return
        if isinstance(note, _Usage) and self._usage_lines - len(self._usage) >= self._compact_after:
            self._rewrite()  # the file then holds this note too, summed
            return
        line = msgspec.json.encode(note) + b"\n"
        # opened per note (each is on disk when the request is answered, and a ledger file
        # moved away is simply started again); the directory is made only when missing: a
        # mkdir per note was half of a sample's ledger cost
        try:
            try:
                handle = open(self._path, "ab")  # noqa: SIM115 (closed below)
            except FileNotFoundError:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                handle = open(self._path, "ab")  # noqa: SIM115
            with handle:
                handle.write(line)
        except OSError as exc:  # the work this notes is done: never fail its request
            self._fell_behind(exc)

    # -- noting -------------------------------------------------------------------------------

    def used(
        self, kind: UsageKind, count: int, *, base_model: str, session_id: str, cached: bool = False
    ) -> None:
        """Note a billable quantity (nothing for a zero count).

        Raises:
            ValueError: an unknown ``kind`` (checked before anything is written: the ledger
                could not read such a note back on the next start).
        """
        if kind not in _KINDS:
            raise ValueError(f"unknown usage kind {kind!r}; expected one of {sorted(_KINDS)}")
        if count > 0:
            self._write(_Usage(self._clock(), kind, count, base_model, session_id, cached))

    def trained(self, run: RunRecord, tokens: int) -> None:
        """Note the tokens of a forward or forward_backward on ``run``."""
        self.used("training", tokens, base_model=run.base_model, session_id=run.session_id)

    def storage_ended(self, checkpoint: CheckpointRecord, base_model: str, session_id: str) -> None:
        """Note that a checkpoint's storage ended now (deleted or replaced)."""
        if checkpoint.ephemeral:
            return
        end = self._clock()
        if checkpoint.expires_at is not None:
            end = min(end, checkpoint.expires_at)
        self._write(_Stored(checkpoint.created, end, checkpoint.size_bytes, base_model, session_id))

    def saved(
        self, run: RunRecord, checkpoint: CheckpointRecord, replaced: list[CheckpointRecord]
    ) -> None:
        """Note a checkpoint saved (an operation and an audited creation; ephemeral ones are
        neither) and the end of the storage of the checkpoints it replaced."""
        for old in replaced:
            self.storage_ended(old, run.base_model, run.session_id)
        if checkpoint.ephemeral:
            return
        self.used("checkpoint", 1, base_model=run.base_model, session_id=run.session_id)
        self.audit(
            "checkpoint_create",
            tinker_path=checkpoint.tinker_path,
            model_id=run.run_id,
            checkpoint_type=checkpoint.kind,
            size_bytes=checkpoint.size_bytes,
        )

    def audit(self, event: str, **details: Any) -> None:
        """Note an audited event; ``details`` are JSON values (the actor is added)."""
        self._write(_Audit(self._clock(), event, {"actor": USER, **details}))

    # -- queries ------------------------------------------------------------------------------

    def billing_usage(
        self, store: RecordStore, starting_on: str, ending_before: str
    ) -> BillingUsageResponse:
        """Hourly usage buckets over ``[starting_on, ending_before)``.

        Raises:
            UsageError: a malformed or unaligned instant, an empty or over-long window, or one
                starting in the future.
        """
        start = _parse_hour("starting_on", starting_on)
        end = _parse_hour("ending_before", ending_before)
        if end <= start:
            raise UsageError(f"ending_before ({ending_before}) must be after starting_on")
        if end - start > _MAX_WINDOW:
            raise UsageError("the window is at most 14 days; ask for it in parts")
        now = self._clock()
        if start.timestamp() > now:
            raise UsageError(f"starting_on ({starting_on}) is in the future")
        lo, hi = start.timestamp(), end.timestamp()
        buckets: dict[tuple[float, str, bool, str, str], float] = defaultdict(float)
        for key, count in self._usage.items():
            if lo <= key[0] < hi:  # lo and hi are whole hours: the note's hour is in the window
                buckets[key] += count
        intervals = [
            (s.start, s.end, s.size_bytes, s.base_model, s.session_id) for s in self._stored
        ]
        for run in store.runs.values():
            for c in run.checkpoints:
                if not c.ephemeral:
                    until = now if c.expires_at is None else min(now, c.expires_at)
                    intervals.append(
                        (c.created, until, c.size_bytes, run.base_model, run.session_id)
                    )
        for first, last, size, base_model, session_id in intervals:
            hour = _hour_start(max(first, lo))
            while hour < min(last, hi):
                overlap = min(last, hour + _HOUR) - max(first, hour)
                if overlap > 0:
                    buckets[(hour, "storage", False, base_model, session_id)] += (
                        size / _GB * overlap / _HOUR
                    )
                hour += _HOUR
        rows = [_row(store, key, value) for key, value in buckets.items()]
        rows.sort(key=lambda r: (r[0], -r[1]))
        data = [row for _, _, row in rows]
        sessions = {}
        for row in data:
            assert row.session_id is not None
            record = store.sessions.get(row.session_id)
            metadata = record.user_metadata if record is not None else None
            sessions[row.session_id] = BillingUsageSession(
                user_metadata={str(k): str(v) for k, v in metadata.items()} if metadata else None
            )
        return BillingUsageResponse(data=data, sessions=sessions, cost_data_through=None)

    def checkpoint_storage(
        self, store: RecordStore, project_id: str | None
    ) -> CurrentCheckpointStorageUsageResponse:
        """Live checkpoints per (project, owner), optionally of one project."""
        now = self._clock()
        groups: dict[tuple[str | None, str], list[int]] = defaultdict(lambda: [0, 0])
        for run in store.runs.values():
            session = store.sessions.get(run.session_id)
            project = session.project_id if session is not None else None
            if project_id is not None and project != project_id:
                continue
            for c in run.checkpoints:
                if c.ephemeral or (c.expires_at is not None and c.expires_at <= now):
                    continue
                group = groups[(project, run.owner)]
                group[0] += 1
                group[1] += c.size_bytes
        data = [
            CurrentCheckpointStorageUsageItem(
                project_id=project,
                org_user_urn=owner,
                user_name=owner,
                checkpoint_count=count,
                size_bytes=size,
                size_gigabytes=size / _GB,
                estimated_monthly_cost_usd=0.0,
            )
            for (project, owner), (count, size) in sorted(groups.items(), key=str)
        ]
        return CurrentCheckpointStorageUsageResponse(
            effective_rate_usd_per_gigabyte_month=0.0, data=data
        )

    def audit_log(self, event_type: str, day: str | None) -> AuditLogResponse:
        """The audited events of one UTC day (default today), of one resource or all.

        Raises:
            UsageError: an unknown ``event_type`` or a malformed ``day``.
        """
        prefix = AUDIT_RESOURCES.get(event_type)
        if prefix is None:
            raise UsageError(
                f"event_type must be one of {', '.join(AUDIT_RESOURCES)}, got {event_type!r}"
            )
        try:
            wanted = date.fromisoformat(day) if day else _when(self._clock()).date()
        except ValueError:
            raise UsageError(f"day must be a date such as 2026-01-15, got {day!r}") from None
        lo = datetime(wanted.year, wanted.month, wanted.day, tzinfo=UTC).timestamp()
        entries = []
        for note in self._audit:
            if lo <= note.t < lo + 24 * _HOUR and note.event.startswith(prefix):
                details = note.details
                entries.append(
                    AuditLogEntry(
                        timestamp=_when(note.t),
                        event=note.event,
                        event_details=details,
                        model_id=details.get("model_id"),
                        tinker_path=details.get("tinker_path"),
                        purpose=details.get("purpose"),
                    )
                )
        entries.sort(key=lambda e: e.timestamp)
        return AuditLogResponse(entries=entries)


def _parse_hour(name: str, text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{name} must be an RFC 3339 instant such as 2026-07-13T00:00:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise UsageError(f"{name} needs a time zone (e.g. a trailing Z), got {text!r}")
    value = value.astimezone(UTC)
    if (value.minute, value.second, value.microsecond) != (0, 0, 0):
        raise UsageError(f"{name} must be on a whole UTC hour, got {text!r}")
    return value


def _row(
    store: RecordStore, key: tuple[float, str, bool, str, str], value: float
) -> tuple[float, float, BillingUsageEvent]:
    hour, kind, cached, base_model, session_id = key
    info: BillingEventInfo
    token_rate: float | None = 0.0
    storage_rate: float | None = None
    if kind == "training":
        info = TrainingBillingEvent(token_count=int(value))
    elif kind == "sampling_prefill":
        info = SamplingPrefillBillingEvent(cached=cached, token_count=int(value))
    elif kind == "sampling_sample":
        info = SamplingSampleBillingEvent(token_count=int(value))
    elif kind == "checkpoint":
        info, token_rate = CheckpointBillingEvent(count=int(value)), None
    else:
        info, token_rate, storage_rate = StorageBillingEvent(gigabyte_hours=value), None, 0.0
    session = store.sessions.get(session_id)
    event = BillingUsageEvent(
        bucket_start=_when(hour),
        bucket_end=_when(hour + _HOUR),
        base_model=base_model,
        user_id=USER,
        user_name=USER,
        session_id=session_id,
        project_id=session.project_id if session is not None else None,
        estimated_cost_usd=None if kind == "checkpoint" else 0.0,
        effective_rate_usd_per_million_tokens=token_rate,
        effective_rate_usd_per_gigabyte_month=storage_rate,
        event_info=info,
    )
    return hour, value, event
