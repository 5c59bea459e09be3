"""The local Tinker-compatible server and its fault-injection tools (``server`` extra)."""

from __future__ import annotations

from tinker_actors.local._core import ServerSettings as ServerSettings
from tinker_actors.local._fault_proxy import ConnectionFaults as ConnectionFaults
from tinker_actors.local._fault_proxy import FaultProxy as FaultProxy
from tinker_actors.local._fault_proxy import FaultProxyStatistics as FaultProxyStatistics
from tinker_actors.local._null_backend import NullBackend as NullBackend
from tinker_actors.local._server import LocalServer as LocalServer
from tinker_actors.local._server import open_local_server as open_local_server

__all__ = [
    "ConnectionFaults",
    "FaultProxy",
    "FaultProxyStatistics",
    "LocalServer",
    "NullBackend",
    "ServerSettings",
    "open_local_server",
]
