"""Latency percentiles in bounded memory: how long requests and operations took.

A week-long trainer wants to know, without keeping every sample, whether the service is slow
today: how long ``forward_backward`` takes from call to result, how long a ``retrieve_future``
long poll is held, how often a route fails. :class:`LatencyBook` keeps one
:class:`LatencyHistogram` per name; :meth:`~tinker_actors.Runtime.latency` reports the
runtime's two books (HTTP requests by route, operations by request type) as a
:class:`LatencyReport`.

The histogram is log-linear: each power of two is cut into :data:`SUB_BUCKETS` equal buckets,
so a bucket's width is at most ``1 / SUB_BUCKETS`` of its lower edge. A quantile is read as
the midpoint of the bucket holding the sample of that rank (the nearest-rank definition),
clamped to the observed minimum and maximum; the largest rank is the maximum itself.
Invariant: for durations between 1 ns and 12 days the reported value is within
``1 / (2 * SUB_BUCKETS)`` (1.6 %) of the exact nearest-rank sample, whatever the distribution
(``tests/property/test_latency_props.py``). Buckets are kept sparsely, so a histogram costs a
few hundred bytes per octave of latencies it has actually seen, never more than
:data:`MAX_BUCKETS` entries. Zero durations (trio's autojump clock in tests) have a bucket of
their own. Recording is pure arithmetic: no clock, no I/O, no locks (one trio thread records).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final, final

import msgspec

__all__ = [
    "MAX_BUCKETS",
    "SUB_BUCKETS",
    "LatencyBook",
    "LatencyHistogram",
    "LatencyReport",
    "LatencySummary",
]

#: Buckets per power of two.
SUB_BUCKETS: Final = 32
#: Durations are clamped to [2**-30 s, 2**20 s] (about 1 ns to 12 days) before bucketing.
_MIN_EXP: Final = -29
_MAX_EXP: Final = 21
#: The most buckets one histogram can hold: every octave of that range.
MAX_BUCKETS: Final = (_MAX_EXP - _MIN_EXP) * SUB_BUCKETS
#: The columns of :meth:`LatencyReport.render` after the name, with their widths.
_COLUMNS: Final = (("count", 7), ("failed", 6), ("p50", 9), ("p90", 9), ("p99", 9), ("max", 9))
#: The quantiles a summary reports.
_QUANTILES: Final = (0.5, 0.9, 0.99)


class LatencySummary(msgspec.Struct, frozen=True, kw_only=True):
    """One name's durations, in seconds.

    Attributes:
        count: durations recorded.
        failed: of those, the ones that ended in an error.
        total: their sum.
        mean: ``total / count``.
        min: the shortest.
        max: the longest.
        p50: the median (within 1.6 %; see the module docstring).
        p90: the 90th percentile.
        p99: the 99th percentile.
    """

    count: int
    failed: int
    total: float
    mean: float
    min: float
    max: float
    p50: float
    p90: float
    p99: float


@final
class LatencyHistogram:
    """Durations in log-linear buckets; quantiles within 1.6 % of the exact ones."""

    __slots__ = ("_buckets", "count", "failed", "max", "min", "total", "zeros")

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self.count = 0
        self.failed = 0
        self.zeros = 0
        self.total = 0.0
        self.min = math.inf
        self.max = 0.0

    def record(self, seconds: float, *, failed: bool = False) -> None:
        """Add one duration (negative and NaN durations count as zero)."""
        if not seconds > 0:  # also NaN
            seconds = 0.0
        self.count += 1
        if failed:
            self.failed += 1
        self.total += seconds
        if seconds < self.min:
            self.min = seconds
        if seconds > self.max:
            self.max = seconds
        if seconds == 0.0:
            self.zeros += 1
            return
        index = _index(seconds)
        buckets = self._buckets
        buckets[index] = buckets.get(index, 0) + 1

    def quantile(self, q: float) -> float:
        """The nearest-rank ``q``-quantile (``0 < q <= 1``); 0.0 when nothing was recorded."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: Sequence[float]) -> list[float]:
        """Each of ``qs`` as :meth:`quantile` reads it, from one walk over the buckets."""
        for q in qs:
            if not 0 < q <= 1:
                raise ValueError(f"a quantile is in (0, 1], got {q!r}")
        count = self.count
        ranks = [max(1, math.ceil(q * count)) for q in qs]
        out = [0.0] * len(qs)
        buckets = iter(sorted(self._buckets.items()))
        seen, index = self.zeros, 0
        for i in sorted(range(len(qs)), key=ranks.__getitem__):
            rank = ranks[i]
            if count == 0 or rank <= self.zeros:
                continue  # 0.0
            if rank == count:
                out[i] = self.max  # the largest is known exactly
                continue
            while seen < rank:  # the buckets and zeros add up to count > rank
                index, n = next(buckets)
                seen += n
            middle = (_lower(index) + _lower(index + 1)) / 2
            out[i] = min(max(middle, self.min), self.max)
        return out

    def summary(self) -> LatencySummary:
        """Return the count, failures, sum, mean, extremes and p50 / p90 / p99."""
        p50, p90, p99 = self.quantiles(_QUANTILES)
        count = self.count
        return LatencySummary(
            count=count,
            failed=self.failed,
            total=self.total,
            mean=self.total / count if count else 0.0,
            min=self.min if count else 0.0,
            max=self.max,
            p50=p50,
            p90=p90,
            p99=p99,
        )


