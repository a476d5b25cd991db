"""Summaries of the path frames, on small frames with hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from perfnet import analysis

SUMMARY = ["count", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"]


def check(table: pd.DataFrame, keys: list[str], rows: list[list[object]]) -> None:
    """Assert the summary's key columns equal and its numbers match to float precision."""
    assert table[keys].astype(str).values.tolist() == [row[: len(keys)] for row in rows]
    np.testing.assert_allclose(
        table[SUMMARY].to_numpy(dtype=float), np.array([row[len(keys) :] for row in rows], float)
    )


def hops() -> pd.DataFrame:
    """A hops frame as :func:`perfnet.paths.hops` returns it (labels are categoricals)."""
    return pd.DataFrame(
        {
            "packet_id": [0, 0, 1, 2, 3],
            "hop": [0, 1, 0, 0, 0],
            "from_dev": pd.Categorical(["a", "b", "a", "a", "a"]),
            "to_dev": pd.Categorical(["b", "c", "b", "b", "b"]),
            "from_event": pd.Categorical(["q", "q", "q", "q", "rx"]),
            "to_event": pd.Categorical(["q", "rx", "q", "q", "q"]),
            "latency_ns": [10, 5, 40, 20, 30],
        }
    )


def test_hop_latency_percentiles() -> None:
    table = analysis.hop_latency(hops())
    assert table.columns.tolist() == ["from_dev", "to_dev", *SUMMARY]
    rows: list[list[object]] = [
        # [10, 20, 30, 40]: linear interpolation at 1.5, 2.7 and 2.97 of the sorted samples
        ["a", "b", 4, 25.0, 25.0, 37.0, 39.7, 40],
        ["b", "c", 1, 5.0, 5.0, 5.0, 5.0, 5],
    ]
    check(table, ["from_dev", "to_dev"], rows)
    assert table["mean_ns"].dtype == "float64" and table["max_ns"].dtype == "int64"


def test_hop_latency_by_entry_events() -> None:
    table = analysis.hop_latency(hops(), by=["from_dev", "to_dev", "from_event"])
    rows: list[list[object]] = [
        ["a", "b", "q", 3, 70 / 3, 20.0, 36.0, 39.6, 40],
        ["a", "b", "rx", 1, 30.0, 30.0, 30.0, 30.0, 30],
        ["b", "c", "q", 1, 5.0, 5.0, 5.0, 5.0, 5],
    ]
    check(table, ["from_dev", "to_dev", "from_event"], rows)


def test_stage_latency() -> None:
    stages = pd.DataFrame(
        {
            "packet_id": [0, 0, 1, 1, 2],
            "visit": [0, 0, 0, 0, 1],
            "dev": ["x", "x", "x", "x", "y"],
            "from_event": ["q", "sx", "q", "sx", "rx"],
            "to_event": ["sx", "xmit", "sx", "xmit", "core"],
            "latency_ns": [1, 10, 3, 30, 7],
        }
    )
    rows: list[list[object]] = [
        ["x", "q", "sx", 2, 2.0, 2.0, 2.8, 2.98, 3],
        ["x", "sx", "xmit", 2, 20.0, 20.0, 28.0, 29.8, 30],
        ["y", "rx", "core", 1, 7.0, 7.0, 7.0, 7.0, 7],
    ]
    check(analysis.stage_latency(stages), ["dev", "from_event", "to_event"], rows)


def packets() -> pd.DataFrame:
    """A packets frame reduced to the columns the summaries read."""
    return pd.DataFrame(
        {
            "packet_id": [0, 1, 2, 3],
            "path": pd.Categorical(["a>b", "b>a", "a>b", "a>b"]),
            "duration_ns": [100, 50, 300, 100],
            "transit_ns": [80, 40, 90, 100],
        }
    )


def test_path_table() -> None:
    table = analysis.path_table(packets())
    assert table.astype({"path": str}).to_dict("list") == {
        "path": ["a>b", "b>a"],
        "count": [3, 1],
        "share": [0.75, 0.25],
        "median_transit_ns": [90.0, 40.0],
        "median_duration_ns": [100.0, 50.0],
    }


@pytest.mark.parametrize(("n", "ids"), [(2, [3, 2]), (3, [3, 2, 0]), (10, [3, 2, 0, 1])])
def test_slowest_packets(n: int, ids: list[int]) -> None:
    assert analysis.slowest(packets(), n)["packet_id"].tolist() == ids


def test_slowest_by_another_column() -> None:
    assert analysis.slowest(packets(), 1, by="packet_id")["packet_id"].tolist() == [3]
    assert analysis.slowest(packets(), 2, by="duration_ns")["packet_id"].tolist() == [2, 0]


def test_empty_frames() -> None:
    empty = hops().iloc[:0]
    assert analysis.hop_latency(empty).columns.tolist() == ["from_dev", "to_dev", *SUMMARY]
    assert analysis.hop_latency(empty).empty
    table = analysis.path_table(packets().iloc[:0])
    assert table.empty
    assert table.columns.tolist() == ["path", "count", "share", "median_transit_ns", "median_duration_ns"]
