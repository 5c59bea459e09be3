"""Sample requests on one model decode together, and each gets what it would get alone.

The model level (a cache of prompts of different lengths, each row at its own position), the
batch level (a mixed batch of requests against each request run alone), and the backend
level (concurrent ``sample`` calls become few batches, one model's weights per batch).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import torch

from tinker_actors.local import _torch_backend, _torch_prefill
from tinker_actors.local._backend import BackendInputError, SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.local._torch_draw import draw
from tinker_actors.local._torch_model import KVCache, build_base, forward
from tinker_actors.local._torch_sampling import run_sample, sample_batch
from tinker_actors.types import (
    AdamParams,
    LoraConfig,
    ModelInput,
    SampleResponse,
    SamplingParams,
)

TINY = lookup_model("local/tiny")
DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")
GUARD = 60.0


def letters(ids: list[int]) -> str:
    return "".join(chr(ord("a") + i % 26) for i in ids)


def job(prompt: list[int], params: SamplingParams, **kwargs: Any) -> SampleJob:
    fields: dict[str, Any] = {
        "num_samples": 1,
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
        "topk_sample_logprobs": 0,
        "prompt_logprobs_last_n": None,
    }
    fields.update(kwargs)
    return SampleJob(prompt=ModelInput.from_ints(prompt), params=params, **fields)


def assert_same(batched: SampleResponse, alone: SampleResponse) -> None:
    assert [s.tokens_np.tolist() for s in batched.sequences] == [
        s.tokens_np.tolist() for s in alone.sequences
    ]
    assert [s.stop_reason for s in batched.sequences] == [s.stop_reason for s in alone.sequences]
    for b, a in zip(batched.sequences, alone.sequences, strict=True):
        assert b.logprobs_np is not None
        assert a.logprobs_np is not None
        assert np.abs(b.logprobs_np - a.logprobs_np).max(initial=0.0) <= 1e-4
        if a.topk_logprobs_np is not None:
            assert b.topk_logprobs_np is not None
            assert (
                np.abs(b.topk_logprobs_np.logprobs - a.topk_logprobs_np.logprobs).max(initial=0.0)
                <= 1e-4
            )
    for name in ("prompt_logprobs_np",):
        a_lp, b_lp = getattr(alone, name), getattr(batched, name)
        assert (a_lp is None) == (b_lp is None)
        if a_lp is not None:
            assert np.allclose(a_lp, b_lp, atol=1e-4, equal_nan=True)


def test_rows_of_different_lengths_decode_as_each_would_alone() -> None:
    base = build_base(TINY, DEVICE)
    prompts = [[5, 6, 7], [40, 41, 42, 43, 44, 45, 46], [9]]
    continuation = [[100, 101], [200, 201], [300, 301]]
    # alone: each prompt, then its continuation token by token
    alone = []
    for prompt, more in zip(prompts, continuation, strict=True):
        cache = KVCache()
        forward(base, None, torch.tensor([prompt], device=DEVICE), cache)
        alone.append([forward(base, None, torch.tensor([[t]], device=DEVICE), cache) for t in more])
    # together: the prompts prefilled as one padded batch, then one token per row per step
    longest = max(map(len, prompts))
    padded = torch.zeros(len(prompts), longest, dtype=torch.long, device=DEVICE)
    for row, prompt in enumerate(prompts):
        padded[row, : len(prompt)] = torch.tensor(prompt)
    prefill = KVCache()
    forward(base, None, padded, prefill)
    sources = [(prefill, row, len(p)) for row, p in enumerate(prompts)]
    cache = KVCache.stack(sources, [1, 1, 1])
    lengths = torch.tensor([len(p) for p in prompts], device=DEVICE)
    mask = torch.arange(cache.length, device=DEVICE)[None, :] < lengths[:, None]
    positions = lengths.clone()
    for step in range(2):
        mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
        tokens = torch.tensor([[c[step]] for c in continuation], device=DEVICE)
        together = forward(base, None, tokens, cache, positions=positions, key_mask=mask)
        positions = positions + 1
        for row in range(len(prompts)):
            assert torch.allclose(together[row, -1], alone[row][step][0, -1], atol=1e-5)


def test_decoding_writes_the_cache_in_place_and_matches_a_full_pass() -> None:
    # growing the cache by concatenation copied it whole every step (quadratic in the
    # completion's length); with room reserved, the buffers are written in place
    base = build_base(TINY, DEVICE)
    sequence = list(range(30, 50))
    full = forward(base, None, torch.tensor([sequence], device=DEVICE))
    prefill = KVCache()
    forward(base, None, torch.tensor([sequence[:8]], device=DEVICE), prefill)
    cache = KVCache.stack([(prefill, 0, 8)], [1], capacity=len(sequence))
    buffers = [t.data_ptr() for t in cache.keys + cache.values]
    mask = torch.ones(1, len(sequence), dtype=torch.bool, device=DEVICE)
    for pos in range(8, len(sequence)):
        token = torch.tensor([[sequence[pos]]], device=DEVICE)
        at = torch.tensor([pos], device=DEVICE)
        step = forward(base, None, token, cache, positions=at, key_mask=mask[:, : pos + 1])
        assert torch.allclose(step[0, -1], full[0, pos], atol=1e-5)
    assert [t.data_ptr() for t in cache.keys + cache.values] == buffers
    assert cache.length == len(sequence)
    # without room the cache grows geometrically: two reallocations in twelve steps
    grown = KVCache()
    forward(base, None, torch.tensor([sequence[:8]], device=DEVICE), grown)
    capacities = set()
    for pos in range(8, len(sequence)):
        step = forward(base, None, torch.tensor([[sequence[pos]]], device=DEVICE), grown)
        capacities.add(grown.capacity)
        assert torch.allclose(step[0, -1], full[0, pos], atol=1e-5)
    assert sorted(capacities) == [16, 32]


def test_a_mixed_batch_answers_each_request_as_it_would_be_answered_alone() -> None:
    base = build_base(TINY, DEVICE)
    requests = [
        job([5, 6, 7], SamplingParams(max_tokens=6, temperature=0.0, stop=[])),
        job(list(range(40, 60)), SamplingParams(max_tokens=9, seed=3, stop=[]), num_samples=3),
        job([9, 10], SamplingParams(max_tokens=4, seed=4, top_k=5, stop=[]), num_samples=2),
        job([11, 12, 13], SamplingParams(max_tokens=7, seed=5, top_p=0.5, stop=[])),
        job([14] * 12, SamplingParams(max_tokens=8, seed=6, stop="b"), num_samples=2),
        job([15, 16], SamplingParams(max_tokens=0, seed=7)),
        # temperatures differ row by row in the batched draw
        job([21, 22, 23], SamplingParams(max_tokens=5, seed=9, temperature=0.6, stop=[])),
        job([24], SamplingParams(max_tokens=5, seed=10, temperature=1.7, stop=[]), num_samples=2),
        job(
            [17, 18, 19, 20],
            SamplingParams(max_tokens=3, seed=8, stop=[]),
            prompt_logprobs=True,
            topk_prompt_logprobs=2,
            topk_sample_logprobs=3,
        ),
    ]
    # the greedy request stops at its own third token: rows of a request stop on their own
    greedy = run_sample(base, None, requests[0], seed=1, decode=letters)
    stop_at = greedy.sequences[0].tokens_np.tolist()[2]
    requests[0] = job([5, 6, 7], SamplingParams(max_tokens=6, temperature=0.0, stop=[stop_at]))
    refused = job([1, 5000], SamplingParams(max_tokens=2))
    items = [(i, r, 100 + i, letters, lambda: False) for i, r in enumerate(requests)]
    items.insert(3, ("refused", refused, 1, letters, lambda: False))
    outcomes: dict[Any, Any] = {}
    sample_batch(base, None, items, outcomes.__setitem__)
    assert isinstance(outcomes.pop("refused"), BackendInputError)  # it fails alone
    assert set(outcomes) == set(range(len(requests)))
    for i, request in enumerate(requests):
        alone = run_sample(base, None, request, seed=100 + i, decode=letters)
        assert_same(outcomes[i], alone)
    assert outcomes[0].sequences[0].stop_reason == "stop"
    assert outcomes[5].sequences[0].tokens_np.tolist() == []


def test_a_prompt_several_requests_send_is_prefilled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # an RL loop sends a group's prompt once per sample: one prefill row serves them all, the
    # others report its tokens as prefix-cache hits, and every answer is the one it gets alone
    base = build_base(TINY, DEVICE)
    prompt = list(range(30, 70))
    requests = [job(prompt, SamplingParams(max_tokens=6, seed=i, stop=[])) for i in range(4)]
    requests.append(job([5, 6, 7], SamplingParams(max_tokens=6, seed=9, stop=[])))
    requests.append(job(prompt, SamplingParams(max_tokens=3, seed=8, stop=[]), num_samples=2))
    # prompt logprobs need every position's logits: prefilled apart, and also shared
    requests += [
        job(prompt, SamplingParams(max_tokens=2, seed=s, stop=[]), prompt_logprobs=True)
        for s in (10, 11)
    ]
    prefilled: list[int] = []
    real = _torch_prefill.forward

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        prefilled.append(int(args[2].shape[0]))  # the prompt rows of one prefill
        return real(*args, **kwargs)

    monkeypatch.setattr(_torch_prefill, "forward", counting)
    outcomes: dict[Any, Any] = {}
    items = [(i, r, 100 + i, letters, lambda: False) for i, r in enumerate(requests)]
    sample_batch(base, None, items, outcomes.__setitem__)
    assert sorted(prefilled) == [1, 2]  # [prompt] with logprobs; [prompt, [5, 6, 7]] without
    hits = [outcomes[i].prompt_cache_hit_tokens for i in range(len(requests))]
    assert hits == [0, 40, 40, 40, 0, 40, 0, 40]
    monkeypatch.setattr(_torch_prefill, "forward", real)
    for i, request in enumerate(requests):
        alone = run_sample(base, None, request, seed=100 + i, decode=letters)
        assert_same(outcomes[i], alone)
        assert alone.prompt_cache_hit_tokens == 0


def test_one_long_request_among_short_ones_does_not_reserve_its_length_for_every_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 24 requests of 2 tokens and one of 60: reserving 60 positions for all 25 rows would
    # be 25 x the memory the long one needs; the cache starts near the rows' own lengths,
    # grows for the long request once the short ones have left, and never past what it needs
    base = build_base(TINY, DEVICE)
    requests = [job([5 + i, 6, 7], SamplingParams(max_tokens=2, seed=i)) for i in range(24)]
    requests.append(job([9, 10, 11, 12], SamplingParams(max_tokens=60, seed=99, stop=[])))
    stacked: list[KVCache] = []
    original = KVCache.stack.__func__  # type: ignore[attr-defined]

    def recording(cls: type[KVCache], *args: Any, **kwargs: Any) -> KVCache:
        cache: KVCache = original(cls, *args, **kwargs)
        stacked.append(cache)
        return cache

    monkeypatch.setattr(KVCache, "stack", classmethod(recording))
    items = [(i, r, 100 + i, letters, lambda: False) for i, r in enumerate(requests)]
    outcomes: dict[Any, Any] = {}
    sample_batch(base, None, items, outcomes.__setitem__)
    monkeypatch.undo()
    assert len(stacked) == 1
    assert stacked[0].most == 4 + 60 - 1
    assert stacked[0].capacity <= 16  # about twice the rows' mean length, not 63
    for i, request in enumerate(requests):
        assert_same(outcomes[i], run_sample(base, None, request, seed=100 + i, decode=letters))
    assert len(outcomes[24].sequences[0].tokens_np) == 60


def test_draws_follow_the_distribution_and_never_pick_an_impossible_token() -> None:
    gen = torch.Generator().manual_seed(0)
    probs = torch.tensor([[0.5, 0.3, 0.0, 0.2, 0.0]]).expand(20000, -1)
    counts = (
        torch.bincount(
            draw(probs, torch.rand(20000, 1, generator=gen, dtype=torch.float64)), minlength=5
        ).double()
        / 20000
    )
    assert counts[2] == 0
    assert counts[4] == 0
    assert torch.allclose(
        counts, torch.tensor([0.5, 0.3, 0.0, 0.2, 0.0], dtype=torch.float64), atol=0.015
    )
    # rows that do not sum to one (a float32 softmax) and a single possible token
    odd = torch.tensor([[0.0, 0.0, 2e-7, 0.0], [0.25, 0.25, 0.25, 0.25000003]])
    for _ in range(200):
        assert draw(odd, torch.rand(2, 1, generator=gen, dtype=torch.float64))[0].item() == 2


class CountingBatches:
    """Wraps sample_batch: records the requests (spec name, weights, payload) of every batch
    the backend runs, those that joined it included, and says when one has started."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, Path | None]]] = []
        self.payloads: list[list[Any]] = []
        self.started = threading.Event()

    def __call__(
        self, base: Any, adapter: Any, items: Any, finish: Any, more: Any, prefixes: Any = None
    ) -> None:
        record = [(key.payload.spec.name, key.payload.weights) for key, *_ in items]
        payloads = [key.payload for key, *_ in items]
        self.batches.append(record)
        self.payloads.append(payloads)
        self.started.set()

        def joining(left: int) -> Any:
            fresh = more(left)
            record.extend((key.payload.spec.name, key.payload.weights) for key, *_ in fresh)
            payloads.extend(key.payload for key, *_ in fresh)
            return fresh

        sample_batch(base, adapter, items, finish, joining, prefixes)


