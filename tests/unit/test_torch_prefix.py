"""Sequences already run are kept, and a prompt that starts with one runs only the rest.

The store on its own (longest match, the cuts, weights kept apart, the budget), then the
sampling path: a conversation's next turn reuses the last turn's prompt and completion,
answers what it would answer without the store, and reports the reused tokens; the keys and
values kept from a decoding batch are the sequence's own, whoever shared the batch.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._images import ImageSpan
from tinker_actors.local._torch_model import KVCache, build_base, forward
from tinker_actors.local._torch_prefix import BLOCK, SHORTEST, PrefixEntry, PrefixStore
from tinker_actors.local._torch_sampling import sample_batch
from tinker_actors.types import ModelInput, SampleResponse, SamplingParams

TINY = lookup_model("local/tiny")
DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")
MB = 1024 * 1024


def kv(length: int, layers: int = 1) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Stand-in keys and values: one float per position and layer (4 bytes each)."""
    return [torch.zeros(1, length, 1) for _ in range(layers)], [
        torch.zeros(1, length, 1) for _ in range(layers)
    ]


def put(store: PrefixStore, ids: list[int], weights: Any = "w", images: Any = ()) -> Any:
    return store.put(weights, ids, images, *kv(len(ids)))


def test_the_longest_kept_prefix_is_found_in_whole_blocks_and_leaves_a_token() -> None:
    store = PrefixStore(MB, shortest=BLOCK)
    history = list(range(100, 196))  # three blocks
    short = put(store, history[:40])
    long = put(store, history)
    assert store.find("w", [*history, 7, 8]) == (long, 96)
    # the same prompt again: its last token runs (its logits are the first draw's), so the
    # reuse stops at the block before it
    assert store.find("w", history) == (long, 64)
    # a prompt that leaves the history early reuses the whole blocks it shares, in either
    assert store.find("w", [*history[:70], 1, 2, 3]) == (long, 64)
    assert store.find("w", [*history[:45], 9]) in ((short, 32), (long, 32))
    # less than a block in common is not worth a pass
    assert store.find("w", [*history[: BLOCK - 1], 5, *history]) is None
    assert store.find("w", [1, 2, 3]) is None
    # other weights never see these keys and values
    assert store.find("other", [*history, 7]) is None


def test_a_sequence_already_held_is_not_kept_twice_and_a_drop_forgets_it() -> None:
    store = PrefixStore(MB, shortest=BLOCK)
    first = put(store, list(range(64)))
    assert put(store, list(range(64))) is first
    assert put(store, list(range(40))) is first  # a prefix of a held sequence
    assert len(store) == 1
    assert store.nbytes == first.nbytes
    store.drop(first)
    store.drop(first)  # twice is harmless
    assert len(store) == 0
    assert store.nbytes == 0
    assert store.find("w", list(range(70))) is None


def test_the_least_recently_used_go_first_and_large_sequences_are_not_kept() -> None:
    # each entry: 64 positions x 2 tensors x 4 bytes = 512 bytes; the budget holds four
    store = PrefixStore(4 * 512, shortest=BLOCK)
    entries = [put(store, [i] * 64) for i in range(4)]
    assert len(store) == 4
    assert store.find("w", [0] * 70) is not None  # touches entry 0
    put(store, [9] * 64)  # evicts the least recently used: entry 1
    assert store.find("w", [1] * 70) is None
    assert store.find("w", [0] * 70) is not None
    assert store.nbytes <= store.budget
    assert entries[1] not in list(store._entries)
    # over a quarter of the budget: not kept, nothing evicted for it
    assert put(store, list(range(300))) is None
    assert len(store) == 4


