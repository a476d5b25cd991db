"""perfnet: follow packets through the Linux network stack with perf and the net:* tracepoints.

The public API is this module: :func:`read` a capture into a :class:`Trace`, or stream typed
records with :func:`iter_records`.  Every error derives from :class:`PerfnetError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from perfnet.errors import ParseError, PerfnetError, SchemaError
from perfnet.grammar import EnumTables, Variant
from perfnet.reader import Source, open_items
from perfnet.records import BadLine, Message, Record
from perfnet.schema import EventSchema, load_enum_tables, load_schemas
from perfnet.topology import Topology
from perfnet.trace import Trace

__all__ = [
    "BadLine",
    "EventSchema",
    "Message",
    "ParseError",
    "PerfnetError",
    "Record",
    "SchemaError",
    "Trace",
    "Variant",
    "iter_records",
    "read",
]

HOST_TRACEFS = "/sys/kernel/tracing"
"""Pass as ``formats=`` when parsing on the host that captured: enum names from its kernel."""


def _enums(source: Source, formats: str | Path | None) -> EnumTables:
    """Enum tables from ``formats``, or from a ``<capture>.formats`` directory beside a path."""
    if formats is None and isinstance(source, str | Path) and str(source) != "-":
        beside = Path(f"{source}.formats")
        formats = beside if beside.is_dir() else None
    return load_enum_tables(formats) if formats is not None else {}


def read(
    source: Source,
    format: Variant | str | None = None,
    strict: bool = False,
    schemas: Iterable[str | Path] = (),
    formats: str | Path | None = None,
) -> Trace:
    """Parse a capture into a :class:`Trace`.

    Args:
        source: a path (``.gz``, ``.bz2``, ``.xz``, ``.zst`` are decompressed), a file object,
            an iterable of lines, or ``"-"`` for standard input.
        format: the output variant (see :class:`Variant`); detected from the input if None.
        strict: raise :class:`ParseError` at the first bad line instead of recording it in
            ``Trace.errors``.
        schemas: extra tracepoint schema files (TOML, like those in ``grammars/``).
        formats: where to read the kernel's tracepoint ``format`` files (the tracefs root,
            e.g. :data:`HOST_TRACEFS`, or a saved copy) to name numeric enums such as
            ``kfree_skb``'s drop reason.  Default: a ``<source>.formats`` directory beside
            the capture, if there is one; otherwise numbers stay numbers.  Likewise a
            ``<source>.topology.json`` (saved by a live capture) gives ``packets`` a ``netns_path``.

    Raises:
        ParseError: in strict mode, at the first line that does not parse.
        PerfnetError: the source cannot be read, or a schema file is invalid.
    """
    variant, items = open_items(
        source, format=format, schemas=load_schemas(schemas), enums=_enums(source, formats), strict=strict
    )
    trace = Trace(items, variant, source=str(source) if isinstance(source, str | Path) else "")
    beside = Path(f"{source}.topology.json") if isinstance(source, str | Path) and str(source) != "-" else None
    if beside is not None and beside.is_file():
        trace.topology = Topology.load(beside)  # saved by a live capture: gives packets a netns_path
    return trace


def iter_records(
    source: Source,
    format: Variant | str | None = None,
    strict: bool = False,
    schemas: Iterable[str | Path] = (),
    formats: str | Path | None = None,
) -> Iterator[Record]:
    """Stream the events of a capture as typed records, in input order and constant memory.

    Arguments as for :func:`read`.  Non-event lines are skipped (bad ones raise in strict mode).
    """
    _, items = open_items(
        source, format=format, schemas=load_schemas(schemas), enums=_enums(source, formats), strict=strict
    )
    return (item for item in items if isinstance(item, Record))
