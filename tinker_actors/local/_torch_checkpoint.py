"""The torch backend's checkpoint files: a LoRA adapter in Tinker's layout, plus a header.

A directory written by :func:`write_adapter` (format 2) holds:

* ``adapter_model.safetensors`` (or ``adapter_model.bin``, ``torch.save``, when the
  ``safetensors`` package is missing): the adapter's tensors under the names Tinker's own
  checkpoints use, PEFT-style names under Hugging Face Llama module paths
  (``base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight``, ``...mlp.down_proj...``;
  the head is Tinker's ``base_model.model.model.unembed_tokens``). A is ``[r, in]``, B
  ``[out, r]``, and ``lora_alpha / r`` scales their product, as in PEFT;
* ``adapter_config.json``: the PEFT config (``r``, ``lora_alpha``, ``target_modules``,
  ``base_model_name_or_path``, ...);
* ``adapter.json`` (:data:`META_FILE`): the server's header: format number, ``"backend":
  "torch"``, the base model, the LoRA shape (rank, which linears are trained, alpha), the
  optimizer step count and the name of the tensor file;
* ``optimizer.pt`` (:data:`OPTIMIZER_FILE`, the AdamW state), written by the backend itself
  only for ``save_state`` with the optimizer. Sampler snapshots have no optimizer file.

So a training checkpoint's archive, like the real service's, is what tinker-cookbook's
``weights.build_hf_model`` / ``build_lora_adapter`` and the official CLI's
``checkpoint push-hf`` read. An export (``save_weights_external``, :func:`write_tinker_adapter`)
holds only the first two files. Format 1 (tensors in ``adapter.safetensors`` or
``adapter.pt`` under the backend's own names, ``<layer>.<linear>.lora_A|lora_B``) is still
read, so a data directory from an earlier version keeps working.

For example::

    {"format": 2, "backend": "torch", "base_model": "local/tiny", "rank": 8,
     "train_attn": true, "train_mlp": true, "train_unembed": true, "alpha": 32.0,
     "steps": 3, "tensors": "adapter_model.safetensors"}

Reading checks the header before any tensor is loaded: a directory written by another backend
(no ``adapter.json``), by another format, or for another base model is refused with a
:class:`~tinker_actors.local._backend.BackendInputError` that names the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import torch

from tinker_actors.local._backend import BackendInputError
from tinker_actors.local._torch_model import Adapter, AdapterShape

if TYPE_CHECKING:
    from pathlib import Path

    from tinker_actors.local._catalogue import BaseModelSpec

__all__ = [
    "META_FILE",
    "OPTIMIZER_FILE",
    "AdapterMeta",
    "read_meta",
    "read_tensors",
    "write_adapter",
    "write_tinker_adapter",
]

_FORMAT: Final = 2
_READABLE: Final = frozenset({1, 2})
#: The JSON header's file name; its modification time keys the backend's sampler cache.
META_FILE: Final = "adapter.json"
#: The AdamW state's file name (``save_state`` with the optimizer only).
OPTIMIZER_FILE: Final = "optimizer.pt"


@dataclass(frozen=True)
class AdapterMeta:
    """What ``adapter.json`` says about the adapter: its LoRA shape and optimizer step count."""

    shape: AdapterShape
    steps: int


#: Our per-layer linear names -> their Hugging Face Llama module paths within a layer.
_HF_MODULES: Final = {
    "q": "self_attn.q_proj",
    "k": "self_attn.k_proj",
    "v": "self_attn.v_proj",
    "o": "self_attn.o_proj",
    "gate": "mlp.gate_proj",
    "up": "mlp.up_proj",
    "down": "mlp.down_proj",
}
_PREFIX: Final = "base_model.model.model."


def tinker_module_name(name: str) -> str:
    """The module path Tinker's adapter files use for our linear ``name`` (``3.q``, ``head``).

    Both base models keep q and k rows in Hugging Face's rotary order (SmolLM2's GGUF rows are
    put back into it when read), so the tensors need no reordering, only new names.
    """
    if name == "head":
        return _PREFIX + "unembed_tokens"
    layer, linear = name.split(".")
    return f"{_PREFIX}layers.{int(layer)}.{_HF_MODULES[linear]}"


_PEFT_SUFFIX: Final = ".weight"


def _backend_name(tinker_name: str) -> str:
    """The inverse of the renaming in :func:`write_tinker_adapter` (``...q_proj.lora_A.weight`` ->
    ``3.q.lora_A``)."""
    module, part = tinker_name.removesuffix(_PEFT_SUFFIX).rsplit(".", 1)
    module = module.removeprefix(_PREFIX)
    if module == "unembed_tokens":
        return f"head.{part}"
    _layers, layer, _block, leaf = module.split(".")
    return f"{int(layer)}.{leaf.removesuffix('_proj')}.{part}"


def write_tinker_adapter(directory: Path, spec: BaseModelSpec, adapter: Adapter) -> list[Path]:
    """Write ``adapter`` in Tinker's layout only (an export); return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in adapter.state_dict().items():
        linear, part = name.rsplit(".", 1)  # part: lora_A or lora_B
        tensors[f"{tinker_module_name(linear)}.{part}{_PEFT_SUFFIX}"] = tensor
    try:
        from safetensors.torch import save_file
    except ImportError:
        tensor_path = directory / "adapter_model.bin"
        torch.save(tensors, tensor_path)
    else:
        tensor_path = directory / "adapter_model.safetensors"
        save_file(tensors, str(tensor_path), metadata={"format": "pt"})
    shape = adapter.shape
    leaves = sorted({tinker_module_name(n).rsplit(".", 1)[-1] for n in adapter.a})
    config = {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": spec.name,
        "r": shape.rank,
        "lora_alpha": adapter.scale * shape.rank,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": False,
        "target_modules": leaves,
    }
    config_path = directory / "adapter_config.json"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return [tensor_path, config_path]


