"""Real base-model weights from a GGUF file (SmolLM2-135M-Instruct), as float32 torch tensors.

Reading: every tensor is dequantized with ``gguf.quants.dequantize`` (Q4_1, Q8_0 and F32 in
SmolLM2's file) and reshaped to ``[out, in]`` (GGUF lists dimensions fastest first). Names map
onto the backend's: ``token_embd`` -> embed, ``blk.N.attn_q/k/v/output`` -> q/k/v/o,
``ffn_gate/up/down`` -> gate/up/down, ``attn_norm``/``ffn_norm`` -> the layer norms,
``output_norm`` -> the final norm. SmolLM2 ties its head to the embedding (no ``output``).

llama.cpp stores q and k with the rows of each head interleaved for pairwise (GPT-J) rotary
embeddings; this backend rotates halves (as Hugging Face's Llama does), so each head's rows are
put back: row ``2i`` and ``2i + 1`` of a head become rows ``i`` and ``i + head_dim / 2``.

Dequantizing takes seconds, so the result is cached once as safetensors under the cache
directory, named by the GGUF file's digest; later loads read that file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from tinker_actors.local._gguf_tokenizer import file_digest

if TYPE_CHECKING:
    from tinker_actors.local._catalogue import BaseModelSpec

__all__ = ["load_gguf_weights", "unpermute_rotary"]

_LAYER_NAMES = {
    "attn_norm": "attn_norm",
    "attn_q": "q",
    "attn_k": "k",
    "attn_v": "v",
    "attn_output": "o",
    "ffn_norm": "mlp_norm",
    "ffn_gate": "gate",
    "ffn_up": "up",
    "ffn_down": "down",
}


def unpermute_rotary(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder each head's rows from interleaved (GGUF) to half-split rotary order."""
    out, inputs = weight.shape
    return weight.reshape(heads, out // heads // 2, 2, inputs).transpose(1, 2).reshape(out, inputs)


def _read(spec: BaseModelSpec, path: Path) -> dict[str, torch.Tensor]:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    reader = GGUFReader(path)
    named: dict[str, torch.Tensor] = {}
    for tensor in reader.tensors:
        shape = tuple(int(n) for n in reversed(tensor.shape))
        values = dequantize(tensor.data, tensor.tensor_type).reshape(shape)
        name = tensor.name.removesuffix(".weight")
        if name.startswith("blk."):
            _, index, part = name.split(".")
            if part not in _LAYER_NAMES:
                raise ValueError(f"{path.name}: unexpected tensor {tensor.name}")
            name = f"{index}.{_LAYER_NAMES[part]}"
        named[name] = torch.from_numpy(np.array(values, dtype=np.float32))
    for i in range(spec.n_layers):
        named[f"{i}.q"] = unpermute_rotary(named[f"{i}.q"], spec.n_heads).contiguous()
        named[f"{i}.k"] = unpermute_rotary(named[f"{i}.k"], spec.kv_heads).contiguous()
    return named


def _check(spec: BaseModelSpec, named: dict[str, torch.Tensor]) -> None:
    head_dim = spec.d_model // spec.n_heads
    kv = spec.kv_heads * head_dim
    d, f = spec.d_model, spec.d_ff
    expected = {"token_embd": (spec.vocab_size, d), "output_norm": (d,)}
    for i in range(spec.n_layers):
        expected |= {
            f"{i}.attn_norm": (d,),
            f"{i}.mlp_norm": (d,),
            f"{i}.q": (d, d),
            f"{i}.k": (kv, d),
            f"{i}.v": (kv, d),
            f"{i}.o": (d, d),
            f"{i}.gate": (f, d),
            f"{i}.up": (f, d),
            f"{i}.down": (d, f),
        }
    found = {name: tuple(t.shape) for name, t in named.items()}
    if found != expected:
        wrong = sorted(set(found.items()) ^ set(expected.items()))[:4]
        raise ValueError(f"{spec.name}: the weights do not have the spec's shape: {wrong}")


def load_gguf_weights(
    spec: BaseModelSpec, cache_dir: Path | None
) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]], torch.Tensor]:
    """Return ``(embed, layers, final norm)`` of ``spec`` on the CPU, from its GGUF source.

    Raises:
        ValueError: no source file, or tensors that do not match the spec's shape.
    """
    from safetensors.torch import load_file, save_file

    if spec.source is None:
        raise ValueError(f"{spec.name}: gguf weights need the model's source file")
    cached = None
    if cache_dir is not None:
        stem = spec.source.name.removesuffix(".gguf")
        cached = cache_dir / "weights" / f"{stem}-{file_digest(spec.source)}.safetensors"
    if cached is not None and cached.is_file():
        named = dict(load_file(str(cached)))
    else:
        named = _read(spec, spec.source)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=cached.parent)
            os.close(fd)
            try:
                save_file(named, tmp)
                os.replace(tmp, cached)
            finally:
                Path(tmp).unlink(missing_ok=True)
    _check(spec, named)
    layers = [
        {part: named[f"{i}.{part}"] for part in _LAYER_NAMES.values()} for i in range(spec.n_layers)
    ]
    return named["token_embd"], layers, named["output_norm"]
