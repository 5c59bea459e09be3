"""The local Tinker-compatible server and its fault-injection tools (``server`` extra)."""

from __future__ import annotations

from tinker_actors.local._backend import Backend as Backend
from tinker_actors.local._backend import LatencyModel as LatencyModel
from tinker_actors.local._core import ServerSettings as ServerSettings
from tinker_actors.local._fault_middleware import FaultInjector as FaultInjector
from tinker_actors.local._fault_middleware import FaultStatistics as FaultStatistics
from tinker_actors.local._fault_proxy import ConnectionFaults as ConnectionFaults
from tinker_actors.local._fault_proxy import FaultProxy as FaultProxy
from tinker_actors.local._fault_proxy import FaultProxyStatistics as FaultProxyStatistics
from tinker_actors.local._faults import FaultPlan as FaultPlan
from tinker_actors.local._faults import FaultPlanError as FaultPlanError
from tinker_actors.local._faults import FaultRule as FaultRule
from tinker_actors.local._faults import Latency as Latency
from tinker_actors.local._limits import ServerLimits as ServerLimits
from tinker_actors.local._null_backend import NullBackend as NullBackend
from tinker_actors.local._server import LocalServer as LocalServer
from tinker_actors.local._server import open_local_server as open_local_server

__all__ = [
    "Backend",
    "ConnectionFaults",
    "FaultInjector",
    "FaultPlan",
    "FaultPlanError",
    "FaultProxy",
    "FaultProxyStatistics",
    "FaultRule",
    "FaultStatistics",
    "Latency",
    "LatencyModel",
    "LocalServer",
    "NullBackend",
    "ServerLimits",
    "ServerSettings",
    "open_local_server",
]
