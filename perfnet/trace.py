"""``Trace``: one parsed capture, and the DataFrames computed from it (lazily, cached).

Rows are appended to plain lists while the stream is read and each DataFrame is built once, on
first access.  The packet-level frames (``packets``, ``hops``, ``stages``, ``drops``) come from
:mod:`perfnet.paths`, which knows nothing about text formats.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pandas as pd

from perfnet.grammar import Variant
from perfnet.records import BadLine, FieldValue, Item, Message, Record

# Columns every event row has; the last three are copied from the event's own fields where
# it has them, because path reconstruction and drop tables need them for every event.
EVENT_COLUMNS = (
    "time_ns",
    "comm",
    "tid",
    "cpu",
    "event",
    "dev",
    "skbaddr",
    "len",
    "protocol",
    "reason",
    "location",
    "lineno",
    "callchain",
)
_COMMON = ("time_ns", "comm", "tid", "cpu", "lineno", "callchain")


@dataclass
class _Rows:
    """Column lists for the events frame, plus each tracepoint's own field dicts."""

    columns: dict[str, list[Any]] = field(default_factory=lambda: {c: [] for c in EVENT_COLUMNS})
    fields_by_event: dict[str, list[tuple[int, Mapping[str, FieldValue]]]] = field(default_factory=dict)

    def add(self, rec: Record) -> None:
        cols = self.columns
        self.fields_by_event.setdefault(rec.event, []).append((len(cols["time_ns"]), rec.fields))
        get = rec.fields.get
        for name, value in (
            ("time_ns", rec.time_ns),
            ("comm", rec.comm),
            ("tid", rec.tid),
            ("cpu", rec.cpu),
            ("event", rec.event),
            ("dev", rec.dev),
            ("skbaddr", rec.skbaddr),
            ("len", rec.len),
            ("protocol", get("protocol")),
            ("reason", get("reason")),
            ("location", get("location")),
            ("lineno", rec.lineno),
            ("callchain", rec.callchain),
        ):
            cols[name].append(value)


class Trace:
    """A parsed capture: its variant, events, non-event messages and unparsed lines.

    Build one with :func:`perfnet.read` (or, later, ``perfnet.capture``).  Frames are
    properties computed on first access and cached.
    """

    def __init__(self, items: Iterable[Item], format: Variant, source: str = "") -> None:
        self.source = source
        self._rows = _Rows()
        self._messages: list[Message] = []
        self._errors: list[BadLine] = []
        self.format = format
        for item in items:
            if isinstance(item, Record):
                self._rows.add(item)
            elif isinstance(item, Message):
                self._messages.append(item)
            else:
                self._errors.append(item)

    def __repr__(self) -> str:
        return (
            f"<Trace {self.source or '(stream)'} format={self.format} events={len(self.events)} "
            f"errors={len(self._errors)} lost={self.lost}>"
        )

    @property
    def lost(self) -> int:
        """Events perf (or ftrace) reported lost, summed over its LOST lines."""
        return sum(m.lost for m in self._messages)

    @cached_property
    def events(self) -> pd.DataFrame:
        """One row per event, sorted by time (stable: perf trace -a does not print in order).

        Columns: ``time_ns`` (int64), ``comm``, ``tid``/``cpu`` (nullable Int64), ``event``,
        ``dev``, ``skbaddr`` (nullable UInt64: missing for ``*_exit`` events), ``len``,
        ``protocol`` (nullable Int64), ``reason``, ``location``, ``lineno`` and ``callchain``
        (a tuple of frames, empty unless the capture had callchains).
        """
        cols = self._rows.columns
        frame = pd.DataFrame(
            {
                "time_ns": pd.array(cols["time_ns"], dtype="int64"),
                "comm": pd.array(cols["comm"], dtype="object"),
                "tid": pd.array(cols["tid"], dtype="Int64"),
                "cpu": pd.array(cols["cpu"], dtype="Int64"),
                "event": pd.array(cols["event"], dtype="object"),
                "dev": pd.array(cols["dev"], dtype="object"),
                "skbaddr": pd.array(cols["skbaddr"], dtype="UInt64"),
                "len": pd.array(cols["len"], dtype="Int64"),
                "protocol": pd.array(cols["protocol"], dtype="Int64"),
                "reason": pd.array(cols["reason"], dtype="object"),
                "location": pd.array(cols["location"], dtype="object"),
                "lineno": pd.array(cols["lineno"], dtype="int64"),
                "callchain": pd.array(cols["callchain"], dtype="object"),
            }
        )
        return frame.sort_values("time_ns", kind="stable", ignore_index=True)

    def df(self, event: str) -> pd.DataFrame:
        """That tracepoint's rows, sorted by time, with all its typed fields as columns.

        Args:
            event: ``subsystem:name``, e.g. ``"net:netif_rx_entry"``.

        Returns:
            Columns ``time_ns``, ``comm``, ``tid``, ``cpu``, ``lineno``, ``callchain``, then the
            event's fields in schema order; empty if the capture has no such event.
        """
        rows = self._rows.fields_by_event.get(event, [])
        cols = self._rows.columns
        index = [i for i, _ in rows]
        common = pd.DataFrame({name: [cols[name][i] for i in index] for name in _COMMON})
        common = common.astype({"time_ns": "int64", "tid": "Int64", "cpu": "Int64", "lineno": "int64"})
        fields = pd.DataFrame.from_records([dict(f) for _, f in rows], index=common.index)
        return pd.concat([common, fields], axis=1).sort_values("time_ns", kind="stable", ignore_index=True)

    @cached_property
    def messages(self) -> pd.DataFrame:
        """Lines perf printed that are not events: ``lineno``, ``kind``, ``text``, ``lost``."""
        return pd.DataFrame(
            [(m.lineno, m.kind, m.text, m.lost) for m in self._messages],
            columns=["lineno", "kind", "text", "lost"],
        ).astype({"lineno": "int64", "lost": "int64"})

    @cached_property
    def errors(self) -> pd.DataFrame:
        """Every line that did not parse: ``lineno``, ``column``, ``line``, ``message``."""
        return pd.DataFrame(
            [(e.lineno, e.column, e.line, e.message) for e in self._errors],
            columns=["lineno", "column", "line", "message"],
        ).astype({"lineno": "int64", "column": "int64"})

    def event_counts(self) -> dict[str, int]:
        """Events per tracepoint, most frequent first."""
        return dict(Counter(self._rows.columns["event"]).most_common())  # type: ignore[arg-type]
