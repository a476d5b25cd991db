"""Summaries of the path frames: latency percentiles per hop and per stage, path frequencies,
and the slowest packets.

Every function takes a frame from :mod:`perfnet.paths` (``hops``, ``stages`` or ``packets``)
and returns a new DataFrame; nothing here reads events or knows about text formats.
Latencies stay in integer nanoseconds as the frames give them; means and percentiles are
float nanoseconds (percentiles interpolate linearly between samples, as numpy does).
:func:`compare` also takes whole captures (a :class:`perfnet.Trace`, or anything with its
frames: :class:`Capture`), to compare two captures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfnet.errors import UsageError

__all__ = [
    "COMPARE_COLUMNS",
    "MIN_EFFECT_NS",
    "QUANTILES",
    "compare",
    "hop_latency",
    "path_table",
    "slowest",
    "stage_latency",
]


class Capture(Protocol):
    """The frames of a capture that summaries and plots read; :class:`perfnet.Trace` has them."""

    @property
    def source(self) -> str: ...
    @property
    def events(self) -> pd.DataFrame: ...
    @property
    def labels(self) -> pd.DataFrame: ...
    @property
    def packets(self) -> pd.DataFrame: ...
    @property
    def hops(self) -> pd.DataFrame: ...
    @property
    def stages(self) -> pd.DataFrame: ...
    @property
    def drops(self) -> pd.DataFrame: ...


QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
"""The percentiles every latency summary reports, as ``p50_ns``, ``p90_ns``, ``p99_ns``."""


def _quantile_column(q: float) -> str:
    """The column name of a percentile: 0.5 -> ``p50_ns``, 0.999 -> ``p99.9_ns``."""
    return f"p{q * 100:g}_ns"


def _latency_summary(frame: pd.DataFrame, by: Sequence[str], column: str) -> pd.DataFrame:
    """Count, mean, percentiles and maximum of ``column`` per group of ``by``.

    Groups are the combinations that occur (categorical keys list no empty groups), most
    frequent first, ties in key order.
    """
    grouped = frame.groupby(list(by), observed=True, sort=True)[column]
    summary = pd.DataFrame({"count": grouped.size(), "mean_ns": grouped.mean().astype("float64")})
    for q in QUANTILES:
        summary[_quantile_column(q)] = grouped.quantile(q).astype("float64")
    summary["max_ns"] = grouped.max()
    return summary.reset_index().sort_values("count", ascending=False, kind="stable", ignore_index=True)


class Named(NamedTuple):
    """A capture's frames with devices named by namespace (see :func:`with_namespaces`)."""

    packets: pd.DataFrame
    hops: pd.DataFrame
    stages: pd.DataFrame
    drops: pd.DataFrame


def with_namespaces(capture: Capture) -> Named:
    """The capture's ``packets``, ``hops``, ``stages`` and ``drops`` with device names
    qualified by namespace (``path`` from ``netns_path``, ``from_dev``/``to_dev`` from
    ``from_netns_dev``/``to_netns_dev``, ``dev`` from ``netns_dev``), so that summaries keep
    ``eth0`` of two containers apart.  Frames without those columns are left as they are."""
    renames = {
        "packets": {"path": "netns_path"},
        "hops": {"from_dev": "from_netns_dev", "to_dev": "to_netns_dev"},
        "stages": {"dev": "netns_dev"},
        "drops": {"dev": "netns_dev"},
    }
    named = {}
    for name, columns in renames.items():
        frame = getattr(capture, name)
        if all(source in frame for source in columns.values()):
            frame = frame.assign(**{column: frame[source] for column, source in columns.items()})
        named[name] = frame
    return Named(**named)


def hop_latency(hops: pd.DataFrame, by: Sequence[str] = ("from_dev", "to_dev")) -> pd.DataFrame:
    """Latency from one device to the next, summarized per hop.

    Args:
        hops: the frame :func:`perfnet.paths.hops` returns.
        by: the columns that define a hop; add ``from_event``/``to_event`` to tell apart
            hops that were entered through different tracepoints.

    Returns:
        One row per hop: the ``by`` columns, ``count``, ``mean_ns``, ``p50_ns``,
        ``p90_ns``, ``p99_ns`` and ``max_ns`` of ``latency_ns``; most frequent first.
    """
    return _latency_summary(hops, by, "latency_ns")


def stage_latency(stages: pd.DataFrame, by: Sequence[str] = ("dev", "from_event", "to_event")) -> pd.DataFrame:
    """Time spent between consecutive events within a device, summarized per stage.

    Args:
        stages: the frame :func:`perfnet.paths.stages` returns.
        by: the columns that define a stage.

    Returns:
        One row per stage: the ``by`` columns, ``count``, ``mean_ns``, ``p50_ns``,
        ``p90_ns``, ``p99_ns`` and ``max_ns`` of ``latency_ns``; most frequent first.
    """
    return _latency_summary(stages, by, "latency_ns")


