"""tinker-cookbook 0.6.1's SFT recipes run unmodified on tinker_actors.compat, offline.

Each recipe runs twice against one ``tinker-actors serve --backend torch`` process: with the
official client, and under the import switch (``tinker-actors run -- python ...``). Both must
log the same losses (to 1e-4): the torch backend is deterministic, so any difference would be
the client's.

sl_basic runs a third time, under the switch against a second server that injects faults
(``FAULTS``): the SDK must absorb them all and log the same losses, and the server must have
applied each of the run's training operations once.

chat_sl runs with rolling checkpoints (the cookbook's own smoke test of them, scaled down) with
each client: a resume-only state saved every step and deleted through the REST client once the
next one is saved, beside full checkpoints that keep their TTLs.

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

import httpx
import pytest
import serve_support
from serve_support import RECIPE_KEY, metrics, serve_in_child

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


SL_BASIC = "tinker_cookbook.recipes.sl_basic"
#: supervised/train.py: asyncio, pipelined submission, an NLL evaluator, final checkpoints
SL_BASIC_ARGS = ["max_steps=2", "eval_every=2"]
SL_BASIC_KEYS = ("train_mean_nll", "test/nll")


@pytest.fixture(scope="module")
def sl_basic_official(workdir: Path, server_url: str) -> list[dict[str, Any]]:
    """sl_basic's metrics with the official client: the reference the other runs must log."""
    return run_recipe(workdir, server_url, SL_BASIC, SL_BASIC_ARGS, compat=False)


def _same_losses(ours: list[dict[str, Any]], official: list[dict[str, Any]]) -> None:
    for key in SL_BASIC_KEYS:
        theirs_values, our_values = _losses(official, key), _losses(ours, key)
        assert our_values, key
        assert our_values == pytest.approx(theirs_values, abs=1e-4), key


def test_sl_basic_logs_the_official_clients_losses(
    workdir: Path, server_url: str, sl_basic_official: list[dict[str, Any]]
) -> None:
    ours = run_recipe(workdir, server_url, SL_BASIC, SL_BASIC_ARGS, compat=True)
    _same_losses(ours, sl_basic_official)


#: docs/local-server.md's "acceptance mix" and lost answers: a fifth of the answers replaced by
#: 429 (Retry-After 0.5 s), 5xx or 408, and a tenth of the connections reset, or cut once the
#: server has applied the request and its answer starts
FAULTS = [
    "--fault", "seed=1", "--fault", "*:429|500|502|503|408@0.2,retry_after=0.5",
    "--fault", "connection:reset=0.05,drop_response=0.05",
]  # fmt: skip


def test_sl_basic_under_faults_logs_the_losses_of_a_quiet_run(
    workdir: Path, sl_basic_official: list[dict[str, Any]]
) -> None:
    # the recipe's own retries stay out of it: it has none, so every fault is the client's
    # to absorb (the SDK's HTTP retries, its submission retries and, for a response lost
    # after the server applied the request, the idempotency key that makes the retry return
    # the original result instead of training twice)
    data_dir = str(workdir / "faulty-server-data")
    with serve_in_child(
        "--backend", "torch", "--model-alias", f"{MODEL}=local/tiny", "--data-dir", data_dir,
        *FAULTS,
    ) as url:  # fmt: skip
        log_path = serve_support.run_recipe(
            workdir, url, SL_BASIC, SL_BASIC_ARGS, compat=True, name="sl_basic-faults"
        )
        counters = _counters_through_faults(url)
    _same_losses(metrics(log_path), sl_basic_official)
    assert counters["faults"]["injected"] > 0, counters["faults"]
    connection = counters["connection_faults"]
    assert connection["reset"] > 0, connection
    assert connection["dropped"] > 0, connection
    # the training run's operations were each applied once, in order, none failed
    [model] = counters["models"].values()
    assert model["failed"] == 0, model
    assert model["applied_seq_ids"] == list(range(len(model["applied_seq_ids"]))), model


def _counters_through_faults(url: str) -> dict[str, Any]:
    """``GET /_local/counters`` through the plan's faults, which apply to it too: retried until
    the answer is the server's (an injected one says ``x-injected-fault``; a cut raises)."""
    for _ in range(50):
        try:
            answer = httpx.get(
                f"{url}/_local/counters", headers={"X-API-Key": RECIPE_KEY}, timeout=30
            )
        except httpx.TransportError:
            continue
        if answer.status_code == 200 and "x-injected-fault" not in answer.headers:
            counters: dict[str, Any] = answer.json()
            return counters
    raise AssertionError("50 reads of /_local/counters all met a fault")


CHAT_SL = "tinker_cookbook.recipes.chat_sl.train"
#: tinker-cookbook's own smoke test of rolling checkpoints (its
#: tests/recipes/test_recipe_rolling_checkpoints.py), scaled down: a resume-only state every
#: step, run as a background asyncio task beside the next step and deleted once the next one
#: is saved, and a full checkpoint every second step
ROLLING_ARGS = [
    "batch_size=8", "eval_every=0", "save_every=2", "rolling_save_every=1",
    "rolling_ttl_seconds=3600", "max_steps=4", "behavior_if_log_dir_exists=delete",
]  # fmt: skip


@pytest.mark.parametrize("compat", [False, True], ids=["official", "compat"])
def test_chat_sl_rolling_checkpoints_are_saved_then_deleted(
    workdir: Path, server_url: str, compat: bool
) -> None:
    name = f"chat_sl-rolling-{'compat' if compat else 'official'}"
    log_path = serve_support.run_recipe(
        workdir, server_url, CHAT_SL, ROLLING_ARGS, compat=compat, name=name
    )
    records = [json.loads(row) for row in (log_path / "checkpoints.jsonl").read_text().splitlines()]
    # the cookbook's own checks: rolling records are states only, periodic ones have both
    # paths, and there is one final record
    assert [(r["name"], bool(r.get("rolling")), "sampler_path" in r) for r in records] == [
        ("000001", True, False),
        ("000002", False, True),
        ("000003", True, False),
        ("final", False, True),
    ], records
    # each rolling state was deleted through the REST client (an APIFuture awaited in the
    # background task); what is left is the periodic and the final checkpoint, the periodic
    # one with the cookbook's default TTL of 7 days and the final one with none
    logs = (log_path / "logs.log").read_text()
    assert "Failed to delete" not in logs
    for record in records:
        if record.get("rolling"):
            assert f"Deleted rolling checkpoint {record['state_path']}" in logs
    run_id = records[0]["state_path"].removeprefix("tinker://").split("/")[0]
    listed = httpx.get(
        f"{server_url}/api/v1/training_runs/{run_id}/checkpoints",
        headers={"X-API-Key": RECIPE_KEY},
        timeout=30,
    ).json()["checkpoints"]
    kept = {c["checkpoint_id"]: c["expires_at"] is not None for c in listed}
    assert kept == {
        "weights/000002": True,
        "sampler_weights/000002": True,
        "weights/final": False,
        "sampler_weights/final": False,
    }, listed
    assert len(_losses(metrics(log_path), "train_mean_nll")) == 4
