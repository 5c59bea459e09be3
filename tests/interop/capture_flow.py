"""Run by test_cookbook_capture.py as ``python capture_flow.py OUT`` (official client) or under
the import switch: tinker-cookbook's capture instruments ``tinker`` and records a short
training and sampling run as JSON lines under OUT; this prints nothing but errors."""

from __future__ import annotations

import asyncio
import sys

import tinker
from tinker import types
from tinker_cookbook.capture import (
    CaptureExporter,
    JsonlFileSink,
    capture,
    instrument_tinker,
    uninstrument_tinker,
)
from tinker_cookbook.stores.storage import LocalStorage


def main(out: str) -> None:
    exporter = CaptureExporter(JsonlFileSink(LocalStorage(out)))
    instrument_tinker(exporter)
    service = tinker.ServiceClient()
    training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    tokens = [1, 2, 3, 4, 5]
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 4},
    )
    with capture(run_id="r1"):
        for step in range(2):
            with capture(iteration=step):
                training.forward_backward([datum], "cross_entropy").result()
                training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
        sampler = training.save_weights_and_get_sampling_client().result()
        prompt = types.ModelInput.from_ints(tokens)
        with capture(iteration=9):
            sampler.sample(prompt, 2, types.SamplingParams(max_tokens=3)).result()

            async def sample_in_asyncio() -> None:
                await sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2, seed=5))

            asyncio.run(sample_in_asyncio())
    uninstrument_tinker()
    exporter.wait_pending(timeout=10.0)
    exporter.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
