"""The local Tinker-compatible server and its fault-injection tools (``server`` extra)."""

from __future__ import annotations

from tinker_actors.local._backend import Backend as Backend
from tinker_actors.local._backend import LatencyModel as LatencyModel
from tinker_actors.local._catalogue import CatalogueError as CatalogueError
from tinker_actors.local._catalogue import read_catalogue_file as read_catalogue_file
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
from tinker_actors.local._hf_cache import ForeignRepositoryError as ForeignRepositoryError
from tinker_actors.local._hf_cache import InstalledTokenizer as InstalledTokenizer
from tinker_actors.local._hf_cache import hub_cache_dir as hub_cache_dir
from tinker_actors.local._hf_cache import install_tokenizers as install_tokenizers
from tinker_actors.local._limits import ServerLimits as ServerLimits
from tinker_actors.local._null_backend import NullBackend as NullBackend
from tinker_actors.local._server import LocalServer as LocalServer
from tinker_actors.local._server import open_local_server as open_local_server

__all__ = [
    "Backend",
    "CatalogueError",
    "ConnectionFaults",
    "FaultInjector",
    "FaultPlan",
    "FaultPlanError",
    "FaultProxy",
    "FaultProxyStatistics",
    "FaultRule",
    "FaultStatistics",
    "ForeignRepositoryError",
    "InstalledTokenizer",
    "Latency",
    "LatencyModel",
    "LocalServer",
    "NullBackend",
    "ServerLimits",
    "ServerSettings",
    "hub_cache_dir",
    "install_tokenizers",
    "open_local_server",
    "read_catalogue_file",
]
