"""Many captures at once, with dask: their frames as lazy dask DataFrames, one partition per capture.

:func:`read_traces` names the captures and reads none of them; a computation reads each capture
it needs with :func:`perfnet.read`, on whichever dask scheduler is active (a
``distributed.Client``'s workers, else local threads).  One read gives all four frames
(``events``, ``packets``, ``hops``, ``stages``), so computing several of them together
(``dask.compute(traces.hops, traces.packets)``) reads each capture once.

Every row carries a ``capture`` column: the capture's path as given, categorical with every
capture as a known category, in the order of :attr:`Traces.captures`.  Packet ids restart at 0
in each capture, so ``(capture, packet_id)`` is the key of a packet across captures.

:meth:`Traces.hop_latency` and :meth:`Traces.stage_latency` equal the :mod:`perfnet.analysis`
summaries of the captures' frames concatenated with ``pd.concat``, exactly.  An exact percentile
needs every latency of its group in one place, so each worker that reads a capture keeps only the
``by`` columns and ``latency_ns`` of its frame (11 bytes a stage and 10 a hop with the default
``by``, categorical codes and the latency; the events take some 50 bytes each, and a capture has
about 1.4 events per stage and 4 to 5 per hop in the path fixtures); one worker concatenates those in capture order
and runs the pandas summary on them, and only the summary comes back to the client.  It is the
very computation on the very rows, so means and percentiles agree to the last bit, and key
dtypes and the order of ties are those pandas gives the concatenation.  A shuffle would spread
the groups over workers, but not a group: its latencies would still meet on one worker.

This module is imported on its own (``import perfnet.dask``): ``import perfnet`` does not load dask.
"""

from __future__ import annotations

import functools
import glob
import operator
import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.dataframe.utils import clear_known_categories
from dask.delayed import Delayed

import perfnet
from perfnet import analysis
from perfnet.errors import UsageError
from perfnet.topology import Topology

__all__ = ["FRAMES", "Traces", "read_traces"]

FRAMES: Final = ("events", "packets", "hops", "stages")
"""The frames of a :class:`perfnet.Trace` that :class:`Traces` gives over all captures."""

Summarize = Callable[[pd.DataFrame, Sequence[str]], pd.DataFrame]


def _with_capture(frame: pd.DataFrame, code: int, captures: pd.CategoricalDtype) -> pd.DataFrame:
    """``frame`` with a first column ``capture``: category ``code`` of ``captures`` on every row."""
    framed = frame.copy(deep=False)  # the read's frame stays as it was
    column = pd.Categorical.from_codes(np.full(len(frame), code), dtype=captures)
    framed.insert(0, "capture", pd.Series(column, index=frame.index))
    return framed


def _read_frames(
    path: str, code: int, captures: pd.CategoricalDtype, topology: Topology | str | Path | None
) -> dict[str, pd.DataFrame]:
    """The frames (see :data:`FRAMES`) of capture ``path``, category ``code`` of ``captures``,
    each with its ``capture`` column: one task."""
    trace = perfnet.read(path, topology=topology)
    return {name: _with_capture(getattr(trace, name), code, captures) for name in FRAMES}


@functools.cache
def _empty_frames() -> dict[str, pd.DataFrame]:
    """Zero-row frames with the columns and dtypes :func:`perfnet.read` gives, to tell dask what
    each partition holds without reading a capture.  Taken from a real read of the small bundled
    example, so they follow the reader; the categories of categorical columns differ between
    captures, so dask is told they are unknown."""
    trace = perfnet.read(perfnet.example_capture())
    return {name: clear_known_categories(getattr(trace, name).iloc[:0]) for name in FRAMES}


def _latencies(frames: dict[str, pd.DataFrame], name: str, columns: list[str]) -> pd.DataFrame:
    """The columns of one capture's frame ``name`` that a latency summary reads."""
    return frames[name][columns]


def _summarize(samples: list[pd.DataFrame], by: list[str], summarize: Summarize) -> pd.DataFrame:
    """``summarize`` over all captures' latencies, concatenated in capture order."""
    return summarize(pd.concat(samples, ignore_index=True), by)


