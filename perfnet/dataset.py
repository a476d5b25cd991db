"""A capture as a Parquet dataset: :func:`write_dataset` writes one (``perfnet convert``),
:func:`read_dataset` gives the same :class:`~perfnet.trace.Trace` back (``perfnet.read(DIR)``).

Layout of a dataset directory (:data:`SCHEMA_VERSION` 2).  Each table is a directory of
Parquet parts (``part-00000.parquet``, ...), which other tools (DuckDB, Spark, polars,
pyarrow) read as one table; :func:`write_dataset` writes one part per table, ``perfnet
convert`` (:mod:`perfnet.convert`) as many as it needs to keep its memory bounded:

* ``metadata.json``: schema version, perfnet version, variant, source, partial reason, the
  capture's facts where known (perf and kernel version, wall-clock start, boot time, perf's
  resource use), the topology, each tracepoint's field shapes, and how a conversion read it.
* ``events/``: the events frame (time order) with each event's ``packet_id``, ``visit``
  and ``ended_by``.
* ``details/<subsystem>.<event>/``: each tracepoint's rows with all its typed fields
  (:meth:`Trace.df`), plus ``__shape__`` (which field set the row printed).
* ``messages/``, ``errors/``: perf's messages and the lines that did not parse.
* ``packets/``, ``hops/``, ``stages/``, ``drops/``: the packet frames (a conversion writes
  the first three grouped by skb address: sort by ``packet_id`` for the order a Trace has);
  ``counters/``: a live capture's interface counters against its events.

Columns keep their types: nullable integers, 64-bit addresses as ``uint64``, categories as
dictionaries (their category order is kept in the file's metadata), callchains as lists of
strings.  A column whose values mix types (an enum printed by name where the kernel's table is
known and as a number where not) is stored as JSON text, and said so in the metadata.

A dataset is written into a temporary directory beside ``DIR`` (:class:`DatasetWriter`) and
renamed into place at the end: an interrupted or failed conversion leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfnet import __version__, paths
from perfnet.columns import Columns, FinalShape, Table, narrow
from perfnet.errors import PerfnetError, UsageError
from perfnet.grammar import Variant
from perfnet.live.stats import CaptureStats
from perfnet.records import BadLine, Message
from perfnet.topology import Topology
from perfnet.trace import Trace, field_column

SCHEMA_VERSION: Final = 2
"""The layout :func:`write_dataset` writes and :func:`read_dataset` reads (1 had one file per
table and was never released)."""

METADATA: Final = "metadata.json"
SHAPE_COLUMN: Final = "__shape__"
"""The details tables' column naming each row's field set (an index into the metadata's
``shapes``); no tracepoint field is spelt so."""
ROW_GROUP_ROWS: Final = 65_536
"""Rows per Parquet row group (and per Arrow conversion) of a written frame."""
_CODEC_KEY: Final = b"perfnet"  # Parquet file metadata: how each column is encoded
_LABEL_COLUMNS: Final = ("packet_id", "visit", "ended_by")
_FRAMES: Final = ("packets", "hops", "stages", "drops")
_TABLES: Final = ("events", "details", "messages", "errors", "counters", *_FRAMES)
_NETNS_COLUMNS: Final = {
    "packets": ("netns_path",),
    "hops": ("from_netns_dev", "to_netns_dev"),
    "stages": ("netns_dev",),
    "drops": ("netns_dev",),
}


class DatasetError(PerfnetError):
    """A directory is not a perfnet dataset, or one this version cannot read."""


def is_dataset(path: str | Path) -> bool:
    """``path`` is a directory :func:`write_dataset` wrote: its metadata names a schema version
    and its events table is there."""
    root = Path(path)
    try:
        version = json.loads((root / METADATA).read_text(encoding="utf-8")).get("schema_version")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(version, int) and (root / "events").is_dir()


def _only_dataset(root: Path) -> bool:
    """``root`` holds a dataset and nothing else (what ``force`` may replace)."""
    return is_dataset(root) and {entry.name for entry in root.iterdir()} <= {METADATA, *_TABLES}


# --- one frame <-> one Parquet file, exactly ---------------------------------------------------


def _kind_of(values: Sequence[object]) -> str:
    """How a column of Python values is stored: ``bool``, ``int``, ``str``, or ``json`` for
    mixed types (None is missing in all of them)."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return "str"
    if len(kinds) == 1:
        kind = kinds.pop()
        if kind in (bool, int, str):
            return kind.__name__
    return "json"


