"""perfnet: follow packets through the Linux network stack with perf and the net:* tracepoints.

The public API is this module: :func:`read` a saved capture into a :class:`Trace`, stream typed
records with :func:`iter_records`, or run perf live with :func:`capture` and :func:`stream`.
Every error derives from :class:`PerfnetError`.
"""

from __future__ import annotations

import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from perfnet.bundled import example_capture
from perfnet.columns import read_columns
from perfnet.dataset import is_dataset, read_dataset
from perfnet.errors import NotPerfOutputError, ParseError, PerfnetError, SchemaError, UsageError
from perfnet.grammar import Variant
from perfnet.host.perf import (
    FilterError,
    PerfError,
    PerfNotFoundError,
    PerfPermissionError,
    UnknownEventError,
)
from perfnet.kallsyms import load_kallsyms
from perfnet.live import CaptureConfig, CaptureStats, TracedCommandError, capture, configure, stream
from perfnet.reader import Source, open_items
from perfnet.records import BadLine, Message, Record
from perfnet.schema import EventSchema, load_enum_tables, load_schemas
from perfnet.topology import Topology
from perfnet.trace import Trace

try:
    __version__ = importlib.metadata.version("perfnet")
except importlib.metadata.PackageNotFoundError:  # run from a source tree that was not installed
    __version__ = "0+unknown"

__all__ = [
    "HOST_TRACEFS",
    "BadLine",
    "CaptureConfig",
    "CaptureStats",
    "EventSchema",
    "FilterError",
    "Message",
    "NotPerfOutputError",
    "ParseError",
    "PerfError",
    "PerfNotFoundError",
    "PerfPermissionError",
    "PerfnetError",
    "Record",
    "SchemaError",
    "Trace",
    "TracedCommandError",
    "UnknownEventError",
    "UsageError",
    "Variant",
    "__version__",
    "capture",
    "configure",
    "example_capture",
    "iter_records",
    "read",
    "stream",
]

HOST_TRACEFS = "/sys/kernel/tracing"
"""Pass as ``formats=`` when parsing on the host that captured: enum names from its kernel."""


def _beside(source: Source, suffix: str) -> Path | None:
    """A file a live capture saved next to its raw output (``<raw><suffix>``), if there is one."""
    if not isinstance(source, str | Path) or str(source) == "-":
        return None
    path = Path(f"{source}{suffix}")
    return path if path.exists() else None


def _tables(
    source: Source, schemas: Iterable[str | Path], formats: str | Path | None, kallsyms: str | Path | None
) -> dict[str, Any]:
    """The schemas, enum tables and kernel symbols to parse ``source`` with (by default, the
    files a live capture saved beside it)."""
    formats = formats if formats is not None else _beside(source, ".formats")
    kallsyms = kallsyms if kallsyms is not None else _beside(source, ".kallsyms.gz")
    return {
        "schemas": load_schemas(schemas),
        "enums": load_enum_tables(formats) if formats is not None else {},
        "symbols": load_kallsyms(kallsyms) if kallsyms is not None else None,
    }


def read(
    source: Source,
    format: Variant | str | None = None,
    strict: bool = False,
    schemas: Iterable[str | Path] = (),
    formats: str | Path | None = None,
    kallsyms: str | Path | None = None,
    topology: Topology | str | Path | None = None,
    progress: bool = False,
) -> Trace:
    """Parse a capture into a :class:`Trace`.

    Args:
        source: a path (gzip, bzip2, xz and zstd data are decompressed and a ``perf.data``
            recording is read through ``perf script``, known by their first bytes), a binary
            file object, an iterable of lines, or ``"-"`` for standard input.  A directory
            ``perfnet convert`` wrote (see :mod:`perfnet.dataset`) gives back the Trace it
            holds; the other arguments do not apply to it.
        format: the output variant (see :class:`Variant`); detected from the input if None.
        strict: raise :class:`ParseError` at the first bad line instead of recording it in
            ``Trace.errors``.
        schemas: extra tracepoint schema files (TOML, like those in ``grammars/``).
        formats: where to read the kernel's tracepoint ``format`` files (the tracefs root,
            e.g. :data:`HOST_TRACEFS`, or a saved copy) to name numeric enums such as
            ``kfree_skb``'s drop reason.  Default: ``<source>.formats`` beside the capture,
            if there is one; otherwise numbers stay numbers.
        kallsyms: kernel text symbols (``/proc/kallsyms`` format, may be gzipped) to name
            code addresses perf trace prints in hex.  Default: ``<source>.kallsyms.gz``.

        topology: the capturing host's interfaces (a :class:`Topology`, or the path of one
            saved with :meth:`Topology.save` or ``perfnet topology save``).  Default:
            ``<source>.topology.json`` beside the capture (a live capture saves one); without
            either, the trace infers one from its events.
        progress: show a progress bar on standard error while a file is read.

    Raises:
        ParseError: in strict mode, at the first line that does not parse.
        NotPerfOutputError: the variant was detected, yet no line is an event or a perf message.
        PerfnetError: the source cannot be read, or a schema file is invalid.
    """
    if isinstance(source, str | Path) and is_dataset(source):
        return read_dataset(source)
    if topology is None:
        saved = _beside(source, ".topology.json")
        topology = Topology.load(saved) if saved is not None else None
    elif not isinstance(topology, Topology):
        topology = Topology.load(topology)
    name = str(source) if isinstance(source, str | Path) else ""
    size = Path(name).stat().st_size if progress and name not in ("", "-") and Path(name).is_file() else 0
    with tqdm(total=size, unit="B", unit_scale=True, desc=Path(name).name, file=sys.stderr, disable=not size) as bar:
        variant, columns = read_columns(
            source,
            format=format,
            strict=strict,
            progress=lambda done: bar.update(done - bar.n),
            **_tables(source, schemas, formats, kallsyms),
        )
        return Trace(columns, variant, source=name, topology=topology)


def iter_records(
    source: Source,
    format: Variant | str | None = None,
    strict: bool = False,
    schemas: Iterable[str | Path] = (),
    formats: str | Path | None = None,
    kallsyms: str | Path | None = None,
) -> Iterator[Record]:
    """Stream the events of a capture as typed records, in input order and constant memory.

    Arguments as for :func:`read`.  Non-event lines are skipped (bad ones raise in strict mode).
    """
    _, items = open_items(source, format=format, strict=strict, **_tables(source, schemas, formats, kallsyms))
    return (item for item in items if isinstance(item, Record))
