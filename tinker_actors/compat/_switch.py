"""The import switch: ``import tinker`` loads :mod:`tinker_actors.compat` instead.

:func:`install` puts a finder first on ``sys.meta_path``. It maps the official package's
module names onto the compat modules, lazily (nothing heavy is imported until the program
imports ``tinker``):

* ``tinker`` → :mod:`tinker_actors.compat`;
* ``tinker.types`` and every submodule 0.38 has there (``tinker.types.tensor_data``,
  ``tinker.types.datum``...) → :mod:`tinker_actors.compat.types`;
* ``tinker.lib``, ``tinker.lib.public_interfaces`` and its submodules (``.rest_client``,
  ``.api_future``...), ``tinker.lib.retry_handler`` and ``tinker.auth`` → their compat
  counterparts.

Any other ``tinker.*`` module raises ``ModuleNotFoundError`` naming what is covered, rather
than half-loading the official package beside the compat one. The switch reaches child
processes (multiprocessing's spawn workers included) through the environment:
:func:`child_environment` adds a ``sitecustomize`` directory to ``PYTHONPATH`` that installs
it at interpreter start (and then runs any ``sitecustomize`` it shadows).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import ModuleType

__all__ = [
    "ENV_FLAG",
    "INTERFACE_MODULES",
    "SITE_DIR",
    "child_environment",
    "install",
    "installed",
    "submodules_as_self",
    "uninstall",
]

#: Set to "1" in the environment of programs run under the switch.
ENV_FLAG: Final = "TINKER_ACTORS_COMPAT"
#: The directory holding the switch's ``sitecustomize.py``.
SITE_DIR: Final = str(Path(__file__).resolve().parent / "_site")

_PACKAGE: Final = "tinker_actors.compat"
_FIXED: Final = {
    "tinker": _PACKAGE,
    "tinker.types": f"{_PACKAGE}.types",
    "tinker.lib": f"{_PACKAGE}.lib",
    "tinker.lib.public_interfaces": f"{_PACKAGE}.lib.public_interfaces",
    "tinker.lib.retry_handler": f"{_PACKAGE}.lib.retry_handler",
    "tinker.auth": f"{_PACKAGE}.auth",
}
#: Submodules of ``tinker.lib.public_interfaces`` in 0.38 (all map to that module).
INTERFACE_MODULES: Final = frozenset(
    {
        "admin_client",
        "api_future",
        "backcompat_client_future",
        "backcompat_sampling_client_future",
        "backcompat_training_client_future",
        "custom_loss",
        "rest_client",
        "rest_client_common",
        "sampling_client",
        "service_client",
        "training_client",
    }
)


def submodules_as_self(module: str, names: frozenset[str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that answers each of ``names`` with ``module`` itself.

    0.38's packages import their submodules, so code may read one as an attribute
    (``tinker.types.tensor_data.TensorData``) without importing it; here all of them are the
    one compat module."""

    def __getattr__(name: str) -> object:
        if name in names:
            return sys.modules[module]
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def _target(fullname: str) -> str | None:
    fixed = _FIXED.get(fullname)
    if fixed is not None:
        return fixed
    head, _, last = fullname.rpartition(".")
    if head == "tinker.types" and last.isidentifier() and not last.startswith("__"):
        return f"{_PACKAGE}.types"  # every type of 0.38 is in tinker.types itself
    if head == "tinker.lib.public_interfaces" and last in INTERFACE_MODULES:
        return f"{_PACKAGE}.lib.public_interfaces"
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads a module name as an existing compat module (the same object, not a copy)."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self._target)
        self._spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias's spec on the shared module; restore its own.
        module.__spec__ = self._spec


class _Finder(importlib.abc.MetaPathFinder):
    """Answers for ``tinker`` and ``tinker.*`` before any other finder."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tinker" and not fullname.startswith("tinker."):
            return None
        alias = _target(fullname)
        if alias is None:
            raise ModuleNotFoundError(
                f"No module named {fullname!r}: under tinker-actors' import switch, tinker "
                "resolves to tinker_actors.compat, which covers tinker, tinker.types (and its "
                "submodules), tinker.lib.public_interfaces (and its submodules), "
                "tinker.lib.retry_handler and tinker.auth (see docs/compat.md)",
                name=fullname,
            )
        return importlib.util.spec_from_loader(fullname, _AliasLoader(alias))


_finder = _Finder()


def install() -> None:
    """Make ``import tinker`` (and the covered submodules) load the compat package.

    Raises:
        RuntimeError: the official ``tinker`` package was already imported in this process.
    """
    loaded = sys.modules.get("tinker")
    if loaded is not None and getattr(loaded, "__name__", "") != _PACKAGE:
        raise RuntimeError(
            "the official tinker package was imported before tinker-actors' import switch "
            "was installed; install the switch first (tinker-actors run -- ...)"
        )
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


def uninstall() -> None:
    """Remove the switch and forget the aliased module names (the compat modules stay)."""
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    for name in [n for n in sys.modules if n == "tinker" or n.startswith("tinker.")]:
        if getattr(sys.modules[name], "__name__", "").startswith(_PACKAGE):
            del sys.modules[name]


def installed() -> bool:
    """Return whether the switch is active in this interpreter."""
    return _finder in sys.meta_path


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return ``base`` (default: this environment) set up so Python children get the switch."""
    env = dict(os.environ if base is None else base)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != SITE_DIR]
    env["PYTHONPATH"] = os.pathsep.join([SITE_DIR, *paths])
    env[ENV_FLAG] = "1"
    return env