def _index(seconds: float) -> int:
    mantissa, exponent = math.frexp(seconds)  # seconds = mantissa * 2**exponent, 0.5 <= m < 1
    if exponent >= _MAX_EXP or mantissa == math.inf:
        return _MAX_EXP * SUB_BUCKETS - 1
    if exponent < _MIN_EXP:
        return _MIN_EXP * SUB_BUCKETS
    return exponent * SUB_BUCKETS + int((mantissa - 0.5) * 2 * SUB_BUCKETS)


def _lower(index: int) -> float:
    exponent, sub = divmod(index, SUB_BUCKETS)
    return math.ldexp(0.5 + sub / (2 * SUB_BUCKETS), exponent)


@final
class LatencyBook:
    """A :class:`LatencyHistogram` per name, made on first use.

    Names must come from a bounded set (routes with their ids masked, request types): the book
    keeps every name it has seen until :meth:`reset`.
    """

    __slots__ = ("_histograms",)

    def __init__(self) -> None:
        self._histograms: dict[str, LatencyHistogram] = {}

    def record(self, name: str, seconds: float, *, failed: bool = False) -> None:
        """Add one duration under ``name``."""
        histogram = self._histograms.get(name)
        if histogram is None:
            histogram = self._histograms[name] = LatencyHistogram()
        histogram.record(seconds, failed=failed)

    def summaries(self) -> dict[str, LatencySummary]:
        """Each name's summary, in name order."""
        return {name: self._histograms[name].summary() for name in sorted(self._histograms)}

    def reset(self) -> None:
        """Forget everything recorded."""
        self._histograms = {}


class LatencyReport(msgspec.Struct, frozen=True, kw_only=True):
    """How long a runtime's requests and operations took, over a window.

    Attributes:
        window: seconds the report covers (since ``open()`` or the last reset).
        requests: HTTP requests by route (``POST /api/v1/asample``; ids in REST paths read
            ``{id}``), each from its first attempt to its final outcome, retries and their
            waits included; ``failed`` counts the ones that raised.
        operations: long operations by request type (``ForwardBackward``, ``Sample``...), from
            the call to the result: submission, queueing on the server and polling included;
            ``failed`` counts the ones that ended in an error or were cancelled.
    """

    window: float
    requests: Mapping[str, LatencySummary]
    operations: Mapping[str, LatencySummary]

    def render(self) -> str:
        """Return the report as a fixed-width table for people (milliseconds)."""
        width = max((len(name) for name in (*self.requests, *self.operations)), default=0)
        header = "  " + " " * width + "".join(f" {title:>{w}s}" for title, w in _COLUMNS)
        lines = [f"latency over {self.window:.1f}s (ms)"]
        for title, rows in (("requests", self.requests), ("operations", self.operations)):
            if not rows:
                lines.append(f"{title}: none")
                continue
            lines += (f"{title}:", header)
            lines.extend(
                f"  {name:{width}s} {s.count:7d} {s.failed:6d} {s.p50 * 1e3:9.2f} "
                f"{s.p90 * 1e3:9.2f} {s.p99 * 1e3:9.2f} {s.max * 1e3:9.2f}"
                for name, s in rows.items()
            )
        return "\n".join(lines)
