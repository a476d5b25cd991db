"""perfnet: follow packets through the Linux network stack with perf and the net:* tracepoints.

The public API is this module: :func:`read` a saved capture into a :class:`Trace`, stream typed
records with :func:`iter_records`, or run perf live with :func:`capture` and :func:`stream`.
Every error derives from :class:`PerfnetError`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perfnet.bundled import example_capture
from perfnet.errors import NotPerfOutputError, ParseError, PerfnetError, SchemaError, UsageError

if TYPE_CHECKING:
    from perfnet.grammar import Variant
    from perfnet.host.perf import FilterError, PerfError, PerfNotFoundError, PerfPermissionError, UnknownEventError
    from perfnet.live import CaptureConfig, CaptureStats, TracedCommandError, capture, configure, stream
    from perfnet.reader import Source
    from perfnet.records import BadLine, Message, Record
    from perfnet.schema import EventSchema
    from perfnet.topology import Topology
    from perfnet.trace import Trace

_LAZY: dict[str, str] = {
    "BadLine": "perfnet.records",
    "CaptureConfig": "perfnet.live",
    "CaptureStats": "perfnet.live",
    "EventSchema": "perfnet.schema",
    "FilterError": "perfnet.host.perf",
    "Message": "perfnet.records",
    "PerfError": "perfnet.host.perf",
    "PerfNotFoundError": "perfnet.host.perf",
    "PerfPermissionError": "perfnet.host.perf",
    "Record": "perfnet.records",
    "Topology": "perfnet.topology",
    "Trace": "perfnet.trace",
    "TracedCommandError": "perfnet.live",
    "UnknownEventError": "perfnet.host.perf",
    "Variant": "perfnet.grammar",
    "capture": "perfnet.live",
    "configure": "perfnet.live",
    "stream": "perfnet.live",
}
"""Where each public name lives: it is imported on first use, so ``import perfnet`` is quick
(pandas and pyarrow take a second or two) and the ``perfnet`` command catches Ctrl-C from its
first instant."""


def __getattr__(name: str) -> Any:
    """A public name (or a submodule, ``perfnet.analysis``) loaded on first use."""
    if name.startswith("__"):
        raise AttributeError(f"module 'perfnet' has no attribute {name!r}")
    module = _LAZY.get(name)
    if module is None:
        try:
            return importlib.import_module(f"perfnet.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module 'perfnet' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


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
    from perfnet.kallsyms import load_kallsyms
    from perfnet.schema import load_enum_tables, load_schemas

    formats = formats if formats is not None else _beside(source, ".formats")
    kallsyms = kallsyms if kallsyms is not None else _beside(source, ".kallsyms.gz")
    return {
        "schemas": load_schemas(schemas),
        "enums": load_enum_tables(formats) if formats is not None else {},
        "symbols": load_kallsyms(kallsyms) if kallsyms is not None else None,
    }


def _file_bar(progress: bool, name: str) -> Any:
    """A progress bar of the bytes of file ``name`` on standard error (off unless ``progress``
    and ``name`` is a regular file)."""
    from tqdm import tqdm

    size = Path(name).stat().st_size if progress and name not in ("", "-") and Path(name).is_file() else 0
    return tqdm(total=size, unit="B", unit_scale=True, desc=Path(name).name, file=sys.stderr, disable=not size)


def _topology(source: Source, topology: Topology | str | Path | None) -> Topology | None:
    """The topology given (or the path of one), else the one saved beside the capture, if any."""
    from perfnet.topology import Topology

    if topology is None:
        saved = _beside(source, ".topology.json")
        return Topology.load(saved) if saved is not None else None
    return topology if isinstance(topology, Topology) else Topology.load(topology)


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
    from perfnet.columns import read_columns
    from perfnet.dataset import is_dataset, read_dataset
    from perfnet.trace import Trace

    if isinstance(source, str | Path) and is_dataset(source):
        return read_dataset(source)
    topology = _topology(source, topology)
    name = str(source) if isinstance(source, str | Path) else ""
    with _file_bar(progress, name) as bar:
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
    from perfnet.reader import open_items
    from perfnet.records import Record

    _, items = open_items(source, format=format, strict=strict, **_tables(source, schemas, formats, kallsyms))
    return (item for item in items if isinstance(item, Record))
