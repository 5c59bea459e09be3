"""The plugin as a user's project sees it: separate pytest sessions in a directory of their own.

No pytest configuration there: no trio_mode (trio tests are marked), no strict markers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the server extra is not installed")


def run_pytest(
    directory: Path, files: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    for name, text in files.items():
        (directory / name).write_text(textwrap.dedent(text))
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_bad_rule_is_a_clear_usage_error(tmp_path: Path) -> None:
    done = run_pytest(
        tmp_path,
        {
            "test_bad.py": """
                import pytest

                @pytest.mark.tinker_faults("asmple:429@0.2")
                def test_it(tinker_server):
                    pass
            """
        },
    )
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "@pytest.mark.tinker_faults on test_bad.py::test_it" in out
    assert "unknown endpoint 'asmple'" in out


def test_the_seed_option_and_the_backend_option(tmp_path: Path) -> None:
    files = {
        "test_seed.py": """
            import pytest

            @pytest.mark.tinker_faults("asample:429@0.2")
            def test_seed(tinker_fault_plan, tinker_backend):
                assert tinker_fault_plan.seed == 42
                assert tinker_backend == "null"

            @pytest.mark.tinker_faults("asample:429@0.2", seed=3)
            def test_own_seed_wins(tinker_fault_plan):
                assert tinker_fault_plan.seed == 3
        """
    }
    done = run_pytest(tmp_path, files, "--tinker-seed", "42", "--tinker-backend", "null")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_blocking_asyncio_and_trio_tests_in_one_project(tmp_path: Path) -> None:
    pytest.importorskip("pytest_trio")
    files = {
        "test_styles.py": """
            import asyncio
            import pytest
            import trio

            def test_blocking(tinker_service, tinker_server):
                caps = tinker_service.create_lora_training_client(base_model="local/tiny", rank=4)
                assert caps.result().model_id
                assert tinker_server.counters().totals["applied:CreateModel"] == 1

            def test_asyncio(tinker_service):
                async def main():
                    return await tinker_service.create_lora_training_client(
                        base_model="local/tiny", rank=4
                    )
                assert asyncio.run(main()).model_id

            @pytest.mark.trio
            async def test_trio(tinker_runtime, tinker_server):
                with trio.fail_after(60):
                    training = await tinker_runtime.create_lora_training_client("local/tiny", rank=4)
                assert tinker_server.counters().models[training.model_id].applied == 1
        """
    }
    done = run_pytest(tmp_path, files)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 passed" in done.stdout


def test_every_pytest_xdist_worker_runs_its_own_servers(tmp_path: Path) -> None:
    # `pytest -n 2`: each test still gets a server of its own, options reach the workers, and
    # the workers' servers (each in its own process, on its own port) do not share anything
    pytest.importorskip("xdist", reason="pytest-xdist comes with the dev extra")
    files = {
        "test_parallel.py": """
            import json, os
            import pytest
            from tinker_actors.compat import AdamParams

            @pytest.mark.parametrize("i", range(6))
            @pytest.mark.tinker_faults("optim_step:503@0.5")
            def test_train(i, tinker_service, tinker_server, tinker_fault_plan):
                training = tinker_service.create_lora_training_client(
                    base_model="local/tiny", rank=4
                ).result()
                training.optim_step(AdamParams(learning_rate=1e-3)).result()
                assert tinker_fault_plan.seed == 5
                assert list(tinker_server.counters().models) == [training.model_id]
                line = {"worker": os.environ["PYTEST_XDIST_WORKER"], "url": tinker_server.url}
                with open("runs.jsonl", "a") as out:
                    out.write(json.dumps(line) + "\\n")
        """
    }
    done = run_pytest(tmp_path, files, "-n", "2", "--tinker-seed", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "6 passed" in done.stdout
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert {run["worker"] for run in runs} == {"gw0", "gw1"}, runs
    assert len({run["url"] for run in runs}) == 6, runs  # a server per test


def test_the_plugin_imports_nothing_heavy_and_can_be_turned_off(tmp_path: Path) -> None:
    files = {
        "conftest.py": """
            import sys

            def pytest_collection_finish(session):
                heavy = sorted(m for m in ("trio", "httpx", "starlette", "tinker_actors.local") if m in sys.modules)
                print("HEAVY", heavy)
        """,
        "test_plain.py": """
            def test_nothing():
                pass
        """,
    }
    # pytest-trio and anyio's plugin import trio themselves
    done = run_pytest(tmp_path, files, "-s", "-p", "no:trio", "-p", "no:anyio")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "HEAVY []" in done.stdout
    off = run_pytest(tmp_path, {}, "-p", "no:tinker_actors", "--fixtures")
    assert "tinker_server" not in off.stdout
    on = run_pytest(tmp_path, {}, "--fixtures")
    assert "tinker_server" in on.stdout
