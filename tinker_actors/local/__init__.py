"""The local Tinker-compatible server and its fault-injection tools (``server`` extra)."""

from __future__ import annotations

from tinker_actors.local._fault_proxy import ConnectionFaults as ConnectionFaults
from tinker_actors.local._fault_proxy import FaultProxy as FaultProxy
from tinker_actors.local._fault_proxy import FaultProxyStatistics as FaultProxyStatistics

__all__ = ["ConnectionFaults", "FaultProxy", "FaultProxyStatistics"]
