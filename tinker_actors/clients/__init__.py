"""The client facades: ServiceClient, TrainingClient, SamplingClient and APIFuture.

They are thin: a TrainingClient is a handle to its own actor (one mailbox per model keeps the
server's seq_id order), a SamplingClient a handle to its sampling session whose jobs run in the
runtime's FuturePoller, and an APIFuture a handle to one operation's outcome. Obtain them from
the runtime that ``tinker_actors.open()`` yields.
"""

from __future__ import annotations

from tinker_actors.actors import OperationCancelledError as OperationCancelledError
from tinker_actors.clients._admin import AdminClient as AdminClient
from tinker_actors.clients._chunking import chunk_data as chunk_data
from tinker_actors.clients._chunking import combine_outputs as combine_outputs
from tinker_actors.clients._future import APIFuture as APIFuture
from tinker_actors.clients._rest import RestClient as RestClient
from tinker_actors.clients._rest import TraceExportError as TraceExportError
from tinker_actors.clients._rest import WhoamiUnavailableError as WhoamiUnavailableError
from tinker_actors.clients._sample_prepare import PreparedSample as PreparedSample
from tinker_actors.clients._sampling import SamplingClient as SamplingClient
from tinker_actors.clients._service import ClientContext as ClientContext
from tinker_actors.clients._service import ServiceClient as ServiceClient
from tinker_actors.clients._training import PendingSampler as PendingSampler
from tinker_actors.clients._training import PreparedOp as PreparedOp
from tinker_actors.clients._training import TrainingClient as TrainingClient
from tinker_actors.clients._training import TrainingOrderBrokenError as TrainingOrderBrokenError

__all__ = [
    "APIFuture",
    "AdminClient",
    "ClientContext",
    "OperationCancelledError",
    "PendingSampler",
    "PreparedOp",
    "PreparedSample",
    "RestClient",
    "SamplingClient",
    "ServiceClient",
    "TraceExportError",
    "TrainingClient",
    "TrainingOrderBrokenError",
    "WhoamiUnavailableError",
    "chunk_data",
    "combine_outputs",
]
