"""Test code that talks to Tinker against the local server, with faults; and the pytest plugin.

* :class:`LocalServerThread`: a local server on a background thread, reachable from blocking,
  asyncio and trio code alike; stop, restart and re-fault it while a test runs.
* :class:`ServerCounters`: what the server applied, per model and in order, and the faults it
  injected; :meth:`ServerCounters.assert_steps_applied_once` proves "every step once, in order".
* :func:`server_in_thread`: the short form, ``with server_in_thread() as (url, server)``.
* The pytest plugin (``tinker_actors.testing._plugin``, registered as the ``pytest11`` entry
  point ``tinker_actors``): fixtures ``tinker_server``, ``tinker_service``, ``tinker_runtime``,
  ``tinker_env`` and the ``tinker_faults`` marker. See docs/testing.md.

The names load on first use, so the plugin, which pytest imports in every run, costs nothing
until a test asks for a server.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from tinker_actors.testing._counters import ModelCounters as ModelCounters
    from tinker_actors.testing._counters import ServerCounters as ServerCounters
    from tinker_actors.testing._counters import StepOrderError as StepOrderError
    from tinker_actors.testing._local_thread import DEFAULT_API_KEY as DEFAULT_API_KEY
    from tinker_actors.testing._local_thread import LocalServerThread as LocalServerThread
    from tinker_actors.testing._server_thread import server_in_thread as server_in_thread

__all__ = [
    "DEFAULT_API_KEY",
    "LocalServerThread",
    "ModelCounters",
    "ServerCounters",
    "StepOrderError",
    "server_in_thread",
]

_LAZY: Final[dict[str, str]] = {
    "DEFAULT_API_KEY": "tinker_actors.testing._local_thread",
    "LocalServerThread": "tinker_actors.testing._local_thread",
    "ModelCounters": "tinker_actors.testing._counters",
    "ServerCounters": "tinker_actors.testing._counters",
    "StepOrderError": "tinker_actors.testing._counters",
    "server_in_thread": "tinker_actors.testing._server_thread",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
