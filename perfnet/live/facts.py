"""What the capturing host says about a capture, read once tracing is live: the tracepoints'
formats (to name enums), kernel symbols (to name drop locations), the namespaces' devices."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from perfnet.errors import PerfnetError
from perfnet.grammar import EnumTables
from perfnet.host.kernel import host_symbols
from perfnet.host.perf import expand_events, format_text, tracepoints
from perfnet.kallsyms import Kallsyms
from perfnet.schema import EventSchema, enum_tables_from_format
from perfnet.topology import Topology, snapshot


@dataclass
class HostFacts:
    """The host's facts about one capture (empty until :meth:`read`)."""

    captured: set[str] = field(default_factory=set)  # the tracepoints perf's patterns matched
    formats: dict[str, str] = field(default_factory=dict)  # event -> its tracefs format
    symbols: Kallsyms | None = None
    topology: Topology | None = None

    def read(self, wanted: Sequence[str], schemas: Mapping[str, EventSchema]) -> None:
        """Read them for the event patterns ``wanted`` (privileges are needed: perf has them)."""
        self.captured = set(expand_events(wanted, tracepoints() or list(schemas)))
        for event in self.captured:
            text = format_text(event)
            if text is not None:
                self.formats[event] = text
        self.symbols = host_symbols()
        with contextlib.suppress(PerfnetError):  # best effort: labels are an extra, never a failure
            self.topology = snapshot()

    def enums(self) -> EnumTables:
        """The kernel's own number-to-name tables, per event that has any."""
        tables = {event: enum_tables_from_format(text) for event, text in self.formats.items()}
        return {event: table for event, table in tables.items() if table}
