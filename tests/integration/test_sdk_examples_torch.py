"""The SDK examples run green against ``tinker-actors serve --backend torch`` (issue 6).

The null backend (test_sdk_examples.py) proves the protocol; here the same example scripts
drive real LoRA training and sampling on the torch backend's ``local/tiny`` model, so the
checks are about learning: an untrained model's loss is near ln(vocab), training lowers it,
the DPO loss starts at ln 2 and the custom gradient moves it. One server serves all three
scripts; step counts and sizes are small so the module stays fast on a CPU.
"""

from __future__ import annotations

import math
import signal
import subprocess
from collections.abc import Iterator

import pytest
from sdk_support import CLI, run_example

pytest.importorskip(
    "starlette", reason="the server extra is not installed: pip install -e '.[server]'"
)
pytest.importorskip("click", reason="the cli extra is not installed")
pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

VOCAB = 4096  # local/tiny's vocabulary (docs/local-server.md)


@pytest.fixture(scope="module")
def torch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One ``tinker-actors serve --backend torch`` for the module; yields its URL."""
    data_dir = tmp_path_factory.mktemp("torch-serve")
    proc = subprocess.Popen(
        [*CLI, "serve", "--backend", "torch", "--port", "0", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "(torch backend) at http://127.0.0.1:" in first, (first, proc.stderr)
        yield first.rsplit(" at ", 1)[1].strip()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def sft_losses(lines: list[str]) -> list[float]:
    return [float(line.rsplit("= ", 1)[1]) for line in lines if line.startswith("step ")]


def test_sft_loop_trains_on_the_torch_backend(torch_server: str) -> None:
    # the example's defaults: 8 steps of 8 sequences at learning rate 2e-3
    lines = run_example("sft_loop.py", "--base-url", torch_server)
    losses = sft_losses(lines)
    assert len(losses) == 8
    assert all(math.isfinite(loss) for loss in losses)
    # Untrained, the model predicts near-uniformly over its vocabulary...
    assert losses[0] == pytest.approx(math.log(VOCAB), abs=0.3)
    # ...and a default run at least halves the loss (issue 11)
    assert losses[-1] <= losses[0] / 2, losses
    assert any(line.startswith("saved tinker://") for line in lines)
    samples = [line for line in lines if line.startswith("sample ")]
    assert len(samples) == 2
    for line in samples:
        tokens = [int(t) for t in line.removeprefix("sample [").removesuffix("]").split(",")]
        assert len(tokens) == 6  # max_tokens
        assert all(0 <= t < VOCAB for t in tokens)
    assert lines[-1] == "done"


def test_rl_loop_runs_on_the_torch_backend(torch_server: str) -> None:
    lines = run_example(
        "rl_loop.py", "--base-url", torch_server,
        "--iterations", "2", "--groups", "3", "--group-size", "4",
    )  # fmt: skip
    iterations = [line for line in lines if line.startswith("iteration ")]
    assert len(iterations) == 2
    for line in iterations:
        assert ": 12 samples, mean reward " in line
        mean_reward = float(line.rsplit(" ", 1)[1])
        assert 0.0 <= mean_reward <= 1.0  # a share of even token ids
    assert lines[-1] == "done"


def test_custom_loss_trains_on_the_torch_backend(torch_server: str) -> None:
    lines = run_example(
        "custom_loss.py", "--base-url", torch_server, "--steps", "3", "--pairs", "2"
    )
    losses = [
        float(line.split("dpo loss = ")[1].split(",")[0]) for line in lines if "dpo loss" in line
    ]
    assert len(losses) == 3
    assert losses[0] == pytest.approx(math.log(2), abs=1e-3)  # policy == reference at first
    assert losses[-1] < losses[0]  # the custom gradient trained the torch model
    assert lines[-1] == "done"
