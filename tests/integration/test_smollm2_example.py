"""The SmolLM2 LoRA demo (examples/smollm2_lora.py): one new fact learnt, the model intact.

About half a minute on two cores once the weights are cached, so it runs only when asked:
``TINKER_ACTORS_SMOLLM2_DEMO=1 python -m pytest tests/integration/test_smollm2_example.py``.
The fast SmolLM2 checks that CI runs are in tests/unit/test_smollm2.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_actors.local._smollm2 import smollm2_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="SmolLM2 (smollm2 extra) not installed"),
    pytest.mark.skipif(
        os.environ.get("TINKER_ACTORS_SMOLLM2_DEMO") != "1",
        reason="opt-in demo: set TINKER_ACTORS_SMOLLM2_DEMO=1",
    ),
]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smollm2_lora.py"


def test_lora_teaches_the_answer_and_keeps_the_control() -> None:
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = {line.split(":", 1)[0]: line for line in done.stdout.splitlines()}
    assert "Biscuit" not in lines["before"]
    assert lines["after"].endswith("-> 'The cat is called Biscuit.'")
    assert "Paris" in lines["control"]
