"""What the server forgets, and what it must not: the pieces behind flat memory.

A settled result is kept ``result_ttl`` seconds, then forgotten with everything that points at
it (dedupe entries, a sequencer's seq_id and idempotency-key entries, completion-log events);
pending work and recent results are never forgotten.
"""

from __future__ import annotations

import tracemalloc

import trio

from tinker_actors.local._futures import FutureStore
from tinker_actors.local._ordering import SequencedOp, Sequencer


async def test_only_results_settled_before_the_ttl_are_forgotten(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FutureStore(result_ttl=10)
    old = store.create("Sample", "s", completion_target=("sampler", 0))
    store.resolve(old.request_id, b"x", "application/json")
    await trio.sleep(6)
    recent = store.create("Sample", "s", completion_target=("sampler", 0))
    store.resolve(recent.request_id, b"y", "application/json")
    pending = store.create("Sample", "s")
    await trio.sleep(5)  # old settled 11 s ago, recent 5 s ago
    assert store.prune() == 1
    assert not store.known(old.request_id)
    assert store.known(recent.request_id)
    assert store.known(pending.request_id)
    assert store.was_issued(old.request_id)
    assert not store.was_issued("s:req:99")
    assert not store.was_issued("s:req:x")
    # the completion log keeps only what can still be fetched
    events, _ = await store.completions(("sampler", 0), prev_cursor=0, hold=0, retrieved=[])
    assert [e.request_id for e in events] == [recent.request_id]
    await trio.sleep(100)
    assert store.prune() == 1
    assert store.known(pending.request_id)  # pending work is never forgotten


async def test_a_sequencer_forgets_leading_entries_up_to_the_first_live_one() -> None:
    sequencer = Sequencer(next_seq_id=1)

    async def nothing() -> None:
        return None

    for seq_id in (1, 2, 3):
        op = SequencedOp(
            seq_id=seq_id,
            request_id=f"r{seq_id}",
            kind="OptimStep",
            run=nothing,
            fail=lambda why: None,
        )
        sequencer.submit(op, idempotency_key=f"k{seq_id}")
    live = {"r2", "r3"}
    sequencer.prune(live.__contains__)
    assert list(sequencer._by_seq) == [2, 3]
    assert list(sequencer._by_key) == ["k2", "k3"]
    live = {"r3"}
    sequencer.prune(live.__contains__)
    assert list(sequencer._by_seq) == [3]


def test_the_applied_order_costs_about_a_byte_per_operation() -> None:
    stats = Sequencer(next_seq_id=0).stats
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for seq_id in range(100_000):
            stats.record(seq_id + 1000, "ForwardBackward" if seq_id % 2 else "OptimStep")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 200_000  # two lists of ints and names would hold about 4.4 MB
    assert stats.applied == 100_000
    assert stats.applied_seq_ids == list(range(1000, 101_000))
    assert stats.applied_kinds[:3] == ["OptimStep", "ForwardBackward", "OptimStep"]
