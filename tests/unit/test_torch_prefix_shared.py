"""Prompts of one batch that share a long prefix run it once: the prefix is run and kept
first, then each prompt resumes from it. Answers are the same as without the store (within
float rounding), and the prefix is billed once: to the first prompt that shares it.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from test_torch_prefix_scores import job, run, same_scores, scored

from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._torch_model import build_base
from tinker_actors.local._torch_prefix import BLOCK, SHORTEST, PrefixStore, shared_prefixes
from tinker_actors.types import SamplingParams

TINY = lookup_model("local/tiny")
DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")
MB = 1024 * 1024


def test_the_deepest_shared_prefix_groups_prompts_of_one_caller() -> None:
    context = list(range(1000, 1200))  # 6 whole blocks and 8 tokens
    prompts: list[tuple[Any, list[int]]] = [
        ("a", [*context, 1]),
        ("a", [*context, 2, 3]),
        ("a", [*context[:150], 9, 9]),  # shares 4 blocks with the two above
        ("a", [*context[:150], 8]),
        ("b", [*context, 1]),  # another caller's: alone
        ("a", list(range(10))),  # too short to share anything
    ]
    groups = sorted(shared_prefixes(prompts, SHORTEST))
    assert groups == [(4 * BLOCK, [2, 3]), (6 * BLOCK, [0, 1])]
    assert shared_prefixes(prompts, 7 * BLOCK) == []
    # a prompt exactly one block-aligned prefix long leaves no token: it shares one block less
    assert shared_prefixes([("a", context[:128]), ("a", context[:129])], BLOCK) == [
        (3 * BLOCK, [0, 1])
    ]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b"]), st.lists(st.integers(0, 2), max_size=200)),
        max_size=8,
    )
)
def test_a_shared_prefix_is_really_shared_and_leaves_each_a_token(
    prompts: list[tuple[str, list[int]]],
) -> None:
    # few distinct ids: long common prefixes are frequent
    seen: set[int] = set()
    for length, members in shared_prefixes(prompts, BLOCK):
        assert length % BLOCK == 0
        assert len(members) > 1
        assert not seen & set(members)
        seen |= set(members)
        salt, ids = prompts[members[0]]
        for i in members:
            assert prompts[i][0] == salt
            assert prompts[i][1][:length] == ids[:length]
            assert len(prompts[i][1]) > length


def test_the_scores_of_one_contexts_continuations_run_the_context_once() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB)
    context = list(range(40, 240))  # 200 tokens: 6 whole blocks shared
    requests = [
        scored([*context, 7, 8, 9]),
        scored([*context, 500], topk_prompt_logprobs=2),
        scored([*context, *range(600, 640)], prompt_logprobs_last_n=5),
        # shares too little for a prefix of its own, but resumes from the one kept (3 blocks)
        scored([*context[:100], 1, 2]),
    ]
    answers = run(base, requests, store)
    # the first pays for the context it shared; the others reuse it but for the one position
    # whose distribution scores their first new token
    assert [a.prompt_cache_hit_tokens for a in answers] == [0, 191, 191, 95]
    for answer, fresh in zip(answers, run(base, requests, None), strict=True):
        same_scores(answer, fresh)


def test_samples_of_one_preamble_in_one_batch_run_it_once() -> None:
    base = build_base(TINY, DEVICE)
    store = PrefixStore(256 * MB)
    preamble = list(range(300, 460))  # 160 tokens: 5 whole blocks
    params = SamplingParams(max_tokens=6, seed=2, stop=[])
    requests = [job([*preamble, *range(i, i + 7)], params) for i in range(3)]
    answers = run(base, requests, store)
    assert [a.prompt_cache_hit_tokens for a in answers] == [0, 160, 160]
    for answer, fresh in zip(answers, run(base, requests, None), strict=True):
        same_scores(answer, fresh)
    # another caller's prompts share nothing with these
    theirs = [job(r.prompt.to_ints(), params, cache_salt="other") for r in requests[:2]]
    assert [a.prompt_cache_hit_tokens for a in run(base, theirs, store)] == [0, 160]
