"""The SDK's actors: the session, the future poller, the rate limiter.

* :class:`SessionManager` — bootstrap (client config, JWT switch, dynamic config,
  create_session), heartbeat, counters, finish.
* :class:`FuturePoller` — hosts the waiting half of every operation and long-polls
  ``retrieve_future`` (:func:`poll_future`) with the status handling of protocol.md §6.2.
* :class:`CompletionPoller` — batched completion polling of one sampling session
  (``retrieve_futures``, protocol.md §6.4), run by the FuturePoller.
* :class:`RateLimiter` — per-(base_url, API key) admission control: the shared 429 deadline,
  dispatch slots and byte budgets (:func:`rate_limiter_for` finds it in the runtime's registry).
* :class:`TelemetryReporter` — batched, bounded, scrubbed telemetry that never blocks a caller.

They know the transport and the wire types, and nothing about the client facades above them.
"""

from __future__ import annotations

from tinker_actors.actors._completions import CompletionPoller as CompletionPoller
from tinker_actors.actors._completions import CompletionPollingError as CompletionPollingError
from tinker_actors.actors._limiter import GetRateLimiter as GetRateLimiter
from tinker_actors.actors._limiter import RateLimiter as RateLimiter
from tinker_actors.actors._limiter import RateLimiterActor as RateLimiterActor
from tinker_actors.actors._limiter import RateLimiterStatistics as RateLimiterStatistics
from tinker_actors.actors._limiter import rate_limiter_for as rate_limiter_for
from tinker_actors.actors._limiter import rate_limiter_spec as rate_limiter_spec
from tinker_actors.actors._poll import FutureExpiredError as FutureExpiredError
from tinker_actors.actors._poll import OperationCancelledError as OperationCancelledError
from tinker_actors.actors._poll import QueueStateLog as QueueStateLog
from tinker_actors.actors._poll import ResponseBudget as ResponseBudget
from tinker_actors.actors._poll import ResultSpec as ResultSpec
from tinker_actors.actors._poll import StuckError as StuckError
from tinker_actors.actors._poll import poll_future as poll_future
from tinker_actors.actors._poller import FuturePoller as FuturePoller
from tinker_actors.actors._poller import FutureState as FutureState
from tinker_actors.actors._poller import Watch as Watch
from tinker_actors.actors._poller import run_hosted_actor as run_hosted_actor
from tinker_actors.actors._session import Ensure as Ensure
from tinker_actors.actors._session import Finish as Finish
from tinker_actors.actors._session import FinishStatus as FinishStatus
from tinker_actors.actors._session import Reserve as Reserve
from tinker_actors.actors._session import SessionHandle as SessionHandle
from tinker_actors.actors._session import SessionManager as SessionManager
from tinker_actors.actors._session import SessionMessage as SessionMessage
from tinker_actors.actors._session import fetch_dynamic_config as fetch_dynamic_config
from tinker_actors.actors._session import fetch_flags as fetch_flags
from tinker_actors.actors._session import finish_session as finish_session
from tinker_actors.actors._session import heartbeat_loop as heartbeat_loop
from tinker_actors.actors._session import holder_retries as holder_retries
from tinker_actors.actors._session import session_spec as session_spec
from tinker_actors.actors._telemetry import TelemetryReporter as TelemetryReporter
from tinker_actors.actors._telemetry import TelemetryStatistics as TelemetryStatistics
from tinker_actors.actors._telemetry import telemetry_spec as telemetry_spec

__all__ = [
    "CompletionPoller",
    "CompletionPollingError",
    "Ensure",
    "Finish",
    "FinishStatus",
    "FutureExpiredError",
    "FuturePoller",
    "FutureState",
    "GetRateLimiter",
    "OperationCancelledError",
    "QueueStateLog",
    "RateLimiter",
    "RateLimiterActor",
    "RateLimiterStatistics",
    "Reserve",
    "ResponseBudget",
    "ResultSpec",
    "SessionHandle",
    "SessionManager",
    "SessionMessage",
    "StuckError",
    "TelemetryReporter",
    "TelemetryStatistics",
    "Watch",
    "fetch_dynamic_config",
    "fetch_flags",
    "finish_session",
    "heartbeat_loop",
    "holder_retries",
    "poll_future",
    "rate_limiter_for",
    "rate_limiter_spec",
    "run_hosted_actor",
    "session_spec",
    "telemetry_spec",
]
