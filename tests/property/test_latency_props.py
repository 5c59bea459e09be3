"""The latency histogram's quantiles stay within 1.6 % of the exact ones, whatever the data."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from tinker_actors.latency import SUB_BUCKETS, LatencyHistogram

# 1 ns to 12 days: the range the module promises the bound for
durations = st.floats(min_value=2.0**-30, max_value=2.0**20 * 0.999, allow_nan=False)
QUANTILES = (0.01, 0.5, 0.9, 0.99, 1.0)


def exact(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@given(st.lists(durations | st.just(0.0), min_size=1, max_size=300))
def test_quantiles_within_the_bucket_bound(values: list[float]) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    for q in QUANTILES:
        want = exact(values, q)
        got = histogram.quantile(q)
        assert abs(got - want) <= want / (2 * SUB_BUCKETS) * (1 + 1e-9), (q, want, got)


@given(st.lists(st.tuples(durations, st.booleans()), min_size=1, max_size=200))
def test_count_failures_sum_and_extremes_are_exact(items: list[tuple[float, bool]]) -> None:
    histogram = LatencyHistogram()
    for value, failed in items:
        histogram.record(value, failed=failed)
    summary = histogram.summary()
    values = [value for value, _ in items]
    assert summary.count == len(items)
    assert summary.failed == sum(failed for _, failed in items)
    assert summary.min == min(values)
    assert summary.max == max(values)
    assert math.isclose(summary.total, math.fsum(values), rel_tol=1e-9)
    assert summary.min <= summary.p50 <= summary.p90 <= summary.p99 <= summary.max


@given(st.lists(durations, min_size=1, max_size=100), st.integers(min_value=1, max_value=5))
def test_merging_order_does_not_matter(values: list[float], rotate: int) -> None:
    one, two = LatencyHistogram(), LatencyHistogram()
    for value in values:
        one.record(value)
    shifted = values[rotate % len(values) :] + values[: rotate % len(values)]
    for value in shifted:
        two.record(value)
    assert [one.quantile(q) for q in QUANTILES] == [two.quantile(q) for q in QUANTILES]


@given(
    st.lists(durations | st.just(0.0), max_size=100),
    st.lists(st.sampled_from((*QUANTILES, 0.25, 0.75)), min_size=1, max_size=6),
)
def test_one_walk_reads_each_quantile_as_alone(values: list[float], qs: list[float]) -> None:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    assert histogram.quantiles(qs) == [histogram.quantile(q) for q in qs]