def test_a_picture_cuts_the_match_unless_the_entry_holds_the_same_one_whole() -> None:
    store = PrefixStore(MB, shortest=BLOCK)
    picture = ImageSpan(offset=64, rows=2, cols=8, data=b"png-a", format="png")
    other = ImageSpan(offset=64, rows=2, cols=8, data=b"png-b", format="png")
    ids = [*range(64), *[0] * 16, *range(200, 232)]  # the picture at 64-79
    entry = put(store, ids, images=(picture,))
    assert store.find("w", [*ids, 1], (picture,)) == (entry, 96)
    # another picture at the same place: the pads are the same ids, the match stops before
    assert store.find("w", [*ids, 1], (other,)) == (entry, 64)
    # a prompt without the picture reads the same pads as text: no reuse past the picture
    assert store.find("w", [*ids, 1]) == (entry, 64)
    # a prompt that ends inside the picture would split it: cut before it
    assert store.find("w", ids[:75], (picture,)) == (entry, 64)
    # a block boundary inside a picture: the match ends before the picture, not in it
    small = ImageSpan(offset=90, rows=1, cols=8, data=b"png-c", format="png")
    ids2 = [*range(300, 390), *[0] * 8, *range(400, 430)]
    entry2 = put(store, ids2, images=(small,))
    assert store.find("w", ids2[:100], (small,)) == (entry2, 90)


@settings(max_examples=60, deadline=None)
@given(
    kept=st.lists(st.lists(st.integers(0, 3), min_size=0, max_size=120), max_size=6),
    prompt=st.lists(st.integers(0, 3), min_size=1, max_size=160),
)
def test_a_match_is_always_a_real_shared_prefix_that_leaves_a_token(
    kept: list[list[int]], prompt: list[int]
) -> None:
    store = PrefixStore(64 * MB, shortest=BLOCK)
    for ids in kept:
        put(store, ids)
    found = store.find("w", prompt)
    if found is None:
        return
    entry, n = found
    assert BLOCK <= n <= len(prompt) - 1
    assert n % BLOCK == 0
    assert entry.ids[:n].tolist() == prompt[:n]


# -- the sampling path ------------------------------------------------------------------


def job(prompt: list[int], params: SamplingParams, **kwargs: Any) -> SampleJob:
    return SampleJob(prompt=ModelInput.from_ints(prompt), params=params, **kwargs)


def run(base: Any, requests: list[SampleJob], store: PrefixStore | None) -> list[SampleResponse]:
    out: dict[Any, Any] = {}
    items = [(i, r, 10 + i, None, lambda: False) for i, r in enumerate(requests)]
    sample_batch(
        base, None, items, out.__setitem__, prefixes=None if store is None else store.view("w")
    )
    return [out[i] for i in range(len(requests))]


def same_answer(a: SampleResponse, b: SampleResponse) -> None:
    assert [s.tokens_np.tolist() for s in a.sequences] == [
        s.tokens_np.tolist() for s in b.sequences
    ]
    for x, y in zip(a.sequences, b.sequences, strict=True):
        assert x.logprobs_np is not None
        assert y.logprobs_np is not None
        assert np.abs(x.logprobs_np - y.logprobs_np).max(initial=0.0) <= 1e-4


