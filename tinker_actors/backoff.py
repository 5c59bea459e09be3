"""Retry and backoff policy: pure functions of their arguments, no I/O, no sleeping.

Every retry loop in tinker_actors asks this module two questions, "may I retry?" and "how long
do I wait?", and does the waiting itself. Keeping the policy pure lets hypothesis prove its
bounds and lets tests drive it with a seeded random source and trio's virtual clock.

Four layers use it (protocol.md §7):

* HTTP layer (every request): :func:`retryable` and :func:`http_retry_delay`; up to
  :data:`HTTP_MAX_RETRIES` retries, ``min(0.5 * 2**k, 10) * U(0.75, 1]`` seconds, or exactly the
  server's ``retry-after-ms`` / ``retry-after`` when that lies in ``(0, 60]`` seconds.
* Future polling: :func:`poll_backoff` (``min(2**n, 30)`` seconds after a 429 or a connection
  error).
* Submission level: :func:`submission_delay` (``min(2**a, 30)`` seconds, never past a
  300-second total) and :class:`BillingPause` for HTTP 402.
* Sampling: :class:`RetryConfig` and :func:`sampling_retry_delay` (base 0.5 s, cap 10 s,
  jitter 25 %, progress timeout 7200 s).

Example::

    rng = random.Random(7)
    for k in range(3):
        print(http_retry_delay(k, rng=rng))      # 0.5*u0, 1.0*u1, 2.0*u2 with u in (0.75, 1]
"""

from __future__ import annotations

import email.utils
import math
from typing import TYPE_CHECKING, Final, Protocol

import httpx
import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "BACKPRESSURE_LARGE_DELAY",
    "BACKPRESSURE_LARGE_PAYLOAD",
    "BACKPRESSURE_SMALL_DELAY",
    "BILLING_INCIDENT_RESET",
    "BILLING_MAX_PAUSE",
    "BILLING_RETRY_DELAY",
    "HTTP_INITIAL_DELAY",
    "HTTP_JITTER",
    "HTTP_MAX_DELAY",
    "HTTP_MAX_RETRIES",
    "POLL_BACKOFF_CAP",
    "RETRYABLE_STATUSES",
    "RETRY_AFTER_MAX",
    "SUBMISSION_BACKOFF_CAP",
    "SUBMISSION_BUDGET",
    "BillingPause",
    "RetryConfig",
    "Rng",
    "backpressure_delay",
    "exponential_delay",
    "http_retry_delay",
    "parse_retry_after",
    "poll_backoff",
    "retryable",
    "retryable_status",
    "sampling_retry_delay",
    "submission_delay",
]

HTTP_MAX_RETRIES: Final = 10
HTTP_INITIAL_DELAY: Final = 0.5
HTTP_MAX_DELAY: Final = 10.0
#: Each HTTP-layer delay is scaled by a factor in ``(1 - HTTP_JITTER, 1]``.
HTTP_JITTER: Final = 0.25
#: A server-sent Retry-After is obeyed exactly when it lies in ``(0, RETRY_AFTER_MAX]``.
RETRY_AFTER_MAX: Final = 60.0
RETRYABLE_STATUSES: Final = frozenset({408, 409, 429})

POLL_BACKOFF_CAP: Final = 30.0
SUBMISSION_BACKOFF_CAP: Final = 30.0
#: Holder-level retries of one submission never sleep past this many seconds in total.
SUBMISSION_BUDGET: Final = 300.0

BILLING_RETRY_DELAY: Final = 5.0
BILLING_MAX_PAUSE: Final = 3600.0
#: A 402 incident is forgotten after this long without another 402.
BILLING_INCIDENT_RESET: Final = 300.0

BACKPRESSURE_LARGE_PAYLOAD: Final = 128 * 1024
BACKPRESSURE_SMALL_DELAY: Final = 1.0
BACKPRESSURE_LARGE_DELAY: Final = 5.0


class Rng(Protocol):
    """The random source a delay function draws from; ``random.Random`` satisfies it."""

    def random(self) -> float:
        """Return a float in ``[0, 1)``."""
        ...


