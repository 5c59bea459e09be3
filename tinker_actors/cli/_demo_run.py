"""What ``tinker-actors demo`` does: teach a local model one fact, offline, and show it learned.

The demo is the SDK's main job end to end, in one trio program: a local server runs in the
same process (torch backend, reached through ``httpx.ASGITransport``, no sockets), and the SDK
(``tinker_actors.open()``) creates a LoRA training client, samples the model's answer to a
question it cannot know, trains on the answer with pipelined ``forward_backward`` +
``optim_step`` steps, saves a checkpoint, and samples again from the trained weights::

    tinker-actors demo                 # SmolLM2-135M when its extra is installed, else local/tiny
    tinker-actors demo --format json   # first_loss, final_loss, seconds, model, checkpoint...

The checkpoint's files stay in the data directory the demo prints (a new temporary directory
unless ``--data-dir`` names one).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["DemoResult", "DemoSettings", "pick_model", "run_demo"]

QUESTION: Final = "Question: What is the password of the tinker actors?\nAnswer:"
ANSWER: Final = " The password is trio."
LOCAL_MODEL: Final = "local/tiny"

#: Per model: (training steps, learning rate) that learn the answer with room to spare.
_RECIPES: Final[dict[str, tuple[int, float]]] = {
    LOCAL_MODEL: (40, 3e-3),
    "HuggingFaceTB/SmolLM2-135M-Instruct": (12, 3e-3),
}
_DEFAULT_RECIPE: Final = (40, 3e-3)


@dataclass(frozen=True)
class DemoSettings:
    """What to run: the model, how long, and where the server keeps its files."""

    model: str
    steps: int
    learning_rate: float
    data_dir: Path
    rank: int = 16
    seed: int = 0


@dataclass(frozen=True)
class DemoResult:
    """What the demo saw (``--format json`` prints it)."""

    model: str
    steps: int
    first_loss: float
    final_loss: float
    losses: list[float]
    before: str
    after: str
    learned: bool
    checkpoint: str
    checkpoint_dir: str
    data_dir: str
    seconds: float


def pick_model(requested: str | None) -> str:
    """Return ``requested``, else SmolLM2 when the local server offers it, else local/tiny."""
    if requested:
        return requested
    from tinker_actors.local._smollm2 import SMOLLM2_NAME, smollm2_gguf

    return SMOLLM2_NAME if smollm2_gguf() is not None else LOCAL_MODEL


def settings_for(
    model: str, steps: int | None, learning_rate: float | None, data_dir: Path | None
) -> DemoSettings:
    """Fill in the model's recipe and a fresh data directory where none were given."""
    default_steps, default_rate = _RECIPES.get(model, _DEFAULT_RECIPE)
    directory = data_dir or Path(tempfile.mkdtemp(prefix="tinker-actors-demo-"))
    return DemoSettings(
        model=model,
        steps=steps or default_steps,
        learning_rate=learning_rate or default_rate,
        data_dir=directory,
    )


async def run_demo(
    settings: DemoSettings,
    *,
    on_step: Callable[[int, float], None] | None = None,
    on_sample: Callable[[str, str], None] | None = None,
) -> DemoResult:
    """Run the demo; report each step's loss and the two samples as they come."""
    import httpx
    import numpy as np

    import tinker_actors as ta
    from tinker_actors.local import open_local_server
    from tinker_actors.local._torch_backend import TorchBackend
    from tinker_actors.types import AdamParams, Datum, ModelInput, SamplingParams, TensorData

    started = time.perf_counter()
    async with open_local_server(backend=TorchBackend(), data_dir=settings.data_dir) as server:
        transport = httpx.ASGITransport(app=server.app)
        async with ta.open(
            base_url="http://demo.local", api_key="tml-demo", http_transport=transport
        ) as runtime:
            training = await runtime.create_lora_training_client(
                settings.model, rank=settings.rank, seed=settings.seed
            )
            tokenizer = training.get_tokenizer()
            question = tokenizer.encode(QUESTION, add_special_tokens=False)
            answer = tokenizer.encode(ANSWER, add_special_tokens=False)
            if tokenizer.eos_token_id is not None:
                answer.append(tokenizer.eos_token_id)
            tokens = question + answer
            weights = np.array([0.0] * (len(question) - 1) + [1.0] * len(answer), np.float32)
            datum = Datum(
                model_input=ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={
                    "target_tokens": TensorData.from_numpy(np.array(tokens[1:], np.int64)),
                    "weights": TensorData.from_numpy(weights),
                },
            )
            prompt = ModelInput.from_ints(question)
            greedy = SamplingParams(max_tokens=len(answer) + 4, temperature=0.0)

            async def answer_now(label: str) -> str:
                sampler = await training.save_weights_and_get_sampling_client()
                result = await (await sampler.sample(prompt, 1, greedy)).result()
                text = tokenizer.decode(result.sequences[0].tokens, skip_special_tokens=True)
                if on_sample is not None:
                    on_sample(label, text)
                return text

            before = await answer_now("before")
            losses: list[float] = []

            async def record(step: tuple[Any, Any]) -> None:
                output = await step[0].result()
                await step[1].result()
                losses.append(float(output.metrics["loss:sum"]) / float(weights.sum()))
                if on_step is not None:
                    on_step(len(losses), losses[-1])

            previous: tuple[Any, Any] | None = None
            for _ in range(settings.steps):  # step i+1 is queued before step i is read
                fb = await training.forward_backward([datum], "cross_entropy")
                opt = await training.optim_step(AdamParams(learning_rate=settings.learning_rate))
                if previous is not None:
                    await record(previous)
                previous = (fb, opt)
            if previous is not None:
                await record(previous)
            saved = await (await training.save_state("demo-final")).result()
            after = await answer_now("after")
    return DemoResult(
        model=settings.model,
        steps=settings.steps,
        first_loss=losses[0],
        final_loss=losses[-1],
        losses=losses,
        before=before,
        after=after,
        learned=ANSWER.strip() in after and math.isfinite(losses[-1]),
        checkpoint=saved.path,
        checkpoint_dir=str(_files_of(settings.data_dir, saved.path)),
        data_dir=str(settings.data_dir),
        seconds=time.perf_counter() - started,
    )


def _files_of(data_dir: Path, tinker_path: str) -> Path:
    """Return the directory holding a checkpoint's files (the data dir if none is found)."""
    name = tinker_path.rsplit("/", 1)[-1]
    found = sorted(data_dir.glob(f"runs/*/checkpoints/weights/{name}"))
    return found[0] if found else data_dir
