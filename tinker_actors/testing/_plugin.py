"""The pytest plugin: a local Tinker server per test, faults by marker, counters to assert on.

Registered as the ``pytest11`` entry point ``tinker_actors``, so installing tinker-actors is
enough (``-p no:tinker_actors`` turns it off). Importing it costs nothing: the server, trio and
the SDK load when a test first asks for a fixture.

Fixtures (function-scoped; each test gets a fresh server and data directory):

* ``tinker_server``: a :class:`~tinker_actors.testing.LocalServerThread`, started, on a
  loopback port; ``.url``, ``.api_key``, ``.counters()``, ``.restart()``, ``.set_faults()``.
* ``tinker_env``: points ``TINKER_BASE_URL`` / ``TINKER_API_KEY`` at it, for code that builds
  its own clients; returns the variables it set.
* ``tinker_service``: a :class:`tinker_actors.compat.ServiceClient` on it (the official 0.38
  surface), for blocking code and for asyncio code; closed after the test.
* ``tinker_runtime``: a trio runtime (``tinker_actors.open()``) on it, for trio tests
  (pytest-trio).
* What the server is made of, each overridable in a ``conftest.py``: ``tinker_backend``
  (``"null"``; ``--tinker-backend torch``), ``tinker_seed`` (``0``; ``--tinker-seed``),
  ``tinker_fault_plan`` (from the marker), ``tinker_lost_answers`` (from the marker),
  ``tinker_data_dir`` (under ``tmp_path``), ``tinker_server_settings`` (from the
  ``tinker_server`` marker).

Markers::

    @pytest.mark.tinker_faults("asample:429@0.2", "forward_backward:503@0.1", seed=7)
    @pytest.mark.tinker_faults(file="faults.toml")             # a plan file, relative to the test
    @pytest.mark.tinker_faults(lost=["optim_step:502,count=1"])  # answers lost after the work
    @pytest.mark.tinker_server(backend="torch", sample_capacity=8)

Rules use the ``--fault`` syntax of ``tinker-actors serve`` (docs/local-server.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from tinker_actors import Runtime
    from tinker_actors.compat import ServiceClient
    from tinker_actors.local import FaultPlan
    from tinker_actors.testing import LocalServerThread

__all__ = [
    "pytest_addoption",
    "pytest_configure",
    "tinker_backend",
    "tinker_data_dir",
    "tinker_env",
    "tinker_fault_plan",
    "tinker_lost_answers",
    "tinker_runtime",
    "tinker_seed",
    "tinker_server",
    "tinker_server_settings",
    "tinker_service",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--tinker-backend`` and ``--tinker-seed``."""
    group = parser.getgroup("tinker_actors", "local Tinker server (tinker_actors.testing)")
    group.addoption(
        "--tinker-backend",
        choices=("null", "torch"),
        default=None,
        help="model backend of the tinker_server fixture (default: null)",
    )
    group.addoption(
        "--tinker-seed",
        type=int,
        default=None,
        help="seed of fault plans that name none (default: 0); rerun a failure with its seed",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers."""
    config.addinivalue_line(
        "markers",
        "tinker_faults(*rules, seed=None, file=None, lost=()): the fault plan of the test's "
        "tinker_server (rules in the `tinker-actors serve --fault` syntax)",
    )
    config.addinivalue_line(
        "markers",
        "tinker_server(backend=None, **settings): the backend and ServerSettings overrides of "
        "the test's tinker_server",
    )


def _marker_kwargs(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
def tinker_seed(request: pytest.FixtureRequest) -> int:
    """The seed of fault plans that name none: ``--tinker-seed``, else 0."""
    value = request.config.getoption("--tinker-seed", default=None)
    return 0 if value is None else int(value)


@pytest.fixture
def tinker_backend(request: pytest.FixtureRequest) -> str:
    """The model backend: the ``tinker_server`` marker's, else ``--tinker-backend``, else null."""
    marked = _marker_kwargs(request, "tinker_server").get("backend")
    if marked is not None:
        return str(marked)
    return str(request.config.getoption("--tinker-backend", default=None) or "null")


@pytest.fixture
def tinker_server_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """ServerSettings overrides: the ``tinker_server`` marker's keywords (backend aside)."""
    kwargs = _marker_kwargs(request, "tinker_server")
    kwargs.pop("backend", None)
    return kwargs


def _plan(rules: Any, seed: int | None, source: str) -> FaultPlan:
    from tinker_actors.local import FaultPlan, FaultPlanError

    flags = [rules] if isinstance(rules, str) else [str(rule) for rule in rules]
    if any(flag.strip().startswith("seed=") for flag in flags):
        seed = None  # the rules name their seed (a seed= keyword as well is an error there)
    try:
        return FaultPlan.from_flags(flags, seed=seed)
    except FaultPlanError as exc:
        raise pytest.UsageError(f"{source}: {exc}") from None


@pytest.fixture
def tinker_fault_plan(request: pytest.FixtureRequest, tinker_seed: int) -> FaultPlan | None:
    """The fault plan of the ``tinker_faults`` marker (None without one)."""
    marker = request.node.get_closest_marker("tinker_faults")
    if marker is None:
        return None
    from tinker_actors.local import FaultPlan, FaultPlanError

    seed = marker.kwargs.get("seed")
    plan_file = marker.kwargs.get("file")
    where = f"@pytest.mark.tinker_faults on {request.node.nodeid}"
    if plan_file is not None:
        if marker.args:
            raise pytest.UsageError(f"{where}: give rules or file=, not both")
        path = Path(plan_file)
        if not path.is_absolute():
            path = Path(request.node.path).parent / path
        try:
            plan = FaultPlan.from_file(path)
        except (FaultPlanError, OSError) as exc:
            raise pytest.UsageError(f"{where}: {exc}") from None
        if seed is not None:
            import msgspec

            plan = msgspec.structs.replace(plan, seed=int(seed))
        return plan
    if seed is not None and any(str(rule).strip().startswith("seed=") for rule in marker.args):
        raise pytest.UsageError(f"{where}: give the seed as a rule 'seed=N' or as seed=, not both")
    return _plan(marker.args, tinker_seed if seed is None else int(seed), where)


@pytest.fixture
def tinker_lost_answers(request: pytest.FixtureRequest, tinker_seed: int) -> FaultPlan | None:
    """The lost-answer plan of the ``tinker_faults`` marker's ``lost=`` (None without one)."""
    marker = request.node.get_closest_marker("tinker_faults")
    if marker is None or not marker.kwargs.get("lost"):
        return None
    seed = marker.kwargs.get("seed")
    where = f"@pytest.mark.tinker_faults(lost=...) on {request.node.nodeid}"
    return _plan(marker.kwargs["lost"], tinker_seed if seed is None else int(seed), where)


@pytest.fixture
def tinker_data_dir(tmp_path: Path) -> Path:
    """Where the server keeps its state; it survives ``tinker_server.restart()``."""
    return tmp_path / "tinker-server"


@pytest.fixture
def tinker_server(
    tinker_backend: str,
    tinker_fault_plan: FaultPlan | None,
    tinker_lost_answers: FaultPlan | None,
    tinker_data_dir: Path,
    tinker_server_settings: dict[str, Any],
) -> Iterator[LocalServerThread]:
    """A local Tinker server for this test, on a loopback port (stopped after the test)."""
    pytest.importorskip(
        "starlette",
        reason="the local server needs the server extra: pip install 'tinker-actors[server]'",
    )
    from tinker_actors.testing import LocalServerThread

    tinker_data_dir.mkdir(parents=True, exist_ok=True)
    server = LocalServerThread(
        backend=tinker_backend,
        faults=tinker_fault_plan,
        lost_answers=tinker_lost_answers,
        data_dir=tinker_data_dir,
        **tinker_server_settings,
    )
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tinker_env(tinker_server: LocalServerThread, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point ``TINKER_BASE_URL`` and ``TINKER_API_KEY`` at the test's server."""
    env = {"TINKER_BASE_URL": tinker_server.url, "TINKER_API_KEY": tinker_server.api_key}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    return env


@pytest.fixture
def tinker_service(tinker_server: LocalServerThread) -> Iterator[ServiceClient]:
    """A ``tinker_actors.compat.ServiceClient`` on the test's server; closed after the test."""
    import tinker_actors.compat as tinker

    service = tinker.ServiceClient(base_url=tinker_server.url, api_key=tinker_server.api_key)
    try:
        yield service
    finally:
        closing = service.close("success")
        if tinker_server.running:  # a test that stopped the server cannot finish the session
            closing.result(timeout=60)


@pytest.fixture
async def tinker_runtime(tinker_server: LocalServerThread) -> AsyncIterator[Runtime]:
    """A trio runtime (``tinker_actors.open()``) on the test's server (needs pytest-trio)."""
    import tinker_actors

    async with tinker_actors.open(
        base_url=tinker_server.url, api_key=tinker_server.api_key, telemetry=False
    ) as runtime:
        yield runtime
