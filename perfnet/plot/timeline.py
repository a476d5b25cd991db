"""A sequence diagram of packets: one lane per device visit, events as markers, hops as arrows."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter

from perfnet import analysis
from perfnet.analysis import Capture
from perfnet.errors import UsageError
from perfnet.plot.common import (
    EVENT_MARKERS,
    axes_for,
    empty,
    event_rank,
    frame_of,
    plain_number,
    short,
    source_name,
    titled,
)


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
    packets = frame_of(trace, "packets")
    if packet_ids is None:
        packet_ids = [int(analysis.slowest(packets, 1)["packet_id"].iloc[0])] if len(packets) else []
    ids = [packet_ids] if isinstance(packet_ids, int | np.integer) else [int(p) for p in packet_ids]
    chosen = packets.set_index("packet_id").reindex(ids)
    if chosen["path"].isna().any():
        raise UsageError(f"no such packets in {source_name(trace) or 'this capture'}: {ids}")
    lanes, visit_lanes = _assign_lanes([str(path) for path in chosen["path"]])
    ax = axes_for(ax, (10, 1.5 + 0.6 * max(len(lanes), 1)))
    if not ids:
        return empty(ax, "no packets in this capture", titled("Packet timeline", trace))
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
    kinds = sorted(set(names), key=lambda e: (event_rank(e), str(e)))
    colors = plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")
    for i, name in enumerate(kinds):
        mask = names == name
        ax.scatter(
            x[mask],
            y[mask],
            marker=EVENT_MARKERS.get(str(name), "."),
            s=55,
            color=colors(i % colors.N),
            label=short(name),
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
        ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
        scale = f", linear up to {bulk:,.0f} µs, log beyond"
    ax.set_xlabel(f"time since {first} (µs{scale})")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(title="event", fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    if len(ids) == 1:
        row = chosen.iloc[0]
        what = f"Packet {ids[0]}: {row['path']} ({row['duration_ns'] / 1000:,.0f} µs, {row['end']})"
    else:
        what = f"Packets {', '.join(map(str, ids))}"
    ax.set_title(titled(what, trace))
    return ax
