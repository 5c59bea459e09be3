"""For the recipe tests: ``tinker-actors serve`` in a child process, as a user starts it, the
command that runs a recipe module with the official client or under the import switch, and
what runs a recipe as a user would and reads its logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: The API key the recipe runs send (the local server takes any key starting with ``tml-``).
RECIPE_KEY = "tml-cookbook-offline"
#: What runs a command under the import switch: ``[*SWITCH, sys.executable, "script.py"]``.
SWITCH = [sys.executable, "-m", "tinker_actors.cli", "run", "--"]


@contextmanager
def serve_in_child(*args: str) -> Iterator[str]:
    """Run ``tinker-actors serve --port 0 ARGS...``; yield its URL, stop it on exit."""
    command = [sys.executable, "-m", "tinker_actors.cli", "serve", "--port", "0", *args]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        first = server.stdout.readline()
        assert " at " in first, first
        yield first.rsplit(" at ", 1)[1].strip()
    finally:
        server.terminate()
        server.wait(timeout=60)
        if server.stdout is not None:
            server.stdout.close()


#: Runs a module as ``python -m`` would, then prints which ``tinker`` module it imported, so a
#: test knows whether the import switch really was active.
_LAUNCHER = (
    "import runpy, sys\n"
    "module, sys.argv = sys.argv[1], sys.argv[1:]\n"
    "try:\n"
    "    runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
    "finally:\n"
    "    print('TINKER-MODULE', sys.modules['tinker'].__name__)\n"
)


def recipe_command(module: str, args: list[str], *, compat: bool) -> list[str]:
    """The command that runs recipe ``module`` with ``args``: with the official client, or
    (``compat``) under the import switch, ``tinker-actors run -- python ...``."""
    launch = [sys.executable, "-c", _LAUNCHER, module, *args]
    if compat:
        launch = [*SWITCH, *launch]
    return launch


def check_tinker_module(stdout: str, *, compat: bool) -> None:
    """Assert that a :func:`recipe_command` run imported the ``tinker`` it was meant to."""
    expected = "tinker_actors.compat" if compat else "tinker"
    assert f"TINKER-MODULE {expected}" in stdout, stdout[-2000:]


def run_recipe(
    workdir: Path,
    url: str,
    module: str,
    args: list[str],
    *,
    compat: bool = False,
    name: str | None = None,
) -> Path:
    """Run a cookbook recipe module as a user would; return its log directory.

    ``compat``: under the import switch (``tinker-actors run -- python -m ...``), so the recipe's
    ``import tinker`` is tinker_actors.compat. ``name``: the log directory's (by default the
    recipe's, ``-compat`` added under the switch).
    """
    if name is None:
        name = module.split(".")[-2 if module.endswith(".train") else -1]
        name = f"{name}-compat" if compat else name
    log_path = workdir / name
    command = recipe_command(module, [f"log_path={log_path}", *args], compat=compat)
    run_as_user(command, workdir, recipe_env(workdir, url), compat=compat)
    return log_path


def trained_under_the_switch(
    workdir: Path,
    url: str,
    module: str,
    args: list[str],
    marker: str,
    *,
    eval_every: int = 0,
) -> list[dict[str, Any]]:
    """Run RL recipe ``module`` for 2 steps under the switch; return the rows of its training
    steps (those with ``marker``), having checked that the trainer's logprobs of the sampled
    tokens are the sampler's (``optim/kl_sample_train_v1`` ~ 0): the datums hold the right
    tokens in the right places."""
    common = ["max_tokens=16", "max_steps=2", f"eval_every={eval_every}", "save_every=0"]
    flags = [*args, *common, "behavior_if_log_dir_exists=delete"]
    rows = metrics(run_recipe(workdir, url, module, flags, compat=True))
    trained = [row for row in rows if marker in row]
    assert len(trained) == 2, rows
    for row in trained:
        assert abs(row["optim/kl_sample_train_v1"]) < 1e-3, row  # NaN fails this too
    return trained


def run_as_user(command: list[str], workdir: Path, env: dict[str, str], *, compat: bool) -> str:
    """Run a recipe command in ``workdir``; it must succeed with the ``tinker`` it should.
    Return its standard output."""
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stderr[-6000:]
    check_tinker_module(done.stdout, compat=compat)
    return done.stdout


def recipe_env(workdir: Path, url: str, *, hub: Path | None = None) -> dict[str, str]:
    """A user's environment for the local server at ``url``, offline, with the tokenizers that
    ``tinker-actors tokenizers install`` put in ``hub`` (by default ``workdir / "hub"``), and a
    datasets cache of the test's own: ``datasets`` keys the cache of a local folder with a
    ``configs:`` README by its hub-like name and config, not by what its files hold, so a
    shared cache served another run's rows (and the tests wrote into the user's ``~/.cache``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TINKER_", "HF_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(workdir / "hub" if hub is None else hub),
        HF_DATASETS_CACHE=str(workdir / "datasets-cache"),
        TINKER_BASE_URL=url,
        TINKER_API_KEY=RECIPE_KEY,
    )
    return env


def metrics(log_path: Path) -> list[dict[str, Any]]:
    """The rows of a recipe's ``metrics.jsonl``."""
    lines = (log_path / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def series(rows: list[dict[str, Any]], key: str) -> list[float]:
    """``key``'s values, in order, from the rows that have it."""
    return [float(row[key]) for row in rows if key in row]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