async def test_concurrent_calls_become_few_batches_one_model_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counting = CountingBatches()
    monkeypatch.setattr(_torch_backend, "sample_batch", counting)
    backend = TorchBackend(device=DEVICE, tokenizer_loader=lambda spec: letters, seed=0)
    weights = {}
    for name, seed in (("a", 1), ("b", 2)):
        await backend.create_model(name, TINY, LoraConfig(rank=4, seed=seed))
        await backend.optim_step(name, AdamParams(learning_rate=1e-2))
        weights[name] = tmp_path / name
        await backend.save_sampler(name, weights[name])

    def request(i: int) -> tuple[Path | None, SampleJob]:
        where = [weights["a"], weights["b"], None][i % 3]
        params = SamplingParams(max_tokens=4 + i % 5, seed=i, stop=[])
        return where, job(list(range(5, 9 + i % 7)), params, num_samples=1 + i % 2)

    requests = [request(i) for i in range(30)]
    together: dict[int, SampleResponse] = {}
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for i, (where, sample_job) in enumerate(requests):

                async def one(
                    i: int = i, where: Path | None = where, j: SampleJob = sample_job
                ) -> None:
                    together[i] = await backend.sample(TINY, where, j)

                nursery.start_soon(one)
    assert len(counting.batches) < 10  # 30 requests on three weights
    for batch in counting.batches:
        assert len(set(batch)) == 1  # one model's weights per batch
    assert sum(map(len, counting.batches)) == 30
    for i, (where, sample_job) in enumerate(requests):  # and each answered as if alone
        assert_same(together[i], await backend.sample(TINY, where, sample_job))


