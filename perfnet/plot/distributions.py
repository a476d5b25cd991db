"""Distributions: hop latencies, stage latencies, packets per path."""

from __future__ import annotations

from typing import Final, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from perfnet import analysis
from perfnet.analysis import Capture
from perfnet.errors import UsageError
from perfnet.plot.common import ARROW, axes_for, empty, event_rank, frame_of, log_us, short, titled, us


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
    hops = frame_of(data, "hops")
    ax = axes_for(ax, (8, 5))
    title = title or titled("Hop latency", data)
    if hops.empty:
        return empty(ax, "no hops in this capture", title)
    table = analysis.hop_latency(hops)
    grouped = hops.groupby(["from_dev", "to_dev"], observed=True)["latency_ns"]
    latencies = us(hops["latency_ns"])
    bins = np.geomspace(latencies.min(), latencies.max() * 1.001, 41).tolist()  # shared by the histograms
    colors = plt.get_cmap("tab10" if len(table) <= 10 else "tab20")
    for i, row in enumerate(table.itertuples(index=False)):
        values = us(grouped.get_group((row.from_dev, row.to_dev)))
        label = f"{row.from_dev} {ARROW} {row.to_dev} (n={row.count})"
        color = colors(i % colors.N)
        if kind == "ecdf":
            ax.ecdf(values, label=label, color=color, linewidth=1.5)
        else:
            ax.hist(values, bins=bins, histtype="step", label=label, color=color, linewidth=1.5)
    log_us(ax.xaxis)
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("share of packets ≤ latency" if kind == "ecdf" else "packets per bin")
    ax.grid(True, which="major", alpha=0.3)
    if kind == "ecdf" and len(table) <= 6:  # fits in the corner the curves leave free
        ax.legend(title="hop", fontsize="small", loc="lower right")
    else:
        ax.legend(title="hop", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(title)
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
    stages = frame_of(data, "stages")
    groups = list(stages.groupby(["dev", "from_event", "to_event"], observed=True)["latency_ns"])
    ax = axes_for(ax, stage_latency_size(len(groups)))
    title = titled("Stage latency", data)
    if not groups:
        return empty(ax, "no stages in this capture", title)
    per_dev = stages["dev"].value_counts(sort=True)
    dev_rank = {dev: i for i, dev in enumerate(per_dev.index)}
    groups.sort(key=lambda g: (dev_rank[g[0][0]], event_rank(g[0][1]), event_rank(g[0][2]), str(g[0])))
    boxes = ax.boxplot(
        [us(values) for _, values in groups],
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
    labels = [f"{dev}: {short(a)} {ARROW} {short(b)} (n={len(v)})" for (dev, a, b), v in groups]
    ax.set_yticks(range(1, len(groups) + 1), labels, fontsize="small")
    ax.set_ylim(len(groups) + 0.5, 0.5)
    log_us(ax.xaxis)
    ax.set_xlabel("latency (µs, log scale)")
    ax.grid(True, axis="x", which="major", alpha=0.3)
    ax.set_title(title)
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
    table = analysis.path_table(frame_of(data, "packets"))
    shown, rest = table.head(top), table.iloc[top:]
    labels = [str(path).replace(">", f" {ARROW} ") for path in shown["path"]]
    counts = shown["count"].tolist()
    shares = shown["share"].tolist()
    if len(rest):
        labels.append(f"{len(rest)} other paths")
        counts.append(int(rest["count"].sum()))
        shares.append(float(rest["share"].sum()))
    ax = axes_for(ax, (9, 1.5 + 0.4 * max(len(labels), 1)))
    title = titled("Packets per path", data)
    if not labels:
        return empty(ax, "no packets in this capture", title)
    colors = ["tab:blue"] * len(shown) + ["0.6"] * (len(labels) - len(shown))
    bars = ax.barh(range(len(labels)), counts, color=colors)
    ax.bar_label(bars, [f" {c} ({s:.0%})" for c, s in zip(counts, shares, strict=True)], fontsize="small")
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, max(counts) * 1.15)
    ax.set_xlabel("packets")
    ax.set_title(title)
    return ax
