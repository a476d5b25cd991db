"""Plots of a capture's packet paths and latencies, drawn with matplotlib.

Every function draws on the Axes passed as ``ax``, or on a new figure's Axes, and returns the
Axes, as pandas and seaborn do; none calls ``plt.show()``, so they work headless (the Agg
backend) and in notebooks alike.  Latencies are shown in microseconds on log axes (they span
from a few µs within a device to milliseconds in a queue); a latency of 0 (two events in the
same printed microsecond) is drawn at 1 ns.  Titles name the capture's file when given a
:class:`perfnet.Trace`; functions that only need one frame also take that frame.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final, Literal

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import XAxis, YAxis
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter

from perfnet import analysis
from perfnet.analysis import Capture
from perfnet.errors import UsageError

__all__ = [
    "DENSITY_MIN_POINTS",
    "hop_latency",
    "latency_over_time",
    "path_frequency",
    "stage_latency",
    "stage_latency_size",
    "timeline",
]

FloatArray = npt.NDArray[np.float64]

FLOOR_US: Final = 1e-3
"""Where a zero latency is drawn on the log axes (1 ns), as log scales cannot show 0."""

ARROW: Final = "\N{RIGHTWARDS ARROW}"

DENSITY_MIN_POINTS: Final = 2_000
"""From this many packets on one hop, :func:`latency_over_time` draws packets per cell, not dots.

Measured on the default 10 x 4.5 inch figure at 100 dpi, with latencies resampled from the
two busiest hops of the ``mixed`` path fixture over uniform capture times: 500 dots, 24-33%
of them touch another one; 2,000 dots, 57-75%; 5,000, 84-94%; 20,000, 98-99%, and the hop's
band is 90-99% painted.  From 2,000 on most dots hide behind others, so dots no longer show
where packets gather.
"""

SCATTER_ALPHA: Final = 0.7
"""The opacity of :func:`latency_over_time`'s dots up to :data:`SCATTER_ALPHA_FULL_POINTS` dots."""

SCATTER_ALPHA_FULL_POINTS: Final = 100
"""Up to this many dots (the lab fixtures' hops have some 25) are drawn at :data:`SCATTER_ALPHA`;
beyond, the opacity falls as one over the square root of the count: 0.32 for 475 dots, 0.16
just below :data:`DENSITY_MIN_POINTS`.  Overlapping dots then darken only where many pile up,
while a lone outlier stays visible (a fall as one over the count would leave it at 0.04)."""

DENSITY_GRIDSIZE: Final = (80, 22)
"""Hexagons across and up the density plot of :func:`latency_over_time`: cells a tenth of an
inch wide on the default figure, and regular there (matplotlib's hexagons, ``width/nx`` wide
and ``2/3 height/ny`` high, are regular when ``ny = nx * height / (sqrt(3) * width)``: 22 for
the 8.1 x 3.8 inch plot area the colorbar leaves)."""

# Events in the order a visit passes them (transmit, then receive, then the skb's end), with
# their timeline markers: stages are listed in this order within a device.
_EVENT_MARKERS: Final = {
    "net:net_dev_queue": "o",
    "net:net_dev_start_xmit": ">",
    "net:net_dev_xmit": "s",
    "net:netif_rx_entry": "v",
    "net:netif_rx_ni_entry": "v",
    "net:napi_gro_receive_entry": "v",
    "net:napi_gro_frags_entry": "v",
    "net:netif_receive_skb_entry": "D",
    "net:netif_receive_skb_list_entry": "D",
    "net:netif_rx": "^",
    "net:netif_rx_exit": "x",
    "net:netif_rx_ni_exit": "x",
    "net:napi_gro_receive_exit": "x",
    "net:napi_gro_frags_exit": "x",
    "net:netif_receive_skb": "d",
    "net:netif_receive_skb_exit": "x",
    "net:netif_receive_skb_list_exit": "x",
    "skb:consume_skb": "P",
    "skb:kfree_skb": "X",
}
_EVENT_ORDER: Final = tuple(_EVENT_MARKERS)


def _source(data: object) -> str | None:
    """The capture's file name, if ``data`` is a Trace read from a file."""
    source = getattr(data, "source", "")
    return Path(source).name if source else None


