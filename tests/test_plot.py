"""The plots, drawn headless on the real lab capture and checked for what they show.

Every figure is also saved to ``/tmp/perfnet-plots/`` (or ``$PERFNET_PLOT_DIR``) for a look.
"""

from __future__ import annotations

import base64
import io
import itertools
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PathCollection, PolyCollection
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.image import imread
from matplotlib.patches import PathPatch, Rectangle
from matplotlib.text import Annotation, Text

import perfnet
from perfnet import analysis, html_report, plot

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = FIXTURES / "paths"
PLOTS = Path(os.environ.get("PERFNET_PLOT_DIR", "/tmp/perfnet-plots"))
ARROW = "\N{RIGHTWARDS ARROW}"


@pytest.fixture(scope="module")
def trace() -> perfnet.Trace:
    return perfnet.read(FIXTURES / "lab-trace.txt", formats=FIXTURES / "lab.formats")


@pytest.fixture(scope="module")
def mixed() -> perfnet.Trace:
    """The path fixture where every workload ran at once: eth0 of two containers, 9 hops."""
    return perfnet.read(PATHS / "mixed-script.txt.gz", topology=PATHS / "paths.topology.json")


@pytest.fixture(scope="module")
def mixed_report(mixed: perfnet.Trace) -> str:
    """The HTML report of the mixed capture, rendered once for the tests that read it."""
    return html_report.render(mixed)


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


def scatter_alphas(ax: Axes) -> list[float | None]:
    return [c.get_alpha() for c in ax.collections if isinstance(c, PathCollection)]