def path_table(packets: pd.DataFrame) -> pd.DataFrame:
    """How often each path occurs, and how long its packets took.

    Args:
        packets: the frame :func:`perfnet.paths.packets` returns.

    Returns:
        One row per distinct ``path``: ``count``, ``share`` (its fraction of all packets),
        ``median_transit_ns`` (time in the stack) and ``median_duration_ns`` (to the free);
        most frequent first, ties in path order.
    """
    grouped = packets.groupby("path", observed=True, sort=True)
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "share": grouped.size() / max(len(packets), 1),
            "median_transit_ns": grouped["transit_ns"].median().astype("float64"),
            "median_duration_ns": grouped["duration_ns"].median().astype("float64"),
        }
    )
    return table.reset_index().sort_values("count", ascending=False, kind="stable", ignore_index=True)


def slowest(packets: pd.DataFrame, n: int = 10, by: str = "transit_ns") -> pd.DataFrame:
    """The ``n`` packets with the largest ``by`` (by default their time in the network stack).

    Args:
        packets: the frame :func:`perfnet.paths.packets` returns.
        n: how many packets to return.
        by: the column to rank by, e.g. ``n_events`` or ``len``.

    Returns:
        Those rows of ``packets``, largest first; ties in ``packet_id`` order.
    """
    return packets.sort_values(by, ascending=False, kind="stable", ignore_index=True).head(n)


MIN_EFFECT_NS: Final = 50_000
"""Default smallest median change :func:`compare` calls significant: 50 µs.

Two recordings of the very same events do not agree to the microsecond.  perf trace prints
whole microseconds (a latency is off by up to 1 µs), and, more, each tracer timestamps an
event in its own handler, one after the other, so concurrent tracers see one event at instants
apart by the cost of the handlers before theirs: consistently, so the bootstrap interval
excludes zero.  In the lab fixtures (six perf sessions and two ftrace instances recording one
workload on a 2-CPU VM, where perf trace takes some 50 µs per event) a stage's median differs
by up to 43 µs between the perf record, perf trace and ftrace recordings of the same packets;
hop medians by up to 39 µs, within their intervals.  50 µs is the round figure above that.  On
a fast host traced by one tracer at a time, pass a smaller ``min_effect_ns`` (0: the interval
alone decides).
"""

COMPARE_COLUMNS: Final = (
    "count_a",
    "count_b",
    "median_a_ns",
    "median_b_ns",
    "p99_a_ns",
    "p99_b_ns",
    "median_diff_ns",
    "ci_low_ns",
    "ci_high_ns",
    "significant",
)
"""The columns :func:`compare` returns after the ``by`` columns."""

_COMPARE_BY: Final = {"hops": ("from_dev", "to_dev"), "stages": ("dev", "from_event", "to_event")}

# Bootstrap resamples are drawn as (replicates x sample size) index matrices; at most this
# many cells at a time, so large captures need no more than some 64 MB per matrix.
_BOOT_CELLS: Final = 1 << 23

FloatArray = npt.NDArray[np.float64]


def _latency_frame(capture: Capture | pd.DataFrame, frame: str) -> pd.DataFrame:
    """``capture`` itself if it is a frame, else its ``hops`` or ``stages`` frame."""
    return capture if isinstance(capture, pd.DataFrame) else getattr(capture, frame)


def _samples(latencies: pd.DataFrame, by: Sequence[str]) -> dict[tuple[object, ...], FloatArray]:
    """The ``latency_ns`` values of each group of ``by``, as float arrays."""
    missing = [column for column in (*by, "latency_ns") if column not in latencies.columns]
    if missing:
        raise UsageError(f"frame has no column {missing}: pass frame='hops' or 'stages', or by= its key columns")
    grouped = latencies.groupby(list(by), observed=True, sort=False)["latency_ns"]
    return {key if isinstance(key, tuple) else (key,): values.to_numpy(dtype=np.float64) for key, values in grouped}


