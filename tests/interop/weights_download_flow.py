"""tinker-cookbook's ``weights.download`` against the local server, as a child process.

Trains a LoRA model one step through the official client, then downloads its weights three
ways and reports each file's SHA-256:

* ``plain``: an unencrypted ``save_weights_external`` export;
* ``state``: the ``save_state`` checkpoint, which ``weights.download`` exports itself, age-
  encrypted to a key it generates, downloads over the signed URLs, decrypts and deletes;
* ``sealed``: an export encrypted to our own key; ``weights.download`` keeps the ``.age``
  files, which are decrypted here with pyrage.

Usage: ``python tests/interop/weights_download_flow.py <base_url> <workdir>`` with
``TINKER_API_KEY`` set; one JSON object on stdout.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from pathlib import Path

import pyrage
import tinker
from tinker import types
from tinker_cookbook import weights


def digests(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def main() -> int:
    url, workdir = sys.argv[1], Path(sys.argv[2])
    warnings.simplefilter("ignore")
    service = tinker.ServiceClient(base_url=url)
    training = service.create_lora_training_client(base_model="local/tiny", rank=4, seed=1).result()
    tokens = list(range(10, 30))
    datum = types.Datum(
        model_input=types.ModelInput.from_ints(tokens[:-1]),
        loss_fn_inputs={"target_tokens": tokens[1:]},
    )
    training.forward_backward([datum], "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
    state = training.save_state("state").result().path
    plain = training.save_weights_external("plain").result().path
    identity = pyrage.x25519.Identity.generate()
    sealed = (
        training.save_weights_external(
            "sealed", age_encryption_recipients=[str(identity.to_public())]
        )
        .result()
        .path
    )

    seen: dict[str, object] = {"paths": [state, plain, sealed]}
    for name, path in (("plain", plain), ("state", state), ("sealed", sealed)):
        out = workdir / name
        weights.download(tinker_path=path, output_dir=str(out), base_url=url)
        seen[name] = digests(out)
    for encrypted in sorted((workdir / "sealed").glob("*.age")):
        clear = pyrage.decrypt(encrypted.read_bytes(), [identity])
        encrypted.with_suffix("").write_bytes(clear)
        encrypted.unlink()
    seen["sealed_decrypted"] = digests(workdir / "sealed")

    rest = service.create_rest_client()
    listed = rest.list_checkpoints(training.model_id).result()
    seen["checkpoints_after"] = sorted(c.checkpoint_id for c in listed.checkpoints)
    service.close("success").result()
    json.dump(seen, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
