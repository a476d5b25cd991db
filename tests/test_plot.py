"""The plots, drawn headless on the real lab capture and checked for what they show.

Every figure is also saved to ``/tmp/perfnet-plots/`` (or ``$PERFNET_PLOT_DIR``) for a look.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.text import Annotation

import perfnet
from perfnet import analysis, plot

FIXTURES = Path(__file__).parent / "fixtures"
PLOTS = Path(os.environ.get("PERFNET_PLOT_DIR", "/tmp/perfnet-plots"))
ARROW = "\N{RIGHTWARDS ARROW}"


@pytest.fixture(scope="module")
def trace() -> perfnet.Trace:
    return perfnet.read(FIXTURES / "lab-trace.txt", formats=FIXTURES / "lab.formats")


@pytest.fixture(autouse=True)
def close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def save(ax: Axes, name: str) -> None:
    """Write the Axes' figure as a PNG, to look at (the tests check the artists, not pixels)."""
    PLOTS.mkdir(parents=True, exist_ok=True)
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    figure.savefig(PLOTS / f"{name}.png", dpi=100)
    assert (PLOTS / f"{name}.png").stat().st_size > 10_000


def scatter_points(ax: Axes) -> np.ndarray:
    """All points of the Axes' scatter plots, as one (n, 2) array."""
    offsets = [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]
    return np.concatenate(offsets) if offsets else np.empty((0, 2))