def test_a_conversations_next_turn_resumes_from_its_last_prompt_and_completion() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    greedy = SamplingParams(max_tokens=12, temperature=0.0, stop=[])
    seeded = SamplingParams(max_tokens=12, seed=4, stop=[])
    histories = [list(range(30, 100)), list(range(500, 545)), [7] * 40]
    first = run(base, [job(h, greedy) for h in histories], store)
    assert [r.prompt_cache_hit_tokens for r in first] == [0, 0, 0]
    # turn two: each history, its completion and a new user message
    nexts = [
        [*h, *r.sequences[0].tokens_np.tolist(), 11, 12, 13]
        for h, r in zip(histories, first, strict=True)
    ]
    requests = [job(p, greedy) for p in nexts] + [job(nexts[0], seeded, num_samples=2)]
    second = run(base, requests, store)
    # everything but the completion's last token was kept (it was never run), and the whole
    # blocks of that are reused; the same prompt twice in one prefill runs once, shared whole
    reused = [(len(h) + 11) // BLOCK * BLOCK for h in histories]
    assert [r.prompt_cache_hit_tokens for r in second] == [*reused, len(nexts[0])]
    for resumed, fresh in zip(second, run(base, requests, None), strict=True):
        same_answer(resumed, fresh)
    # the completions' entries replaced the prompts' own (which they contain)
    assert all(len(e) != len(h) for e in store._entries for h in histories)


def test_kept_keys_and_values_are_the_sequences_own_whoever_shared_the_batch() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    # prompts of different lengths (padding between rows), rows that stop early, two samples
    stop_early = SamplingParams(max_tokens=9, seed=1, stop=[3, 4, 5, 6, 7, 8, 9])
    requests = [
        job(list(range(40, 80)), SamplingParams(max_tokens=9, seed=2, stop=[])),
        job(list(range(200, 290)), stop_early, num_samples=2),
        job([9] * 33, SamplingParams(max_tokens=5, seed=3, stop=[]), num_samples=3),
    ]
    answers = run(base, requests, store)
    kept: list[PrefixEntry] = list(store._entries)
    sequences = {
        (*r.prompt.to_ints(), *s.tokens_np.tolist()[:-1])
        for r, a in zip(requests, answers, strict=True)
        for s in a.sequences
        if s.tokens_np.size > 1
    }
    assert {tuple(e.ids.tolist()) for e in kept} == sequences
    for entry in kept:
        cache = KVCache()
        forward(base, None, torch.tensor([entry.ids.tolist()], device=DEVICE), cache)
        for layer, (k, v) in enumerate(zip(entry.keys, entry.values, strict=True)):
            assert k.shape == cache.keys[layer][0].shape
            assert torch.allclose(k, cache.keys[layer][0], atol=1e-5)
            assert torch.allclose(v, cache.values[layer][0], atol=1e-5)


def test_prompt_logprobs_run_whole_when_no_entry_holds_their_scores() -> None:
    # a sampled prompt's logits were never all computed, so its entry cannot answer them
    # (tests/unit/test_torch_prefix_scores.py: entries that can)
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    prompt = list(range(60, 130))
    run(base, [job(prompt, SamplingParams(max_tokens=4, seed=1, stop=[]))], store)
    scored = job([*prompt, 5, 6], SamplingParams(max_tokens=2, seed=2), prompt_logprobs=True)
    with_store = run(base, [scored], store)[0]
    assert with_store.prompt_cache_hit_tokens == 0
    same_answer(with_store, run(base, [scored], None)[0])
    lps = with_store.prompt_logprobs_np
    assert lps is not None
    assert np.isnan(lps[0])
    assert np.isfinite(lps[1:]).all()


def test_a_request_that_joined_a_running_batch_is_kept_as_its_own_sequence() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    leader = job(list(range(40, 75)), SamplingParams(max_tokens=12, seed=1, stop=[]))
    # longer than the batch's cache when it joins: every row's padding is widened for it
    late = [
        job(list(range(300, 400)), SamplingParams(max_tokens=5, seed=2, stop=[])),
        job(list(range(600, 640)), SamplingParams(max_tokens=4, seed=3, stop=[])),
    ]
    waiting = [(10 + i, r, 20 + i, None, lambda: False) for i, r in enumerate(late)]
    out: dict[Any, Any] = {}

    def more(left: int) -> list[Any]:
        return [waiting.pop(0)] if waiting else []

    items = [(0, leader, 5, None, lambda: False)]
    sample_batch(base, None, items, out.__setitem__, more, store.view("w"))
    assert set(out) == {0, 10, 11}
    for entry in list(store._entries):
        cache = KVCache()
        forward(base, None, torch.tensor([entry.ids.tolist()], device=DEVICE), cache)
        for layer, k in enumerate(entry.keys):
            assert torch.allclose(k, cache.keys[layer][0], atol=1e-5)
    assert len(store) == 3


def test_resuming_never_writes_the_kept_tensors() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    history = list(range(30, 94))
    run(base, [job(history, SamplingParams(max_tokens=6, seed=1, stop=[]))], store)
    (entry,) = store._entries
    before = [t.clone() for t in (*entry.keys, *entry.values)]
    for tail in ([1, 2, 3], [4, 5, 6, 7]):
        again = run(base, [job([*history, *tail], SamplingParams(max_tokens=6, stop=[]))], store)
        assert again[0].prompt_cache_hit_tokens == len(history)
    assert all(torch.equal(a, b) for a, b in zip(before, (*entry.keys, *entry.values), strict=True))


def test_the_serve_flag_sizes_the_store_and_zero_turns_it_off() -> None:
    from tinker_actors.cli._commands import _make_backend
    from tinker_actors.local._torch_backend import PREFIX_CACHE_BYTES, TorchBackend

    default = _make_backend("torch")
    assert isinstance(default, TorchBackend)
    assert default.prefixes is not None
    assert default.prefixes.budget == PREFIX_CACHE_BYTES
    sized = _make_backend("torch", prefix_cache_mb=64)
    assert isinstance(sized, TorchBackend)
    assert sized.prefixes is not None
    assert sized.prefixes.budget == 64 * MB
    off = _make_backend("torch", prefix_cache_mb=0)
    assert isinstance(off, TorchBackend)
    assert off.prefixes is None


async def test_kept_sequences_belong_to_the_weights_that_ran_them(tmp_path: Any) -> None:
    from tinker_actors.local._torch_backend import TorchBackend
    from tinker_actors.types import AdamParams, LoraConfig

    backend = TorchBackend(device=DEVICE, seed=0)
    await backend.create_model("m", TINY, LoraConfig(rank=4, seed=1))
    await backend.optim_step("m", AdamParams(learning_rate=1e-2))
    a, b = tmp_path / "a", tmp_path / "b"
    await backend.save_sampler("m", a)
    await backend.optim_step("m", AdamParams(learning_rate=1e-2))
    await backend.save_sampler("m", b)
    history = list(range(30, 190))  # long enough to be kept (SHORTEST)
    params = SamplingParams(max_tokens=4, temperature=0.0, stop=[])

    async def hits(weights: Any, prompt: list[int]) -> int:
        response = await backend.sample(TINY, weights, job(prompt, params))
        return response.prompt_cache_hit_tokens

    assert await hits(a, history) == 0
    assert await hits(b, [*history, 1]) == 0  # other weights
    assert await hits(None, [*history, 1]) == 0  # the base model
    assert await hits(a, [*history, 1]) == len(history)
    # weights saved again under the same name are new weights
    os.utime(a / "adapter.json", ns=(1, 1))
    assert await hits(a, [*history, 2]) == 0


def test_a_finished_request_replaces_only_its_own_prompts_entry() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    prompt = list(range(30, 94))
    greedy = SamplingParams(max_tokens=5, temperature=0.0, stop=[])
    run(base, [job(prompt, greedy)], store)
    (earlier,) = store._entries  # the prompt and its greedy answer
    # the same prompt again, sampled differently: the earlier answer is not forgotten
    run(base, [job(prompt, SamplingParams(max_tokens=5, seed=3, stop=[]))], store)
    assert earlier in store._entries
    assert len(store) == 2
    assert all(len(e) == len(prompt) + 4 for e in store._entries)


def test_short_sequences_are_not_kept_by_default() -> None:
    # running a few blocks again costs less than copying them out and indexing them
    store = PrefixStore(MB)
    assert put(store, list(range(SHORTEST - 1))) is None
    assert put(store, list(range(SHORTEST))) is not None
    with pytest.raises(ValueError, match="at least a block"):
        PrefixStore(MB, shortest=BLOCK - 1)


def test_a_caller_reuses_only_its_own_work() -> None:
    # a reported cache hit would tell a caller that someone else sent the same tokens
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    prompt = list(range(40, 120))
    params = SamplingParams(max_tokens=4, seed=1, stop=[])

    def ask(requests: list[tuple[str, list[int]]]) -> list[int]:
        jobs = [job(p, params, cache_salt=salt) for salt, p in requests]
        out: dict[Any, Any] = {}
        items = [(i, r, 10 + i, None, lambda: False) for i, r in enumerate(jobs)]
        sample_batch(base, None, items, out.__setitem__, prefixes=store.view("w"))
        return [out[i].prompt_cache_hit_tokens for i in range(len(jobs))]

    # the same prompt from two callers in one prefill: each pays for its own
    assert ask([("a", prompt), ("b", prompt), ("a", prompt)]) == [0, 0, len(prompt)]
    # a longer prompt finds only its own caller's kept sequences
    assert ask([("c", [*prompt, 5, 6])]) == [0]
    assert ask([("b", [*prompt, 5, 6])]) == [len(prompt) // BLOCK * BLOCK]
