"""The official client's admin reads against the local server, as a child process.

Trains and samples a little, saves a checkpoint, then runs ``tinker billing usage`` and
``tinker billing checkpoint-storage`` (the official CLI, JSON output) and
``AdminClient.get_audit_log``. Only ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` configure them.

Usage: ``python tests/interop/billing_flow.py``; one JSON object on stdout.
"""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import warnings

import tinker
from tinker import types


def cli(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "tinker.cli", "--format", "json", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"tinker {' '.join(args)} failed (exit status {done.returncode}): "
            f"stderr {done.stderr[-2000:]!r}, stdout {done.stdout[-1000:]!r}"
        )
    answer: dict[str, object] = json.loads(done.stdout)
    return answer


def main() -> int:
    warnings.simplefilter("ignore")
    service = tinker.ServiceClient()
    training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(list(range(10, 30))),
        loss_fn_inputs={"target_tokens": list(range(11, 31))},
    )
    training.forward_backward([datum], "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    state = training.save_state("billed").result().path
    sampler = training.save_weights_and_get_sampling_client()
    params = types.SamplingParams(max_tokens=5, stop=[])
    sampler.sample(types.ModelInput.from_ints([5, 6, 7, 8]), 2, params).result()
    now = datetime.datetime.now(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    start = (now - datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    end = (now + datetime.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    seen = {
        "state": state,
        "usage": cli("billing", "usage", start, end),
        "storage": cli("billing", "checkpoint-storage"),
        "audit": [
            entry.model_dump(mode="json")
            for entry in tinker.AdminClient().get_audit_log().result().entries
        ],
    }
    service.close("success").result()
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
