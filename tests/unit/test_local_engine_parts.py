"""The local server's future store and per-model sequencer, on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tinker_actors.local._futures import FutureStore, UnknownFutureError
from tinker_actors.local._ordering import DuplicateSeqIdError, SequencedOp, Sequencer


async def test_long_poll_returns_when_settled(autojump_clock: trio.testing.MockClock) -> None:
    store = FutureStore()
    record = store.create("OptimStep", "s")
    async with trio.open_nursery() as nursery:

        async def settle_later() -> None:
            await trio.sleep(3)
            store.resolve(record.request_id, b"{}", "application/json")

        nursery.start_soon(settle_later)
        start = trio.current_time()
        got = await store.wait(record.request_id, hold=30)
        assert got.state == "done"
        assert trio.current_time() - start == pytest.approx(3)


async def test_long_poll_times_out_pending(autojump_clock: trio.testing.MockClock) -> None:
    store = FutureStore()
    record = store.create("OptimStep", "s")
    start = trio.current_time()
    got = await store.wait(record.request_id, hold=25)
    assert got.state == "pending"
    assert trio.current_time() - start == pytest.approx(25)
    assert got.polls == 1


async def test_settles_once_and_expires(autojump_clock: trio.testing.MockClock) -> None:
    store = FutureStore(result_ttl=60)
    record = store.create("Sample", "s")
    assert store.cancel(record.request_id)
    store.resolve(record.request_id, b"late", "application/x-protobuf")  # ignored
    assert store.get(record.request_id).state == "cancelled"
    assert store.get(record.request_id).payload is None
    done = store.create("Sample", "s")
    store.resolve(done.request_id, b"x", "application/x-protobuf")
    await trio.sleep(61)
    assert store.get(done.request_id).state == "expired"
    with pytest.raises(UnknownFutureError):
        store.get("nope")


async def test_completion_log_cursor_and_acks(autojump_clock: trio.testing.MockClock) -> None:
    store = FutureStore()
    target = ("s:sample:0", 0)
    a = store.create("Sample", "s", completion_target=target)
    b = store.create("Sample", "s", completion_target=target)
    store.resolve(a.request_id, b"aaaa", "application/x-protobuf")
    events, cursor = await store.completions(target, prev_cursor=0, hold=0, retrieved=[])
    assert [e.request_id for e in events] == [a.request_id]
    assert events[0].payload_size == 4
    # long poll wakes on the next completion
    async with trio.open_nursery() as nursery:

        async def fail_later() -> None:
            await trio.sleep(2)
            store.fail(b.request_id, "boom")

        nursery.start_soon(fail_later)
        events, cursor2 = await store.completions(
            target, prev_cursor=cursor, hold=30, retrieved=[a.request_id]
        )
    assert [(e.request_id, e.state) for e in events] == [(b.request_id, "failed")]
    assert cursor2 > cursor
    assert store.get(a.request_id).state == "expired"  # acknowledged payloads are dropped
    events, cursor3 = await store.completions(target, prev_cursor=cursor2, hold=0, retrieved=[])
    assert events == []
    assert cursor3 == cursor2


def _op(seq_id: int, log: list[int], failures: dict[int, str], fp: bytes = b"") -> SequencedOp:
    async def run() -> None:
        await trio.sleep(0.01)
        log.append(seq_id)

    return SequencedOp(
        seq_id=seq_id,
        request_id=f"r{seq_id}",
        kind="op",
        run=run,
        fail=lambda why: failures.__setitem__(seq_id, why),
        fingerprint=fp,
    )


async def test_sequencer_orders_and_dedupes(autojump_clock: trio.testing.MockClock) -> None:
    seq = Sequencer()
    log: list[int] = []
    failures: dict[int, str] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(seq.run)
        for n in (3, 1, 4, 2):
            seq.submit(_op(n, log, failures), idempotency_key=f"k{n}")
        # retried POSTs: same key, or same seq_id with another key
        assert seq.submit(_op(3, log, failures), idempotency_key="k3") == ("r3", False)
        assert seq.submit(_op(2, log, failures), idempotency_key="other") == ("r2", False)
        await trio.sleep(1)
        assert log == [1, 2, 3, 4]
        with pytest.raises(DuplicateSeqIdError, match="different content"):
            seq.submit(_op(4, log, failures, fp=b"changed"), idempotency_key=None)
        with pytest.raises(DuplicateSeqIdError, match="below"):
            seq.submit(
                SequencedOp(0, "r0", "op", _op(0, log, failures).run, lambda _: None),
                idempotency_key=None,
            )
        nursery.cancel_scope.cancel()
    assert seq.stats.applied_seq_ids == [1, 2, 3, 4]
    assert seq.stats.deduplicated == 2
    assert seq.stats.received == 8  # refused submissions count as received


async def test_sequencer_gap_timeout_fails_queued(autojump_clock: trio.testing.MockClock) -> None:
    seq = Sequencer(gap_timeout=10)
    log: list[int] = []
    failures: dict[int, str] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(seq.run)
        seq.submit(_op(1, log, failures), idempotency_key=None)
        seq.submit(_op(3, log, failures), idempotency_key=None)  # 2 never comes
        await trio.sleep(11)
        assert log == [1]
        assert "seq_id 2 never arrived" in failures[3]
        seq.submit(_op(4, log, failures), idempotency_key=None)  # the model is usable again
        await trio.sleep(1)
        assert log == [1, 4]
        nursery.cancel_scope.cancel()


async def test_sequencer_op_error_does_not_stop_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seq = Sequencer()
    failures: dict[int, str] = {}
    log: list[int] = []

    async def boom() -> None:
        raise RuntimeError("backend exploded")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(seq.run)
        seq.submit(
            SequencedOp(1, "r1", "op", boom, lambda w: failures.__setitem__(1, w)),
            idempotency_key=None,
        )
        seq.submit(_op(2, log, failures), idempotency_key=None)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert "backend exploded" in failures[1]
    assert log == [2]


async def test_gap_clock_is_not_restarted_by_later_arrivals(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seq = Sequencer(gap_timeout=10)
    log: list[int] = []
    failures: dict[int, str] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(seq.run)
        seq.submit(_op(2, log, failures), idempotency_key=None)  # 1 never comes
        for n in range(3, 9):  # a busy client keeps sending ops behind the gap
            await trio.sleep(3)
            seq.submit(_op(n, log, failures), idempotency_key=None)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    # the gap opened at t=0 and failed what waited at t=10 (2..5), not at the end of the burst
    assert sorted(failures) == [2, 3, 4, 5]
    assert all("seq_id 1 never arrived" in why for why in failures.values())
    assert log == [6, 7, 8]  # the model goes on after the gap