def _boot_medians(sample: FloatArray, n_boot: int, rng: np.random.Generator) -> FloatArray:
    """Medians of ``n_boot`` resamples of ``sample`` drawn with replacement, all at once per chunk."""
    medians = np.empty(n_boot, dtype=np.float64)
    step = max(1, _BOOT_CELLS // sample.size)
    for start in range(0, n_boot, step):
        stop = min(n_boot, start + step)
        picks = rng.integers(0, sample.size, size=(stop - start, sample.size))
        medians[start:stop] = np.median(sample[picks], axis=1)
    return medians


def _stats(sample: FloatArray | None) -> tuple[int, float, float]:
    """Count, median and 99th percentile of a group's latencies (NaN statistics if absent)."""
    if sample is None:
        return 0, np.nan, np.nan
    return sample.size, float(np.median(sample)), float(np.quantile(sample, 0.99))


def compare(
    a: Capture | pd.DataFrame,
    b: Capture | pd.DataFrame,
    *,
    frame: Literal["hops", "stages"] = "hops",
    by: Sequence[str] | None = None,
    min_effect_ns: float = MIN_EFFECT_NS,
    min_count: int = 5,
    confidence: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """How much each hop's (or stage's) latency changed from capture ``a`` to capture ``b``.

    The change is the difference of the medians, ``b - a``, with a percentile bootstrap
    confidence interval: both samples of a group are resampled with replacement ``n_boot``
    times (as index matrices, no Python loop per resample) and the interval is the central
    ``confidence`` share of the resampled differences.  A change is ``significant`` when that
    interval excludes zero *and* the change is at least ``min_effect_ns``, so that the
    rounding of output formats and the tens of µs by which tracers disagree about one event
    (see :data:`MIN_EFFECT_NS`) are not reported as changes.

    Args:
        a: the reference capture: a :class:`perfnet.Trace`, or its ``hops``/``stages`` frame.
        b: the capture to compare with ``a``, likewise.
        frame: which latencies of a Trace to compare: ``"hops"`` (device to device) or
            ``"stages"`` (event to event within a device); also picks the default ``by``.
        by: the columns that define a group; default ``("from_dev", "to_dev")`` for hops and
            ``("dev", "from_event", "to_event")`` for stages.
        min_effect_ns: the smallest ``|median_diff_ns|`` that can be significant; default
            :data:`MIN_EFFECT_NS` (50 µs, see there why).
        min_count: the fewest latencies a group needs in each capture to be significant;
            a bootstrap of a handful of values has no meaningful interval.
        confidence: the confidence level of the interval, between 0 and 1.
        n_boot: the number of bootstrap resamples.
        seed: seeds the resampling, so the same inputs give the same intervals.

    Returns:
        One row per group found in either capture: the ``by`` columns, then
        :data:`COMPARE_COLUMNS`: ``count_a``/``count_b``, ``median_a_ns``/``median_b_ns``,
        ``p99_a_ns``/``p99_b_ns``, ``median_diff_ns`` (b - a), ``ci_low_ns``/``ci_high_ns``
        and ``significant`` (bool).  Statistics of a capture without the group, and the
        difference and interval then, are NaN.  Most latencies (both captures) first, ties
        in key order.

    Raises:
        UsageError: ``frame`` is unknown, a frame lacks a ``by`` column or ``latency_ns``,
            or ``confidence``, ``n_boot`` or ``min_count`` is out of range.
    """
    if frame not in _COMPARE_BY:
        raise UsageError(f"frame must be one of {sorted(_COMPARE_BY)}, not {frame!r}")
    if not 0 < confidence < 1 or n_boot < 1 or min_count < 1:
        raise UsageError(f"need 0 < confidence < 1, n_boot >= 1, min_count >= 1: {confidence}, {n_boot}, {min_count}")
    keys = tuple(by) if by is not None else _COMPARE_BY[frame]
    samples_a = _samples(_latency_frame(a, frame), keys)
    samples_b = _samples(_latency_frame(b, frame), keys)
    groups = sorted(samples_a.keys() | samples_b.keys(), key=lambda key: tuple(map(str, key)))
    rng = np.random.default_rng(seed)
    tail = (1 - confidence) / 2
    rows = []
    for key in groups:
        sample_a, sample_b = samples_a.get(key), samples_b.get(key)
        count_a, median_a, p99_a = _stats(sample_a)
        count_b, median_b, p99_b = _stats(sample_b)
        low = high = np.nan
        if sample_a is not None and sample_b is not None:
            diffs = _boot_medians(sample_b, n_boot, rng) - _boot_medians(sample_a, n_boot, rng)
            low, high = (float(q) for q in np.quantile(diffs, [tail, 1 - tail]))
        diff = median_b - median_a
        significant = min(count_a, count_b) >= min_count and (low > 0 or high < 0) and bool(abs(diff) >= min_effect_ns)
        rows.append((*key, count_a, count_b, median_a, median_b, p99_a, p99_b, diff, low, high, significant))
    table = pd.DataFrame(rows, columns=[*keys, *COMPARE_COLUMNS])
    table = table.astype({"count_a": "int64", "count_b": "int64", "significant": "bool"})
    order = np.argsort(-(table["count_a"] + table["count_b"]).to_numpy(), kind="stable")
    return table.iloc[order].reset_index(drop=True)
