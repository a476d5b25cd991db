"""``Trace``: one parsed capture, and the DataFrames computed from it (lazily, cached).

A trace keeps its events as columns (:class:`~perfnet.columns.Columns`); each DataFrame is
built once, on first access, and records are made on demand.  The packet-level frames
(``packets``, ``hops``, ``stages``, ``drops``) come from :mod:`perfnet.paths`, which knows
nothing about text formats.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfnet import analysis, paths
from perfnet.columns import Columns, Table, build_columns, categorical, release_memory
from perfnet.display import ethertypes, to_html
from perfnet.errors import UsageError
from perfnet.grammar import Variant
from perfnet.infer import infer_topology
from perfnet.records import Item, Record
from perfnet.topology import Topology, label_paths

# Columns taken from each record's fields for every event row: path reconstruction and drop
# tables need them on every event, not only in that tracepoint's own frame.
# column -> (dtype, Python type of its values, range of an integer column's values).
_FIELD_COLUMNS: dict[str, tuple[str, type, tuple[int, int] | None]] = {
    "dev": ("category", str, None),
    "skbaddr": ("UInt64", int, (0, (1 << 64) - 1)),
    "len": ("UInt32", int, (0, (1 << 32) - 1)),
    "protocol": ("UInt16", int, (0, (1 << 16) - 1)),  # the ethertype
    "reason": ("category", object, None),
    "location": ("category", str, None),
}


def _of_type(value: object, kind: type, bounds: tuple[int, int] | None = None) -> object:
    """``value`` if it is a ``kind`` (bools are not ints here) within ``bounds``, else None."""
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        return None
    if bounds is not None and not bounds[0] <= value <= bounds[1]:  # type: ignore[operator]
        return None
    return value


def _field_column(columns: Columns, name: str) -> Any:
    """One of the events frame's field columns (input order): the field's values of every
    tracepoint that has it, typed; a value of the wrong type or range (an event without a
    schema keeps fields as printed) is missing."""
    dtype, kind, bounds = _FIELD_COLUMNS[name]
    n = len(columns)
    table = Table()
    codes = np.full(n, -1, np.int64)
    for rows, values, value_codes in columns.field_column(name, address=name == "skbaddr"):
        typed = table.codes([_of_type(v, kind, bounds) for v in values])
        codes[rows] = typed[value_codes]
    if dtype == "category":
        return categorical(codes, table.values)
    numbers = np.array([0 if v is None else v for v in table.values] + [0], dtype=dtype.lower())
    missing = np.array([v is None for v in table.values] + [True])
    return pd.arrays.IntegerArray(numbers[codes], missing[codes])


_COPY_ON_WRITE: bool = int(pd.__version__.split(".")[0]) >= 3 or bool(pd.get_option("mode.copy_on_write"))


def _typed_column(values: npt.NDArray[np.object_], dtype: str) -> Any:
    """Values (None: missing) at ``dtype``, or as objects where one does not fit it (never
    pandas' inferred ``str``, whose storage depends on the pandas version)."""
    try:
        if dtype == "category":
            table = Table()
            return categorical(table.codes(values.tolist()), table.values)
        if dtype != "object":
            return pd.array(values, dtype=dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        pass
    return pd.Series(values, dtype=object)


HEADER_COLUMNS: Final = ("time_ns", "comm", "tid", "cpu", "lineno", "callchain")
"""The columns :meth:`Trace.df` takes from the header, before the event's own fields."""


def field_column(name: str) -> str:
    """The column of field ``name`` in :meth:`Trace.df`: ``name``, or ``<name>_field`` where a
    header column has that name."""
    return f"{name}_field" if name in HEADER_COLUMNS else name


def _by_path(paths: pd.Series, keep: Callable[[set[str]], bool]) -> npt.NDArray[np.bool_]:
    """Whether each packet's path (devices joined by ``>``) is one to ``keep``; each distinct
    path is judged once."""
    codes, distinct = pd.factorize(paths.astype(str))
    return np.array([keep(set(str(path).split(">"))) for path in distinct] + [False])[codes]


def _names(given: str | Iterable[str]) -> set[str]:
    return {given} if isinstance(given, str) else set(given)


def netns_packets(packets: pd.DataFrame, topology: Topology) -> pd.DataFrame:
    """The packets frame with ``netns_path``: devices outside perfnet's namespace written
    ``name@netns``, names used in several namespaces told apart by veth peers."""
    packets = packets.copy()
    packets["netns_path"] = label_paths(packets["path"], topology)
    return packets


def netns_devices(packets: pd.DataFrame, packet_id: Iterable[int], visit: Iterable[int]) -> pd.Categorical:
    """The device of each packet's visit as ``netns_path`` labels it (``eth0@ctr1``), missing
    outside a packet or a visit; categorical, as the path frames' device names are.  Each
    distinct path is split once.

    Args:
        packets: packets with their ``netns_path`` (:func:`netns_packets`).
        packet_id, visit: the visits to name.
    """
    packet_id, visit = np.asarray(packet_id, np.int64), np.asarray(visit, np.int64)
    ids = packets["packet_id"].to_numpy(np.int64)
    path_of, paths_ = pd.factorize(packets["netns_path"].astype(str))
    devices = [str(path).split(">") for path in paths_]
    width = max((len(devs) for devs in devices), default=0)
    table = np.full((len(devices) + 1, width + 1), None, dtype=object)  # last row and column: None
    for i, devs in enumerate(devices):
        table[i, : len(devs)] = devs
    row = np.full(len(packet_id), len(devices))
    if len(ids):
        by_id = np.argsort(ids, kind="stable")
        at = by_id[np.minimum(np.searchsorted(ids[by_id], packet_id), len(ids) - 1)]
        found = ids[at] == packet_id
        row[found] = path_of[at[found]]
    column = np.where((visit >= 0) & (visit < width), visit, width)
    return pd.Categorical(table[row, column])


def netns_hops(hops: pd.DataFrame, packets: pd.DataFrame) -> pd.DataFrame:
    """The hops frame with ``from_netns_dev`` and ``to_netns_dev`` (see :func:`netns_devices`)."""
    hops = hops.copy()
    step = hops["hop"].to_numpy(np.int64)
    hops["from_netns_dev"] = netns_devices(packets, hops["packet_id"], step)
    hops["to_netns_dev"] = netns_devices(packets, hops["packet_id"], step + 1)
    return hops


def netns_stages(stages: pd.DataFrame, packets: pd.DataFrame) -> pd.DataFrame:
    """The stages frame with the visit's ``netns_dev`` (see :func:`netns_devices`)."""
    stages = stages.copy()
    stages["netns_dev"] = netns_devices(packets, stages["packet_id"], stages["visit"])
    return stages


class Trace:
    """A parsed capture: its variant, events, non-event messages and unparsed lines.

    Build one with :func:`perfnet.read` or :func:`perfnet.capture`; it is not changed
    afterwards.  It keeps its events as columns (see :mod:`perfnet.columns`): frames are
    properties computed on first access and cached, and :meth:`records` makes records on
    demand.

    Args:
        columns: the events, messages and bad lines, as read.
        format: the variant they were printed in.
        source: where they came from (a path), for display.
        topology: the capturing host's interfaces, if known (else inferred from the events).
        partial: for a live capture, why it was cut short (None if it was not).
        capture_stats: for a live capture, perf's resource use and the loss accounting.
        frames: the packets already rebuilt from these events (a filtered trace keeps its
            parent's); None: rebuilt on first use.
        start_ns: the time of the capture's first event, which ``since``/``until`` count from
            (a filtered trace keeps its capture's); None: the first of these events.
    """

    def __init__(
        self,
        columns: Columns,
        format: Variant,
        source: str = "",
        topology: Topology | None = None,
        partial: str | None = None,
        capture_stats: Any = None,
        frames: paths.PathFrames | None = None,
        start_ns: int | None = None,
    ) -> None:
        self._columns = columns
        self._given_frames = frames
        self._start_ns = start_ns
        self.format = format
        self.source = source
        self._snapshot = topology
        self._partial = partial
        self._capture_stats = capture_stats

    @classmethod
    def from_items(
        cls,
        items: Iterable[Item],
        format: Variant,
        source: str = "",
        topology: Topology | None = None,
        partial: str | None = None,
        capture_stats: Any = None,
    ) -> Trace:
        """A trace of parsed items (records with their callchains, messages, bad lines)."""
        return cls(build_columns(items), format, source, topology, partial, capture_stats)

    @property
    def start_ns(self) -> int:
        """When the capture's first event happened (``time_ns``; 0 for a capture without
        events): the origin of :meth:`filter`'s ``since`` and ``until``."""
        if self._start_ns is not None:
            return self._start_ns
        return int(self._columns.time_ns.min()) if len(self._columns) else 0

    @property
    def columns(self) -> Columns:
        """The events as the reader keeps them (see :mod:`perfnet.columns`): what the frames,
        records and a Parquet dataset are made from."""
        return self._columns

    @property
    def partial(self) -> str | None:
        """Why a live capture was cut short (``"interrupted (Ctrl-C)"``), or None."""
        return self._partial

    @property
    def capture_stats(self) -> Any:
        """A live capture's :class:`~perfnet.live.CaptureStats`; None for a read capture."""
        return self._capture_stats

    def __repr__(self) -> str:
        return (
            f"<Trace {self.source or '(stream)'} format={self.format} events={len(self._columns)} "
            f"errors={len(self._columns.errors)} lost={self.lost}>"
        )

    def _repr_html_(self) -> str:
        """Jupyter's view of a trace: variant and counts, the paths taken, the hop latency table."""
        name = html.escape(Path(self.source).name) if self.source else "(stream)"
        facts = (
            f"<b>{name}</b>: format <code>{self.format}</code>, {len(self._columns)} events, "
            f"{len(self.packets)} packets, {self.lost} lost, {len(self._columns.errors)} unparsed lines"
        )
        named = analysis.with_namespaces(self)
        return (
            f"<div><p>{facts}</p><p>Paths</p>{to_html(analysis.path_table(named.packets).head(10))}"
            f"<p>Hop latency</p>{to_html(analysis.hop_latency(named.hops))}</div>"
        )

    @property
    def lost(self) -> int:
        """Events perf (or ftrace) reported lost, summed over its LOST lines."""
        return sum(m.lost for m in self._columns.messages)

    @cached_property
    def events(self) -> pd.DataFrame:
        """One row per event, sorted by time (stable: perf trace -a does not print in order).

        Columns: ``time_ns`` (int64), ``comm``, ``tid``/``cpu`` (nullable UInt32), ``event``,
        ``dev``, ``skbaddr`` (nullable UInt64: missing for ``*_exit`` events), ``len``
        (nullable UInt32), ``protocol`` (nullable UInt16, the ethertype), ``reason``,
        ``location``, ``lineno`` (int64) and ``callchain`` (a tuple of frames, empty unless the
        capture had callchains).  ``comm``, ``event``, ``dev``, ``reason``, ``location`` and
        ``callchain`` are categorical: few values repeat over many rows (about 50 bytes per
        event in all), and path reconstruction and topology inference group by their codes.
        """
        columns = self._columns
        frame = pd.DataFrame(
            {
                "time_ns": columns.time_ns,
                "comm": columns.comm,
                "tid": columns.tid,
                "cpu": columns.cpu,
                "event": columns.event,
                **{name: _field_column(columns, name) for name in _FIELD_COLUMNS},
                "lineno": columns.lineno,
                "callchain": columns.callchains(),
            },
            copy=not _COPY_ON_WRITE,  # share the columns' arrays (in time order): a change copies them
        )
        release_memory()
        return frame

    def records(self, event: str | None = None) -> Iterator[Record]:
        """The events as typed :class:`~perfnet.records.Record` objects, made on demand, in
        input order (of one tracepoint only, if ``event`` is given)."""
        return self._columns.records(event)

    def df(self, event: str) -> pd.DataFrame:
        """That tracepoint's rows, sorted by time, with all its typed fields as columns.

        Args:
            event: ``subsystem:name``, e.g. ``"net:netif_rx_entry"``.

        Returns:
            Columns ``time_ns``, ``comm``, ``tid``, ``cpu``, ``lineno``, ``callchain``, then the
            event's fields in the order its print format (or for perf trace its schema) lists
            them, each at its C type (see :attr:`perfnet.schema.Field.dtype`; object where a
            value does not fit, or the event has no schema); empty if the capture has no such
            event.  A field named like one of the header's columns (an event of one's own with
            a ``lineno`` field) is column ``<name>_field`` (:func:`field_column`).
        """
        columns = self._columns
        shapes = [s for s in columns.shapes if s.event == event]
        rows = np.sort(np.concatenate([s.rows for s in shapes])) if shapes else np.zeros(0, np.int64)
        frame = pd.DataFrame(
            {
                "time_ns": columns.time_ns[rows],
                "comm": columns.comm[rows],
                "tid": columns.tid[rows],
                "cpu": columns.cpu[rows],
                "lineno": columns.lineno[rows],
                "callchain": columns.callchains()[rows],
            }
        )
        dtypes = {name: dtype for s in shapes for name, dtype in zip(s.names, s.dtypes, strict=True)}
        for name, dtype in dtypes.items():
            values = np.full(len(rows), None, dtype=object)
            for shape in shapes:
                if name in shape.names:
                    i = shape.names.index(name)
                    typed = np.array([*shape.values[i], None], dtype=object)
                    values[np.searchsorted(rows, shape.rows)] = typed[shape.codes[i]]
            frame[field_column(name)] = _typed_column(values, dtype)  # type: ignore[assignment]
        return frame.sort_values("time_ns", kind="stable", ignore_index=True)

    @property
    def topology(self) -> Topology:
        """The capturing host's namespaces and interfaces: the snapshot the trace was built with
        (a live capture's, or ``<capture>.topology.json``), else inferred from the events
        (``topology.inferred`` is then True; see :mod:`perfnet.infer`).  Packets walk its
        device graph, and ``netns_path`` and the hops' ``*_netns_dev`` are labelled with it."""
        return self._snapshot if self._snapshot is not None else self._inferred

    @cached_property
    def _inferred(self) -> Topology:
        return infer_topology(self.events)

    @cached_property
    def _frames(self) -> paths.PathFrames:
        if self._given_frames is not None:
            return self._given_frames
        # all path frames at once: they share one sorted, factorized view of the events
        losses = [m.lineno for m in self._columns.messages if m.lost]
        return paths.reconstruct(self.events, topology=self.topology, lost_linenos=losses)

    @property
    def labels(self) -> pd.DataFrame:
        """Per event row (aligned with :attr:`events`): ``packet_id`` (-1: in no packet) and
        ``visit`` (position in that packet's path).  See :func:`perfnet.paths.segment`."""
        return self._frames.labels

    @cached_property
    def packets(self) -> pd.DataFrame:
        """One row per packet lifetime: ``packet_id``, ``skbaddr``, ``start_ns``, ``end_ns``,
        ``duration_ns``, ``transit_ns``, ``path`` (devices in arrival order, ``br0>veth1>eth0``),
        ``n_events``, ``len``, ``protocol``, ``kind``, ``end``, ``ended_by`` (the rule that ended
        the packet) and ``netns_path`` (``br0>veth1>eth0@ctr1``; with an inferred topology
        ``eth0@inferred-2``).  See :func:`perfnet.paths.packets`."""
        return netns_packets(self._frames.packets, self.topology)

    @cached_property
    def hops(self) -> pd.DataFrame:
        """One row per device-to-device step of each packet, with its ``latency_ns`` and
        ``from_netns_dev``/``to_netns_dev`` (``eth0@ctr1``), which tell apart devices of one
        name in different namespaces."""
        return netns_hops(self._frames.hops, self.packets)

    @cached_property
    def stages(self) -> pd.DataFrame:
        """Time between consecutive stage events within one device visit (queue, xmit, rx ...),
        with the visit's ``netns_dev`` (``eth0@ctr1``)."""
        return netns_stages(self._frames.stages, self.packets)

    @cached_property
    def drops(self) -> pd.DataFrame:
        """``skb:kfree_skb`` counts by ``reason``, ``location``, the packet's device ``dev``
        and that device as the topology labels it, ``netns_dev`` (``eth0@ctr1``)."""
        labels = self.labels
        return paths.drops(self.events, labels, netns_devices(self.packets, labels["packet_id"], labels["visit"]))

    def filter(
        self,
        dev: str | Iterable[str] | None = None,
        netns: str | Iterable[str] | None = None,
        protocol: str | int | Iterable[str | int] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Trace:
        """The packets that match every condition given, as a Trace: whole paths, with all
        their events, the same packet ids, this trace's topology, messages and bad lines.

        Args:
            dev: the packet visited a device of this name (``eth0``), or this device of one
                namespace as the paths label it (``eth0@ctr1``); one or several (any).
            netns: the packet visited a device of this namespace (its label in
                ``netns_path``; perfnet's own namespace is ``topology.home``); one or several.
            protocol: the packet's ethertype, by name (``ipv4``, ``ipv6``, ``arp``: see
                :data:`perfnet.display.ETHERTYPES`) or number (``0x0800``); one or several.
                ``net:*`` events carry nothing above it.
            since, until: the packet's first event is at least ``since`` and less than
                ``until`` seconds after the capture's first event.

        Raises:
            UsageError: an unknown protocol name, or ``until`` before ``since``.
        """
        packets = self.packets
        chosen = np.ones(len(packets), bool)
        if dev is not None:
            wanted = _names(dev)
            chosen &= _by_path(packets["path"], lambda devs: bool(wanted & devs)) | _by_path(
                packets["netns_path"], lambda devs: bool(wanted & devs)
            )
        if netns is not None:
            spaces, home = _names(netns), self.topology.home
            chosen &= _by_path(
                packets["netns_path"],
                lambda devs: bool(spaces & {d.rpartition("@")[2] if "@" in d else home for d in devs}),
            )
        if protocol is not None:
            chosen &= packets["protocol"].isin(ethertypes(protocol)).fillna(False).to_numpy(bool)
        if since is not None or until is not None:
            if since is not None and until is not None and until < since:
                raise UsageError(f"until ({until:g} s) is before since ({since:g} s)")
            start = packets["start_ns"].to_numpy() - self.start_ns
            if since is not None:
                chosen &= start >= since * 1e9
            if until is not None:
                chosen &= start < until * 1e9
        return self._of_packets(packets["packet_id"].to_numpy()[chosen])

    def _of_packets(self, ids: npt.NDArray[np.int64]) -> Trace:
        """A trace of these packets only: their events, labels and frames, ids unchanged."""
        frames = self._frames
        rows = np.flatnonzero(frames.labels["packet_id"].isin(ids).to_numpy())
        columns = self._columns.take(rows)
        labels = frames.labels.iloc[rows].reset_index(drop=True)
        events = self.events.iloc[rows].reset_index(drop=True)

        def of(frame: pd.DataFrame) -> pd.DataFrame:
            return frame[frame["packet_id"].isin(ids)].reset_index(drop=True)

        kept = paths.PathFrames(
            labels, of(frames.packets), of(frames.hops), of(frames.stages), paths.drops(events, labels)
        )
        return Trace(
            columns, self.format, self.source, self.topology, self._partial, self._capture_stats, kept, self.start_ns
        )

    @cached_property
    def messages(self) -> pd.DataFrame:
        """Lines perf printed that are not events: ``lineno``, ``kind``, ``text``, ``lost``."""
        return pd.DataFrame(
            [(m.lineno, m.kind, m.text, m.lost) for m in self._columns.messages],
            columns=["lineno", "kind", "text", "lost"],
        ).astype({"lineno": "int64", "lost": "uint64"})

    @cached_property
    def errors(self) -> pd.DataFrame:
        """Every line that did not parse: ``lineno``, ``column``, ``line``, ``message``."""
        return pd.DataFrame(
            [(e.lineno, e.column, e.line, e.message) for e in self._columns.errors],
            columns=["lineno", "column", "line", "message"],
        ).astype({"lineno": "int64", "column": "int64"})

    def event_counts(self) -> dict[str, int]:
        """Events per tracepoint, most frequent first."""
        return self._columns.event_counts()
