"""The official ``tinker checkpoint download`` CLI against the local torch server.

The official client saves a LoRA model three ways (``save_state``, a plain
``save_weights_external`` and one age-encrypted to a key made here); the official CLI, configured
only by ``TINKER_BASE_URL`` / ``TINKER_API_KEY``, downloads each over the server's signed HTTP
URLs. What the SDK does with an encrypted export (tinker 0.38, ``cli/commands/checkpoint.py``):
it downloads the files as stored, ``.age`` suffix included, and leaves decryption to the user
(``age -d``); here pyrage plays ``age -d``. A training checkpoint is exported by the CLI itself
through a temporary plain export, which it deletes afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)
pytest.importorskip("pyrage", reason="pyrage (server extra) encrypts exports")
pytest.importorskip(
    "torch", reason="torch not installed: pip install -c constraints.txt 'tinker-actors[torch]'"
)

import pyrage

from tinker_actors.local._torch_backend import TorchBackend
from tinker_actors.testing import server_in_thread

pytestmark = pytest.mark.interop

KEY = "tml-interop-cli-download"


def _digests(directory: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.iterdir())
        if p.is_file()
    }


#: the official client's part, in a child process (it leaves sockets for the GC to close)
SAVE = """
import json, sys, warnings
import tinker
from tinker import types

warnings.simplefilter("ignore")
service = tinker.ServiceClient()
training = service.create_lora_training_client(base_model="local/tiny", rank=4).result()
tokens = list(range(10, 30))
datum = types.Datum(
    model_input=types.ModelInput.from_ints(tokens[:-1]),
    loss_fn_inputs={"target_tokens": tokens[1:]},
)
training.forward_backward([datum], "cross_entropy").result()
training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
paths = {
    "state": training.save_state("state").result().path,
    "plain": training.save_weights_external("plain").result().path,
    "sealed": training.save_weights_external("sealed", age_encryption_recipients=[sys.argv[1]])
    .result()
    .path,
}
service.close("success").result()
json.dump({"model_id": training.model_id, "paths": paths}, sys.stdout)
"""


def _env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINKER_")}
    env.update(TINKER_BASE_URL=url, TINKER_API_KEY=KEY)
    return env


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    identity = pyrage.x25519.Identity.generate()
    with server_in_thread(backend=TorchBackend()) as (url, _):
        command = [sys.executable, "-c", SAVE, str(identity.to_public())]
        done = subprocess.run(command, env=_env(url), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-4000:]
        yield {
            **json.loads(done.stdout),
            "url": url,
            "identity": identity,
            "workdir": tmp_path_factory.mktemp("cli-download"),
        }


def tinker_cli(saved: dict[str, Any], *args: str) -> Any:
    """The official CLI with JSON output, configured by the environment only."""
    command = [sys.executable, "-m", "tinker.cli", "--format", "json", *args]
    done = subprocess.run(
        command, env=_env(saved["url"]), capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def download(saved: dict[str, Any], which: str) -> tuple[Path, dict[str, Any]]:
    """``tinker checkpoint download PATH --output DIR``; return the directory and the reply."""
    out = Path(tempfile.mkdtemp(prefix=f"{which}-", dir=saved["workdir"]))
    reply = tinker_cli(saved, "checkpoint", "download", saved["paths"][which], "--output", str(out))
    return Path(reply["destination"]), reply


def test_the_cli_downloads_an_encrypted_export_and_age_decrypts_it(
    saved: dict[str, Any],
) -> None:
    plain_dir, _ = download(saved, "plain")
    sealed_dir, reply = download(saved, "sealed")
    plain = _digests(plain_dir)
    assert set(plain) == {"adapter_config.json", "adapter_model.safetensors"}
    # the files arrive as stored: encrypted, with the .age suffix
    encrypted = sorted(sealed_dir.iterdir())
    assert [p.name for p in encrypted] == [
        "adapter_config.json.age",
        "adapter_model.safetensors.age",
    ]
    assert reply["file_size_bytes"] == sum(p.stat().st_size for p in encrypted)
    for path in encrypted:
        assert path.read_bytes().startswith(b"age-encryption.org/v1\n")
        clear = pyrage.decrypt(path.read_bytes(), [saved["identity"]])
        path.with_suffix("").write_bytes(clear)
        path.unlink()
    assert _digests(sealed_dir) == plain


def test_the_cli_downloads_a_training_checkpoint_through_a_temporary_export(
    saved: dict[str, Any],
) -> None:
    plain_dir, _ = download(saved, "plain")
    state_dir, _ = download(saved, "state")
    assert _digests(state_dir) == _digests(plain_dir)
    # the CLI deleted its temporary export; ours are untouched
    listed = tinker_cli(saved, "checkpoint", "list", "--run-id", saved["model_id"])
    assert sorted(c["checkpoint_id"] for c in listed["checkpoints"]) == [
        "external_weights/plain",
        "external_weights/sealed",
        "weights/state",
    ]