def tick_labels(ax: Axes, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def test_hop_latency_ecdf_has_one_line_per_hop(trace: perfnet.Trace) -> None:
    ax = plot.hop_latency(trace)
    save(ax, "hop_latency_ecdf")
    # Devices named as the report's tables name them: the two eth0s of the capture stay apart.
    _, hops = analysis.with_namespaces(trace)
    table = analysis.hop_latency(hops)
    assert len(table) == 8
    lines = ax.get_lines()
    assert len(lines) == 8
    expected = [f"{r.from_dev} {ARROW} {r.to_dev} (n={r.count})" for r in table.itertuples()]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == expected
    assert [line.get_label() for line in lines] == expected
    # Each line is the ECDF of that hop's latencies in µs: its steps sit at exactly those values.
    for line, row in zip(lines, table.itertuples(), strict=True):
        hop = hops[(hops["from_dev"] == row.from_dev) & (hops["to_dev"] == row.to_dev)]
        x = np.asarray(line.get_xdata(), dtype=float)
        assert set(x[np.isfinite(x)]) == set(hop["latency_ns"] / 1000)
        assert np.nanmax(np.asarray(line.get_ydata(), dtype=float)) == 1.0
    assert ax.get_xscale() == "log"
    assert "µs" in ax.get_xlabel()
    assert ax.get_title() == "Hop latency \N{EM DASH} lab-trace.txt"


def test_hop_latency_histogram(trace: perfnet.Trace) -> None:
    ax = plot.hop_latency(trace, kind="hist", title="hops of the lab")
    save(ax, "hop_latency_hist")
    patches = [p for p in ax.patches if p.get_label() and not p.get_label().startswith("_")]
    assert len(patches) == 8
    assert patches[0].get_label() == f"eth0@inferred-2 {ARROW} eth1@inferred-2 (n=26)"
    assert ax.get_title() == "hops of the lab"
    with pytest.raises(ValueError, match="kind"):
        plot.hop_latency(trace, kind="violin")  # type: ignore[arg-type]


def test_hop_latency_draws_on_the_given_axes_from_a_frame(trace: perfnet.Trace) -> None:
    _, ax = plt.subplots()
    assert plot.hop_latency(trace.hops, ax=ax) is ax
    assert len(ax.get_lines()) == 6
    assert ax.get_title() == "Hop latency"  # a bare frame has no file name


def test_timeline_of_a_known_packet(trace: perfnet.Trace) -> None:
    packet = trace.packets.iloc[0]
    assert packet["path"] == "pnbrd19e>pnvd19e>eth0>eth1>eth0" and packet["n_events"] == 18
    ax = plot.timeline(trace, 0)
    save(ax, "timeline_packet0")
    points = scatter_points(ax)
    assert len(points) == packet["n_events"]
    events = trace.events.join(trace.labels).query("packet_id == 0")
    assert sorted(points[:, 0]) == pytest.approx(sorted((events["time_ns"] - packet["start_ns"]) / 1000))
    assert tick_labels(ax) == ["pnbrd19e", "pnvd19e", "eth0@inferred-2", "eth1@inferred-2", "eth0@inferred-1"]
    # Lane of each marker = the visit of its event; each hop an arrow from lane k to lane k + 1.
    assert sorted(points[:, 1]) == sorted(events["visit"])
    arrows = [a for a in ax.texts if isinstance(a, Annotation) and a.arrow_patch is not None]
    assert [(a.xyann[1], a.xy[1]) for a in arrows] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    latencies = trace.hops.query("packet_id == 0")["latency_ns"] / 1000
    assert [a.xy[0] - a.xyann[0] for a in arrows] == pytest.approx(list(latencies))
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["net_dev_queue", "net_dev_start_xmit", "net_dev_xmit"]
    assert set(legend) == {e.partition(":")[2] for e in events["event"]}
    assert "µs" in ax.get_xlabel()
    labelled = "pnbrd19e>pnvd19e>eth0@inferred-2>eth1@inferred-2>eth0@inferred-1"
    assert ax.get_title().startswith(f"Packet 0: {labelled} (1,734 µs, consumed)")
    assert ax.get_title().endswith("lab-trace.txt")


def test_timeline_defaults_to_the_slowest_packet(trace: perfnet.Trace) -> None:
    slowest = analysis.slowest(trace.packets, 1).iloc[0]
    ax = plot.timeline(trace)
    save(ax, "timeline_slowest")
    assert ax.get_title().startswith(f"Packet {slowest['packet_id']}: {slowest['netns_path']}")
    assert len(scatter_points(ax)) == slowest["n_events"]


def test_timeline_of_a_request_and_its_reply_shares_lanes(trace: perfnet.Trace) -> None:
    _, ax = plt.subplots(figsize=(10, 4), layout="constrained")
    assert plot.timeline(trace, [0, 1], ax=ax) is ax
    save(ax, "timeline_packets_0_1")
    # The reply takes the request's path backwards: the same five lanes, 18 events each.
    assert tick_labels(ax) == ["pnbrd19e", "pnvd19e", "eth0@inferred-2", "eth1@inferred-2", "eth0@inferred-1"]
    assert len(scatter_points(ax)) == 36
    arrows = [a for a in ax.texts if isinstance(a, Annotation) and a.arrow_patch is not None]
    assert [(a.xyann[1], a.xy[1]) for a in arrows][4:] == [(4, 3), (3, 2), (2, 1), (1, 0)]
    with pytest.raises(ValueError, match="no such packets"):
        plot.timeline(trace, [0, 10_000])


def test_stage_latency_has_one_box_per_stage(trace: perfnet.Trace) -> None:
    ax = plot.stage_latency(trace)
    save(ax, "stage_latency")
    table = analysis.stage_latency(trace.stages)
    boxes = [p for p in ax.patches if isinstance(p, PathPatch)]
    assert len(boxes) == len(table) == 24
    labels = tick_labels(ax)
    expected = {
        f"{r.dev}: {r.from_event.partition(':')[2]} {ARROW} {r.to_event.partition(':')[2]} (n={r.count})"
        for r in table.itertuples()
    }
    assert set(labels) == expected
    # Grouped by device, busiest device first; within a device in the order of a visit.
    assert labels[0] == f"eth0: net_dev_queue {ARROW} net_dev_start_xmit (n=44)"
    devices = [label.split(":")[0] for label in labels]
    assert devices == sorted(devices, key=devices.index) and devices[0] == "eth0"
    # Each box's median line sits at that stage's median.
    medians = {
        f"{r.dev}: {r.from_event.partition(':')[2]} {ARROW} {r.to_event.partition(':')[2]} (n={r.count})": r.p50_ns
        for r in table.itertuples()
    }
    median_lines = [line for line in ax.get_lines() if line.get_linewidth() == 2]
    assert len(median_lines) == 24
    for label, line in zip(labels, median_lines, strict=True):
        assert line.get_xdata()[0] == pytest.approx(medians[label] / 1000)
    assert ax.get_xscale() == "log" and "µs" in ax.get_xlabel()
    assert "lab-trace.txt" in ax.get_title()


def test_stage_latency_from_a_frame_on_given_axes(trace: perfnet.Trace) -> None:
    _, ax = plt.subplots()
    assert plot.stage_latency(trace.stages, ax=ax) is ax
    assert ax.get_title() == "Stage latency"


def test_latency_over_time_defaults_to_the_busiest_hop(trace: perfnet.Trace) -> None:
    ax = plot.latency_over_time(trace)
    save(ax, "latency_over_time")
    hop = trace.hops.query("from_netns_dev == 'eth0@inferred-2' and to_netns_dev == 'eth1@inferred-2'")
    points = scatter_points(ax)
    assert len(points) == len(hop) == 26
    assert sorted(points[:, 1]) == pytest.approx(sorted(hop["latency_ns"] / 1000))
    # x: seconds since the capture's first event, when the packet arrived at eth0.
    opened = trace.events.join(trace.labels).query("visit >= 0").groupby(["packet_id", "visit"])["time_ns"].min()
    starts = [opened[(p, h)] for p, h in zip(hop["packet_id"], hop["hop"], strict=True)]
    first = trace.events["time_ns"].min()
    assert sorted(points[:, 0]) == pytest.approx(sorted((np.array(starts) - first) / 1e9))
    assert ax.get_yscale() == "log" and "µs" in ax.get_ylabel()
    hop_name = f"eth0@inferred-2 {ARROW} eth1@inferred-2"
    assert ax.get_title() == f"Latency of hop {hop_name} over time \N{EM DASH} lab-trace.txt"


def test_latency_over_time_of_a_named_hop(trace: perfnet.Trace) -> None:
    _, ax = plt.subplots()
    assert plot.latency_over_time(trace, "pnvd19e>eth0@inferred-2", ax=ax) is ax
    assert len(scatter_points(ax)) == 26
    assert len(scatter_points(plot.latency_over_time(trace, ("eth0@inferred-2", "pnvd19e")))) == 22
    # The report's own spelling, and plain names: every hop between devices so named.
    assert len(scatter_points(plot.latency_over_time(trace, f"pnvd19e {ARROW} eth0@inferred-2"))) == 26
    assert len(scatter_points(plot.latency_over_time(trace, "eth0 > eth1"))) == 48
    with pytest.raises(ValueError, match=r"no hop eth1>pnbrd19e .*'eth0@inferred-1>eth1@inferred-2'"):
        plot.latency_over_time(trace, "eth1>pnbrd19e")
    with pytest.raises(ValueError, match="a hop is two devices"):
        plot.latency_over_time(trace, "eth1>")


def test_path_frequency_bars_are_the_path_counts(trace: perfnet.Trace) -> None:
    ax = plot.path_frequency(trace)
    save(ax, "path_frequency")
    packets, _ = analysis.with_namespaces(trace)
    table = analysis.path_table(packets)
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_width() for b in bars] == table["count"].tolist() == [26, 22]
    assert tick_labels(ax) == [p.replace(">", f" {ARROW} ") for p in table["path"]]
    assert ax.get_xlabel() == "packets"
    assert "lab-trace.txt" in ax.get_title()


def test_path_frequency_folds_the_rare_paths(trace: perfnet.Trace) -> None:
    _, ax = plt.subplots()
    assert plot.path_frequency(trace.packets, ax=ax, top=1) is ax
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert [b.get_width() for b in bars] == [26, 22]
    assert tick_labels(ax)[1] == "1 other paths"
