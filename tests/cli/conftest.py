"""Fixtures of the CLI tests: a local server on a loopback port, with a trained run on it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cli_support import Populated


@pytest.fixture(scope="session")
def local_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local server (null backend) shared by the CLI tests, with its own data dir."""
    pytest.importorskip("starlette", reason="the server extra is not installed")
    from tinker_actors.testing import server_in_thread

    with server_in_thread(data_dir=tmp_path_factory.mktemp("cli-server")) as (url, _server):
        yield url


@pytest.fixture(scope="session")
def populated(local_url: str) -> Populated:
    """One training run with a checkpoint of each kind, for tests that only read."""
    from cli_support import populate

    return populate(local_url, metadata={"purpose": "cli-tests"})


@pytest.fixture
def fresh(local_url: str) -> Populated:
    """A new training run of its own, for tests that change or delete checkpoints."""
    from cli_support import populate

    return populate(local_url)
