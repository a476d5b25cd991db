"""Summaries of the path frames: latency percentiles per hop and per stage, path frequencies,
and the slowest packets.

Every function takes a frame from :mod:`perfnet.paths` (``hops``, ``stages`` or ``packets``)
and returns a new DataFrame; nothing here reads events or knows about text formats.
Latencies stay in integer nanoseconds as the frames give them; means and percentiles are
float nanoseconds (percentiles interpolate linearly between samples, as numpy does).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["QUANTILES", "hop_latency", "path_table", "slowest", "stage_latency"]

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
        One row per distinct ``path``: ``count``, ``share`` (its fraction of all packets)
        and ``median_duration_ns``; most frequent first, ties in path order.
    """
    grouped = packets.groupby("path", observed=True, sort=True)["duration_ns"]
    table = pd.DataFrame(
        {
            "count": grouped.size(),
            "share": grouped.size() / max(len(packets), 1),
            "median_duration_ns": grouped.median().astype("float64"),
        }
    )
    return table.reset_index().sort_values("count", ascending=False, kind="stable", ignore_index=True)


def slowest(packets: pd.DataFrame, n: int = 10, by: str = "duration_ns") -> pd.DataFrame:
    """The ``n`` packets with the largest ``by`` (by default the time from first to last event).

    Args:
        packets: the frame :func:`perfnet.paths.packets` returns.
        n: how many packets to return.
        by: the column to rank by, e.g. ``n_events`` or ``len``.

    Returns:
        Those rows of ``packets``, largest first; ties in ``packet_id`` order.
    """
    return packets.sort_values(by, ascending=False, kind="stable", ignore_index=True).head(n)
