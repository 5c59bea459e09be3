"""Enforce the layering of design.md §4 and the public surface, mechanically."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import tinker_actors

PKG = Path(tinker_actors.__file__).resolve().parent

# Layer of each top-level part of the package: a module may import only parts listed at the
# same or an earlier position in its own allowance list below.
_WIRE = {"backoff", "errors", "config", "types", "_version"}  # what the transport stands on
_ACTORS = _WIRE | {"latency", "supervisors", "transport"}
_CLIENTS = _ACTORS | {"actors"}
ALLOWED: dict[str, set[str]] = {
    "_version": set(),
    "backoff": set(),
    # latency histograms: pure arithmetic, recorded by the transport and the poller
    "latency": set(),
    # how an exception survives pickling (shared by the kernel's and Tinker's exceptions)
    "_pickling": set(),
    "errors": {"_pickling"},
    # the credentials file auth login writes and the SDK reads its default key from
    "_credentials": {"errors"},
    # credentials as values: Secret, the key checks, JWT claims, TINKER_CREDENTIAL_CMD's run
    "_secrets": {"errors"},
    "config": {"errors", "_version", "_credentials", "_secrets"},
    "types": {"errors"},
    # the kernel knows nothing of Tinker: only the pure backoff policy
    "supervisors": {"backoff", "_pickling"},
    "transport": _WIRE | {"latency"},
    "actors": _ACTORS,
    "clients": (_CLIENTS - {"latency"}) | {"tokenizer", "custom_loss"},
    "_runtime": _CLIENTS | {"clients", "_runtime_parts", "_flush"},
    # what leaving open() owes accepted training requests (issue 14)
    "_flush": {"errors", "actors"},
    # the runtime's plain parts (argument checks, statistics, the ServiceClient delegation)
    "_runtime_parts": _CLIENTS | {"clients"},
    # the official 0.38 surface adapts the SDK; nothing below imports it, and it never
    # reaches the local server, the CLI or the test helpers
    "compat": _CLIENTS
    | {"clients", "_open", "_runtime", "_runtime_parts", "tokenizer", "custom_loss"}
    | {"checkpoint_download", "_download_limits"},
    # the local server shares the wire types and codecs with the client, nothing else
    "local": {"types", "errors", "transport", "backoff", "_version"},
    # top-level helpers the clients use: tokenizer loading and custom-loss maths
    "tokenizer": {"errors"},
    "custom_loss": {"errors", "types"},
    # composed custom losses (regularizers): maths over custom_loss, used by the caller only
    "regularizers": {"errors", "types", "custom_loss"},
    # a checkpoint's files into a directory: the archive checks, over the runtime's clients
    "_download_limits": set(),
    "_archive": {"errors", "_download_limits"},
    "checkpoint_download": {"_archive", "errors", "types", "_runtime", "clients"},
    # the checkpoint-and-resume training loop over the SDK's clients
    "resume": {"backoff", "errors", "supervisors", "actors", "clients"},
}


def _part(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "tinker_actors" or len(parts) < 2:
        return None
    return parts[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        if rel.name.endswith("_pb2.py"):
            continue
        part = rel.parts[0].removesuffix(".py")
        out.append((part, path))
    return out


@pytest.mark.parametrize(("part", "path"), _modules(), ids=lambda v: str(v))
def test_layering(part: str, path: Path) -> None:
    allowed = ALLOWED.get(part)
    if allowed is None:
        return  # facades at the bottom (cli, sync, testing, __init__) may import anything
    for module in _imports(path):
        other = _part(module)
        if other is None or other == part:
            continue
        assert other in allowed, (
            f"{path.relative_to(PKG)} imports {module}: {part} may not use {other}"
        )


def test_all_resolves() -> None:
    for info in pkgutil.walk_packages(tinker_actors.__path__, "tinker_actors."):
        if ".local" in info.name or ".cli" in info.name or info.name.endswith("_pb2"):
            continue  # optional extras are imported by their own tests
        mod = importlib.import_module(info.name)
        names = getattr(mod, "__all__", None)
        if names is None:
            continue
        for name in names:
            assert hasattr(mod, name), f"{info.name}.__all__ names missing {name}"
