"""The credentials file writer: atomic, owner-only, and keeping what it does not know."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tinker_actors._credentials import (
    forget_default,
    read_credentials,
    remember_default,
    stored_default,
    stored_default_key,
)
from tinker_actors.errors import InvalidInputError


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "tinker" / "credentials.json"
    remember_default(path, "1", {"type": "manual", "key": "tml-one", "name": "one"})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        remember_default(path, "2", {"type": "manual", "key": "tml-two", "name": object()})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_default_moves_and_other_keys_stay(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    assert stored_default(path) is None
    remember_default(path, "1", {"type": "manual", "key": "tml-one", "name": "one"})
    remember_default(path, "2", {"type": "manual", "key": "tml-two", "name": "two"})
    assert stored_default_key(path) == "tml-two"
    assert forget_default(path) == ("2", {"type": "manual", "key": "tml-two", "name": "two"})
    data = read_credentials(path)
    assert "default" not in data
    assert data["keys"] == {"1": {"type": "manual", "key": "tml-one", "name": "one"}}
    assert forget_default(path) is None  # key 1 stays, but it is not the default
    assert json.loads(path.read_text())["version"] == 1


def test_a_record_without_a_key_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    path.write_text(json.dumps({"version": 1, "keys": {"9": {"name": "no key"}}}))
    with pytest.raises(InvalidInputError, match=r"key record '9' has no string 'key'") as info:
        remember_default(path, "1", {"type": "manual", "key": "tml-one", "name": "one"})
    assert str(path) in str(info.value)
    assert "auth login" in str(info.value)
