"""``target_prompt_logprobs`` and ``prompt_alt_tokens_k`` (0.38) on both local backends.

The checks and the answer's layout (dense in, dense out; CSR in, the same CSR out), then the
torch backend's answers against the prompt's own logprobs, and the null backend's shape.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from tinker_actors.local._backend import BackendInputError, SampleJob
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._null_backend import NullBackend
from tinker_actors.local._prompt_targets import answer_targets, check_targets, target_ids
from tinker_actors.types import ModelInput, SamplingParams, TensorData

TINY = lookup_model("local/tiny")
PROMPT = [40, 41, 42, 43, 44, 45]


def targets(rows: list[list[int]], *, sparse: bool = False) -> TensorData:
    array = np.asarray(rows, dtype=np.int64)
    return TensorData.from_numpy(array, sparse=sparse, pad_value=-1)


def job(prompt: list[int] = PROMPT, **kwargs: Any) -> SampleJob:
    fields: dict[str, Any] = {
        "num_samples": 1,
        "params": SamplingParams(max_tokens=4, seed=5, stop=[]),
        "prompt_logprobs": False,
        "topk_prompt_logprobs": 0,
        "topk_sample_logprobs": 0,
        "prompt_logprobs_last_n": None,
    }
    fields.update(kwargs)
    return SampleJob(prompt=ModelInput.from_ints(prompt), **fields)


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (TensorData.from_numpy(np.zeros((5, 2), dtype=np.float32)), "int64 token ids"),
        (TensorData.from_numpy(np.zeros(5, dtype=np.int64)), r"\[5, K\] for this 6-token"),
        (TensorData.from_numpy(np.zeros((6, 2), dtype=np.int64)), r"got shape \[6, 2\]"),
        (TensorData.from_numpy(np.zeros((5, 9), dtype=np.int64)), "at most 8 token ids"),
        (targets([[-1]] * 4 + [[4096]]), r"in \[0, 4096\), or -1"),
        (targets([[-2]] * 5), "got -2..-2"),
    ],
)
def test_a_target_tensor_that_cannot_be_answered_is_refused_with_the_reason(
    tensor: TensorData, message: str
) -> None:
    with pytest.raises(BackendInputError, match=message):
        check_targets(tensor, len(PROMPT), TINY.vocab_size, max_k=8)


def test_the_answer_keeps_the_requests_layout_and_zeroes_cells_that_asked_nothing() -> None:
    rows = [[-1] * 4, [-1] * 4, [7, 9, -1, -1], [-1] * 4, [-1, -1, -1, 3]]
    logprobs = -np.arange(20, dtype=np.float32).reshape(5, 4) - 1
    for sparse in (False, True):
        asked = targets(rows, sparse=sparse)
        assert asked.is_sparse == sparse  # three ids in twenty cells: CSR is smaller
        answer = answer_targets(asked, logprobs)
        assert answer.dtype == "float32"
        assert answer.is_sparse == sparse
        assert answer.sparse_crow_indices == asked.sparse_crow_indices
        assert answer.sparse_col_indices == asked.sparse_col_indices
        expected = np.where(np.asarray(rows) == -1, 0.0, logprobs)
        assert answer.to_numpy().tolist() == expected.tolist()
    assert target_ids(targets(rows, sparse=True)).tolist() == rows


async def test_the_null_backend_answers_in_shape_and_agrees_with_its_prompt_logprobs() -> None:
    backend = NullBackend()
    # row i scores prompt position i + 1: naming the prompt's own next token there gives
    # that token's prompt logprob
    own = [[PROMPT[i + 1], -1] for i in range(len(PROMPT) - 1)]
    response = await backend.sample(
        TINY,
        None,
        job(target_prompt_logprobs=targets(own), prompt_alt_tokens_k=3, prompt_logprobs=True),
    )
    assert response.target_prompt_logprobs is not None
    answer = response.target_prompt_logprobs.to_numpy()
    assert response.prompt_logprobs_np is not None
    assert np.allclose(answer[:, 0], response.prompt_logprobs_np[1:])
    assert (answer[:, 1] == 0.0).all()
    alt = response.prompt_alt_tokens
    assert alt is not None
    assert alt.tokens.dims == alt.logprobs.dims == (len(PROMPT) - 1, 3)
    assert ((alt.tokens.array >= 0) & (alt.tokens.array < TINY.vocab_size)).all()
    plain = await backend.sample(TINY, None, job())
    assert plain.target_prompt_logprobs is None
    assert plain.prompt_alt_tokens is None
    float_ids = TensorData.from_numpy(np.zeros((5, 1), dtype=np.float32))
    with pytest.raises(BackendInputError, match="int64"):
        await backend.sample(TINY, None, job(target_prompt_logprobs=float_ids))


torch = pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from tinker_actors.local._torch_backend import TorchBackend  # noqa: E402

DEVICE = os.environ.get("TINKER_ACTORS_TEST_DEVICE", "cpu")


def torch_backend() -> TorchBackend:
    letters = lambda ids: "".join(chr(97 + i % 26) for i in ids)  # noqa: E731
    return TorchBackend(device=DEVICE, tokenizer_loader=lambda spec: letters, seed=0)


async def test_torch_targets_are_the_models_logprobs_at_each_position() -> None:
    backend = torch_backend()
    k = 4
    full = await backend.sample(TINY, None, job(topk_prompt_logprobs=k, prompt_logprobs=True))
    topk = full.topk_prompt_logprobs_np
    assert topk is not None
    assert full.prompt_logprobs_np is not None
    # ask for each position's top-k ids and the prompt's own next token, dense and sparse
    rows = [[*topk.token_ids[i + 1].tolist(), PROMPT[i + 1]] for i in range(len(PROMPT) - 1)]
    rows[1] = [-1] * (k + 1)
    for sparse in (False, True):
        asked = targets(rows, sparse=sparse)
        response = await backend.sample(TINY, None, job(target_prompt_logprobs=asked))
        answer = response.target_prompt_logprobs
        assert answer is not None
        assert answer.is_sparse == asked.is_sparse
        values = answer.to_numpy()
        for i in (0, 2, 3, 4):
            assert np.allclose(values[i, :k], topk.logprobs[i + 1], atol=1e-5)
            assert np.isclose(values[i, k], full.prompt_logprobs_np[i + 1], atol=1e-5)
        assert (values[1] == 0.0).all()
        # scoring the prompt does not change what is sampled
        assert response.sequences[0].tokens_np.tolist() == full.sequences[0].tokens_np.tolist()
        # without a seed the seeded server derives one from the request, tensor included
        unseeded = job(target_prompt_logprobs=asked, params=SamplingParams(max_tokens=1))
        again = (await backend.sample(TINY, None, unseeded)).target_prompt_logprobs
        assert again is not None
        assert again.to_numpy().tolist() == values.tolist()


async def test_torch_alt_tokens_are_draws_with_the_models_logprobs() -> None:
    backend = torch_backend()
    plain = await backend.sample(TINY, None, job(prompt_logprobs=True, topk_prompt_logprobs=1))
    drawn = await backend.sample(TINY, None, job(prompt_alt_tokens_k=64))
    alt = drawn.prompt_alt_tokens
    assert alt is not None
    assert alt.tokens.dtype == "int64"
    tokens, lps = alt.tokens.to_numpy(), alt.logprobs.to_numpy()
    assert tokens.shape == lps.shape == (len(PROMPT) - 1, 64)
    # every draw carries its logprob: a repeat of a token repeats its value, and none beats
    # the position's likeliest token
    topk = plain.topk_prompt_logprobs_np
    assert topk is not None
    for i in range(tokens.shape[0]):
        by_token: dict[int, float] = {}
        for t, lp in zip(tokens[i].tolist(), lps[i].tolist(), strict=True):
            assert by_token.setdefault(t, lp) == pytest.approx(lp)
        assert lps[i].max() <= topk.logprobs[i + 1, 0] + 1e-5
    # seeded: the same draws again; the samples are those of a request without draws
    again = await backend.sample(TINY, None, job(prompt_alt_tokens_k=64))
    assert again.prompt_alt_tokens is not None
    assert again.prompt_alt_tokens.tokens.to_numpy().tolist() == tokens.tolist()
    assert drawn.sequences[0].tokens_np.tolist() == plain.sequences[0].tokens_np.tolist()
    # temperature 0: the likeliest token, k times
    greedy = await backend.sample(
        TINY, None, job(prompt_alt_tokens_k=2, params=SamplingParams(max_tokens=1, temperature=0))
    )
    assert greedy.prompt_alt_tokens is not None
    best = topk.token_ids[1:, 0]
    assert greedy.prompt_alt_tokens.tokens.to_numpy().tolist() == [[t, t] for t in best]


async def test_torch_refuses_a_target_tensor_of_the_wrong_shape() -> None:
    backend = torch_backend()
    with pytest.raises(BackendInputError, match=r"\[5, K\]"):
        await backend.sample(TINY, None, job(target_prompt_logprobs=targets([[1]] * 6)))
