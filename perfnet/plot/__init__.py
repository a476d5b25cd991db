"""Plots of a capture's packet paths and latencies, drawn with matplotlib.

Every function draws on the Axes passed as ``ax``, or on a new figure's Axes, and returns the
Axes, as pandas and seaborn do; none calls ``plt.show()``, so they work headless (the Agg
backend) and in notebooks alike.  Latencies are shown in microseconds on log axes (they span
from a few µs within a device to milliseconds in a queue); a latency of 0 (two events in the
same printed microsecond) is drawn at 1 ns.  Titles name the capture's file when given a
:class:`perfnet.Trace`; functions that only need one frame also take that frame.
"""

from perfnet.plot.common import ARROW, EVENT_ORDER, FLOOR_US
from perfnet.plot.distributions import (
    STAGE_MARGIN_INCHES,
    STAGE_ROW_INCHES,
    hop_latency,
    path_frequency,
    stage_latency,
    stage_latency_size,
)
from perfnet.plot.over_time import (
    DENSITY_GRIDSIZE,
    DENSITY_MIN_POINTS,
    SCATTER_ALPHA,
    SCATTER_ALPHA_FULL_POINTS,
    hop_ends,
    latency_over_time,
)
from perfnet.plot.timeline import timeline

__all__ = [
    "ARROW",
    "DENSITY_GRIDSIZE",
    "DENSITY_MIN_POINTS",
    "EVENT_ORDER",
    "FLOOR_US",
    "SCATTER_ALPHA",
    "SCATTER_ALPHA_FULL_POINTS",
    "STAGE_MARGIN_INCHES",
    "STAGE_ROW_INCHES",
    "hop_ends",
    "hop_latency",
    "latency_over_time",
    "path_frequency",
    "stage_latency",
    "stage_latency_size",
    "timeline",
]