class Traces:
    """Many captures as lazy dask DataFrames, one partition per capture (see the module).

    Build one with :func:`read_traces`.  Frames and summaries are computed on the active dask
    scheduler; nothing is read before.

    Args:
        captures: the captures' paths, in partition order.
        topology: passed to :func:`perfnet.read` for every capture.

    Attributes:
        captures: the captures' paths, as given; partition ``i`` is ``captures[i]``.
    """

    def __init__(self, captures: Sequence[str], topology: Topology | str | Path | None = None) -> None:
        self.captures: tuple[str, ...] = tuple(captures)
        dtype = pd.CategoricalDtype(list(self.captures))
        # Keys are drawn once per Traces: frames computed together share its reads, and a new
        # read_traces reads the files anew.  Each task carries all the categories (the graph
        # grows as captures squared: 10,000 strings for 100 captures); held once under a key of
        # their own, they would draw every read to the worker that holds them.
        self._reads: list[Delayed] = [
            dask.delayed(_read_frames, pure=False)(path, code, dtype, topology)
            for code, path in enumerate(self.captures)
        ]
        self._meta = {name: _with_capture(empty, 0, dtype) for name, empty in _empty_frames().items()}

    def __repr__(self) -> str:
        more = ", ..." if len(self.captures) > 3 else ""
        return f"<Traces {len(self.captures)} captures: {', '.join(self.captures[:3])}{more}>"

    def _frame(self, name: str) -> dd.DataFrame:
        # An empty frame may hold object columns where others hold str (pandas infers str from
        # a column of strings, object from no values): dask is not asked to verify the dtypes,
        # so the partitions stay as perfnet.read gives them.
        parts = [dask.delayed(operator.getitem, pure=True)(read, name) for read in self._reads]
        return dd.from_delayed(parts, meta=self._meta[name], verify_meta=False)

    @functools.cached_property
    def events(self) -> dd.DataFrame:
        """Every capture's :attr:`perfnet.Trace.events`, with ``capture`` first."""
        return self._frame("events")

    @functools.cached_property
    def packets(self) -> dd.DataFrame:
        """Every capture's :attr:`perfnet.Trace.packets`, with ``capture`` first."""
        return self._frame("packets")

    @functools.cached_property
    def hops(self) -> dd.DataFrame:
        """Every capture's :attr:`perfnet.Trace.hops`, with ``capture`` first."""
        return self._frame("hops")

    @functools.cached_property
    def stages(self) -> dd.DataFrame:
        """Every capture's :attr:`perfnet.Trace.stages`, with ``capture`` first."""
        return self._frame("stages")

    def hop_latency(self, by: Sequence[str] = ("from_dev", "to_dev")) -> pd.DataFrame:
        """:func:`perfnet.analysis.hop_latency` over the hops of all captures.

        Args:
            by: the columns that define a hop; add ``capture`` for one summary per capture.

        Returns:
            The frame ``analysis.hop_latency`` returns for the concatenation (``pd.concat``, in
            capture order) of every capture's hops with their ``capture`` column: equal to it in
            columns, dtypes, values and row order (see the module for how).

        Raises:
            UsageError: a ``by`` column is not a column of :attr:`hops`.
        """
        return self._summary("hops", by, analysis.hop_latency)

    def stage_latency(self, by: Sequence[str] = ("dev", "from_event", "to_event")) -> pd.DataFrame:
        """:func:`perfnet.analysis.stage_latency` over the stages of all captures.

        Args:
            by: the columns that define a stage; add ``capture`` for one summary per capture.

        Returns:
            The frame ``analysis.stage_latency`` returns for the concatenation (``pd.concat``, in
            capture order) of every capture's stages with their ``capture`` column: equal to it
            in columns, dtypes, values and row order (see the module for how).

        Raises:
            UsageError: a ``by`` column is not a column of :attr:`stages`.
        """
        return self._summary("stages", by, analysis.stage_latency)

    def _summary(self, name: str, by: Sequence[str], summarize: Summarize) -> pd.DataFrame:
        """``summarize`` of frame ``name`` over all captures, computed as the module says."""
        keys = list(by)
        unknown = [column for column in keys if column not in self._meta[name].columns]
        if unknown:
            raise UsageError(f"{name} have no column {unknown}: by= takes some of {list(self._meta[name].columns)}")
        samples = [dask.delayed(_latencies)(read, name, [*keys, "latency_ns"]) for read in self._reads]
        summary: pd.DataFrame = dask.delayed(_summarize)(samples, keys, summarize).compute()
        return summary


def _capture_paths(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The captures that ``paths`` names: a path that exists as written (``run[1].txt``), a
    glob pattern's matches, sorted, or the paths given."""
    if isinstance(paths, str | os.PathLike):
        pattern = os.fspath(paths)
        matches = [pattern] if os.path.exists(pattern) else sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise UsageError(f"no capture matches {pattern!r}")
        return matches
    captures = [os.fspath(path) for path in paths]
    if not captures:
        raise UsageError("no captures given")
    repeated = sorted(path for path, count in Counter(captures).items() if count > 1)
    if repeated:
        raise UsageError(f"captures given more than once: {repeated} (packets are told apart by capture)")
    return captures


def read_traces(
    paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    topology: Topology | str | Path | None = None,
) -> Traces:
    """Name many captures as one :class:`Traces`, reading none of them yet.

    Args:
        paths: a glob pattern (``"captures/*.txt.gz"``; ``**`` matches subdirectories), whose
            matches are taken in sorted order, or the captures' paths in the order wanted.
            Anything :func:`perfnet.read` takes as a path can be a capture.
        topology: the capturing host's interfaces, for every capture (see :func:`perfnet.read`;
            by default each capture's own ``<capture>.topology.json``, or one inferred from it).

    Returns:
        The captures' frames as lazy dask DataFrames, partition ``i`` from ``captures[i]``.

    Raises:
        UsageError: the pattern matches nothing, no path is given, or one is given twice.
    """
    return Traces(_capture_paths(paths), topology=topology)
