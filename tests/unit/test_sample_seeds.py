"""Seeds for sample requests without one (local/_sample_seeds.py): random by default; with a
server seed, the same requests get the same seeds in any arrival order, and identical
requests still differ."""

from __future__ import annotations

import random

import pytest

from tinker_actors.local._backend import SampleJob
from tinker_actors.local._sample_seeds import SampleSeeds
from tinker_actors.types import ModelInput, SamplingParams


def job(prompt: list[int], temperature: float = 1.0, num_samples: int = 1) -> SampleJob:
    return SampleJob(
        prompt=ModelInput.from_ints(prompt),
        num_samples=num_samples,
        params=SamplingParams(max_tokens=4, temperature=temperature),
        prompt_logprobs=False,
        topk_prompt_logprobs=0,
        topk_sample_logprobs=0,
        prompt_logprobs_last_n=None,
    )


def test_without_a_server_seed_each_request_draws_afresh() -> None:
    a, b = SampleSeeds(None), SampleSeeds(None)
    drawn = [a.draw(job([1, 2])) for _ in range(4)] + [b.draw(job([1, 2]))]
    assert len(set(drawn)) == len(drawn)
    assert all(0 <= s < 2**62 for s in drawn)


def test_a_seeded_server_repeats_in_any_arrival_order() -> None:
    # an RL step: 3 prompts, each sent 4 times (a group), arriving shuffled
    requests = [job([p, p + 1]) for p in (5, 9, 13) for _ in range(4)] + [job([5, 6], 0.5)]
    first = SampleSeeds(7)
    seeds_in_order = [first.draw(r) for r in requests]
    shuffled = list(range(len(requests)))
    random.Random(1).shuffle(shuffled)
    second = SampleSeeds(7)
    seeds_shuffled = {i: second.draw(requests[i]) for i in shuffled}
    # each prompt's group gets the same four seeds (which request of the four gets which one
    # follows arrival; identical requests are interchangeable)
    for start in range(0, 12, 4):
        assert sorted(seeds_in_order[start : start + 4]) == sorted(
            seeds_shuffled[i] for i in range(start, start + 4)
        )
    assert seeds_in_order[12] == seeds_shuffled[12]
    assert len(set(seeds_in_order)) == len(seeds_in_order)  # identical requests still differ
    # a fifth copy of a request gets the same seed in both runs; another server seed differs
    third = SampleSeeds(7)
    for r in requests:
        third.draw(r)
    assert third.draw(job([5, 6])) == first.draw(job([5, 6]))
    assert SampleSeeds(8).draw(job([5, 6])) != SampleSeeds(7).draw(job([5, 6]))


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_a_seed_out_of_range_is_refused(seed: int) -> None:
    with pytest.raises(ValueError, match="seed"):
        SampleSeeds(seed)


def test_a_seeded_servers_seeds_stay_what_they_were() -> None:
    # derived from the request's encoding: a reordered or new SampleJob field would change
    # every --seed run's samples (these are the values since the seeds were introduced)
    seeds = SampleSeeds(7)
    request = job([5, 6, 7])
    assert [seeds.draw(request), seeds.draw(request)] == [3567866905083491931, 1894962144569279436]
    # a progress callback is not part of the request
    with_progress = SampleJob(
        prompt=request.prompt, params=request.params, progress=lambda step: None
    )
    assert with_progress == request
    assert SampleSeeds(7).draw(with_progress) == 3567866905083491931