def _arrow(values: Sequence[object], kind: str) -> pa.Array:
    if kind == "json":
        return pa.array([None if v is None else json.dumps(v) for v in values], pa.string())
    if kind == "int":
        ints = [v for v in values if v is not None]
        fits = all(-(1 << 63) <= v < (1 << 63) for v in ints)  # type: ignore[operator]
        return pa.array(values, pa.int64() if fits else pa.uint64())
    return pa.array(values, {"bool": pa.bool_(), "str": pa.string()}[kind])


def _python(column: pa.ChunkedArray, kind: str) -> list[Any]:
    """The column's values as Python values (JSON text decoded)."""
    values = column.to_pylist()
    return [None if v is None else json.loads(v) for v in values] if kind == "json" else values


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` so that :func:`read_frame` gives it back equal, dtypes and category
    order included.  It goes to Arrow :data:`ROW_GROUP_ROWS` rows at a time, one row group
    each: a category is written as its values, so the Arrow copy of a whole frame would be
    several times the frame."""
    slicers, codec = [], {}
    for name in frame.columns:
        series = frame[name]
        if isinstance(series.dtype, pd.CategoricalDtype):
            categories = list(series.cat.categories)
            kind = "tuple" if categories and isinstance(categories[0], tuple) else _kind_of(categories)
            if kind == "tuple":
                categories = [list(c) for c in categories]
            slicers.append(_by_code(series.cat.codes.to_numpy(), categories, kind))
            codec[name] = {"category": categories, "kind": kind, "type": str(series.cat.categories.dtype)}
        elif series.dtype == object:
            values = series.tolist()
            kind = _kind_of(values)
            slicers.append(_arrow(values, kind).slice)
            codec[name] = {"kind": kind}
        else:
            slicers.append(functools.partial(_rows_of, series))
            codec[name] = {"dtype": str(series.dtype)}
    names = [str(c) for c in frame.columns]
    writer: pq.ParquetWriter | None = None
    try:
        for start in range(0, max(len(frame), 1), ROW_GROUP_ROWS):
            length = min(ROW_GROUP_ROWS, len(frame) - start)
            table = pa.table([slicer(start, length) for slicer in slicers], names=names)
            if writer is None:
                schema = table.schema.with_metadata({_CODEC_KEY: json.dumps(codec).encode()})
                writer = pq.ParquetWriter(path, schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()


def _by_code(codes: npt.NDArray[Any], categories: list[Any], kind: str) -> Callable[[int, int], pa.Array]:
    """Rows ``start`` to ``start + length`` of a categorical column as their values (a missing
    value's code, -1, is masked)."""
    values = pa.array(categories, pa.list_(pa.string())) if kind == "tuple" else _arrow(categories, kind)

    def rows(start: int, length: int) -> pa.Array:
        part = codes[start : start + length]
        if not len(values):
            return pa.nulls(length, values.type)
        return values.take(pa.array(np.maximum(part, 0), mask=part < 0))

    return rows


def _rows_of(series: pd.Series, start: int, length: int) -> pa.Array:
    """Rows ``start`` to ``start + length`` of a column of numbers."""
    return pa.Array.from_pandas(series.iloc[start : start + length])


def _distinct(column: pa.ChunkedArray, kind: str) -> tuple[list[Any], np.ndarray]:
    """The column's distinct values (None for missing) in order of first appearance, and each
    row's index into them."""
    encoded = pc.dictionary_encode(column.combine_chunks(), null_encoding="encode")
    indices = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return _python(pa.chunked_array([encoded.dictionary]), kind), indices


def _codes_in(column: pa.ChunkedArray, kind: str, categories: list[Any]) -> np.ndarray:
    """Each row's position in ``categories`` (-1: missing)."""
    distinct, indices = _distinct(column, kind)
    where = {value: i for i, value in enumerate(categories)}
    lookup = np.array([-1 if v is None else where[v] for v in distinct] + [-1], np.int64)
    return lookup[indices]


def _tuple_codes(column: pa.ChunkedArray, categories: list[tuple[str, ...]]) -> np.ndarray:
    """Each row's position in ``categories``, for a column of lists (callchains: mostly empty,
    so only the others are converted)."""
    where = {value: i for i, value in enumerate(categories)}
    flat = column.combine_chunks()
    codes = np.full(len(flat), where.get((), -1), np.int64)
    full = np.flatnonzero(pc.list_value_length(flat).to_numpy(zero_copy_only=False) > 0)
    codes[full] = [where[tuple(v)] for v in flat.take(pa.array(full)).to_pylist()]
    return codes


def _pandas(column: pa.ChunkedArray, dtype: Any) -> pd.Series:
    """A column of plain values as the dtype it was written from: nullable integers straight
    from Arrow (through float64, 64-bit addresses would lose their low bits)."""
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return pd.Series(column.to_pandas(types_mapper=lambda _: dtype))
    return pd.Series(column.to_pandas(), dtype=dtype)


def read_frame(path: Path) -> pd.DataFrame:
    """A frame :func:`write_frame` wrote."""
    table = pq.read_table(path)
    codec = json.loads((table.schema.metadata or {})[_CODEC_KEY])
    columns: dict[str, Any] = {}
    for name in table.column_names:
        spec, column = codec[name], table.column(name)
        if "category" in spec:
            kind = spec["kind"]
            if kind == "tuple":
                categories: list[Any] = [tuple(c) for c in spec["category"]]
                codes = _tuple_codes(column, categories)
            else:
                categories = spec["category"]
                codes = _codes_in(column, kind, categories)
            index = pd.Index(categories, dtype=object if spec["type"] == "object" else None, tupleize_cols=False)
            columns[name] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(index))
        elif "kind" in spec:
            columns[name] = pd.Series(_python(column, spec["kind"]), dtype=object)
        else:
            columns[name] = _pandas(column, pd.api.types.pandas_dtype(spec["dtype"]))
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows))


# --- a Trace <-> a dataset ----------------------------------------------------------------------


def check_output(out: str | Path, *, force: bool = False) -> Path:
    """``out`` as a path a dataset may be written to (checked before a long read).

    Raises:
        UsageError: it exists (and ``force`` is not given, or it is neither a perfnet dataset
            nor an empty directory).
    """
    out = Path(out).resolve()  # "." has no name to put a temporary directory beside
    if not out.exists():
        return out
    empty = out.is_dir() and not any(out.iterdir())
    if force and (empty or _only_dataset(out)):
        return out
    if empty or _only_dataset(out):
        hint = "give --force to replace it"
    elif is_dataset(out):
        hint = "it holds files a dataset does not have: choose another"
    else:
        hint = "it is not a perfnet dataset: choose another"
    raise UsageError(f"{out} exists; {hint}")


class DatasetWriter:
    """A dataset being written: tables added part by part into a temporary directory beside
    ``out``, renamed into place by :meth:`commit`.  As a context manager it removes the
    temporary directory if the block fails (Ctrl-C, a full disk): nothing half-written stays.

    Args:
        out: the dataset directory to create.
        force: replace ``out`` if it exists (only a perfnet dataset or an empty directory).

    Raises:
        UsageError: ``out`` exists (without ``force``), or is not a dataset nor empty.
    """

    def __init__(self, out: str | Path, *, force: bool = False) -> None:
        self.out = check_output(out, force=force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", suffix=".partial", dir=self.out.parent))
        umask = os.umask(0)
        os.umask(umask)
        self.work.chmod(0o777 & ~umask)  # as mkdir would make it (mkdtemp makes it private)
        self._parts: dict[str, int] = {}

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is not None:
            shutil.rmtree(self.work, ignore_errors=True)

    def scratch(self) -> Path:
        """A directory for working files, inside the temporary one (removed with it)."""
        path = self.work / ".scratch"
        path.mkdir(exist_ok=True)
        return path

    def add(self, table: str, frame: pd.DataFrame) -> None:
        """Write ``frame`` as the next part of ``table`` (``events``, ``details/net.net_dev_queue`` ...)."""
        number = self._parts.get(table, 0)
        self._parts[table] = number + 1
        directory = self.work / table
        directory.mkdir(parents=True, exist_ok=True)
        write_frame(frame, directory / f"part-{number:05d}.parquet")

    def commit(self, metadata: dict[str, Any]) -> Path:
        """Write the metadata and move the dataset into place; an old one at ``out`` goes only
        once the new one is there.  Returns ``out``."""
        shutil.rmtree(self.work / ".scratch", ignore_errors=True)
        (self.work / METADATA).write_text(
            json.dumps({"schema_version": SCHEMA_VERSION, "perfnet_version": __version__, **metadata}, indent=1),
            encoding="utf-8",
        )
        old = None
        if self.out.exists():
            old = self.out.with_name(f".{self.out.name}.{os.getpid()}.old")
            self.out.rename(old)
        self.work.rename(self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return self.out


def detail_table(event: str) -> str:
    """The table of an event's details (``details/net.net_dev_queue``)."""
    return "details/" + event.replace(":", ".")


def shape_specs(columns: Columns) -> list[dict[str, Any]]:
    """The metadata's ``shapes``: each field set of the columns, in their order."""
    return [{"event": s.event, "names": list(s.names), "dtypes": list(s.dtypes)} for s in columns.shapes]


def write_dataset(trace: Trace, out: str | Path, *, force: bool = False) -> Path:
    """Write ``trace`` as a Parquet dataset in the directory ``out`` (layout in the module's
    docstring), atomically.

    Args:
        trace: the capture.
        out: the dataset directory to create.
        force: replace ``out`` if it exists (only a perfnet dataset or an empty directory).

    Returns:
        ``out``.

    Raises:
        UsageError: ``out`` exists (without ``force``), or is not a dataset nor empty.
    """
    with DatasetWriter(out, force=force) as writer:
        columns = trace.columns
        writer.add("events", pd.concat([trace.events, trace.labels[list(_LABEL_COLUMNS)]], axis=1))
        shapes = shape_specs(columns)
        for event in dict.fromkeys(shape.event for shape in columns.shapes):
            writer.add(detail_table(event), details(trace, range(len(shapes)), event))
        writer.add("messages", trace.messages)
        writer.add("errors", trace.errors)
        for name in _FRAMES:
            writer.add(name, getattr(trace, name))
        stats = trace.capture_stats
        if stats is not None:
            writer.add("counters", stats.counters)
        return writer.commit(
            {
                "variant": trace.format.value,
                "source": trace.source,
                "partial": trace.partial,
                "start_ns": trace.start_ns,
                "events": len(columns),
                "shapes": shapes,
                "topology": json.loads(trace.topology.to_json()),
                "capture_stats": None if stats is None else _stats_facts(stats),
            }
        )


def details(trace: Trace, shape_ids: Sequence[int], event: str) -> pd.DataFrame:
    """``trace.df(event)`` with each row's field set (``__shape__``): ``shape_ids[i]`` is the
    dataset's number (an index into the metadata's ``shapes``) of ``trace.columns.shapes[i]``."""
    columns = trace.columns
    frame = trace.df(event)
    shape_of = np.empty(len(columns), np.int32)
    rows = []
    for shape_id, shape in zip(shape_ids, columns.shapes, strict=True):
        if shape.event == event:
            shape_of[shape.rows] = shape_id
            rows.append(shape.rows)
    frame.insert(len(frame.columns), SHAPE_COLUMN, shape_of[np.sort(np.concatenate(rows))])  # df's rows: time order
    return frame


def _stats_facts(stats: CaptureStats) -> dict[str, Any]:
    facts = dataclasses.asdict(dataclasses.replace(stats, counters=pd.DataFrame()))
    facts.pop("counters")
    return facts


def read_dataset(path: str | Path) -> Trace:
    """The :class:`Trace` a dataset holds: events, fields, messages, bad lines, packets with
    their ids, hops, stages, drops, topology, partial reason and capture stats, as written.

    Raises:
        DatasetError: ``path`` is not a dataset, or one of a newer schema version.
    """
    root = Path(path)
    try:
        metadata = json.loads((root / METADATA).read_text(encoding="utf-8"))
        version = metadata["schema_version"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{root} is not a perfnet dataset: {exc}") from None
    if not isinstance(version, int) or version != SCHEMA_VERSION:
        hint = "upgrade perfnet" if isinstance(version, int) and version > SCHEMA_VERSION else "convert it again"
        raise DatasetError(
            f"{root} is a dataset of schema version {version}; this perfnet reads version {SCHEMA_VERSION}\n"
            f"hint: {hint}"
        )
    try:
        return _read(root, metadata)
    except (OSError, pa.ArrowException, KeyError, ValueError) as exc:
        raise DatasetError(f"{root} is a damaged perfnet dataset: {exc}") from None


def _read(root: Path, metadata: dict[str, Any]) -> Trace:
    events = read_table(root, "events")
    if len(events) and (np.diff(events["time_ns"].to_numpy(np.int64)) < 0).any():  # events later than the window
        order = np.lexsort((events["lineno"].to_numpy(np.int64), events["time_ns"].to_numpy(np.int64)))
        events = events.take(order).reset_index(drop=True)
    columns = _columns(root, metadata, events)
    labels = events[list(_LABEL_COLUMNS)]
    frames = {name: read_table(root, name) for name in _FRAMES}
    for name, derived in _NETNS_COLUMNS.items():  # Trace labels them with its topology again
        frames[name] = frames[name].drop(columns=[c for c in derived if c in frames[name]])
    for name in ("packets", "hops", "stages"):  # written grouped by address where converted in parts
        if not frames[name]["packet_id"].is_monotonic_increasing:
            frames[name] = frames[name].sort_values("packet_id", kind="stable", ignore_index=True)
    stats = metadata.get("capture_stats")
    return Trace(
        columns,
        Variant(metadata["variant"]),
        source=metadata["source"],
        topology=Topology.from_json(json.dumps(metadata["topology"])),
        partial=metadata["partial"],
        capture_stats=None if stats is None else _stats(stats, read_table(root, "counters")),
        frames=paths.PathFrames(labels=labels, **frames),
        start_ns=metadata["start_ns"],
    )


def _parts(root: Path, table: str) -> list[Path]:
    parts = sorted((root / table).glob("part-*.parquet"))
    if not parts:
        raise DatasetError(f"{root} is a damaged perfnet dataset: no parts in {table}/")
    return parts


def read_table(root: Path, table: str) -> pd.DataFrame:
    """A table of the dataset at ``root``: its parts in order, as one frame (categories
    joined: one list if every part has it, else sorted like the frames sort theirs)."""
    return concat_frames([read_frame(part) for part in _parts(root, table)])


def concat_frames(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames of the same columns one after another, as one frame with a fresh index; a
    categorical column keeps its categories if every frame has the same, else takes their
    union, sorted like the frames sort theirs (in order of appearance where values do not
    compare)."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    joined: dict[str, Any] = {}
    for name in frames[0].columns:
        series = [frame[name] for frame in frames]
        if all(isinstance(s.dtype, pd.CategoricalDtype) for s in series):
            joined[name] = _join_categoricals([s.array for s in series])
        else:
            joined[name] = pd.concat(series, ignore_index=True)
    return pd.DataFrame(joined, index=pd.RangeIndex(sum(len(frame) for frame in frames)))


def _join_categoricals(parts: list[Any]) -> Any:
    """Categoricals one after another, over the union of their categories."""
    first = list(parts[0].categories)
    if all(list(part.categories) == first for part in parts[1:]):
        categories = first
    else:
        categories = list(dict.fromkeys(value for part in parts for value in part.categories))
        with contextlib.suppress(TypeError):  # ints and names mixed (drop reasons without a table)
            categories.sort()
    dtype = next((part.categories.dtype for part in parts if len(part.categories)), parts[0].categories.dtype)
    index = pd.Index(categories, dtype=dtype, tupleize_cols=False)
    codes = [np.append(index.get_indexer(part.categories), -1)[part.codes] for part in parts]
    return pd.Categorical.from_codes(np.concatenate(codes), dtype=pd.CategoricalDtype(index))


def _stats(facts: dict[str, Any], counters: pd.DataFrame) -> CaptureStats:
    """The capture's stats as written (JSON has lists where they had tuples)."""
    return CaptureStats(
        **{**facts, "argv": tuple(facts["argv"]), "command": tuple(facts["command"])}, counters=counters
    )


def _columns(root: Path, metadata: dict[str, Any], events: pd.DataFrame) -> Columns:
    """The trace's columns, rebuilt from the events and each tracepoint's details."""
    lineno = events["lineno"].to_numpy(np.int64)
    by_line = np.argsort(lineno, kind="stable")

    def positions(linenos: np.ndarray) -> np.ndarray:
        return by_line[np.searchsorted(lineno[by_line], linenos)]

    found: dict[int, list[tuple[pa.Table, dict[str, str]]]] = {}  # each shape's rows, part by part
    for event in dict.fromkeys(spec["event"] for spec in metadata["shapes"]):
        for part in _parts(root, detail_table(event)):
            details = pq.read_table(part)
            codec = json.loads((details.schema.metadata or {})[_CODEC_KEY])
            kinds = {name: _field_kind(spec) for name, spec in codec.items()}
            details = details.take(pc.sort_indices(details, [("lineno", "ascending")]))  # a shape's rows: line order
            shape_of = details.column(SHAPE_COLUMN).to_numpy()
            for i in np.unique(shape_of).tolist():
                found.setdefault(i, []).append((details.filter(pa.array(shape_of == i)), kinds))
    shapes = [_shape(metadata["shapes"][i], found[i], positions) for i in sorted(found)]
    chains = {
        int(line): chain for line, chain in zip(lineno.tolist(), events["callchain"].tolist(), strict=True) if chain
    }
    messages = read_table(root, "messages")
    errors = read_table(root, "errors")
    return Columns(
        lineno,
        events["time_ns"].to_numpy(np.int64),
        events["tid"].array,
        events["cpu"].array,
        events["comm"].array,
        events["event"].array,
        chains,
        tuple(shapes),
        tuple(Message(*row) for row in _rows(messages, ("lineno", "kind", "text", "lost"))),
        tuple(BadLine(*row) for row in _rows(errors, ("lineno", "line", "message", "column"))),
    )


def _field_kind(spec: dict[str, Any]) -> str:
    """How a details column's values are read back as the parser typed them: JSON text, or
    the values as they are (numbers of a typed column are Python ints, booleans bools)."""
    return str(spec["kind"]) if spec.get("kind") == "json" else "plain"


def _rows(frame: pd.DataFrame, names: Sequence[str]) -> list[tuple[Any, ...]]:
    """The rows of these columns, as Python values."""
    return list(zip(*(frame[name].astype(object).tolist() for name in names), strict=True))


def _shape(
    spec: dict[str, Any], parts: list[tuple[pa.Table, dict[str, str]]], positions: Callable[[np.ndarray], np.ndarray]
) -> FinalShape:
    """One field set of an event from its rows in each part (parts in line order, rows in
    line order within): its rows and each field's distinct values (in order of appearance)."""
    linenos = np.concatenate([rows.column("lineno").to_numpy() for rows, _ in parts])
    values, codes = [], []
    for name in spec["names"]:
        column, table, field_codes = field_column(name), Table(), []
        for rows, kinds in parts:
            distinct, indices = _distinct(rows.column(column), kinds[column])
            field_codes.append(np.append(table.codes(distinct), -1)[indices])
        codes.append(narrow(np.concatenate(field_codes), len(table.values)))
        values.append(table.values)
    return FinalShape(
        spec["event"], tuple(spec["names"]), tuple(spec["dtypes"]), positions(linenos), tuple(values), tuple(codes)
    )