def write_adapter(directory: Path, spec: BaseModelSpec, adapter: Adapter, steps: int) -> list[Path]:
    """Write ``adapter`` (Tinker's layout) and the server's header; return the files written.

    The header is written last: the backend's sampler cache is keyed by its mtime.
    """
    written = write_tinker_adapter(directory, spec, adapter)
    shape = adapter.shape
    meta = {
        "format": _FORMAT,
        "backend": "torch",
        "base_model": spec.name,
        "rank": shape.rank,
        "train_attn": shape.train_attn,
        "train_mlp": shape.train_mlp,
        "train_unembed": shape.train_unembed,
        "alpha": adapter.scale * shape.rank,
        "steps": steps,
        "tensors": written[0].name,
    }
    meta_path = directory / META_FILE
    meta_path.write_text(json.dumps(meta, indent=1))
    return [*written, meta_path]


def read_meta(directory: Path, spec: BaseModelSpec) -> AdapterMeta:
    """Read and check the header of an adapter saved for ``spec``.

    Raises:
        BackendInputError: no header (not the torch backend's), another format, or another
            base model.
    """
    try:
        raw = json.loads((directory / META_FILE).read_text())
    except FileNotFoundError:
        raise BackendInputError(
            f"no torch-backend weights under {directory.name}; were they saved by another backend?"
        ) from None
    if raw.get("format") not in _READABLE or raw.get("backend") != "torch":
        raise BackendInputError(f"{directory.name}: unsupported checkpoint format {raw!r:.80}")
    if raw["base_model"] != spec.name:
        raise BackendInputError(
            f"{directory.name} was trained on {raw['base_model']}, not {spec.name}"
        )
    shape = AdapterShape(
        rank=int(raw["rank"]),
        train_attn=bool(raw["train_attn"]),
        train_mlp=bool(raw["train_mlp"]),
        train_unembed=bool(raw["train_unembed"]),
    )
    return AdapterMeta(shape=shape, steps=int(raw.get("steps", 0)))


def read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """Load the adapter tensors named by the header (call :func:`read_meta` first).

    Raises:
        BackendInputError: the tensors are safetensors and the package is not installed.
    """
    header = json.loads((directory / META_FILE).read_text())
    path = directory / header["tensors"]
    loaded: dict[str, torch.Tensor]
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise BackendInputError(
                f"{directory.name} is stored as safetensors; install the safetensors package"
            ) from None
        loaded = dict(load_file(str(path)))
    else:
        loaded = torch.load(path, weights_only=True)
    if header["format"] == 1:  # the backend's own names
        return loaded
    return {_backend_name(name): tensor for name, tensor in loaded.items()}
