"""One hop's latency over capture time: dots, or a density where dots would hide each other."""

from __future__ import annotations

import math
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter

from perfnet import analysis
from perfnet.analysis import Capture
from perfnet.errors import UsageError
from perfnet.plot.common import ARROW, axes_for, empty, frame_of, log_us, plain_number, source_name, titled, us

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
    hops = frame_of(trace, "hops")
    ax = axes_for(ax, (10, 4.5))
    if hops.empty:
        return empty(ax, "no hops in this capture", titled("Hop latency over time", trace))
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
        raise UsageError(f"no hop {src}>{dst} in {source_name(trace) or 'this capture'}; hops: {known}")
    t0 = int(trace.events["time_ns"].min())
    seconds = (rows["start_ns"].to_numpy() - t0) / 1e9
    latency = us(rows["latency_ns"])
    median = float(np.median(latency))
    if len(rows) < DENSITY_MIN_POINTS:
        label = f"{src} {ARROW} {dst} (n={len(rows)})"
        ax.scatter(seconds, latency, s=12, alpha=_scatter_alpha(len(rows)), label=label)
        ax.axhline(median, color="0.3", linestyle="--", linewidth=1, label="median")
    else:
        cells = ax.hexbin(seconds, latency, gridsize=DENSITY_GRIDSIZE, yscale="log", mincnt=1, norm=LogNorm())
        ax.figure.colorbar(cells, ax=ax, label="packets per cell", format=FuncFormatter(plain_number))
        # red, as a grey line would vanish in the dark cells of few packets
        ax.axhline(median, color="tab:red", linestyle="--", linewidth=1, label=f"median (n={len(rows)})")
    log_us(ax.yaxis)
    ax.set_xlabel("capture time (s since the first event)")
    ax.set_ylabel("hop latency (µs, log scale)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(titled(f"Latency of hop {src} {ARROW} {dst} over time", trace))
    return ax