def retryable_status(status: int, headers: Mapping[str, str] | None = None) -> bool:
    """Say whether an HTTP response with ``status`` may be retried.

    ``x-should-retry: true`` / ``false`` from the server overrides the status rule; otherwise
    408, 409, 429 and every 5xx are retryable.
    """
    if headers is not None:
        hint = headers.get("x-should-retry")
        if hint is not None:
            hint = hint.strip().lower()
            if hint == "true":
                return True
            if hint == "false":
                return False
    return status in RETRYABLE_STATUSES or status >= 500


def retryable(
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
    exception: BaseException | None = None,
) -> bool:
    """Say whether a failed attempt may be retried.

    Args:
        status: the response status, when a response arrived.
        headers: the response headers (read for ``x-should-retry``).
        exception: the exception raised instead of a response. Transport failures
            (connection errors, timeouts, protocol errors) are retryable; anything else is not.
    """
    if status is not None:
        return retryable_status(status, headers)
    if exception is not None:
        return isinstance(exception, httpx.TransportError)
    return False


def parse_retry_after(headers: Mapping[str, str], *, now: float) -> float | None:
    """Return the server's requested delay in seconds, or None when absent or out of range.

    ``retry-after-ms`` (float milliseconds) wins over ``retry-after`` (float seconds or an
    HTTP-date, compared with ``now``, a POSIX timestamp). A value outside ``(0, 60]`` seconds
    is ignored, so a hostile or buggy header can neither stall a client nor make it spin.
    """
    value = _retry_after_seconds(headers, now)
    if value is None or not (0.0 < value <= RETRY_AFTER_MAX):
        return None
    return value


def _retry_after_seconds(headers: Mapping[str, str], now: float) -> float | None:
    millis = headers.get("retry-after-ms")
    if millis is not None:
        parsed = _finite_float(millis)
        if parsed is not None:
            return parsed / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _finite_float(raw)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - now


def _finite_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def exponential_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.0,
    rng: Rng | None = None,
) -> float:
    """Return ``min(base * 2**attempt, cap)`` scaled down by up to ``jitter`` (a fraction).

    The result lies in ``[d * (1 - jitter), d]`` for the unjittered delay ``d`` (the lower end
    only through float rounding), so a jittered schedule never exceeds its cap and never waits
    less than ``1 - jitter`` of it.
    """
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")
    # 2**attempt overflows float range past ~1024; the cap has long been reached by then.
    delay = cap if attempt >= 64 else min(base * (2.0**attempt), cap)
    if jitter and rng is not None:
        delay *= 1.0 - jitter * rng.random()
    return max(delay, 0.0)


def http_retry_delay(
    retries_taken: int,
    *,
    rng: Rng,
    retry_after: float | None = None,
) -> float:
    """Return the sleep before HTTP-layer retry number ``retries_taken`` (0 for the first).

    ``retry_after`` is the already-parsed server hint (see :func:`parse_retry_after`); when it
    lies in ``(0, 60]`` it is used exactly, otherwise the jittered exponential schedule applies.
    """
    if retry_after is not None and 0.0 < retry_after <= RETRY_AFTER_MAX:
        return retry_after
    return exponential_delay(
        retries_taken, base=HTTP_INITIAL_DELAY, cap=HTTP_MAX_DELAY, jitter=HTTP_JITTER, rng=rng
    )


def poll_backoff(consecutive: int) -> float:
    """Return the sleep before re-polling a future after ``consecutive`` 429s / connection errors.

    ``consecutive`` counts from 0, giving 1, 2, 4, 8, 16, 30, 30, ... seconds.
    """
    return exponential_delay(consecutive, base=1.0, cap=POLL_BACKOFF_CAP)