async def test_one_job_object_sampled_twice_at_once_is_answered_twice() -> None:
    backend = TorchBackend(device=DEVICE, tokenizer_loader=lambda spec: letters, seed=0)
    same = job([5, 6, 7, 8], SamplingParams(max_tokens=5, seed=9, stop=[]), num_samples=2)
    answers: list[SampleResponse] = []
    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            for _ in range(3):

                async def one() -> None:
                    answers.append(await backend.sample(TINY, None, same))

                nursery.start_soon(one)
    assert len(answers) == 3
    for answer in answers[1:]:
        assert_same(answer, answers[0])


async def _sample_while_one_runs(
    monkeypatch: pytest.MonkeyPatch, first: SampleJob, later: list[SampleJob]
) -> tuple[CountingBatches, list[str], dict[str, SampleResponse], TorchBackend]:
    """Start ``first``; once its batch runs, send ``later``; record the order answers come in."""
    counting = CountingBatches()
    monkeypatch.setattr(_torch_backend, "sample_batch", counting)
    backend = TorchBackend(device=DEVICE, tokenizer_loader=lambda spec: letters, seed=0)
    order: list[str] = []
    answers: dict[str, SampleResponse] = {}

    async def one(name: str, sample_job: SampleJob) -> None:
        answers[name] = await backend.sample(TINY, None, sample_job)
        order.append(name)

    with trio.fail_after(GUARD):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(one, "first", first)
            await trio.to_thread.run_sync(counting.started.wait, GUARD)
            for i, sample_job in enumerate(later):
                nursery.start_soon(one, f"later {i}", sample_job)
    monkeypatch.undo()
    return counting, order, answers, backend


