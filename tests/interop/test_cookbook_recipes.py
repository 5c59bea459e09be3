"""tinker-cookbook 0.6.1's SFT recipes run unmodified on tinker_actors.compat, offline.

Each recipe runs twice against one ``tinker-actors serve --backend torch`` process: with the
official client, and under the import switch (``tinker-actors run -- python ...``). Both must
log the same losses (to 1e-4): the torch backend is deterministic, so any difference would be
the client's.

Offline set-up, as a user would do it:

* the recipes' default model ``Qwen/Qwen3.5-9B-Base`` is served by ``local/tiny`` through a
  server alias (the cookbook picks the ``role_colon`` renderer for it, which works with any
  tokenizer), and ``install_tokenizers`` writes local/tiny's tokenizer into a temporary Hugging
  Face cache under that name (``HF_HUB_OFFLINE=1``);
* ``HuggingFaceH4/no_robots`` is a local folder of JSONL files in the working directory, which
  ``datasets.load_dataset`` finds before the hub.

The recipe code is run untouched with ``runpy`` from a tiny launcher that afterwards prints which
``tinker`` module was in use, so the test knows the switch really was active
(``serve_support.recipe_command``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import serve_support
from serve_support import metrics, serve_in_child

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")

from tinker_actors.local import install_tokenizers

pytestmark = [pytest.mark.interop, pytest.mark.slow]

MODEL = "Qwen/Qwen3.5-9B-Base"
SUBJECTS = ["cats", "the sea", "trains", "bread", "winter", "music", "gardens", "rivers"]


def _row(index: int) -> dict[str, Any]:
    subject = SUBJECTS[index % len(SUBJECTS)]
    return {
        "prompt": f"Tell me about {subject}.",
        "prompt_id": str(index),
        "category": "Chat",
        "messages": [
            {"role": "user", "content": f"Tell me about {subject}, please ({index})."},
            {
                "role": "assistant",
                "content": f"{subject.capitalize()} are a fine subject. Fact {index % 7}.",
            },
        ],
    }


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cookbook")
    data = root / "HuggingFaceH4" / "no_robots"
    data.mkdir(parents=True)
    for split, count, first in (("train", 256, 0), ("test", 128, 1000)):
        lines = [json.dumps(_row(first + i)) for i in range(count)]
        (data / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    install_tokenizers(root / "hub", models=["local/tiny"], aliases={MODEL: "local/tiny"})
    return root


@pytest.fixture(scope="module")
def server_url(workdir: Path) -> Iterator[str]:
    with serve_in_child(
        "--backend", "torch", "--model-alias", f"{MODEL}=local/tiny",
        "--data-dir", str(workdir / "server-data"),
    ) as url:  # fmt: skip
        yield url


def run_recipe(
    workdir: Path, url: str, module: str, args: list[str], *, compat: bool
) -> list[dict[str, Any]]:
    """Run a cookbook recipe module; return the rows of its metrics.jsonl."""
    name = f"{module.rsplit('.', 1)[1]}-{'compat' if compat else 'official'}"
    return metrics(serve_support.run_recipe(workdir, url, module, args, compat=compat, name=name))


def _losses(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [row[key] for row in rows if key in row]


def test_sl_loop_logs_the_official_clients_losses(workdir: Path, server_url: str) -> None:
    args = ["batch_size=8", "max_steps=4"]
    module = "tinker_cookbook.recipes.sl_loop"
    official = run_recipe(workdir, server_url, module, args, compat=False)
    ours = run_recipe(workdir, server_url, module, args, compat=True)
    theirs_nll, ours_nll = _losses(official, "train_mean_nll"), _losses(ours, "train_mean_nll")
    assert len(ours_nll) == 4
    assert ours_nll == pytest.approx(theirs_nll, abs=1e-4)


def test_sl_basic_logs_the_official_clients_losses(workdir: Path, server_url: str) -> None:
    # supervised/train.py: asyncio, pipelined submission, an NLL evaluator, final checkpoints
    args = ["max_steps=2", "eval_every=2"]
    module = "tinker_cookbook.recipes.sl_basic"
    official = run_recipe(workdir, server_url, module, args, compat=False)
    ours = run_recipe(workdir, server_url, module, args, compat=True)
    for key in ("train_mean_nll", "test/nll"):
        theirs_values, our_values = _losses(official, key), _losses(ours, key)
        assert our_values, key
        assert our_values == pytest.approx(theirs_values, abs=1e-4), key
