"""Latency histograms, books and reports; the route names requests are recorded under."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

import tinker_actors
from tinker_actors.latency import (
    MAX_BUCKETS,
    LatencyBook,
    LatencyHistogram,
    LatencyReport,
    LatencySummary,
)
from tinker_actors.transport._route import WORDS, route_name

PKG = Path(tinker_actors.__file__).resolve().parent
BILLING = "/api/v1/billing/usage/checkpoints/current"


def test_an_empty_histogram_reports_zeros() -> None:
    summary = LatencyHistogram().summary()
    assert summary == LatencySummary(
        count=0, failed=0, total=0.0, mean=0.0, min=0.0, max=0.0, p50=0.0, p90=0.0, p99=0.0
    )


def test_one_duration_is_every_quantile_exactly() -> None:
    histogram = LatencyHistogram()
    histogram.record(0.123)
    summary = histogram.summary()
    assert summary.p50 == summary.p90 == summary.p99 == summary.min == summary.max == 0.123


def test_zero_negative_and_nan_durations_count_as_zero() -> None:
    histogram = LatencyHistogram()
    for value in (0.0, -1.0, math.nan, 2.0):
        histogram.record(value)
    assert histogram.count == 4
    assert histogram.quantile(0.75) == 0.0
    assert histogram.quantile(1.0) == 2.0
    assert histogram.summary().min == 0.0


def test_quantiles_of_a_known_spread() -> None:
    histogram = LatencyHistogram()
    for ms in range(1, 1001):  # 1 ms .. 1 s
        histogram.record(ms / 1000, failed=ms % 10 == 0)
    summary = histogram.summary()
    assert summary.count == 1000
    assert summary.failed == 100
    assert summary.p50 == pytest.approx(0.5, rel=1 / 64)
    assert summary.p90 == pytest.approx(0.9, rel=1 / 64)
    assert summary.p99 == pytest.approx(0.99, rel=1 / 64)
    assert summary.mean == pytest.approx(0.5005)


def test_extreme_durations_stay_in_bounded_buckets() -> None:
    histogram = LatencyHistogram()
    for value in (1e-300, 1e-12, 1e9, 1e300, math.inf):
        histogram.record(value)
    assert len(histogram._buckets) <= 2
    assert histogram.quantile(0.01) < 2.0**-29  # the lowest bucket: under 2 ns
    assert histogram.quantile(1.0) == math.inf
    assert MAX_BUCKETS == 50 * 32


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5, math.nan])
def test_a_quantile_outside_0_1_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        LatencyHistogram().quantile(q)


def test_a_book_keeps_one_histogram_per_name_until_reset() -> None:
    book = LatencyBook()
    book.record("b", 0.2)
    book.record("a", 0.1, failed=True)
    book.record("a", 0.3)
    summaries = book.summaries()
    assert list(summaries) == ["a", "b"]
    assert (summaries["a"].count, summaries["a"].failed) == (2, 1)
    book.reset()
    assert book.summaries() == {}


def test_render_lists_both_tables_with_full_names() -> None:
    book = LatencyBook()
    book.record("POST /api/v1/create_sampling_session", 0.0015)
    report = LatencyReport(window=12.5, requests=book.summaries(), operations={})
    text = report.render()
    assert text.splitlines()[0] == "latency over 12.5s (ms)"
    assert "POST /api/v1/create_sampling_session" in text
    assert re.search(r"create_sampling_session\s+1\s+0\s+1\.5\d", text)
    assert text.splitlines()[-1] == "operations: none"


# -- route names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "name"),
    [
        ("post", "/api/v1/asample", "POST /api/v1/asample"),
        ("GET", "/api/v1/training_runs/run-1:train:0", "GET /api/v1/training_runs/{id}"),
        (
            "DELETE",
            "/api/v1/training_runs/r/checkpoints/weights/step_0010",
            "DELETE /api/v1/training_runs/{id}/checkpoints/{id}/{id}",
        ),
        ("GET", BILLING, f"GET {BILLING}"),  # words only: "current" is not an id
        ("GET", "/api/v1/sessions?limit=5", "GET /api/v1/sessions"),
        ("GET", "https://bucket.example/signed?sig=1", "GET (absolute URL)"),
        ("POST", "/", "POST /"),
    ],
)  # fmt: skip
def test_route_names_mask_ids(method: str, path: str, name: str) -> None:
    assert route_name(method, path) == name


def test_route_names_form_a_bounded_set() -> None:
    names = {route_name("GET", f"/api/v1/training_runs/run-{i}/checkpoints") for i in range(500)}
    assert names == {"GET /api/v1/training_runs/{id}/checkpoints"}


def test_every_literal_segment_of_the_packages_paths_is_a_word() -> None:
    # the SDK's own paths, as written in the package (f-string fields are ids)
    found: set[str] = set()
    for path in PKG.rglob("*.py"):
        if "local" in path.relative_to(PKG).parts:
            continue  # the server's routes are not requests the SDK sends
        for literal in re.findall(
            r"[\"'](/(?:api/v1/)?[a-z_]+(?:/[^\"' ]*)?)[\"']", path.read_text()
        ):
            for segment in literal.strip("/").split("/"):
                if segment and "{" not in segment and "." not in segment:
                    found.add(segment)
    assert {"asample", "training_runs", "trace_export", "weights_info"} <= found
    assert found <= WORDS, sorted(found - WORDS)