def submission_delay(
    attempt: int, *, elapsed: float, budget: float = SUBMISSION_BUDGET
) -> float | None:
    """Return the sleep before submission retry ``attempt``, or None when the budget is spent.

    ``elapsed`` is the time since the first attempt began. The delay is ``min(2**attempt, 30)``
    shortened so that ``elapsed + delay`` never exceeds ``budget``.
    """
    remaining = budget - elapsed
    if remaining <= 0.0:
        return None
    return min(exponential_delay(attempt, base=1.0, cap=SUBMISSION_BACKOFF_CAP), remaining)


def backpressure_delay(payload_bytes: int) -> float:
    """Return how long the shared sampling backoff lasts after a 429 to a payload this big."""
    if payload_bytes <= BACKPRESSURE_LARGE_PAYLOAD:
        return BACKPRESSURE_SMALL_DELAY
    return BACKPRESSURE_LARGE_DELAY


class BillingPause(msgspec.Struct, frozen=True):
    """State of one HTTP 402 incident: when it began and when the last 402 arrived.

    A client that gets 402 keeps retrying every :data:`BILLING_RETRY_DELAY` seconds for up to
    ``max_pause`` seconds from the first 402, then gives up. Silence for
    :data:`BILLING_INCIDENT_RESET` seconds starts a new incident.
    """

    started: float
    last_seen: float

    @staticmethod
    def on_402(
        state: BillingPause | None, now: float, *, max_pause: float = BILLING_MAX_PAUSE
    ) -> tuple[BillingPause, float | None]:
        """Record a 402 at ``now``; return the new state and the sleep, or None to give up."""
        if state is None or now - state.last_seen > BILLING_INCIDENT_RESET:
            state = BillingPause(started=now, last_seen=now)
        else:
            state = BillingPause(started=state.started, last_seen=now)
        remaining = state.started + max_pause - now
        if remaining <= 0.0:
            return state, None
        return state, min(BILLING_RETRY_DELAY, remaining)


class RetryConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How a SamplingClient retries whole samples (submit + wait).

    Attributes:
        max_connections: samples in flight through one handler; None removes the cap.
        progress_timeout: seconds without any completed sample before the in-flight ones
            fail as stuck.
        retry_delay_base: seconds before the first retry.
        retry_delay_max: the cap on any one delay, in seconds.
        jitter_factor: each delay is moved by up to this fraction, up or down.
        enable_retry_logic: False sends each sample once.
        enable_stuck_detection: False disables the progress timeout.
        retryable_statuses: HTTP statuses that trigger a retry (5xx always do).
    """

    max_connections: int | None = 2000
    progress_timeout: float = 7200.0
    retry_delay_base: float = HTTP_INITIAL_DELAY
    retry_delay_max: float = HTTP_MAX_DELAY
    jitter_factor: float = 0.25
    enable_retry_logic: bool = True
    enable_stuck_detection: bool = True
    retryable_statuses: frozenset[int] = RETRYABLE_STATUSES

    def __post_init__(self) -> None:
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1 or None, got {self.max_connections}")
        if not self.progress_timeout > 0:
            raise ValueError(f"progress_timeout must be > 0, got {self.progress_timeout}")
        if not 0 <= self.retry_delay_base <= self.retry_delay_max:
            raise ValueError(
                "need 0 <= retry_delay_base <= retry_delay_max, got "
                f"{self.retry_delay_base} and {self.retry_delay_max}"
            )
        if not 0.0 <= self.jitter_factor < 1.0:
            raise ValueError(f"jitter_factor must be in [0, 1), got {self.jitter_factor}")

    def is_retryable_status(self, status: int) -> bool:
        """Say whether a sample that failed with ``status`` is retried."""
        return status in self.retryable_statuses or status >= 500


def sampling_retry_delay(attempt: int, config: RetryConfig, *, rng: Rng) -> float:
    """Return the sleep before sampling retry ``attempt``: base * 2**a, jittered +-, capped."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    delay = (
        config.retry_delay_max
        if attempt >= 64
        else min(config.retry_delay_base * (2.0**attempt), config.retry_delay_max)
    )
    delay *= 1.0 + config.jitter_factor * (2.0 * rng.random() - 1.0)
    return min(max(delay, 0.0), config.retry_delay_max)