async def test_requests_that_arrive_while_a_batch_runs_join_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a long request runs; short ones arrive: they join its decoding between steps (one
    # with a prompt longer than the cache so far, which widens every row's padding) and are
    # answered before it ends, each as it would be alone
    first = job([5, 6, 7], SamplingParams(max_tokens=300, seed=1, stop=[]))
    later = [
        job(list(range(40, 48)), SamplingParams(max_tokens=6, seed=2, stop=[]), num_samples=2),
        job(list(range(100, 500)), SamplingParams(max_tokens=5, seed=3, stop=[])),
        job([9, 10], SamplingParams(max_tokens=4, seed=4, stop=[]), prompt_logprobs=True),
    ]
    counting, order, answers, backend = await _sample_while_one_runs(monkeypatch, first, later)
    assert len(counting.batches) == 1  # one batch: the later requests joined it
    assert order[-1] == "first"  # and were answered before it ended
    assert_same(answers["first"], await backend.sample(TINY, None, first))
    for i, sample_job in enumerate(later):
        assert_same(answers[f"later {i}"], await backend.sample(TINY, None, sample_job))


async def test_a_request_longer_than_the_running_batch_waits_for_the_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # joining never lengthens a batch (its leader waits for all of it): a request that would
    # draw more tokens than the batch has left runs in a batch of its own
    first = job([5, 6, 7], SamplingParams(max_tokens=40, seed=1, stop=[]))
    longer = job([8, 9], SamplingParams(max_tokens=400, seed=2, stop=[]))
    counting, order, answers, backend = await _sample_while_one_runs(monkeypatch, first, [longer])
    assert len(counting.batches) == 2
    assert order == ["first", "later 0"]
    assert_same(answers["later 0"], await backend.sample(TINY, None, longer))


def test_grouped_query_decoding_reads_the_cache_in_place_and_matches_a_full_pass() -> None:
    # SmolLM2's shape: fewer key/value heads than query heads; decoding folds each kv head's
    # queries into one block instead of copying the cache per query head
    import dataclasses

    spec = dataclasses.replace(TINY, name="local/gqa-test", n_kv_heads=2)
    base = build_base(spec, DEVICE)
    sequence = list(range(30, 50))
    full = forward(base, None, torch.tensor([sequence, sequence[::-1]], device=DEVICE))
    for masked in (False, True):
        cache = KVCache()
        forward(base, None, torch.tensor([sequence[:8], sequence[::-1][:8]], device=DEVICE), cache)
        for pos in range(8, len(sequence)):
            step = torch.tensor([[sequence[pos]], [sequence[::-1][pos]]], device=DEVICE)
            if masked:  # the batched path: per-row positions and a key mask
                at = torch.tensor([pos, pos], device=DEVICE)
                mask = torch.ones(2, pos + 1, dtype=torch.bool, device=DEVICE)
                out = forward(base, None, step, cache, positions=at, key_mask=mask)
            else:
                out = forward(base, None, step, cache)
            assert torch.allclose(out[:, -1], full[:, pos], atol=1e-5)
