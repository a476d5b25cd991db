"""analysis.compare: per-hop and per-stage latency change between two real captures.

The tbf fixtures are one workload captured twice, the second time with a token bucket on the
host veth (see fixtures/tbf.md); the lab fixtures are one workload recorded by several tracers
at once, so comparing two of them compares the same events.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perfnet
from perfnet import analysis

FIXTURES = Path(__file__).parent / "fixtures"
TBF = json.loads((FIXTURES / "tbf.json").read_text())
VETH, BRIDGE = TBF["lab"]["host_veth"], TBF["lab"]["bridge"]
STATS = list(analysis.COMPARE_COLUMNS)


def read(name: str) -> perfnet.Trace:
    return perfnet.read(FIXTURES / name, formats=FIXTURES / "lab.formats")


@pytest.fixture(scope="module")
def lab() -> perfnet.Trace:
    return read("lab-trace.txt")


@pytest.fixture(scope="module")
def tbf() -> tuple[perfnet.Trace, perfnet.Trace]:
    return read("tbf-base.txt"), read("tbf-limited.txt")


def flagged(table: pd.DataFrame, keys: list[str]) -> dict[tuple[str, ...], float]:
    """The significant rows: key -> median difference."""
    rows = table[table["significant"]]
    return {tuple(str(v) for v in row[keys]): row["median_diff_ns"] for _, row in rows.iterrows()}


def test_columns(lab: perfnet.Trace) -> None:
    hops = analysis.compare(lab, lab)
    assert hops.columns.tolist() == ["from_dev", "to_dev", *STATS]
    stages = analysis.compare(lab, lab, frame="stages")
    assert stages.columns.tolist() == ["dev", "from_event", "to_event", *STATS]
    by_entry = analysis.compare(lab.hops, lab.hops, by=["from_dev", "to_dev", "from_event"])
    assert by_entry.columns.tolist() == ["from_dev", "to_dev", "from_event", *STATS]
    assert hops.dtypes[["count_a", "count_b"]].tolist() == ["int64", "int64"]
    assert hops["significant"].dtype == bool
    assert (hops[["count_a", "count_b"]].sum(axis=1).diff().dropna() <= 0).all()  # most latencies first


def test_a_capture_against_itself(lab: perfnet.Trace) -> None:
    table = analysis.compare(lab, lab.hops)  # a Trace or its frame, alike
    summary = analysis.hop_latency(lab.hops)
    assert table[["from_dev", "to_dev"]].astype(str).values.tolist() == summary[["from_dev", "to_dev"]].values.tolist()
    assert (table["count_a"] == summary["count"]).all() and (table["count_b"] == summary["count"]).all()
    np.testing.assert_array_equal(table["median_a_ns"], summary["p50_ns"])
    np.testing.assert_array_equal(table["p99_b_ns"], summary["p99_ns"])
    assert (table["median_diff_ns"] == 0).all() and not table["significant"].any()
    # Both samples are resampled independently: the interval is as wide as the noise says.
    assert (table["ci_low_ns"] < 0).all() and (table["ci_high_ns"] > 0).all()


@pytest.mark.parametrize("other", ["lab-script-ns.txt", "lab-ftrace.txt"])
@pytest.mark.parametrize("frame", ["hops", "stages"])
def test_recordings_of_the_same_events_differ_in_nothing(lab: perfnet.Trace, other: str, frame: str) -> None:
    table = analysis.compare(lab, read(other), frame=frame)  # type: ignore[arg-type]
    assert (table["count_a"] == table["count_b"]).all()
    assert not table["significant"].any(), table[table["significant"]]
    if other == "lab-ftrace.txt":
        # Here the two tracers' timestamps of an event are close: medians agree within 2 µs.
        assert table["median_diff_ns"].abs().max() <= 2000


def test_concurrent_perf_sessions_disagree_by_tens_of_us(lab: perfnet.Trace) -> None:
    """Why MIN_EFFECT_NS is not a few µs: perf record saw the same events up to 43 µs apart."""
    table = analysis.compare(lab, read("lab-script-ns.txt"), frame="stages", min_effect_ns=0)
    consistent = table[table["significant"]]
    assert len(consistent) == 7
    assert 40_000 < consistent["median_diff_ns"].abs().max() < analysis.MIN_EFFECT_NS


def test_tbf_delay_shows_on_the_veth_only(tbf: tuple[perfnet.Trace, perfnet.Trace]) -> None:
    base, limited = tbf
    hops = analysis.compare(base, limited)
    assert flagged(hops, ["from_dev", "to_dev"]).keys() == {(VETH, "eth0")}
    row = hops[(hops["from_dev"] == VETH) & (hops["to_dev"] == "eth0")].iloc[0]
    assert row["count_a"] == row["count_b"] == 160
    assert row["median_a_ns"] < 100_000 and row["median_b_ns"] > 5_000_000  # 8.3 ms per 1042-byte frame at 1mbit
    assert 0 < row["ci_low_ns"] <= row["median_diff_ns"] <= row["ci_high_ns"]

    stages = analysis.compare(base, limited, frame="stages")
    changes = flagged(stages, ["dev", "from_event", "to_event"])
    queue = (VETH, "net:net_dev_queue", "net:net_dev_start_xmit")
    assert changes[queue] > 5_000_000
    # Nothing else gets slower.  One stage may get faster (here by about the minimum effect): the
    # bridge's transmit returns as soon as the veth's qdisc took the packet, where without the
    # qdisc the whole veth transmit ran nested in it.
    assert changes.keys() - {queue} <= {(BRIDGE, "net:net_dev_start_xmit", "net:net_dev_xmit")}
    assert all(diff < 0 for key, diff in changes.items() if key != queue)


def test_tbf_fixtures_are_complete(tbf: tuple[perfnet.Trace, perfnet.Trace]) -> None:
    """Both captures hold every echo request and reply (the capture script's own check, via perfnet)."""
    for trace in tbf:
        assert len(trace.errors) == 0 and trace.lost == 0
        requests = trace.events.query("event == 'net:net_dev_queue' and dev == @BRIDGE and len == 1042")
        assert len(requests) == 160
    assert TBF["fixtures"]["tbf-limited.txt"]["qdisc"]["delta"]["overlimits"] > 100


def test_a_group_in_one_capture_only() -> None:
    a = pd.DataFrame({"from_dev": ["x"] * 6, "to_dev": ["y"] * 6, "latency_ns": [10, 11, 12, 13, 14, 15]})
    b = pd.concat([a, pd.DataFrame({"from_dev": ["y"], "to_dev": ["z"], "latency_ns": [7]})], ignore_index=True)
    table = analysis.compare(a, b)
    assert table[["from_dev", "to_dev", "count_a", "count_b"]].values.tolist() == [["x", "y", 6, 6], ["y", "z", 0, 1]]
    only_b = table.iloc[1]
    assert only_b[["median_a_ns", "p99_a_ns", "median_diff_ns", "ci_low_ns", "ci_high_ns"]].isna().all()
    assert only_b["median_b_ns"] == 7 and not only_b["significant"]


def test_a_shift_is_found_with_its_interval() -> None:
    rng = np.random.default_rng(1)
    base = rng.lognormal(np.log(100_000), 0.3, 400).round()
    a = pd.DataFrame({"from_dev": "x", "to_dev": "y", "latency_ns": base})
    b = a.assign(latency_ns=base + 80_000)
    row = analysis.compare(a, b).iloc[0]
    assert row["median_diff_ns"] == pytest.approx(80_000)
    assert row["ci_low_ns"] < 80_000 < row["ci_high_ns"] and row["ci_low_ns"] > 50_000
    assert row["significant"]
    # Under the minimum effect, or with too few samples, it is not significant.
    assert not analysis.compare(a, b, min_effect_ns=100_000).iloc[0]["significant"]
    assert not analysis.compare(a.head(4), b.head(4)).iloc[0]["significant"]
    # The interval comes from the seed: the same seed gives the same interval.
    again, other = analysis.compare(a, b), analysis.compare(a, b, seed=2)
    assert again.iloc[0]["ci_low_ns"] == row["ci_low_ns"] and other.iloc[0]["ci_low_ns"] != row["ci_low_ns"]
    narrow = analysis.compare(a, b, confidence=0.5).iloc[0]
    assert row["ci_low_ns"] < narrow["ci_low_ns"] < narrow["ci_high_ns"] < row["ci_high_ns"]


def test_output_is_json_able(tbf: tuple[perfnet.Trace, perfnet.Trace]) -> None:
    table = analysis.compare(*tbf, frame="stages")
    records = json.loads(table.to_json(orient="records"))
    assert len(records) == len(table) and list(records[0]) == ["dev", "from_event", "to_event", *STATS]
    assert all(isinstance(r["significant"], bool) and isinstance(r["count_a"], int) for r in records)
    assert all(isinstance(r["median_diff_ns"], float | None) for r in records)
    # A group missing from one capture has NaN statistics: null in JSON.
    a = pd.DataFrame({"from_dev": ["x"], "to_dev": ["y"], "latency_ns": [5]})
    missing = json.loads(analysis.compare(a, a.assign(to_dev="z")).to_json(orient="records"))
    assert [(r["to_dev"], r["median_a_ns"], r["median_b_ns"]) for r in missing] == [("y", 5.0, None), ("z", None, 5.0)]


def test_bad_arguments(lab: perfnet.Trace) -> None:
    with pytest.raises(ValueError, match="frame must be one of"):
        analysis.compare(lab, lab, frame="packets")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="frame='hops' or 'stages'"):
        analysis.compare(lab.stages, lab.stages)  # stages frames with the hops' keys
    with pytest.raises(ValueError, match="confidence"):
        analysis.compare(lab, lab, confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        analysis.compare(lab, lab, n_boot=0)
