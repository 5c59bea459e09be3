"""Kept prefixes answer prompt logprobs: a prompt that asks for its logprobs (and top ids)
runs only the positions past a kept sequence whose scores are known.

Every answer is checked against the same request run without the store (within float
rounding: a resumed pass batches differently), and the reused tokens are reported.
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
from tinker_actors.local._torch_model import build_base
from tinker_actors.local._torch_prefix import BLOCK, PrefixStore
from tinker_actors.local._torch_prompt import PAD_LOGPROB, Scores, first_scores, prompt_scores
from tinker_actors.local._torch_sampling import sample_batch
from tinker_actors.types import ModelInput, SampleResponse, SamplingParams

TINY = lookup_model("local/tiny")
DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")
MB = 1024 * 1024
#: what compute_logprobs sends: one token drawn, the prompt scored
SCORE = SamplingParams(max_tokens=1, temperature=0.0, stop=[])


def job(prompt: list[int], params: SamplingParams = SCORE, **kwargs: Any) -> SampleJob:
    return SampleJob(prompt=ModelInput.from_ints(prompt), params=params, **kwargs)


def scored(prompt: list[int], **kwargs: Any) -> SampleJob:
    return job(prompt, prompt_logprobs=True, **kwargs)


def run(base: Any, requests: list[SampleJob], store: PrefixStore | None) -> list[SampleResponse]:
    out: dict[Any, Any] = {}
    items = [(i, r, 10 + i, None, lambda: False) for i, r in enumerate(requests)]
    view = None if store is None else store.view("w")
    sample_batch(base, None, items, out.__setitem__, prefixes=view)
    return [out[i] for i in range(len(requests))]


def same_scores(a: SampleResponse, b: SampleResponse) -> None:
    """The two answers report the same prompt (and sample) logprobs and top ids."""
    for x, y in ((a.prompt_logprobs_np, b.prompt_logprobs_np),):
        assert (x is None) == (y is None)
        if x is not None and y is not None:
            assert x.shape == y.shape
            assert np.array_equal(np.isnan(x), np.isnan(y))
            assert np.nanmax(np.abs(x - y), initial=0.0) <= 1e-4
    ta, tb = a.topk_prompt_logprobs_np, b.topk_prompt_logprobs_np
    assert (ta is None) == (tb is None)
    if ta is not None and tb is not None:
        assert ta.token_ids.shape == tb.token_ids.shape
        assert np.abs(ta.logprobs - tb.logprobs).max(initial=0.0) <= 1e-4
        # ids may only differ where two candidates tie within rounding
        differ = ta.token_ids != tb.token_ids
        assert np.all(np.abs(ta.logprobs - tb.logprobs)[differ] <= 1e-4)
    assert [s.tokens_np.tolist() for s in a.sequences] == [
        s.tokens_np.tolist() for s in b.sequences
    ]


def test_a_longer_prompt_scores_only_its_new_positions() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    context = list(range(40, 140))  # 100 tokens: three whole blocks shared
    first = run(base, [scored(context, topk_prompt_logprobs=3)], store)[0]
    assert first.prompt_cache_hit_tokens == 0
    # continuations of the context, each scored: the last shared position's distribution
    # scores the first new token, so one position fewer than the shared blocks is reused
    for tail, k in (([7, 8, 9], 0), ([500, 3], 2), ([11] * 40, 3)):
        request = scored([*context, *tail], topk_prompt_logprobs=k)
        resumed = run(base, [request], store)[0]
        assert resumed.prompt_cache_hit_tokens == 3 * BLOCK - 1
        fresh = run(base, [request], None)[0]
        same_scores(resumed, fresh)
        lps = resumed.prompt_logprobs_np
        assert lps is not None
        assert np.isnan(lps[0])
        assert np.isfinite(lps[1:]).all()


def test_more_top_ids_than_an_entry_holds_run_the_whole_prompt() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    context = list(range(40, 140))
    run(base, [scored(context, topk_prompt_logprobs=1)], store)
    wider = scored([*context, 1, 2], topk_prompt_logprobs=4)
    answer = run(base, [wider], store)[0]
    assert answer.prompt_cache_hit_tokens == 0
    same_scores(answer, run(base, [wider], None)[0])
    # the whole run left richer scores on the store: the next asks resume
    again = run(base, [scored([*context, 1, 3], topk_prompt_logprobs=4)], store)[0]
    assert again.prompt_cache_hit_tokens == 3 * BLOCK - 1


def test_targets_and_draws_need_every_distribution_and_run_whole() -> None:
    from tinker_actors.types import TensorData

    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    context = list(range(40, 140))
    run(base, [scored(context)], store)
    longer = [*context, 5, 6, 7]
    # row i names ids to score at position i + 1
    targets = TensorData.from_numpy(np.tile(np.array([1, 2]), (len(longer) - 1, 1)))
    asks = [
        scored(longer, prompt_alt_tokens_k=2),
        job(longer, target_prompt_logprobs=targets),
    ]
    for request in asks:
        answer = run(base, [request], store)[0]
        assert answer.prompt_cache_hit_tokens == 0
        fresh = run(base, [request], None)[0]
        same_scores(answer, fresh)
        assert answer.prompt_alt_tokens == fresh.prompt_alt_tokens
        assert answer.target_prompt_logprobs == fresh.target_prompt_logprobs


def test_last_n_is_answered_from_the_kept_scores() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    context = list(range(40, 140))
    run(base, [scored(context)], store)
    request = scored([*context, 9, 9, 9], prompt_logprobs_last_n=10)
    answer = run(base, [request], store)[0]
    assert answer.prompt_cache_hit_tokens == 3 * BLOCK - 1
    same_scores(answer, run(base, [request], None)[0])
    lps = answer.prompt_logprobs_np
    assert lps is not None
    assert np.isnan(lps[:-10]).all()
    assert np.isfinite(lps[-10:]).all()


def test_a_sampled_sequence_is_scored_from_its_kept_prompt_and_completion() -> None:
    # an RL check scores what it sampled: the prompt was scored while sampling, and a sampled
    # token's logprob is the model's own, so the whole sequence's scores are kept
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    prompt = list(range(40, 110))
    params = SamplingParams(max_tokens=40, seed=3, stop=[])
    sampled = run(base, [scored(prompt, params=params)], store)[0]
    completion = sampled.sequences[0].tokens_np.tolist()
    sequence = [*prompt, *completion]
    answer = run(base, [scored(sequence)], store)[0]
    kept = len(sequence) - 1  # the last sampled token was never run
    assert answer.prompt_cache_hit_tokens == kept - kept % BLOCK - 1
    same_scores(answer, run(base, [scored(sequence)], None)[0])
    lps = answer.prompt_logprobs_np
    assert lps is not None
    sampled_lps = sampled.sequences[0].logprobs_np
    assert sampled_lps is not None
    assert np.abs(lps[len(prompt) :] - sampled_lps).max() <= 1e-4


def test_scores_pass_through_a_sampled_turn_that_resumed_from_them() -> None:
    # the context was scored, then sampled from (resumed: its entry knows only the context's
    # scores), then a longer prompt is scored: it finds the context's scores in the newer
    # entry (not the whole of it) and reuses up to where they end
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB, shortest=BLOCK)
    context = list(range(40, 136))  # exactly three blocks
    run(base, [scored(context)], store)
    turn = [*context, *range(300, 370)]
    sampled = run(base, [job(turn, SamplingParams(max_tokens=8, seed=1, stop=[]))], store)[0]
    assert sampled.prompt_cache_hit_tokens == 3 * BLOCK - 0  # a sampled prompt reuses all
    longer = [*turn, *sampled.sequences[0].tokens_np.tolist(), 4, 5]
    answer = run(base, [scored(longer)], store)[0]
    assert answer.prompt_cache_hit_tokens == 3 * BLOCK - 1
    same_scores(answer, run(base, [scored(longer)], None)[0])


def test_the_store_walks_back_to_an_entry_whose_scores_reach_further() -> None:
    store = PrefixStore(64 * MB, shortest=BLOCK)
    ids = list(range(300))
    zeros = [torch.zeros(1, 1, 1)]
    scored_entry = store.put("w", ids[:100], (), zeros, zeros, Scores(np.zeros(100, np.float32)))
    deeper = store.put("w", ids[:250], (), zeros, zeros, Scores(np.zeros(40, np.float32)))
    assert scored_entry is not None
    assert deeper is not None

    def known(entry: Any) -> int:
        return 0 if entry.scores is None else entry.scores.known(0)

    assert store.find("w", ids) == (deeper, 7 * BLOCK)  # unbounded: the deepest
    assert store.find("w", ids, usable=known) == (scored_entry, 3 * BLOCK)
    # putting a held sequence again with richer scores hands them to its entry
    again = store.put("w", ids[:250], (), zeros, zeros, Scores(np.zeros(250, np.float32)))
    assert again is deeper
    assert store.find("w", ids, usable=known) == (deeper, 7 * BLOCK)


def test_scores_join_and_cut_as_prefixes() -> None:
    logprobs = torch.log_softmax(torch.randn(6, 10, generator=torch.Generator().manual_seed(1)), -1)
    prompt = torch.tensor([3, 1, 4, 1, 5, 9])
    whole = prompt_scores(logprobs, prompt, 2)
    assert len(whole) == 6
    assert whole.k == 2
    assert np.isnan(whole.logprobs[0])
    assert whole.top is not None
    assert whole.top[1][0].tolist() == [PAD_LOGPROB, PAD_LOGPROB]
    expected = logprobs[:-1].gather(-1, prompt[1:, None]).squeeze(-1).numpy()
    assert np.allclose(whole.logprobs[1:], expected)
    assert whole.head(3).then(Scores(whole.logprobs[3:])).k == 0  # as many as both hold
    narrower = whole.head(3).then(prompt_scores(logprobs, prompt, 1).head(3))
    assert narrower.k == 1
    assert whole.known(2) == 6
    assert whole.known(3) == 0
    assert whole.richer(first_scores(2))
    assert not first_scores(2).richer(whole)
    # more positions but fewer top ids answer less for someone who asked for top ids
    assert not Scores(np.zeros(9, np.float32)).richer(whole)
    assert not whole.richer(first_scores(5))
    assert not whole.richer(whole)


_CONTEXTS = [list(range(100, 360)), [(7 * i) % 900 + 50 for i in range(230)]]


@st.composite
def _requests(draw: st.DrawFn) -> list[list[SampleJob]]:
    """Batches of requests that continue two long contexts at random points, each sampled or
    scored (top ids, last n), some of them twice."""
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        batch = []
        for _ in range(draw(st.integers(1, 4))):
            context = _CONTEXTS[draw(st.integers(0, 1))]
            cut = draw(st.integers(60, len(context)))
            tail = draw(st.lists(st.integers(1, 4000), max_size=12))
            prompt = [*context[:cut], *tail]
            kind = draw(st.sampled_from(["sample", "score", "top", "last"]))
            if kind == "sample":
                params = SamplingParams(max_tokens=draw(st.integers(1, 20)), seed=1, stop=[])
                batch.append(job(prompt, params, prompt_logprobs=draw(st.booleans())))
            elif kind == "score":
                batch.append(scored(prompt))
            elif kind == "top":
                batch.append(scored(prompt, topk_prompt_logprobs=draw(st.integers(1, 3))))
            else:
                batch.append(scored(prompt, prompt_logprobs_last_n=draw(st.integers(0, 40))))
        batches.append(batch)
    return batches


@settings(max_examples=60, deadline=None, derandomize=True)
@given(batches=_requests())
def test_whatever_was_kept_before_every_answer_is_the_whole_runs(
    batches: list[list[SampleJob]],
) -> None:
    base = _BASE.get("tiny") or _BASE.setdefault("tiny", build_base(TINY, DEVICE))
    store = PrefixStore(256 * MB, shortest=BLOCK)
    for batch in batches:
        for kept, fresh in zip(run(base, batch, store), run(base, batch, None), strict=True):
            same_scores(kept, fresh)


_BASE: dict[str, Any] = {}
