"""What the plots share: microsecond log axes, titles, new Axes, event markers and order."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.axis import XAxis, YAxis
from matplotlib.ticker import FuncFormatter

from perfnet import analysis
from perfnet.analysis import Capture

FloatArray = npt.NDArray[np.float64]

FLOOR_US: Final = 1e-3
"""Where a zero latency is drawn on the log axes (1 ns), as log scales cannot show 0."""

ARROW: Final = "\N{RIGHTWARDS ARROW}"

EVENT_MARKERS: Final = {
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
EVENT_ORDER: Final = tuple(EVENT_MARKERS)


def source_name(data: object) -> str | None:
    """The capture's file name, if ``data`` is a Trace read from a file."""
    source = getattr(data, "source", "")
    return Path(source).name if source else None


def frame_of(data: Capture | pd.DataFrame, name: str) -> pd.DataFrame:
    """``data`` itself if it is a frame, else the capture's frame called ``name``, naming
    devices as the summaries do (``eth0@ctr1``, :func:`analysis.with_namespaces`)."""
    if isinstance(data, pd.DataFrame):
        return data
    frame: pd.DataFrame = getattr(analysis.with_namespaces(data), name)
    return frame


def titled(what: str, data: object) -> str:
    """``what``, and the capture it comes from when known."""
    source = source_name(data)
    return f"{what} \N{EM DASH} {source}" if source else what


def axes_for(ax: Axes | None, size: tuple[float, float]) -> Axes:
    """``ax``, or the Axes of a new figure of ``size`` inches with constrained layout."""
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def us(latency_ns: pd.Series | npt.NDArray[np.int64]) -> FloatArray:
    """Nanoseconds as microseconds, zeros raised to :data:`FLOOR_US` for log axes."""
    return np.maximum(np.asarray(latency_ns, dtype=np.float64) / 1000.0, FLOOR_US)


def plain_number(value: float, _position: float | None = None) -> str:
    """A tick label in plain numbers (``200``, ``1,500``, ``0.5``) instead of ``2x10^2``."""
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


def log_us(axis: XAxis | YAxis) -> None:
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
        return plain_number(value) if decades <= 2 and min(abs(mantissa - 2), abs(mantissa - 5)) < 1e-6 else ""

    axis.set_major_formatter(FuncFormatter(plain_number))
    axis.set_minor_formatter(FuncFormatter(minor))


def short(event: object) -> str:
    """An event name without its subsystem: ``net:netif_rx`` -> ``netif_rx``."""
    return str(event).partition(":")[2] or str(event)


def event_rank(event: object) -> int:
    """Position of an event in :data:`EVENT_ORDER` (unknown events last)."""
    return EVENT_ORDER.index(str(event)) if str(event) in EVENT_ORDER else len(EVENT_ORDER)


def empty(ax: Axes, message: str, title: str) -> Axes:
    """Say on ``ax`` that there is nothing to draw."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_title(title)
    return ax
