"""TelemetryReporter: batched, bounded, best-effort client telemetry (protocol.md §4.12, §9.7).

Callers record events with synchronous methods that never block and never raise for a full
queue: an event that does not fit in the queue (10,000) is dropped and counted. A flusher task
sends what is queued as ``POST /api/v1/telemetry`` batches of at most 100 events, every 10 s,
or at once after an exception is recorded. Each POST has a 5 s timeout and the transport's usual
retries; a batch that still fails is dropped and counted, never retried forever. Stopping
politely (``request_stop``) drains the queue for at most ``drain_timeout`` seconds::

    reporter = TelemetryReporter.for_config(transport, config)
    await supervisor.start_child(telemetry_spec(reporter))
    reporter.bind_session(session_id)          # queues SESSION_START
    reporter.log_exception(exc)                # UNHANDLED_EXCEPTION, or user_error for a 4xx

Nothing secret leaves the process: every string (messages, tracebacks, event data) is scrubbed
of the configured secrets and of anything shaped like an API key or a JWT, ``event_data`` keeps
only JSON scalars, lists and dicts (bytes and other objects become a placeholder, so no request
body can slip in), and error response bodies are not reported at all. ``TINKER_TELEMETRY`` off
(``Config.telemetry`` false) makes every method a no-op and sends nothing.

Why a supervised task and not an Actor with a mailbox: the queue must never block the caller
and must batch across messages on a timer; a deque plus an Event does both in a few lines, and
``request_stop`` gives the supervisor's shutdown ladder its polite first rung.
"""

from __future__ import annotations

import collections
import datetime
import logging
import math
import os
import platform
import re
import traceback
import uuid
from typing import TYPE_CHECKING, Any, Final, final

import msgspec
import trio

from tinker_actors._version import PROTOCOL_VERSION
from tinker_actors.config import secret_forms
from tinker_actors.errors import RequestFailedError
from tinker_actors.supervisors import ChildSpec, Restart
from tinker_actors.transport import RequestOptions, Transport, shareable_headers
from tinker_actors.types import (
    GenericEvent,
    SessionEndEvent,
    SessionStartEvent,
    Severity,
    TelemetryEvent,
    TelemetrySendRequest,
    UnhandledExceptionEvent,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tinker_actors.config import Config

__all__ = [
    "DEFAULT_DRAIN_TIMEOUT",
    "FLUSH_INTERVAL",
    "MAX_BATCH_SIZE",
    "MAX_QUEUE_SIZE",
    "TELEMETRY_PATH",
    "TELEMETRY_TIMEOUT",
    "TelemetryReporter",
    "TelemetryStatistics",
    "process_uuid",
    "scrub_text",
    "telemetry_spec",
]

logger = logging.getLogger("tinker_actors.telemetry")

TELEMETRY_PATH: Final = "/api/v1/telemetry"
MAX_QUEUE_SIZE: Final = 10_000
MAX_BATCH_SIZE: Final = 100
FLUSH_INTERVAL: Final = 10.0
TELEMETRY_TIMEOUT: Final = 5.0
DEFAULT_DRAIN_TIMEOUT: Final = 30.0
REDACTED: Final = "[REDACTED]"
_MAX_STRING: Final = 2_000
_MAX_TRACEBACK: Final = 20_000
_MAX_DEPTH: Final = 4
_MAX_ITEMS: Final = 50
# API keys (tml-...), JWTs (three base64url parts, header starting eyJ), bearer credentials.
_SECRET_SHAPES: Final = re.compile(
    r"tml-[A-Za-z0-9_\-]{6,}"
    r"|eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]+"
)
_SECRET_KEYS: Final = frozenset(
    {"api_key", "apikey", "x-api-key", "authorization", "token", "jwt", "credential", "password"}
)


# One id per OS process, fresh in a forked child (protocol §4.12): a process identity, not state.
_process_uuid = str(uuid.uuid4())


def _new_process_uuid() -> None:
    global _process_uuid
    _process_uuid = str(uuid.uuid4())


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_process_uuid)


