"""The acceptance flow of the official tinker 0.38 client, run as a separate process.

The official client keeps a background thread and leaves sockets open after ``close()``
(protocol.md §14.3); running it in its own process keeps those leaks out of the test process.
Usage: ``python tests/interop/official_flow.py <base_url> [--steps N]``; prints a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Any

import tinker
from tinker import types

API_KEY = "tml-interop-test"
STEPS = 10


def _datum(offset: int) -> Any:
    tokens = [(offset + 7 * i) % 4000 + 4 for i in range(33)]
    return types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:], "weights": [1.0] * 32},
    )


def run_flow(url: str, steps: int) -> dict[str, Any]:
    """Drive the official client through the acceptance flow; return what it observed."""
    seen: dict[str, Any] = {}
    service = tinker.ServiceClient(base_url=url, api_key=API_KEY)
    training = service.create_lora_training_client(base_model="local/tiny", rank=8).result()
    seen["model_id"] = training.model_id
    batch = [_datum(i) for i in range(4)]
    # pipelined: submit every step before waiting on any
    futures = []
    for _ in range(steps):
        futures.append(training.forward_backward(batch, "cross_entropy"))
        futures.append(training.optim_step(types.AdamParams(learning_rate=1e-3)))
    results = [f.result() for f in futures]
    seen["losses"] = [r.metrics["loss:sum"] for r in results[::2]]
    forward = training.forward(batch, "cross_entropy").result()
    seen["forward_outputs"] = len(forward.loss_fn_outputs)
    saved = training.save_state("after-ten").result()
    seen["state_path"] = saved.path
    training.load_state(saved.path).result()
    sampler = training.save_weights_and_get_sampling_client()
    prompt = types.ModelInput.from_ints([11, 12, 13, 14, 15])
    sample = sampler.sample(
        prompt,
        num_samples=4,
        sampling_params=types.SamplingParams(max_tokens=6, temperature=1.0),
        include_prompt_logprobs=True,
    ).result()
    seen["sequences"] = [s.tokens for s in sample.sequences]
    seen["prompt_logprobs"] = sample.prompt_logprobs
    seen["logprobs"] = sampler.compute_logprobs(prompt).result()
    rest = tinker.RestClient(base_url=url, api_key=API_KEY)
    runs = rest.list_training_runs().result()
    seen["run_ids"] = [r.training_run_id for r in runs.training_runs]
    seen["checkpoints"] = [
        c.checkpoint_id for c in rest.list_checkpoints(training.model_id).result().checkpoints
    ]
    seen["run"] = rest.get_training_run(training.model_id).result()
    # the rest of the REST surface the official client can reach
    copied = rest.copy_weights(saved.path, destination_project_id="interop-project").result()
    seen["copied_path"] = (
        copied if isinstance(copied, str) else getattr(copied, "tinker_path", None)
    )
    session_id = seen["model_id"].split(":train:")[0]
    rest.assign_session_project(session_id, "interop-project").result()
    seen["trace_url"] = rest.export_session_trace(session_id).result()
    seen["project_runs"] = [
        r.training_run_id
        for r in rest.list_training_runs(project_id="interop-project").result().training_runs
    ]
    service.close("success").result()
    return seen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    seen = run_flow(args.url, args.steps)
    run = seen.pop("run")
    seen["run"] = {
        "training_run_id": run.training_run_id,
        "last_checkpoint": run.last_checkpoint.checkpoint_id if run.last_checkpoint else None,
    }
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
