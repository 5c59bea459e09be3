"""The wire-parity call sequence, made by the official tinker 0.38 client in its own process.

``test_sdk_wire_parity.py`` runs this script against a recording local server, then runs the
same sequence with tinker_actors, and compares the captured requests call by call. Every
call is awaited before the next one starts, so the order of requests on the wire is fixed.

Usage: ``python tests/interop/parity_official_flow.py <base_url>``; prints the tinker paths and
model id it saw as JSON (the test uses them only for diagnostics).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import tinker
from tinker import types

API_KEY = "tml-wire-parity-key"
BASE_MODEL = "local/tiny"
PROMPT = [11, 12, 13, 14, 15]


def batch() -> list[Any]:
    """Return the two datums both clients send (the same tokens, targets and weights)."""
    out = []
    for offset in (0, 40):
        tokens = [(offset + 7 * i) % 4000 + 4 for i in range(9)]
        out.append(
            types.Datum(
                model_input=types.ModelInput.from_ints(tokens[:-1]),
                loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 8},
            )
        )
    return out


def run(url: str) -> dict[str, Any]:
    """Make the parity sequence of calls, each awaited before the next."""
    service = tinker.ServiceClient(base_url=url, api_key=API_KEY)
    training = service.create_lora_training_client(base_model=BASE_MODEL, rank=8, seed=3).result()
    data = batch()
    training.forward_backward(data, "cross_entropy").result()
    training.forward(data, "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    state = training.save_state("parity-state").result().path
    training.load_state(state).result()
    sampler_path = training.save_weights_for_sampler("parity-sampler").result().path
    training.save_weights_and_get_sampling_client().result()
    sampler = service.create_sampling_client(model_path=sampler_path).result()
    prompt = types.ModelInput.from_ints(PROMPT)
    params = types.SamplingParams(max_tokens=4, temperature=0.5, seed=17)
    sampler.sample(prompt, num_samples=2, sampling_params=params).result()
    sampler.compute_logprobs(prompt).result()
    rest = tinker.RestClient(base_url=url, api_key=API_KEY)  # its own session-less holder
    rest.list_training_runs().result()
    rest.list_checkpoints(training.model_id).result()
    rest.get_training_run(training.model_id).result()
    service.close("success").result()
    return {"model_id": training.model_id, "state": state, "sampler": sampler_path}


def main() -> int:
    warnings.simplefilter("ignore")
    json.dump(run(sys.argv[1]), sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
