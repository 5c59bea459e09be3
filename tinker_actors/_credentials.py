"""The credentials file that ``auth login`` writes: ``~/.tinker/credentials.json``.

The official client and CLI share this file, so its shape is theirs (protocol.md §9.8)::

    {"version": 1, "default": "<key id>",
     "keys": {"<key id>": {"type": "manual" | "generated", "key": "tml-...", "name": "...",
                           "note": "...", "details": {"org_details": {"name": ...},
                                                      "user_details": {"email": ...}}}}}

Invariants: a write never leaves the file partially written or readable by others (a temporary
file in the same directory, mode 0600, renamed over the old one; the directory is 0700), and
fields this module does not know, in the file or in a record, are kept as they were, so a
newer client's additions survive a login or logout here.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from tinker_actors.errors import InvalidInputError

__all__ = [
    "default_credentials_path",
    "forget_default",
    "read_credentials",
    "remember_default",
    "stored_default",
    "stored_default_key",
]

_FILE_MODE = 0o600
_DIR_MODE = 0o700


def default_credentials_path() -> Path:
    """Return where ``auth login`` stores keys: ``~/.tinker/credentials.json``."""
    return Path("~/.tinker/credentials.json").expanduser()


def read_credentials(path: Path) -> dict[str, Any]:
    """Return the file's contents (an empty store when there is no file).

    Raises:
        InvalidInputError: the file cannot be read, or is not a credentials file; the message
            names the file and the fix, never a key.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"version": 1, "keys": {}}
    except OSError as exc:
        raise InvalidInputError(
            f"cannot read the credentials file {path} ({type(exc).__name__}); fix its "
            "permissions or run `tinker-actors auth login` (or `tinker auth login`) again."
        ) from None
    fix = (
        f"the credentials file {path} is not valid ({{}}); remove it and run "
        "`tinker-actors auth login` (or `tinker auth login`) again."
    )
    try:
        data = json.loads(text)
    except ValueError:
        raise InvalidInputError(fix.format("not JSON")) from None
    if not isinstance(data, dict):
        raise InvalidInputError(fix.format("not a JSON object"))
    default, keys = data.get("default"), data.setdefault("keys", {})
    if not (default is None or isinstance(default, str)) or not isinstance(keys, dict):
        raise InvalidInputError(fix.format("'default' or 'keys' has the wrong type"))
    for key_id, record in keys.items():
        if not isinstance(record, dict) or not isinstance(record.get("key"), str):
            raise InvalidInputError(fix.format(f"key record {key_id!r} has no string 'key'"))
    return data


def stored_default(path: Path) -> tuple[str, dict[str, Any]] | None:
    """Return the default key's id and record, or None when no default is stored.

    A default that names a deleted key counts as none, as in the official client.
    """
    data = read_credentials(path)
    default = data.get("default")
    record = data["keys"].get(default) if default is not None else None
    return None if record is None else (str(default), record)


def stored_default_key(path: Path) -> str | None:
    """Return the default stored key, or None."""
    found = stored_default(path)
    return None if found is None else str(found[1]["key"])


def remember_default(path: Path, key_id: str, record: dict[str, Any]) -> None:
    """Store ``record`` under ``key_id`` and make it the default."""
    data = read_credentials(path)
    data["keys"][key_id] = record
    data["default"] = key_id
    _write(path, data)


def forget_default(path: Path) -> tuple[str, dict[str, Any]] | None:
    """Remove the default key from the file; return its id and record (None: none stored)."""
    found = stored_default(path)
    if found is None:
        return None
    data = read_credentials(path)
    del data["keys"][found[0]]
    data["default"] = None
    _write(path, data)
    return found


def _write(path: Path, data: dict[str, Any]) -> None:
    directory = path.parent
    if not directory.is_dir():
        directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        directory.chmod(_DIR_MODE)  # mkdir's mode is masked by the umask
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({k: v for k, v in data.items() if v is not None}, out, indent=2)
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
