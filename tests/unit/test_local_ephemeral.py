"""EphemeralSamplers against a reference model of least-recently-used retirement."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinker_actors.local._ephemeral import EphemeralSamplers, ephemeral_name
from tinker_actors.local._records import CheckpointRecord, RunRecord, SessionRecord

SESSION = "session-0123456789abcdef"


class _Store:
    """The parts of RecordStore retirement touches, in memory."""

    def __init__(self) -> None:
        self.data_dir = Path("/nonexistent-ephemeral-test")
        self.sessions = {SESSION: SessionRecord(session_id=SESSION, created=0.0)}
        self.samplers: dict[str, Any] = {}
        self.saved_runs = 0

    def save_run(self, run: RunRecord) -> None:
        self.saved_runs += 1

    def save_session(self, session: SessionRecord) -> None:
        pass

    def checkpoint_dir(self, checkpoint: CheckpointRecord) -> Path:
        return self.data_dir / checkpoint.name

    def forget_sampler(self, sampler_id: str) -> None:
        self.samplers.pop(sampler_id, None)


class _Core:
    def __init__(self) -> None:
        self.store = _Store()
        self.counters: Counter[str] = Counter()


def _sampler_id(seq: int) -> str:
    return f"{SESSION}:sample:{seq}"


ops = st.lists(
    st.one_of(
        st.just(("save", 0)),
        st.tuples(st.sampled_from(["use", "start", "finish"]), st.integers(0, 30)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(keep=st.integers(1, 4), script=ops)
def test_retirement_matches_least_recently_used(keep: int, script: list[tuple[str, int]]) -> None:
    core = _Core()
    retention = EphemeralSamplers(core, keep)  # type: ignore[arg-type]
    run = RunRecord(
        run_id=f"{SESSION}:train:0", session_id=SESSION, base_model="m", created=0.0,
        last_request_time=0.0,
    )  # fmt: skip
    live: list[int] = []  # the model: live seqs, least recently used first
    busy: Counter[int] = Counter()
    retired: set[int] = set()
    made = 0
    for op, arg in script:
        if op == "save":
            seq, made = made, made + 1
            run.checkpoints.append(
                CheckpointRecord(
                    run_id=run.run_id,
                    kind="sampler",
                    name=ephemeral_name(SESSION, seq),
                    created=float(seq),
                    ephemeral=True,
                )
            )
            core.store.sessions[SESSION].sampler_ids.append(_sampler_id(seq))
            core.store.samplers[_sampler_id(seq)] = object()
            retention.use(_sampler_id(seq))
            live.append(seq)
            gone = retention.retire_beyond_keep(run)
            excess = max(0, len(live) - keep)
            expected = [s for s in live[:excess] if not busy[s]]
            assert gone == [_sampler_id(s) for s in expected]
            live = [s for s in live if s not in expected]
            retired.update(expected)
            assert seq in live  # the one just saved always stays
            # after a save only busy ones exceed keep (one that went idle since waits for the
            # next save)
            assert len(live) <= keep + sum(1 for s in live if busy[s])
        elif arg in live:
            if op == "use":
                retention.use(_sampler_id(arg))
            elif op == "start":
                retention.acquire(_sampler_id(arg))
                busy[arg] += 1
            elif busy[arg]:
                retention.release(_sampler_id(arg))
                busy[arg] -= 1
            if op != "finish":
                live.remove(arg)
                live.append(arg)
        kept = {c.name for c in run.checkpoints}
        assert kept == {ephemeral_name(SESSION, s) for s in live}
        assert set(core.store.samplers) == {_sampler_id(s) for s in live}
        assert core.store.sessions[SESSION].sampler_ids == sorted(
            (_sampler_id(s) for s in live), key=lambda i: int(i.rsplit(":", 1)[1])
        )
    assert core.counters["ephemeral_samplers_retired"] == len(retired)
    for seq in retired:
        assert "was retired" in str(retention.unknown(_sampler_id(seq)))


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        EphemeralSamplers(_Core(), 0)  # type: ignore[arg-type]


def test_an_unknown_session_is_not_called_retired() -> None:
    error = EphemeralSamplers(_Core(), 2).unknown("session-x:sample:9")  # type: ignore[arg-type]
    assert error.status == 404
    assert "unknown sampling session" in str(error)
