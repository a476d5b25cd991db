"""Typed records: what one line of perf output becomes.

Every non-blank input line ends in exactly one of three places: a :class:`Record` (a tracepoint
hit; callchain lines are folded into the event above them), a :class:`Message` (something perf
printed that is not an event: ``LOST`` counts, warnings, the summary block, ftrace headers), or a
:class:`BadLine` (a line no grammar accepts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

FieldValue = int | str | bool | None


ADDRESS_FIELDS: Final[Mapping[str, str]] = {"kmem:kmem_cache_free": "ptr"}
"""Events whose skb address is a field of another name (grammars/kmem.toml)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One tracepoint hit, with its fields typed from the tracepoint's schema.

    ``time_ns`` is the timestamp perf printed, in integer nanoseconds: perf trace's
    milliseconds (since the trace began, or absolute with ``-T``), or ``perf script``/ftrace
    seconds since boot, converted exactly and never rebased.  ``event`` is always
    ``subsystem:name``.  ``fields`` holds every field of the event (including ``dev``,
    ``skbaddr`` and ``len``), typed: ints with their sign restored, pointers as ints,
    booleans, unquoted strings, drop reasons by name where the kernel's table is known.
    Fields are also readable as attributes (``rec.mac_header``), except where a field shares
    its name with one of the record's own attributes (``comm``, ``cpu``, ``event`` ...): those
    are the header's; ``rec.fields[name]`` always gives the field.
    """

    lineno: int
    time_ns: int
    event: str
    comm: str | None = None
    tid: int | None = None
    cpu: int | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    callchain: tuple[str, ...] = ()

    @property
    def dev(self) -> str | None:
        """The network device the event names, if it names one."""
        value = self.fields.get("dev")
        return value if isinstance(value, str) else None

    @property
    def skbaddr(self) -> int | None:
        """The skb's address, or None for events that carry none (``*_exit``); for the slab
        free of an skb (``kmem:kmem_cache_free``), the freed object's ``ptr``."""
        value = self.fields.get(ADDRESS_FIELDS.get(self.event, "skbaddr"))
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def len(self) -> int | None:
        """The skb length the event reports, if any."""
        value = self.fields.get("len")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def get(self, name: str, default: FieldValue = None) -> FieldValue:
        """The field ``name``, or ``default`` where this event has no such field (events
        differ: ``net_dev_queue`` has ``mac_header``, ``net_dev_xmit`` does not)."""
        return self.fields.get(name, default)

    def __getattr__(self, name: str) -> FieldValue:
        # Only reached when normal attribute lookup fails: expose the event's own fields.
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(f"{self.event} record has no field {name!r}") from None


MessageKind = Literal["lost", "warning", "error", "summary", "header", "syscall", "perf"]


@dataclass(frozen=True, slots=True)
class Message:
    """A line perf (or ftrace) printed that is not an event; ``lost`` is set for LOST lines."""

    lineno: int
    kind: MessageKind
    text: str
    lost: int = 0


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line no grammar accepted: where, and what was expected there (1-based column)."""

    lineno: int
    line: str
    message: str
    column: int = 1


Item = Record | Message | BadLine