def process_uuid() -> str:
    """Return this OS process's telemetry id (a UUID4, regenerated after ``fork``)."""
    return _process_uuid


def scrub_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with ``secrets`` and anything shaped like a key or JWT redacted."""
    for secret in secrets:
        for form in secret_forms(secret):  # verbatim, repr-, bytes-, JSON- and URL-escaped
            text = text.replace(form, REDACTED)
    return _SECRET_SHAPES.sub(REDACTED, text)


class TelemetryStatistics(msgspec.Struct, frozen=True, kw_only=True):
    """Counters of a TelemetryReporter.

    Attributes:
        enabled: whether telemetry is on.
        queued: events waiting to be sent.
        accepted: events recorded into the queue so far.
        dropped_full: events dropped because the queue was full.
        sent_batches: batches the service accepted.
        sent_events: events in those batches.
        failed_batches: batches dropped after a failed POST.
        failed_events: events in those batches, plus any left unsent when the drain ended.
    """

    enabled: bool
    queued: int
    accepted: int
    dropped_full: int
    sent_batches: int
    sent_events: int
    failed_batches: int
    failed_events: int


@final
class TelemetryReporter:
    """Queues telemetry events and sends them in batches; run it with :func:`telemetry_spec`."""

    def __init__(
        self,
        transport: Transport,
        *,
        enabled: bool = True,
        secrets: Iterable[str] = (),
        session_id: str | None = None,
        max_queue: int = MAX_QUEUE_SIZE,
        drain_timeout: float = DEFAULT_DRAIN_TIMEOUT,
    ) -> None:
        self._transport = transport
        self._enabled = bool(enabled)
        self._secrets = tuple(s for s in secrets if s)
        self._session_id = f"sessionless-{uuid.uuid4()}"
        self._sessionless = True
        self._session_started = datetime.datetime.now(datetime.UTC)
        self._session_clock: float | None = None
        self._index = 0
        self._queue: collections.deque[TelemetryEvent] = collections.deque()
        self._max_queue = max_queue
        self._drain_timeout = drain_timeout
        self._wake = trio.Event()
        self._stopping = False
        self._counts: collections.Counter[str] = collections.Counter()
        if session_id is not None:
            self.bind_session(session_id)

    @classmethod
    def for_config(
        cls, transport: Transport, config: Config, *, session_id: str | None = None
    ) -> TelemetryReporter:
        """Build a reporter that follows ``config.telemetry`` and scrubs the config's secrets."""
        secrets = [config.api_key.reveal()]
        if config.cf_access_client_secret:
            secrets.append(config.cf_access_client_secret.reveal())
        shareable = shareable_headers(config.default_headers)
        secrets.extend(v for k, v in config.default_headers.items() if k not in shareable)
        return cls(transport, enabled=config.telemetry, secrets=secrets, session_id=session_id)

    @property
    def drain_timeout(self) -> float:
        """Seconds a polite stop may spend sending what is still queued."""
        return self._drain_timeout

    def __repr__(self) -> str:
        state = "on" if self._enabled else "off"
        return f"<TelemetryReporter {state} queued={len(self._queue)}>"

    # -- recording (synchronous, never blocks) ---------------------------------------------------

    def bind_session(self, session_id: str) -> bool:
        """Attribute later batches to ``session_id`` and queue its SESSION_START."""
        self._session_id = session_id
        self._sessionless = False
        self._session_started = datetime.datetime.now(datetime.UTC)
        self._session_clock = trio.current_time()
        self._index = 0
        return self._push(
            SessionStartEvent(
                event_id=str(uuid.uuid4()),
                event_session_index=self._next_index(),
                severity="INFO",
                timestamp=self._session_started,
            )
        )

    def log(
        self, event_name: str, event_data: dict[str, Any] | None = None, severity: Severity = "INFO"
    ) -> bool:
        """Queue a GENERIC_EVENT (``event_name`` should be low-cardinality); False if dropped."""
        return self._push(self._generic(event_name, event_data or {}, severity))

    def log_exception(self, exception: BaseException, severity: Severity = "ERROR") -> bool:
        """Queue an exception event and flush at once; False if dropped.

        A caller's mistake (a 4xx other than 408, or a request failure of category ``user``,
        anywhere in the cause chain) becomes GENERIC_EVENT ``user_error`` with severity WARNING;
        anything else UNHANDLED_EXCEPTION.
        """
        logged = self._push(self._exception_event(exception, severity))
        self._wake.set()
        return logged

    def log_fatal_exception(self, exception: BaseException, severity: Severity = "ERROR") -> bool:
        """Queue an exception event and, for a session, SESSION_END; flush at once."""
        events: list[TelemetryEvent] = [self._exception_event(exception, severity)]
        if not self._sessionless:
            # The age comes from trio's clock (monotonic, and virtual in tests), not wall time.
            age = 0.0 if self._session_clock is None else trio.current_time() - self._session_clock
            events.append(
                SessionEndEvent(
                    event_id=str(uuid.uuid4()),
                    event_session_index=self._next_index(),
                    severity="INFO",
                    timestamp=datetime.datetime.now(datetime.UTC),
                    duration=str(datetime.timedelta(seconds=age)),
                )
            )
        logged = self._push(*events)
        self._wake.set()
        return logged

    # -- event building --------------------------------------------------------------------------

    def _next_index(self) -> int:
        index = self._index
        self._index += 1
        return index

    def _generic(self, name: str, data: dict[str, Any], severity: Severity) -> GenericEvent:
        clean = self._clean(data, 0)
        return GenericEvent(
            event_id=str(uuid.uuid4()),
            event_session_index=self._next_index(),
            severity=severity,
            timestamp=datetime.datetime.now(datetime.UTC),
            event_name=self._text(str(name)),
            event_data=clean if isinstance(clean, dict) else {},
        )

    def _exception_event(self, exc: BaseException, severity: Severity) -> TelemetryEvent:
        user_error = _user_error(exc)
        if user_error is not None:
            data: dict[str, Any] = {"error_type": type(exc).__name__}
            if message := str(exc):
                data["message"] = message
            status = getattr(user_error, "status_code", None)
            if isinstance(status, int):
                data["status_code"] = status
            # The error body is left out on purpose: it may echo the request.
            return self._generic("user_error", data, "WARNING")
        trace = None
        if exc.__traceback__ is not None:
            trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            trace = self._text(trace, _MAX_TRACEBACK)
        return UnhandledExceptionEvent(
            event_id=str(uuid.uuid4()),
            event_session_index=self._next_index(),
            severity=severity,
            timestamp=datetime.datetime.now(datetime.UTC),
            error_type=type(exc).__name__,
            error_message=self._text(str(exc)),
            traceback=trace,
        )

    def _text(self, text: str, limit: int = _MAX_STRING) -> str:
        # Scrub before truncating, so a secret cut in half cannot survive.
        clean = scrub_text(text, self._secrets)
        return clean if len(clean) <= limit else clean[:limit] + "...[truncated]"

    def _clean(self, value: object, depth: int) -> object:
        """Keep JSON-shaped data only, scrubbed; anything else becomes a short placeholder."""
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, bytes | bytearray | memoryview):
            return f"<{len(value)} bytes>"
        if depth >= _MAX_DEPTH:
            return f"<{type(value).__name__}>"
        if isinstance(value, dict):
            out: dict[str, object] = {}
            for key, item in list(value.items())[:_MAX_ITEMS]:
                name = self._text(str(key), 200)
                secret = name.lower().replace("_", "-") in {
                    k.replace("_", "-") for k in _SECRET_KEYS
                }
                out[name] = REDACTED if secret else self._clean(item, depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [self._clean(item, depth + 1) for item in list(value)[:_MAX_ITEMS]]
        return f"<{type(value).__name__}>"

    def _push(self, *events: TelemetryEvent) -> bool:
        if not self._enabled:
            return False
        if len(self._queue) + len(events) > self._max_queue:
            self._counts["dropped_full"] += len(events)
            if self._counts["dropped_full"] == len(events):
                logger.warning("telemetry queue full (%d events); dropping", self._max_queue)
            return False
        self._queue.extend(events)
        self._counts["accepted"] += len(events)
        return True

    # -- sending ---------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the flusher to drain (bounded by ``drain_timeout``) and exit."""
        self._stopping = True
        self._wake.set()

    def _stop_requested(self) -> bool:
        # A call, not the attribute: mypy must not assume it is unchanged across awaits.
        return self._stopping

    async def flush(self) -> None:
        """Send everything queued now, in batches (failed batches are dropped and counted)."""
        while self._queue:
            count = min(MAX_BATCH_SIZE, len(self._queue))
            batch = [self._queue.popleft() for _ in range(count)]
            await self._send(batch)

    async def _send(self, batch: list[TelemetryEvent]) -> None:
        body = TelemetrySendRequest(
            events=batch,
            platform=platform.system(),
            sdk_version=PROTOCOL_VERSION,
            session_id=self._session_id,
            process_uuid=process_uuid(),
        )
        try:
            await self._transport.request(
                "POST", TELEMETRY_PATH, json=body, options=RequestOptions(timeout=TELEMETRY_TIMEOUT)
            )
        except Exception as exc:  # telemetry never fails the program: drop the batch, count it
            self._counts["failed_batches"] += 1
            self._counts["failed_events"] += len(batch)
            logger.debug(
                "dropped a telemetry batch of %d events: %s", len(batch), type(exc).__name__
            )
            return
        except BaseException:  # cancelled mid-send (e.g. the drain ran out): the batch is lost
            self._counts["failed_events"] += len(batch)
            raise
        self._counts["sent_batches"] += 1
        self._counts["sent_events"] += len(batch)

    async def run(self, *, task_status: trio.TaskStatus[TelemetryReporter]) -> None:
        """Flush every :data:`FLUSH_INTERVAL` s or when woken, until stopped; then drain."""
        task_status.started(self)
        next_flush = trio.current_time() + FLUSH_INTERVAL
        while not self._stop_requested():
            with trio.move_on_at(next_flush):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._stop_requested():
                break
            await self.flush()
            if trio.current_time() >= next_flush:
                next_flush = trio.current_time() + FLUSH_INTERVAL
        with trio.move_on_after(self._drain_timeout):
            await self.flush()
        if self._queue:  # the drain ran out of time: what is left is lost
            self._counts["failed_events"] += len(self._queue)
            self._queue.clear()

    def statistics(self) -> TelemetryStatistics:
        """Return what was queued, sent, dropped and failed."""
        c = self._counts
        return TelemetryStatistics(
            enabled=self._enabled,
            queued=len(self._queue),
            accepted=c["accepted"],
            dropped_full=c["dropped_full"],
            sent_batches=c["sent_batches"],
            sent_events=c["sent_events"],
            failed_batches=c["failed_batches"],
            failed_events=c["failed_events"],
        )


def _user_error(exc: BaseException, seen: set[int] | None = None) -> BaseException | None:
    """Return the exception in ``exc``'s cause/context chain that makes it the caller's fault."""
    seen = set() if seen is None else seen
    if id(exc) in seen:
        return None
    seen.add(id(exc))
    if isinstance(exc, RequestFailedError) and exc.category == "user":
        return exc
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status < 500 and status != 408:
        return exc
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None and (found := _user_error(linked, seen)) is not None:
            return found
    return None


async def _run_reporter(
    reporter: TelemetryReporter, *, task_status: trio.TaskStatus[TelemetryReporter]
) -> None:
    await reporter.run(task_status=task_status)


def telemetry_spec(
    reporter: TelemetryReporter, id: str = "telemetry"
) -> ChildSpec[TelemetryReporter]:
    """Return a TRANSIENT spec running ``reporter``'s flusher; its grace covers the drain."""
    return ChildSpec(
        id,
        _run_reporter,
        reporter,
        restart=Restart.TRANSIENT,
        shutdown=reporter.drain_timeout + 1.0,
    )
