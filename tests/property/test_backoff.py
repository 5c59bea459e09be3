"""Hypothesis properties of the pure retry/backoff policy (protocol.md §7)."""

from __future__ import annotations

import email.utils
import random

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tinker_actors import backoff
from tinker_actors.backoff import (
    HTTP_MAX_DELAY,
    RETRY_AFTER_MAX,
    SUBMISSION_BUDGET,
    BillingPause,
    RetryConfig,
)

attempts = st.integers(min_value=0, max_value=10_000)
seeds = st.integers(min_value=0, max_value=2**64 - 1)
NOW = 1_790_000_000.0  # a fixed POSIX time; parse_retry_after takes "now" as an argument


class EdgeRng:
    """A random source pinned to one value, to probe the ends of the jitter band."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


edge_values = st.sampled_from([0.0, 0.5, 1.0 - 2**-53])


@given(attempts, seeds)
def test_http_delay_never_negative_never_above_cap(k: int, seed: int) -> None:
    delay = backoff.http_retry_delay(k, rng=random.Random(seed))
    assert 0.0 < delay <= HTTP_MAX_DELAY


@given(attempts, st.one_of(seeds.map(random.Random), edge_values.map(EdgeRng)))
def test_http_jitter_inside_band(k: int, rng: backoff.Rng) -> None:
    nominal = min(0.5 * 2.0 ** min(k, 64), HTTP_MAX_DELAY)
    delay = backoff.http_retry_delay(k, rng=rng)
    # mathematically (0.75, 1]; at rng values just below 1 float rounding can land on 0.75
    assert nominal * 0.75 <= delay <= nominal


@given(attempts, st.floats(min_value=1e-6, max_value=RETRY_AFTER_MAX), seeds)
def test_retry_after_inside_window_is_used_exactly(k: int, hint: float, seed: int) -> None:
    assert backoff.http_retry_delay(k, rng=random.Random(seed), retry_after=hint) == hint


@given(
    attempts,
    st.one_of(
        st.floats(max_value=0.0, allow_nan=False),
        st.floats(min_value=RETRY_AFTER_MAX, exclude_min=True, allow_nan=False),
    ),
    seeds,
)
def test_retry_after_outside_window_is_ignored(k: int, hint: float, seed: int) -> None:
    with_hint = backoff.http_retry_delay(k, rng=random.Random(seed), retry_after=hint)
    without = backoff.http_retry_delay(k, rng=random.Random(seed))
    assert with_hint == without


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_parse_retry_after_ms(ms: float) -> None:
    parsed = backoff.parse_retry_after({"retry-after-ms": repr(ms)}, now=NOW)
    seconds = ms / 1000.0
    if 0.0 < seconds <= RETRY_AFTER_MAX:
        assert parsed == seconds
    else:
        assert parsed is None


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_parse_retry_after_seconds(seconds: float) -> None:
    parsed = backoff.parse_retry_after({"retry-after": repr(seconds)}, now=NOW)
    if 0.0 < seconds <= RETRY_AFTER_MAX:
        assert parsed == seconds
    else:
        assert parsed is None


@given(st.integers(min_value=-3600, max_value=3600))
def test_parse_retry_after_http_date(offset: int) -> None:
    header = email.utils.formatdate(NOW + offset, usegmt=True)
    parsed = backoff.parse_retry_after({"retry-after": header}, now=NOW)
    if 0 < offset <= RETRY_AFTER_MAX:
        assert parsed == pytest.approx(offset)
    else:
        assert parsed is None


@given(st.text(max_size=40))
def test_parse_retry_after_garbage_is_ignored(text: str) -> None:
    assume(text.strip() != "")
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    parsed = backoff.parse_retry_after({"retry-after": text}, now=NOW)
    if seconds is None:
        # not a number: either a valid in-window date or ignored, never an exception
        assert parsed is None or 0.0 < parsed <= RETRY_AFTER_MAX
    else:
        assert parsed is None or parsed == seconds


def test_retry_after_ms_wins_over_retry_after() -> None:
    headers = {"retry-after-ms": "1500", "retry-after": "7"}
    assert backoff.parse_retry_after(headers, now=NOW) == 1.5
    # an unparsable ms value falls back to the seconds header
    assert backoff.parse_retry_after({"retry-after-ms": "soon", "retry-after": "7"}, now=NOW) == 7


@given(seeds, st.integers(min_value=1, max_value=30))
def test_same_seed_same_schedule(seed: int, n: int) -> None:
    first, second = random.Random(seed), random.Random(seed)
    a = [backoff.http_retry_delay(k, rng=first) for k in range(n)]
    b = [backoff.http_retry_delay(k, rng=second) for k in range(n)]
    assert a == b
    config = RetryConfig()
    first, second = random.Random(seed), random.Random(seed)
    c = [backoff.sampling_retry_delay(k, config, rng=first) for k in range(n)]
    d = [backoff.sampling_retry_delay(k, config, rng=second) for k in range(n)]
    assert c == d


@given(st.lists(st.floats(min_value=0.0, max_value=400.0), max_size=60))
def test_submission_total_sleep_within_budget(work: list[float]) -> None:
    """Whatever each attempt costs, the retry loop never sleeps past the 300 s budget."""
    elapsed, slept = 0.0, 0.0
    for attempt, cost in enumerate(work):
        elapsed += cost  # the failed attempt itself
        delay = backoff.submission_delay(attempt, elapsed=elapsed)
        if delay is None:
            assert elapsed >= SUBMISSION_BUDGET
            break
        assert 0.0 < delay <= backoff.SUBMISSION_BACKOFF_CAP
        elapsed += delay
        slept += delay
        assert elapsed <= SUBMISSION_BUDGET
    assert slept <= SUBMISSION_BUDGET


def test_submission_schedule_values() -> None:
    delays = []
    elapsed = 0.0
    for attempt in range(20):
        delay = backoff.submission_delay(attempt, elapsed=elapsed)
        if delay is None:
            break
        delays.append(delay)
        elapsed += delay
    assert delays[:7] == [1, 2, 4, 8, 16, 30, 30]
    assert sum(delays) == SUBMISSION_BUDGET


@given(attempts)
def test_poll_backoff_bounded_and_monotone(n: int) -> None:
    assert 1.0 <= backoff.poll_backoff(n) <= backoff.POLL_BACKOFF_CAP
    assert backoff.poll_backoff(n) <= backoff.poll_backoff(n + 1)


def test_poll_backoff_values() -> None:
    assert [backoff.poll_backoff(n) for n in range(8)] == [1, 2, 4, 8, 16, 30, 30, 30]


@given(attempts, st.one_of(seeds.map(random.Random), edge_values.map(EdgeRng)))
def test_sampling_delay_band(a: int, rng: backoff.Rng) -> None:
    config = RetryConfig()
    nominal = min(config.retry_delay_base * 2.0 ** min(a, 64), config.retry_delay_max)
    delay = backoff.sampling_retry_delay(a, config, rng=rng)
    assert 0.0 <= delay <= config.retry_delay_max
    assert nominal * (1 - config.jitter_factor) <= delay <= nominal * (1 + config.jitter_factor)


@given(st.lists(st.floats(min_value=0.0, max_value=400.0), min_size=1, max_size=2000))
def test_billing_pause_never_exceeds_window(gaps: list[float]) -> None:
    """Inside one incident, pausing stops once max_pause has passed since its first 402."""
    state: BillingPause | None = None
    now = 0.0
    for gap in gaps:
        now += gap
        state, delay = BillingPause.on_402(state, now)
        assert now - state.started <= backoff.BILLING_MAX_PAUSE or delay is None
        if delay is None:
            assert now - state.started >= backoff.BILLING_MAX_PAUSE
            break
        assert 0.0 < delay <= backoff.BILLING_RETRY_DELAY
        assert now + delay <= state.started + backoff.BILLING_MAX_PAUSE
        now += delay


def test_billing_incident_resets_after_silence() -> None:
    state, _ = BillingPause.on_402(None, 0.0)
    state, _ = BillingPause.on_402(state, 100.0)
    assert state.started == 0.0
    state, delay = BillingPause.on_402(state, 100.0 + backoff.BILLING_INCIDENT_RESET + 1)
    assert state.started == 100.0 + backoff.BILLING_INCIDENT_RESET + 1
    assert delay == backoff.BILLING_RETRY_DELAY


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (408, None, True),
        (409, None, True),
        (429, None, True),
        (500, None, True),
        (503, None, True),
        (400, None, False),
        (401, None, False),
        (404, None, False),
        (422, None, False),
        (503, {"x-should-retry": "false"}, False),
        (400, {"x-should-retry": "true"}, True),
        (429, {"x-should-retry": "maybe"}, True),
    ],
)
def test_retryable_status(status: int, headers: dict[str, str] | None, expected: bool) -> None:
    assert backoff.retryable(status=status, headers=headers) is expected


def test_retryable_exceptions() -> None:
    import httpx

    request = httpx.Request("GET", "http://127.0.0.1/")
    assert backoff.retryable(exception=httpx.ConnectError("refused", request=request))
    assert backoff.retryable(exception=httpx.ReadTimeout("slow", request=request))
    assert backoff.retryable(exception=httpx.RemoteProtocolError("closed", request=request))
    assert not backoff.retryable(exception=ValueError("bug"))
    assert not backoff.retryable()


def test_backpressure_delay_by_size() -> None:
    assert backoff.backpressure_delay(128 * 1024) == 1.0
    assert backoff.backpressure_delay(128 * 1024 + 1) == 5.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_connections": 0},
        {"progress_timeout": 0},
        {"retry_delay_base": 11.0},
        {"jitter_factor": 1.0},
    ],
)
def test_retry_config_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"must|need"):
        RetryConfig(**kwargs)  # type: ignore[arg-type]


def test_exponential_delay_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="attempt"):
        backoff.exponential_delay(-1, base=1, cap=2)
    with pytest.raises(ValueError, match="jitter"):
        backoff.exponential_delay(0, base=1, cap=2, jitter=1.5)
