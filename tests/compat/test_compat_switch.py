"""The import switch: ``tinker-actors run`` and ``python -m tinker_actors.compat``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tinker_actors.compat import _switch

PROBE = """
import sys
import tinker, tinker.types
from tinker import types
from tinker.types.tensor_data import TensorData
from tinker.lib.public_interfaces import APIFuture
from tinker.lib.public_interfaces.rest_client import RestClient
print(tinker.__name__, types.__name__, TensorData.__module__, APIFuture.__module__, sys.argv[1:])
try:
    import tinker.proto
except ModuleNotFoundError as exc:
    print("refused:", exc.name)
"""
CLI = [sys.executable, "-m", "tinker_actors.cli"]


def _run(argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # type: ignore[call-overload,no-any-return]


@pytest.fixture
def probe(tmp_path: Path) -> Path:
    path = tmp_path / "probe.py"
    path.write_text(PROBE)
    return path


def _check_probe_output(out: str, args: list[str]) -> None:
    first, second = out.strip().splitlines()
    assert first.split()[:4] == [
        "tinker_actors.compat",
        "tinker_actors.compat.types",
        "tinker_actors.types._tensor",
        "tinker_actors.compat._future",
    ]
    assert first.endswith(repr(args))
    assert second == "refused: tinker.proto"


def test_tinker_actors_run(probe: Path) -> None:
    done = _run([*CLI, "run", "--", sys.executable, str(probe), "a", "--flag"])
    assert done.returncode == 0, done.stderr
    _check_probe_output(done.stdout, ["a", "--flag"])


def test_python_dash_m(probe: Path) -> None:
    done = _run([sys.executable, "-m", "tinker_actors.compat", str(probe), "x"])
    assert done.returncode == 0, done.stderr
    _check_probe_output(done.stdout, ["x"])


def test_run_reports_a_missing_program_in_one_line() -> None:
    done = _run([*CLI, "run", "--", "no-such-program-xyz"])
    assert done.returncode != 0
    assert "no-such-program-xyz" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_existing_sitecustomize_still_runs(probe: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import builtins\nbuiltins.CHAINED = True\n")
    probe.write_text("import builtins, tinker\nprint(tinker.__name__, builtins.CHAINED)\n")
    env = dict(os.environ, PYTHONPATH=str(site))
    done = _run([*CLI, "run", "--", sys.executable, str(probe)], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["tinker_actors.compat", "True"]


def test_install_refuses_after_the_official_package_was_imported() -> None:
    script = (
        "import tinker\n"
        "from tinker_actors.compat._switch import install\n"
        "try:\n"
        "    install()\n"
        "except RuntimeError as exc:\n"
        "    print('refused:', exc)\n"
    )
    pytest.importorskip("tinker", reason="official tinker SDK not installed (interop extra)")
    done = _run([sys.executable, "-c", script])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: the official tinker package was imported")


def test_child_environment_puts_the_site_directory_first() -> None:
    env = _switch.child_environment({"PYTHONPATH": f"/a{os.pathsep}/b"})
    assert env["PYTHONPATH"].split(os.pathsep) == [_switch.SITE_DIR, "/a", "/b"]
    assert env[_switch.ENV_FLAG] == "1"
    again = _switch.child_environment(env)
    assert again["PYTHONPATH"] == env["PYTHONPATH"]


IN_VENV = sys.prefix != sys.base_prefix


@pytest.mark.skipif(not IN_VENV, reason="only a virtualenv's bin is put first")
def test_run_uses_the_environments_python_without_activation(probe: Path, tmp_path: Path) -> None:
    # another `python` first on PATH, and this environment's bin nowhere on it
    other = tmp_path / "other-bin"
    other.mkdir()
    impostor = other / "python"
    impostor.write_text("#!/bin/sh\necho impostor\nexit 3\n")
    impostor.chmod(0o755)
    own = os.path.dirname(sys.executable)
    rest = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != own]
    env = dict(os.environ, PATH=os.pathsep.join([str(other), *rest]))
    done = _run([*CLI, "run", "--", "python", str(probe), "z"], env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    _check_probe_output(done.stdout, ["z"])


@pytest.mark.skipif(not IN_VENV, reason="needs an interpreter without tinker_actors")
def test_an_interpreter_without_the_package_says_which_and_what_to_do(tmp_path: Path) -> None:
    base = getattr(sys, "_base_executable", None)
    # the venv's python may be a link to it, but started by its own path it has no venv
    if not base or not os.path.exists(base) or base == sys.executable:
        pytest.skip("no base interpreter apart from this environment's")
    # cwd outside the checkout, so the base interpreter cannot find tinker_actors there
    done = _run([base, "-c", "pass"], env=_switch.child_environment(), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"tinker-actors run: {base} cannot import tinker_actors" in done.stderr
    assert "run it with the Python of the environment where tinker_actors is installed" in (
        done.stderr
    )


def test_0_38s_submodules_read_as_attributes() -> None:
    # tinker.types.tensor_data.TensorData works in 0.38 without importing the submodule
    import types as pytypes

    import tinker_actors.compat as compat

    official = pytest.importorskip("tinker.types", reason="the interop extra is not installed")
    names = [
        name
        for name, value in list(vars(official).items())
        if isinstance(value, pytypes.ModuleType)
        and value.__name__.startswith("tinker.types.")
        and not name.startswith("_")
    ]
    assert len(names) > 100
    for name in names:
        assert getattr(compat.types, name) is compat.types, name
    assert compat.types.tensor_data.TensorData is compat.TensorData
    assert compat.lib.public_interfaces.api_future.APIFuture is compat.APIFuture
    for module in (compat.types, compat.lib.public_interfaces):
        with pytest.raises(AttributeError, match="no attribute 'not_a_module'"):
            _ = module.not_a_module


def test_a_test_suite_whose_warnings_are_errors_runs_under_the_switch(tmp_path: Path) -> None:
    # tinker-actors run imports the package at start-up; pytest then finds it already
    # imported as a plugin's package and warns that it cannot rewrite it, which a project that
    # makes warnings errors (the official SDK's own suite does) turned into a failed start
    (tmp_path / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\nfilterwarnings = ["error"]\n'
    )
    (tmp_path / "test_uses_tinker.py").write_text(
        "import tinker\n\ndef test_switched():\n    assert tinker.__name__ == 'tinker_actors.compat'\n"
    )
    pytest_argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    done = _run([*CLI, "run", "--", *pytest_argv, "test_uses_tinker.py"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 passed" in done.stdout