def hexbins(ax: Axes) -> list[PolyCollection]:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def legend_texts(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend else []


def tick_labels(ax: Axes, axis: str = "y") -> list[str]:
    ticks = ax.get_yticklabels() if axis == "y" else ax.get_xticklabels()
    return [t.get_text() for t in ticks]


def test_hop_latency_ecdf_has_one_line_per_hop(trace: perfnet.Trace) -> None:
    ax = plot.hop_latency(trace)
    save(ax, "hop_latency_ecdf")
    # Devices named as the report's tables name them: the two eth0s of the capture stay apart.
    hops = analysis.with_namespaces(trace).hops
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
    # Devices named as the tables name them: the two eth0s' stages stay apart (24 rows by plain name).
    table = analysis.stage_latency(analysis.with_namespaces(trace).stages)
    boxes = [p for p in ax.patches if isinstance(p, PathPatch)]
    assert len(boxes) == len(table) == 29
    assert len(analysis.stage_latency(trace.stages)) == 24
    labels = tick_labels(ax)
    expected = {
        f"{r.dev}: {r.from_event.partition(':')[2]} {ARROW} {r.to_event.partition(':')[2]} (n={r.count})"
        for r in table.itertuples()
    }
    assert set(labels) == expected
    # Grouped by device, busiest device first; within a device in the order of a visit.
    assert labels[0] == f"eth0@inferred-1: net_dev_queue {ARROW} net_dev_start_xmit (n=22)"
    devices = [label.split(":")[0] for label in labels]
    assert devices == sorted(devices, key=devices.index) and devices[0] == "eth0@inferred-1"
    # Each box's median line sits at that stage's median.
    medians = {
        f"{r.dev}: {r.from_event.partition(':')[2]} {ARROW} {r.to_event.partition(':')[2]} (n={r.count})": r.p50_ns
        for r in table.itertuples()
    }
    median_lines = [line for line in ax.get_lines() if line.get_linewidth() == 2]
    assert len(median_lines) == 29
    for label, line in zip(labels, median_lines, strict=True):
        assert line.get_xdata()[0] == pytest.approx(medians[label] / 1000)
    assert ax.get_xscale() == "log" and "µs" in ax.get_xlabel()
    assert "lab-trace.txt" in ax.get_title()
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    assert tuple(figure.get_size_inches()) == pytest.approx((10, 1.5 + 0.32 * 29))


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
    # 26 packets, far below plot.DENSITY_MIN_POINTS: dots at full opacity as ever, no colorbar.
    assert scatter_alphas(ax) == [0.7]
    assert hexbins(ax) == []
    figure = ax.get_figure()
    assert isinstance(figure, Figure) and len(figure.axes) == 1
    assert legend_texts(ax) == [f"{hop_name} (n=26)", "median"]
    assert ax.get_lines()[0].get_ydata()[0] == pytest.approx(np.median(hop["latency_ns"]) / 1000)


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
    packets = analysis.with_namespaces(trace).packets
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


@dataclass(frozen=True)
class Frames:
    """A capture as plain frames: what :class:`perfnet.analysis.Capture` asks of one."""

    source: str
    events: pd.DataFrame
    labels: pd.DataFrame
    packets: pd.DataFrame
    hops: pd.DataFrame
    stages: pd.DataFrame
    drops: pd.DataFrame


def one_busy_hop(n: int) -> Frames:
    """``n`` packets, each crossing one hop, ``veth0`` to ``eth0``, with latencies in two bands.

    Packet i starts 1 s + i * 0.5 ms into the capture (20,000 packets span 10 s).  Three in four
    take 20 + i % 21 µs (a fast band, 20-40 µs); every fourth (i % 4 == 3) takes 800 + i % 401 µs
    (a queueing band, 0.8-1.2 ms, as behind a full qdisc).  No recorded capture has this many
    packets on one hop (the path fixtures' busiest has 475), hence a synthetic one.
    """
    i = np.arange(n)
    start_ns = 1_000_000_000 + i * 500_000
    latency_ns = np.where(i % 4 == 3, 800_000 + (i % 401) * 1_000, 20_000 + (i % 21) * 1_000)
    events = pd.DataFrame({"time_ns": np.concatenate([start_ns, start_ns + latency_ns]), "event": "net:net_dev_queue"})
    return Frames(
        source="/captures/busy-hop.txt",
        events=events,
        labels=pd.DataFrame({"packet_id": np.tile(i, 2), "visit": np.repeat([0, 1], n)}),
        packets=pd.DataFrame({"packet_id": i, "path": "veth0>eth0", "start_ns": start_ns}),
        hops=pd.DataFrame(
            {
                "packet_id": i,
                "hop": 0,
                "start_ns": start_ns,
                "from_dev": "veth0",
                "to_dev": "eth0",
                "latency_ns": latency_ns,
            }
        ),
        stages=pd.DataFrame(columns=["packet_id", "visit", "dev", "from_event", "to_event", "latency_ns"]),
        drops=pd.DataFrame(columns=["reason", "location", "dev", "count"]),
    )


def cell_counts(ax: Axes) -> tuple[np.ndarray, np.ndarray]:
    """The latency (µs) at the centre of each drawn cell of the Axes' one hexbin, and its count.

    On a log axis hexbin bins the log10 of the values and keeps its centres so.
    """
    (cells,) = hexbins(ax)
    return 10 ** np.asarray(cells.get_offsets())[:, 1], np.asarray(cells.get_array())


def test_latency_over_time_dots_fade_as_they_grow_many(mixed: perfnet.Trace) -> None:
    ax = plot.latency_over_time(mixed)
    save(ax, "latency_over_time_mixed")
    # The busiest hop of the recorded mix, 475 packets: still dots, at 0.7 * sqrt(100 / 475).
    assert legend_texts(ax) == [f"pnbrpgt1 {ARROW} pnvpgt1 (n=475)", "median"]
    assert len(scatter_points(ax)) == 475
    assert scatter_alphas(ax) == [pytest.approx(0.7 * math.sqrt(100 / 475))]
    assert scatter_alphas(ax)[0] == pytest.approx(0.32118, abs=1e-5)
    assert hexbins(ax) == []


def test_latency_over_time_of_many_packets_is_a_density() -> None:
    capture = one_busy_hop(20_000)
    ax = plot.latency_over_time(capture)
    save(ax, "latency_over_time_density")
    assert scatter_points(ax).size == 0  # no dots at all
    latency_us, counts = cell_counts(ax)
    # Every packet in exactly one drawn cell, no empty cell drawn, and the two bands apart:
    # 15,000 fast packets in cells below 100 µs, 5,000 queued ones above.
    assert counts.sum() == 20_000 and counts.min() >= 1
    assert counts[latency_us < 100].sum() == 15_000
    assert counts[latency_us > 100].sum() == 5_000
    assert latency_us[latency_us < 100].min() >= 20 and latency_us.max() <= 1_200
    (cells,) = hexbins(ax)
    assert isinstance(cells.norm, LogNorm) and cells.norm.vmin == 1
    assert cells.colorbar is not None and cells.colorbar.ax.get_ylabel() == "packets per cell"
    # The median line and the title stay: the median of the fast band's 14th value, 33 µs.
    assert [line.get_ydata()[0] for line in ax.get_lines()] == [33.0]
    assert legend_texts(ax) == ["median (n=20000)"]
    assert ax.get_title() == f"Latency of hop veth0 {ARROW} eth0 over time \N{EM DASH} busy-hop.txt"
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "hop latency (µs, log scale)"


def test_latency_over_time_turns_to_density_at_the_threshold() -> None:
    assert plot.DENSITY_MIN_POINTS == 2_000
    below = plot.latency_over_time(one_busy_hop(1_999))
    assert len(scatter_points(below)) == 1_999 and hexbins(below) == []
    assert scatter_alphas(below) == [pytest.approx(0.7 * math.sqrt(100 / 1_999))]
    at = plot.latency_over_time(one_busy_hop(2_000))
    assert scatter_points(at).size == 0
    latency_us, counts = cell_counts(at)
    assert counts.sum() == 2_000 and counts[latency_us > 100].sum() == 500


def synthetic_stages(n: int) -> pd.DataFrame:
    """Stages frame with ``n`` distinct stages of long labels (``eth3@pnc2-pgt1: ... (n=4)``)."""
    events = list(plot.EVENT_ORDER)
    rows = [
        (k, 0, f"eth{k // 6}@pnc{k % 3}-pgt1", events[k % 6], events[6 + k % 12], (j + 1) * 10_000 * (k + 1))
        for k in range(n)
        for j in range(k % 4 + 1)
    ]
    return pd.DataFrame(rows, columns=["packet_id", "visit", "dev", "from_event", "to_event", "latency_ns"])


def test_stage_figure_height_grows_by_a_row_per_stage() -> None:
    assert plot.stage_latency_size(5) == pytest.approx((10, 3.1))
    assert plot.stage_latency_size(32) == pytest.approx((10, 11.74))
    assert plot.stage_latency_size(60) == pytest.approx((10, 20.7))
    assert plot.stage_latency_size(0) == plot.stage_latency_size(1) == pytest.approx((10, 1.82))


@pytest.mark.parametrize("n_stages", [5, 60])
def test_stage_labels_never_overlap(n_stages: int) -> None:
    ax = plot.stage_latency(synthetic_stages(n_stages))
    figure = ax.get_figure()
    assert isinstance(figure, Figure)
    assert tuple(figure.get_size_inches()) == pytest.approx(plot.stage_latency_size(n_stages))
    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    boxes = sorted((label.get_window_extent(renderer) for label in ax.get_yticklabels()), key=lambda b: b.y0)
    assert len(boxes) == n_stages
    # Each label clear of the next (at 0.32 inch a row, about 14 points of air between them),
    # and all inside the figure.
    gaps_pt = [(upper.y0 - lower.y1) * 72 / figure.dpi for lower, upper in itertools.pairwise(boxes)]
    assert min(gaps_pt) > 10
    assert boxes[0].y0 >= 0 and boxes[-1].y1 <= figure.bbox.y1


BARE_HOP = re.compile(rf"\beth\d+ {ARROW}|{ARROW} eth\d+(?![@\d])")
"""An arrow from or to an ``eth`` device not qualified by its namespace: two eth0s merged."""


def figure_texts(figure: Figure) -> list[str]:
    """Every text the figure shows (titles, ticks, legends, labels), after drawing it."""
    FigureCanvasAgg(figure).draw()
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def test_report_figures_name_devices_as_its_tables(mixed: perfnet.Trace) -> None:
    packets, hops, _, _ = analysis.with_namespaces(mixed)
    figures = html_report.figures(mixed)
    assert list(figures) == ["path_frequency", "hop_latency", "latency_over_time", "timeline", "stage_latency"]
    axes = {name: figure.axes[0] for name, figure in figures.items()}
    texts = {name: figure_texts(figure) for name, figure in figures.items()}
    assert BARE_HOP.search(f"eth0 {ARROW} eth1") and not BARE_HOP.search(f"eth0@a {ARROW} eth1@a")
    for name, shown in texts.items():
        assert not [text for text in shown if BARE_HOP.search(text)], name
    for name in ("path_frequency", "hop_latency", "timeline"):
        assert any("eth0@pnc2-pgt1" in text for text in texts[name]), name
    # Each figure shows what the table beside it lists.
    paths = analysis.path_table(packets)["path"]
    assert tick_labels(axes["path_frequency"]) == [p.replace(">", f" {ARROW} ") for p in paths]
    hop_table = analysis.hop_latency(hops)
    assert len(hop_table) == 9
    assert legend_texts(axes["hop_latency"]) == [
        f"{r.from_dev} {ARROW} {r.to_dev} (n={r.count})" for r in hop_table.itertuples()
    ]
    assert legend_texts(axes["latency_over_time"])[0] == f"pnbrpgt1 {ARROW} pnvpgt1 (n=475)"
    slowest = analysis.slowest(packets, n=5).iloc[0]
    assert slowest["path"] == "pnbrpgt1>pnvpgt1>eth0@pnc1-pgt1>eth1@pnc1-pgt1>eth0@pnc2-pgt1"
    assert tick_labels(axes["timeline"]) == slowest["path"].split(">")
    assert axes["timeline"].get_title().startswith(f"Packet {slowest['packet_id']}: {slowest['path']} ")
    # Stages too: the figure's rows are the table's, devices named by namespace.
    stage_table = analysis.stage_latency(analysis.with_namespaces(mixed).stages)
    assert len(stage_table) == 38
    assert set(tick_labels(axes["stage_latency"])) == {
        f"{r.dev}: {r.from_event.partition(':')[2]} {ARROW} {r.to_event.partition(':')[2]} (n={r.count})"
        for r in stage_table.itertuples()
    }
    assert tuple(figures["stage_latency"].get_size_inches()) == pytest.approx((10, 1.5 + 0.32 * 38))


def test_report_embeds_each_figure_at_its_size(mixed_report: str) -> None:
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', mixed_report)
    shapes = [imread(io.BytesIO(base64.b64decode(png))).shape[:2] for png in pngs]
    # (height, width) in pixels at 110 dpi: 9 x 4.5 inches, the timeline 9 x 4, and the stage
    # boxes 10 x 13.66 inches for their 38 rows (a fixed 5 inches made labels touch from 33).
    assert shapes == [(495, 990), (495, 990), (495, 990), (440, 990), (1502, 1100)]


def test_report_tables_show_addresses_in_hex_and_protocols_by_name(mixed: perfnet.Trace, mixed_report: str) -> None:
    text = mixed_report
    packets = analysis.with_namespaces(mixed).packets
    slowest = analysis.slowest(packets, n=5)
    assert slowest["skbaddr"].iloc[0] == 0xFFFF8881059EB200 and set(slowest["protocol"]) == {0x0800}
    for address in slowest["skbaddr"]:
        assert f"<td>{int(address):#x}</td>" in text and str(int(address)) not in text
    assert text.count("<td>ipv4</td>") == 5 and "<td>2048</td>" not in text
