"""``serve --ephemeral-samplers N`` as the official client sees it: an RL loop's old samplers go.

The official 0.38 client, in a child process, makes a new sampler every step as RL loops do;
sampling from one the server retired raises its ``NotFoundError`` with the server's
explanation, and the newest ones keep working.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from serve_support import serve_in_child

pytest.importorskip(
    "tinker", reason="official tinker SDK not installed: pip install -e '.[interop]'"
)

pytestmark = pytest.mark.interop

LOOP = """
import sys
import tinker
from tinker import types

service = tinker.ServiceClient(base_url=sys.argv[1], api_key="tml-ephemeral")
training = service.create_lora_training_client(base_model="local/tiny", rank=4)
prompt = types.ModelInput.from_ints([11, 12, 13, 14])
params = types.SamplingParams(max_tokens=2)
samplers = []
for step in range(4):
    samplers.append(training.save_weights_and_get_sampling_client().result())
    samplers[-1].sample(prompt, num_samples=1, sampling_params=params).result()
for sampler in samplers[-2:]:
    sampler.sample(prompt, num_samples=1, sampling_params=params).result()
try:
    samplers[0].sample(prompt, num_samples=1, sampling_params=params).result()
except tinker.NotFoundError as exc:
    print("NotFoundError:", exc)
else:
    print("sampled from a retired sampler")
"""


def test_the_official_client_hears_why_an_old_sampler_is_gone() -> None:
    with serve_in_child("--ephemeral-samplers", "2") as url:
        done = subprocess.run(
            [sys.executable, "-c", LOOP, url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    assert done.returncode == 0, done.stderr[-4000:]
    out = done.stdout
    assert out.startswith("NotFoundError:"), out
    assert "was retired" in out
    assert "keeps the 2 most recently used" in out
    assert "--ephemeral-samplers" in out


def test_serve_refuses_a_negative_count() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0",
         "--ephemeral-samplers", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--ephemeral-samplers" in done.stderr