def _frame(data: Capture | pd.DataFrame, name: str) -> pd.DataFrame:
    """``data`` itself if it is a frame, else the capture's frame called ``name``, naming
    devices as the summaries do (``eth0@ctr1``, :func:`analysis.with_namespaces`)."""
    if isinstance(data, pd.DataFrame):
        return data
    frame: pd.DataFrame = getattr(analysis.with_namespaces(data), name)
    return frame


def _title(what: str, data: object) -> str:
    """``what``, and the capture it comes from when known."""
    source = _source(data)
    return f"{what} \N{EM DASH} {source}" if source else what


def _axes(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new figure of ``size`` inches with constrained layout."""
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def _us(latency_ns: pd.Series | npt.NDArray[np.int64]) -> FloatArray:
    """Nanoseconds as microseconds, zeros raised to :data:`FLOOR_US` for log axes."""
    return np.maximum(np.asarray(latency_ns, dtype=np.float64) / 1000.0, FLOOR_US)


def _plain(value: float, _position: float | None = None) -> str:
    """A tick label in plain numbers (``200``, ``1,500``, ``0.5``) instead of ``2x10^2``."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def _log_us(axis: XAxis | YAxis) -> None:
    """Make ``axis`` a log axis of microseconds labelled in plain numbers.

    Minor ticks at 2 and 5 times a power of ten are labelled too when the axis spans two
    decades or less, so that a narrow range still has numbers on it.
    """
    if isinstance(axis, XAxis):
        axis.axes.set_xscale("log")
    else:
        axis.axes.set_yscale("log")

    def minor(value: float, _position: float | None = None) -> str:
        low, high = axis.get_view_interval()
        decades = np.log10(max(high, FLOOR_US) / max(low, FLOOR_US))
        mantissa = value / 10 ** np.floor(np.log10(value))
        return _plain(value) if decades <= 2 and min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""

    axis.set_major_formatter(FuncFormatter(_plain))
    axis.set_minor_formatter(FuncFormatter(minor))


def _short(event: object) -> str:
    """An event name without its subsystem: ``net:netif_rx`` -> ``netif_rx``."""
    return str(event).partition(":")[2] or str(event)


def _event_rank(event: object) -> int:
    """Position of an event in :data:`_EVENT_ORDER` (unknown events last)."""
    return _EVENT_ORDER.index(str(event)) if str(event) in _EVENT_ORDER else len(_EVENT_ORDER)


def _empty(ax: Axes, message: str, title: str) -> Axes:
    """Say on ``ax`` that there is nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return ax


def hop_latency(
    data: Capture | pd.DataFrame,
    ax: Axes | None = None,
    kind: Literal["ecdf", "hist"] = "ecdf",
    title: str | None = None,
) -> Axes:
    """The latency distribution of each hop (device to device), one curve per hop.

    Args:
        data: a Trace, or its ``hops`` frame.
        ax: where to draw; default a new figure.
        kind: ``"ecdf"`` (share of the hop's packets at or below each latency; robust to a few
            samples) or ``"hist"`` (step histograms on shared log-spaced bins).
        title: the title; default "Hop latency" and the capture's file name.

    Returns:
        The Axes, with one line (ECDF) or step patch (histogram) per hop, labelled
        ``from → to (n=count)``, most frequent hop first; log x axis in µs.

    Raises:
        UsageError: ``kind`` is neither ``"ecdf"`` nor ``"hist"``.
    """
    if kind not in ("ecdf", "hist"):
        raise UsageError(f"kind must be 'ecdf' or 'hist', not {kind!r}")
    hops = _frame(data, "hops")
    ax = _axes(ax, (8, 5))
    title = title or _title("Hop latency", data)
    if hops.empty:
        return _empty(ax, "no hops in this capture", title)
    table = analysis.hop_latency(hops)
    grouped = hops.groupby(["from_dev", "to_dev"], observed=True)["latency_ns"]
    latencies = _us(hops["latency_ns"])
    bins = np.geomspace(latencies.min(), latencies.max() * 1.001, 41).tolist()  # shared by the histograms
    colors = plt.get_cmap("tab10" if len(table) <= 10 else "tab20")
    for i, row in enumerate(table.itertuples(index=False)):
        values = _us(grouped.get_group((row.from_dev, row.to_dev)))
        label = f"{row.from_dev} {ARROW} {row.to_dev} (n={row.count})"
        color = colors(i % colors.N)
        if kind == "ecdf":
            ax.ecdf(values, label=label, color=color, linewidth=1.5)
        else:
            ax.hist(values, bins=bins, histtype="step", label=label, color=color, linewidth=1.5)
    _log_us(ax.xaxis)
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("share of packets ≤ latency" if kind == "ecdf" else "packets per bin")
    ax.grid(True, which="major", alpha=0.3)
    if kind == "ecdf" and len(table) <= 6:  # fits in the corner the curves leave free
        ax.legend(title="hop", fontsize="small", loc="lower right")
    else:
        ax.legend(title="hop", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
    return ax


def _path_lanes(path: str, backwards: bool) -> list[tuple[str, int]]:
    """The lane key of each visit of a path: ``(device, k)`` for the k-th visit to that name.

    ``backwards`` numbers the visits to a name from the path's end: ``a>b>a`` gives
    ``[(a, 0), (b, 0), (a, 1)]``, backwards ``[(a, 1), (b, 0), (a, 0)]``.
    """
    devices = path.split(">")
    total = {dev: devices.count(dev) for dev in devices}
    seen = dict.fromkeys(total, 0)
    keys = []
    for dev in devices:
        keys.append((dev, total[dev] - 1 - seen[dev] if backwards else seen[dev]))
        seen[dev] += 1
    return keys


def _assign_lanes(paths: Sequence[str]) -> tuple[list[tuple[str, int]], list[list[int]]]:
    """Lanes for packets with these paths, and the lane of each visit of each path.

    Device names repeat across namespaces (``eth0`` in two containers), so each visit to a
    name in a path gets a lane of its own.  The first path's lanes come first, in its order.
    A later path reuses them, numbering the visits to a repeated name from its start or from
    its end, whichever keeps its hops between nearer lanes (a reply crosses the request's
    devices backwards), and adds the lanes it lacks at the bottom.

    Returns:
        The lanes as ``(device, k)``, top to bottom, and per path the lane index of each visit.
    """
    lanes: list[tuple[str, int]] = []
    visits: list[list[int]] = []
    for path in paths:
        options = []
        for backwards in (False, True):
            keys = _path_lanes(path, backwards)
            trial = lanes + [key for key in dict.fromkeys(keys) if key not in lanes]
            index = [trial.index(key) for key in keys]
            options.append((sum(abs(b - a) for a, b in itertools.pairwise(index)), backwards, trial, index))
        _, _, lanes, index = min(options)  # fewest lane jumps; ties: numbered from the start
        visits.append(index)
    return lanes, visits


def _packet_events(trace: Capture, ids: Sequence[int]) -> pd.DataFrame:
    """The events of these packets that belong to a visit, with ``packet_id`` and ``visit``."""
    events = trace.events[["time_ns", "event"]].join(trace.labels)
    chosen = events["packet_id"].isin(ids).to_numpy() & (events["visit"] >= 0).to_numpy()
    return events[chosen]


def timeline(trace: Capture, packet_ids: int | Sequence[int] | None = None, ax: Axes | None = None) -> Axes:
    """A sequence diagram of packets: one lane per device visited, events as markers, hops as arrows.

    x is the time since the first event of the (first) packet, in µs; each event of the
    packets is a marker on the lane of the device visit it belongs to (one marker style per
    event kind, see the legend); each hop is an arrow from the event that opened a visit to
    the one that opened the next.  For a single packet each arrow is labelled with the hop's
    latency.  Events of a packet outside any visit (a completion whose visit began before
    the capture) are not drawn.

    Args:
        trace: the capture.
        packet_ids: a packet id, several, or None for the slowest packet (largest
            ``transit_ns``, its time in the stack).
        ax: where to draw; default a new figure sized to the lanes.

    Returns:
        The Axes; y tick labels are the devices (lanes), top to bottom in path order.

    Raises:
        UsageError: a packet id is not in ``trace.packets``.
    """
    packets = _frame(trace, "packets")
    if packet_ids is None:
        packet_ids = [int(analysis.slowest(packets, 1)["packet_id"].iloc[0])] if len(packets) else []
    ids = [packet_ids] if isinstance(packet_ids, int | np.integer) else [int(p) for p in packet_ids]
    chosen = packets.set_index("packet_id").reindex(ids)
    if chosen["path"].isna().any():
        raise UsageError(f"no such packets in {_source(trace) or 'this capture'}: {ids}")
    lanes, visit_lanes = _assign_lanes([str(path) for path in chosen["path"]])
    ax = _axes(ax, (10, 1.5 + 0.6 * max(len(lanes), 1)))
    if not ids:
        return _empty(ax, "no packets in this capture", _title("Packet timeline", trace))
    t0 = int(chosen["start_ns"].min())
    lane_of = {
        (pid, visit): lane
        for pid, lanes_of in zip(ids, visit_lanes, strict=True)
        for visit, lane in enumerate(lanes_of)
    }
    events = _packet_events(trace, ids)
    x = (events["time_ns"].to_numpy() - t0) / 1000.0
    y = np.array([lane_of[(p, v)] for p, v in zip(events["packet_id"], events["visit"], strict=True)])
    names = events["event"].to_numpy(dtype=object)
    kinds = sorted(set(names), key=lambda e: (_event_rank(e), str(e)))
    colors = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
    for i, name in enumerate(kinds):
        mask = names == name
        ax.scatter(
            x[mask],
            y[mask],
            marker=_EVENT_MARKERS.get(str(name), "."),
            s=55,
            color=colors(i % colors.N),
            label=_short(name),
            zorder=3,
        )
    hops = trace.hops[trace.hops["packet_id"].isin(ids)]  # its hop numbers: the lanes are the packets' visits
    for pid, hop, begun, latency in zip(
        hops["packet_id"], hops["hop"], hops["start_ns"], hops["latency_ns"], strict=True
    ):
        start = ((begun - t0) / 1000.0, lane_of[(pid, hop)])
        end = ((begun + latency - t0) / 1000.0, lane_of[(pid, hop + 1)])
        ax.annotate("", xy=end, xytext=start, arrowprops={"arrowstyle": "->", "color": "0.35", "lw": 1.2})
        if len(ids) == 1:
            middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
            ax.text(*middle, f" {latency / 1000:.0f} µs", fontsize="x-small", color="0.25", va="center")
    ax.set_yticks(range(len(lanes)), [dev for dev, _ in lanes])
    ax.set_ylim(len(lanes) - 0.5, -0.5)
    ax.set_ylabel("device")
    first = "the packet's first event" if len(ids) == 1 else f"packet {ids[0]}'s first event"
    scale = ""
    bulk = float(np.quantile(x, 0.9))
    if bulk > 0 and x.max() > 10 * bulk:  # a late straggler (say a free long after) would squash the rest
        ax.set_xscale("symlog", linthresh=bulk, linscale=3)
        ax.set_xlim(-0.05 * bulk, x.max() * 1.5)
        ax.xaxis.set_major_formatter(FuncFormatter(_plain))
        scale = f", linear up to {bulk:,.0f} µs, log beyond"
    ax.set_xlabel(f"time since {first} (µs{scale})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(title="event", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if len(ids) == 1:
        row = chosen.iloc[0]
        what = f"Packet {ids[0]}: {row['path']} ({row['duration_ns'] / 1000:,.0f} µs, {row['end']})"
    else:
        what = f"Packets {', '.join(map(str, ids))}"
    ax.set_title(_title(what, trace))
    return ax


STAGE_ROW_INCHES: Final = 0.32
"""Height of one box of :func:`stage_latency`, in inches.

Its labels (``small`` text) are 9.4 points high; at this pitch 14 to 25 points of air part
them for 5 to 80 stages (measured), whereas in a figure of fixed height they collide (in 9 x 5
inches, from 33 stages on).
"""

STAGE_MARGIN_INCHES: Final = 1.5
"""Height of :func:`stage_latency`'s figure besides its boxes, in inches: title, x tick labels
and x label take 0.73 of it; the rest keeps a figure of a few boxes from looking squashed."""


def stage_latency_size(n_stages: int) -> tuple[float, float]:
    """The size in inches of a figure for :func:`stage_latency` with ``n_stages`` boxes.

    The height grows by :data:`STAGE_ROW_INCHES` a box (at least one), over a fixed
    :data:`STAGE_MARGIN_INCHES`.
    """
    return 10.0, STAGE_MARGIN_INCHES + STAGE_ROW_INCHES * max(n_stages, 1)


def stage_latency(data: Capture | pd.DataFrame, ax: Axes | None = None) -> Axes:
    """Box plots of each stage's latency: the time between consecutive events within one device.

    Args:
        data: a Trace, or its ``stages`` frame.
        ax: where to draw; default a new figure sized to the stages (:func:`stage_latency_size`).

    Returns:
        The Axes, with one horizontal box (a patch) per ``(dev, from_event, to_event)``,
        labelled ``dev: from → to (n=count)``; grouped by device (most events first),
        within a device in the order a visit passes the events; log x axis in µs.  Boxes
        span the quartiles, whiskers reach the furthest sample within 1.5 interquartile
        ranges, the line is the median.
    """
    stages = _frame(data, "stages")
    groups = list(stages.groupby(["dev", "from_event", "to_event"], observed=True)["latency_ns"])
    ax = _axes(ax, stage_latency_size(len(groups)))
    title = _title("Stage latency", data)
    if not groups:
        return _empty(ax, "no stages in this capture", title)
    per_dev = stages["dev"].value_counts(sort=True)
    dev_rank = {dev: i for i, dev in enumerate(per_dev.index)}
    groups.sort(key=lambda g: (dev_rank[g[0][0]], _event_rank(g[0][1]), _event_rank(g[0][2]), str(g[0])))
    boxes = ax.boxplot(
        [_us(values) for _, values in groups],
        orientation="horizontal",
        patch_artist=True,
        widths=0.6,
        flierprops={"markersize": 3, "alpha": 0.5},
        medianprops={"color": "black", "linewidth": 2},
    )
    colors = plt.get_cmap("tab10")
    for box, ((dev, _, _), _) in zip(boxes["boxes"], groups, strict=True):
        box.set_facecolor(colors(dev_rank[dev] % colors.N))
        box.set_alpha(0.6)
    labels = [f"{dev}: {_short(a)} {ARROW} {_short(b)} (n={len(v)})" for (dev, a, b), v in groups]
    ax.set_yticks(range(1, len(groups) + 1), labels, fontsize="small")
    ax.set_ylim(len(groups) + 0.5, 0.5)
    _log_us(ax.xaxis)
    ax.set_xlabel("latency (µs, log scale)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.set_title(title)
    return ax


def hop_ends(hop: str | tuple[str, str]) -> tuple[str, str]:
    """The two devices of a hop given as ``"from>to"``, ``"from > to"``, ``"from → to"`` (as
    the report prints hops) or ``(from, to)``.

    Raises:
        UsageError: not two device names.
    """
    if not isinstance(hop, str):
        src, dst = hop
        return src, dst
    parts = [part.strip() for part in hop.replace(ARROW, ">").split(">")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"a hop is two devices, 'from>to' (e.g. 'veth1>br0'), not {hop!r}")
    return parts[0], parts[1]


def _scatter_alpha(n_points: int) -> float:
    """The opacity of :func:`latency_over_time`'s dots when there are ``n_points`` of them
    (see :data:`SCATTER_ALPHA_FULL_POINTS`)."""
    return SCATTER_ALPHA * min(1.0, math.sqrt(SCATTER_ALPHA_FULL_POINTS / n_points))


def latency_over_time(trace: Capture, hop: str | tuple[str, str] | None = None, ax: Axes | None = None) -> Axes:
    """The latency of one hop against capture time: bursts and trends show up.

    Below :data:`DENSITY_MIN_POINTS` packets each packet is a dot, lighter the more dots there
    are (:data:`SCATTER_ALPHA_FULL_POINTS`); from there on dots would merge into solid bands,
    so the Axes show how many packets fall in each hexagonal cell instead (:meth:`Axes.hexbin`
    on the log of the latency), with a colorbar of packets per cell on a log color scale.

    Args:
        trace: the capture.
        hop: ``"from>to"`` (also ``"from > to"``, ``"from → to"``) or ``(from, to)``, with
            devices named as the report names them (``eth0@ctr1``), or plain names for every
            hop between devices so named; default the busiest hop (most packets).
        ax: where to draw; default a new figure.

    Returns:
        The Axes: x in seconds since the capture's first event, log y axis in µs, the hop's
        median as a dashed line, and either one dot per packet (a scatter labelled
        ``from → to (n=count)``) or the hexagonal cells (empty cells not drawn; the median
        line labelled ``median (n=count)``) and a colorbar beside the Axes.

    Raises:
        UsageError: the capture has no such hop (the message lists the hops it has).
    """
    hops = _frame(trace, "hops")
    ax = _axes(ax, (10, 4.5))
    if hops.empty:
        return _empty(ax, "no hops in this capture", _title("Hop latency over time", trace))
    if hop is None:
        busiest = analysis.hop_latency(hops).iloc[0]
        src, dst = str(busiest["from_dev"]), str(busiest["to_dev"])
    else:
        src, dst = hop_ends(hop)
    rows = hops[(hops["from_dev"].astype(str) == src) & (hops["to_dev"].astype(str) == dst)]
    if rows.empty:  # plain device names (eth0>eth1) take every hop between devices so named
        plain = trace.hops
        rows = hops[((plain["from_dev"].astype(str) == src) & (plain["to_dev"].astype(str) == dst)).to_numpy()]
    if rows.empty:
        known = sorted({f"{a}>{b}" for a, b in zip(hops["from_dev"], hops["to_dev"], strict=True)})
        raise UsageError(f"no hop {src}>{dst} in {_source(trace) or 'this capture'}; hops: {known}")
    t0 = int(trace.events["time_ns"].min())
    seconds = (rows["start_ns"].to_numpy() - t0) / 1e9
    latency = _us(rows["latency_ns"])
    median = float(np.median(latency))
    if len(rows) < DENSITY_MIN_POINTS:
        label = f"{src} {ARROW} {dst} (n={len(rows)})"
        ax.scatter(seconds, latency, s=12, alpha=_scatter_alpha(len(rows)), label=label)
        ax.axhline(median, color="0.3", linestyle="--", linewidth=1, label="median")
    else:
        cells = ax.hexbin(seconds, latency, gridsize=DENSITY_GRIDSIZE, yscale="log", mincnt=1, norm=LogNorm())
        ax.figure.colorbar(cells, ax=ax, label="packets per cell", format=FuncFormatter(_plain))
        # red, as a grey line would vanish in the dark cells of few packets
        ax.axhline(median, color="tab:red", linestyle="--", linewidth=1, label=f"median (n={len(rows)})")
    _log_us(ax.yaxis)
    ax.set_xlabel("capture time (s since the first event)")
    ax.set_ylabel("hop latency (µs, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(_title(f"Latency of hop {src} {ARROW} {dst} over time", trace))
    return ax


def path_frequency(data: Capture | pd.DataFrame, ax: Axes | None = None, top: int = 20) -> Axes:
    """How many packets took each path, as horizontal bars, most frequent on top.

    Args:
        data: a Trace, or its ``packets`` frame.
        ax: where to draw; default a new figure sized to the bars.
        top: how many paths get a bar of their own; the rest share one grey bar.

    Returns:
        The Axes, with one bar per path (count and share written at its end), labelled with
        the path's devices joined by arrows.
    """
    table = analysis.path_table(_frame(data, "packets"))
    shown, rest = table.head(top), table.iloc[top:]
    labels = [str(path).replace(">", f" {ARROW} ") for path in shown["path"]]
    counts = shown["count"].tolist()
    shares = shown["share"].tolist()
    if len(rest):
        labels.append(f"{len(rest)} other paths")
        counts.append(int(rest["count"].sum()))
        shares.append(float(rest["share"].sum()))
    ax = _axes(ax, (9, 1.5 + 0.4 * max(len(labels), 1)))
    title = _title("Packets per path", data)
    if not labels:
        return _empty(ax, "no packets in this capture", title)
    colors = ["tab:blue"] * len(shown) + ["0.6"] * (len(labels) - len(shown))
    bars = ax.barh(range(len(labels)), counts, color=colors)
    ax.bar_label(bars, [f" {c} ({s:.0%})" for c, s in zip(counts, shares, strict=True)], fontsize="small")
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, max(counts) * 1.15)
    ax.set_xlabel("packets")
    ax.set_title(title)
    return ax
