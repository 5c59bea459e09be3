"""Bad input never prints a traceback: one line on stderr, exit 2 (usage) or 1 (service).

Also: ``--help`` imports nothing heavy, and commands are found by module (a ``demo`` module
dropped into the commands package is a command with no other change).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cli_support import KEY, Populated, invoke, one_line_error

from tinker_actors.cli import _group

CLI = [sys.executable, "-m", "tinker_actors.cli"]
HEAVY = ("trio", "httpx", "msgspec", "numpy", "rich", "torch", "starlette")
PATH = "tinker://session-1:train:0/weights/final"

USAGE_ERRORS = [
    (["nope"], "No such command"),
    (["run", "list", "--limit", "-1"], "--limit"),
    (["run", "list", "--bogus"], "No such option"),
    (["run", "list", "-c", "id,colour"], "unknown column"),
    (["run", "info"], "Missing argument"),
    (["-f", "yaml", "model", "list"], "--format"),
    (["checkpoint", "info", "weights/final"], "not a checkpoint path"),
    (["checkpoint", "info", "tinker://run/checkpoints/x"], "segment 'checkpoints'"),
    (["checkpoint", "set-ttl", PATH], "exactly one of"),
    (["checkpoint", "set-ttl", PATH, "--ttl", "soon"], "not a duration"),
    (["checkpoint", "delete"], "PATHS or --run-id"),
    (["checkpoint", "delete", PATH, "--run-id", "r"], "PATHS or --run-id"),
    (["checkpoint", "delete", PATH, "--before", "2024-01-01"], "filter --run-id"),
    (["checkpoint", "delete", "--run-id", "r", "--before", "last week"], "ISO 8601"),
    (["checkpoint", "download", PATH, "--max-size", "lots"], "not a size"),
    (["checkpoint", "save", PATH], "--name"),
    (["session", "list", "--metadata", "novalue"], "KEY=VALUE"),
    (["billing", "usage", "2024-01-01"], "ENDING_BEFORE"),
    (["sample", "--model", "local/tiny", "--max-tokens", "0", "hi"], "--max-tokens"),
    (["--retries", "-3", "model", "list"], "--retries"),
]


@pytest.mark.parametrize(
    ("args", "words"), USAGE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_usage_errors_are_one_line_and_exit_2(
    populated: Populated, args: list[str], words: str
) -> None:
    line = one_line_error(invoke(args, env=populated.env), 2)
    assert words in line
    assert line.endswith("--help')")  # where to read how the command is used


SERVICE_ERRORS = [
    (["run", "info", "session-0:train:9"], "not found (404"),
    (["session", "info", "session-nope"], "not found (404"),
    (["checkpoint", "info", "tinker://session-0:train:9/weights/x"], "not found (404"),
    (["checkpoint", "publish", "tinker://session-0:train:9/weights/x"], "not found (404"),
    (["checkpoint", "download", "tinker://session-0:train:9/weights/x"], "not found (404"),
    (["sample", "--checkpoint", "tinker://session-0:train:9/sampler_weights/x", "hi"], "not found"),
    (["checkpoint", "save", "tinker://session-0:train:9/weights/x", "--name", "n"], "404"),
]


@pytest.mark.parametrize(
    ("args", "words"), SERVICE_ERRORS, ids=lambda v: " ".join(v) if isinstance(v, list) else None
)
def test_service_errors_are_one_line_and_exit_1(
    populated: Populated, args: list[str], words: str, tmp_path: Path
) -> None:
    extra = ["-o", str(tmp_path)] if "download" in args else []
    assert words in one_line_error(invoke([*args, *extra], env=populated.env), 1)


def test_an_unreachable_service() -> None:
    args = ["model", "list", "--base-url", "http://127.0.0.1:9", "--api-key", KEY, "--retries", "0"]
    assert "cannot reach http://127.0.0.1:9" in one_line_error(invoke(args), 1)


def test_a_malformed_credential_is_refused_before_sending(populated: Populated) -> None:
    result = invoke(
        ["model", "list", "--api-key", "not-a-key"], env={"TINKER_BASE_URL": populated.url}
    )
    assert "cannot list models" in one_line_error(result, 2)


def test_an_unexpected_failure_is_one_line_unless_asked(
    populated: Populated, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tinker_actors.cli.commands import model

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("something\nbroke")

    monkeypatch.setattr(model, "call_api", broken)
    line = one_line_error(invoke(["model", "list"], env=populated.env), 1)
    assert "unexpected RuntimeError: something broke" in line
    assert _group.TRACEBACK_ENV in line
    shown = invoke(["model", "list"], env={**populated.env, _group.TRACEBACK_ENV: "1"})
    assert isinstance(shown.exception, RuntimeError)  # raised, so Python prints its traceback


def test_interrupted(populated: Populated, monkeypatch: pytest.MonkeyPatch) -> None:
    from tinker_actors.cli.commands import model

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(model, "call_api", interrupted)
    result = invoke(["model", "list"], env=populated.env)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "status"),
    [
        (["nope"], 2),
        (["checkpoint", "info", "weights/final"], 2),
        (["run", "info", "session-0:train:9"], 1),
        (["sample", "--model", "local/tiny"], 2),
    ],
)
def test_no_traceback_from_a_real_process(
    populated: Populated, args: list[str], status: int
) -> None:
    env = {"PATH": "/usr/bin:/bin", **populated.env, "TINKER_TELEMETRY": "0"}
    done = subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert done.returncode == status, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stderr.startswith("Error: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["checkpoint", "--help"],
        ["checkpoint", "download", "--help"],
        ["sample", "--help"],
    ],
)
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    probe = textwrap.dedent(
        f"""
        import sys
        from tinker_actors.cli import main
        status = main({args!r})
        print(status, sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines()[-1] == "0 []", done.stdout


def test_every_command_module_is_a_command() -> None:
    from tinker_actors.cli._commands import cli

    names = cli.list_commands(None)  # type: ignore[arg-type]
    expected = {
        "audit",
        "auth",
        "billing",
        "checkpoint",
        "model",
        "run",
        "sample",
        "serve",
        "session",
        "version",
    }
    assert expected <= set(names)
    for name in names:
        assert cli.get_command(None, name) is not None  # type: ignore[arg-type]


def test_a_new_command_module_drops_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "more_commands"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "demo.py").write_text(
        textwrap.dedent(
            """
            import click

            @click.command()
            @click.option("--steps", type=int, default=1)
            def command(steps):
                \"\"\"A demo.\"\"\"
                click.echo(f"demo ran {steps} steps")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_group, "COMMANDS_PACKAGE", "more_commands")
    assert invoke(["demo", "--steps", "3"]).stdout == "demo ran 3 steps\n"
    assert "demo" in invoke(["--help"]).stdout
    assert "No such option" in one_line_error(invoke(["demo", "--nope"]), 2)


def test_serve_seed_needs_the_torch_backend() -> None:
    result = invoke(["serve", "--seed", "3"])
    assert "--backend torch" in one_line_error(result, 2)


def test_serve_prefix_cache_needs_the_torch_backend_and_a_size() -> None:
    result = invoke(["serve", "--prefix-cache", "64"])
    assert "--backend torch" in one_line_error(result, 2)
    result = invoke(["serve", "--backend", "torch", "--prefix-cache", "-1"])
    assert "-1" in one_line_error(result, 2)
