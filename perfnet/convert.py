"""Convert a capture of any length into a Parquet dataset in bounded memory (``perfnet convert``).

:func:`perfnet.read` holds a whole capture, and rebuilding its packets needs several times
that at the peak (2 GB for the 5,141,871 lines of the convert benchmark).  :func:`convert`
holds a chunk of lines, or a time slice of one bucket of skb addresses, at a time, and writes
the dataset :func:`~perfnet.dataset.write_dataset` writes of the whole Trace: read back, it is
the same Trace, packets that span chunks included.  It goes over the data four times, the
last three over its own working files:

1. **Read.** The source in chunks of about ``chunk_lines`` lines, each cut before a line that
   cannot be a callchain frame (an event is never cut from its frames), typed as
   :func:`perfnet.read` types them.  A chunk's details, messages and bad lines become parts
   of the dataset at once; its events go to working files whole (for pass 4) and by skb
   address (every event of an address in one *address bucket*).  Its calls and addressed
   events go on in time order (a reorder window) to match each exit to the entry it closes
   (:func:`perfnet.paths.match_calls`; the exit then goes to its entry's bucket) and to link
   each addressed event to the next of its thread (:func:`perfnet.infer.next_on_thread`),
   slice by slice: open entries and each thread's last event carry over.
2. **Topology**, unless one is given or saved beside the capture: each bucket's evidence
   (:func:`perfnet.infer.evidence`), read in time slices with a few rows of context on each
   side, combined once all are in (:func:`perfnet.infer.topology_of`).
3. **Packets.** Each bucket in time slices: an address's rows up to its last restart
   (:func:`perfnet.paths.restarts`: after a free or an idle gap, nothing earlier matters) are
   segmented with the topology, the capture's LOST lines and the matched exits; the rest go
   on with the next slice.  Packets are numbered over the capture by their first event; the
   ``packets``, ``hops`` and ``stages`` parts are written piece by piece, drops counted over
   all of them.
4. **Events.** The chunks again, each event with its packet, visit and ``ended_by``, through
   a reorder window into the ``events`` parts in time order.

An address that never restarts (no free traced and never idle for ``gap_ns``) is held whole.

Memory: on the 5,141,871 lines of the convert benchmark (``benchmarks/bench_convert.py``)
the ``perfnet convert`` command peaks at about 250 MiB, 117 of them the interpreter with
pandas and pyarrow.  It runs with Arrow's allocator set to the system's malloc (see
:mod:`perfnet.__main__`); a program of your own that calls :func:`convert` gets the same by
setting ``ARROW_DEFAULT_MEMORY_POOL=system`` before pyarrow is first imported (with
mimalloc, Arrow's default, the peak was 315 MiB).

``perf trace -a`` prints events out of time order: in the captures of the test fixtures an
event came at most 4.7 ms after a later one (lab, 883 events; median 1.2-1.7 ms) and 6.7 ms
on the 244,840 events of the flood benchmark (p99 4.0 ms); ``perf script`` output is sorted.
The window (:data:`REORDER_WINDOW_NS`, 100 ms) holds events until one 100 ms later has been
read.  An event later than that is written after events it precedes and reported
(:attr:`Converted.late_linenos`, the metadata's ``conversion``); :func:`perfnet.read`
puts it in its place again, so it is never misplaced in the Trace.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from perfnet import dataset, infer, paths
from perfnet.columns import ColumnBuilder, Columns, build_columns, not_perf_output, release_memory, system_memory
from perfnet.errors import UsageError
from perfnet.grammar import Variant
from perfnet.infer import Evidence
from perfnet.reader import _FRAME, Block, LineParser, detect_blocks, open_blocks, variant_of
from perfnet.records import BadLine
from perfnet.topology import Topology
from perfnet.trace import Trace, netns_devices, netns_hops, netns_packets, netns_stages

__all__ = ["BUCKET_BYTES", "CHUNK_LINES", "REORDER_WINDOW_NS", "Converted", "convert"]

CHUNK_LINES: Final = 100_000
"""Lines read at a time (a chunk ends at the first block boundary after this many)."""

BUCKET_BYTES: Final = 64 << 20
"""Bytes of text per address bucket: a file is split into ``size / BUCKET_BYTES`` buckets
(at least 1, at most 256), a stream or a compressed file into :data:`_UNKNOWN_BUCKETS`."""
_UNKNOWN_BUCKETS: Final = 32

REORDER_WINDOW_NS: Final = 100_000_000
"""How long an event may come after a later one and still be written in its place (100 ms;
perf trace -a was measured at most 6.7 ms late, see the module docstring)."""

_THREAD_COLUMNS: Final = ["time_ns", "comm", "tid", "cpu", "event", "dev", "skbaddr", "lineno"]
_LABELS: Final = ("packet_id", "visit", "ended_by")
_REPORTED_LATE: Final = 20  # late events named in the metadata and the report
_FOLD_DROPS: Final = 64  # pieces' drop counts kept apart before they are added up


@dataclass(frozen=True)
class Converted:
    """What :func:`convert` wrote.

    Attributes:
        path: the dataset directory.
        events: events written.
        packets: packets rebuilt.
        late_events: events that came later than the reorder window (written out of order).
        late_linenos: the first of those events' line numbers (at most 20).
    """

    path: Path
    events: int
    packets: int
    late_events: int
    late_linenos: tuple[int, ...]


def convert(
    source: str | Path | IO[bytes],
    out: str | Path,
    *,
    force: bool = False,
    format: Variant | str | None = None,
    strict: bool = False,
    schemas: Iterable[str | Path] = (),
    formats: str | Path | None = None,
    kallsyms: str | Path | None = None,
    topology: Topology | str | Path | None = None,
    progress: bool = False,
    chunk_lines: int = CHUNK_LINES,
    buckets: int | None = None,
    window_ns: int = REORDER_WINDOW_NS,
) -> Converted:
    """Write a capture as a Parquet dataset (see :mod:`perfnet.dataset`) in bounded memory:
    ``perfnet.read(out)`` is then the Trace ``perfnet.read(source)`` is.

    Args:
        source: a path (compressed, or a ``perf.data`` recording), a binary file object, or
            ``"-"`` for standard input.
        out: the dataset directory to create.
        force: replace ``out`` if it is a perfnet dataset or an empty directory.
        format, strict, schemas, formats, kallsyms, topology: as for :func:`perfnet.read`
            (side files beside the capture are found the same way).
        progress: show progress on standard error.
        chunk_lines: lines read at a time.
        buckets: address buckets (None: from the file's size, see :data:`BUCKET_BYTES`).
        window_ns: the reorder window.

    Raises:
        UsageError: ``out`` exists (without ``force``), or is neither a dataset nor empty; or
            ``source`` is an iterable of lines.
        ParseError: in strict mode, at the first bad line.
        NotPerfOutputError: the variant was detected, yet no line is an event or a perf message.
        PerfnetError: the source cannot be read.
        OSError: the dataset cannot be written (a full disk); nothing is left behind.
    """
    from perfnet import _file_bar, _tables, _topology

    if chunk_lines < 1 or (buckets is not None and buckets < 1):
        raise UsageError(f"chunk_lines and buckets are 1 or more, not {chunk_lines} and {buckets}")
    given = _topology(source, topology)
    with system_memory(), dataset.DatasetWriter(out, force=force) as writer:
        name = str(source) if isinstance(source, str | Path) else ""
        job = _Job(writer, buckets or _buckets_for(name), window_ns, chunk_lines)
        with _file_bar(progress, name) as bar:
            blocks = open_blocks(source, progress=lambda done: bar.update(done - bar.n))
            if blocks is None:
                raise UsageError("convert reads a path, a binary file or '-' (standard input), not lines")
            variant, blocks = detect_blocks(blocks) if format is None else (variant_of(format), blocks)
            parser = LineParser(variant, **_tables(source, schemas, formats, kallsyms))
            for chunk in _chunks(blocks, chunk_lines):
                builder = ColumnBuilder(parser, strict, detected=False)
                for block in chunk:
                    builder.add_block(block)
                job.read(builder.finish(), variant, builder.recognised, chunk[0].lineno)
            job.threads(job.calls.flush())
        if format is None and job.first_error is not None and not job.recognised:
            raise not_perf_output(job.first_error)
        with tqdm(total=3 * job.buckets + job.chunks, desc="packets", file=sys.stderr, disable=not progress) as bar:
            topology = given if given is not None else job.infer(bar)
            packets = job.packets(topology, variant, bar)
            late = job.events(variant, bar)
        writer.commit(
            {
                "variant": variant.value,
                "source": name,
                "partial": None,
                "start_ns": job.start_ns if job.start_ns is not None else 0,
                "events": job.n_events,
                "shapes": job.shapes,
                "topology": json.loads(topology.to_json()),
                "capture_stats": None,
                "conversion": {
                    "chunks": job.chunks,
                    "buckets": job.buckets,
                    "reorder_window_ns": window_ns,
                    "late_events": len(late),
                    "late_linenos": late[:_REPORTED_LATE],
                },
            }
        )
    return Converted(writer.out, job.n_events, packets, len(late), tuple(late[:_REPORTED_LATE]))


def _buckets_for(name: str) -> int:
    path = Path(name)
    if name in ("", "-") or not path.is_file() or path.suffix in (".gz", ".bz2", ".xz", ".zst", ".data"):
        return _UNKNOWN_BUCKETS
    return int(np.clip(-(-path.stat().st_size // BUCKET_BYTES), 1, 256))


def _chunks(blocks: Iterator[Block], chunk_lines: int) -> Iterator[list[Block]]:
    """The blocks in runs of about ``chunk_lines`` lines, each run cut before a line that
    cannot be a callchain frame (so no event is cut from its frames)."""
    chunk: list[Block] = []
    lines = 0
    for block in blocks:
        rest: Block | None = block
        while rest is not None:
            room = chunk_lines - lines
            cut = len(rest)
            if room < len(rest):
                cut = next((i for i in range(max(room, 0), len(rest)) if not _FRAME.match(rest.line(i))), len(rest))
            if cut == len(rest):  # all of it fits, or it ends in frames: the next block decides
                chunk.append(rest)
                lines += len(rest)
                break
            if cut:
                chunk.append(_head(rest, cut))
            yield chunk
            chunk, lines, rest = [], 0, _tail(rest, cut)
    if chunk:
        yield chunk


def _head(block: Block, lines: int) -> Block:
    """The first ``lines`` lines of a block."""
    return Block(block.lineno, block.data, block.starts[:lines], block.ends[:lines])


def _tail(block: Block, lines: int) -> Block:
    """A block without its first ``lines`` lines (its data starts at its first line)."""
    offset = int(block.starts[lines])
    return Block(block.lineno + lines, block.data[offset:], block.starts[lines:] - offset, block.ends[lines:] - offset)


def _hash(values: npt.NDArray[Any], buckets: int) -> npt.NDArray[np.int64]:
    return (pd.util.hash_array(values) % np.uint64(buckets)).astype(np.int64)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows in time order, ties in line order: the events frame's order."""
    order = np.lexsort((frame["lineno"].to_numpy(np.int64), frame["time_ns"].to_numpy(np.int64)))
    if (order[1:] > order[:-1]).all():  # in order already (perf script's output is): no copy
        return frame.reset_index(drop=True)
    return frame.take(order).reset_index(drop=True)


def _find(linenos: npt.NDArray[np.int64], keys: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The position in ``keys`` (distinct) of each of ``linenos``, -1 where it is not there."""
    out = np.full(linenos.size, -1, dtype=np.int64)
    if keys.size:
        order = np.argsort(keys)
        at = np.minimum(np.searchsorted(keys[order], linenos), keys.size - 1)
        found = keys[order][at] == linenos
        out[found] = order[at][found]
    return out


def _joined(*frames: pd.DataFrame | None) -> Any:
    """The rows of the frames given (None: no rows), one after the other; None if none is."""
    given = [frame for frame in frames if frame is not None]
    return dataset.concat_frames(given) if given else None


def _lookup(linenos: npt.NDArray[np.int64], keys: npt.NDArray[np.int64], values: npt.NDArray[np.int64]) -> Any:
    """``values`` of the ``keys`` equal to each of ``linenos`` (-1 where none is)."""
    at = _find(linenos, keys)
    return np.where(at >= 0, values[np.maximum(at, 0)] if values.size else -1, -1)


@dataclass
class _Job:
    """One conversion's state between passes: its working files, shapes, losses and counts."""

    writer: dataset.DatasetWriter
    buckets: int
    window_ns: int
    chunk_rows: int
    n_events: int = 0
    start_ns: int | None = None
    recognised: bool = False
    first_error: BadLine | None = None
    chunk_starts: list[int] = field(default_factory=list)  # each chunk's first line number
    lost_linenos: list[int] = field(default_factory=list)
    shapes: list[dict[str, Any]] = field(default_factory=list)
    shape_ids: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)
    packet_ids: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # by piece
    unit_starts: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, np.int64))  # each piece's first
    slices: int = 0  # slices of the calls and addressed events, in time order (pass 2)
    carried: pd.DataFrame | None = None  # what one slice leaves to the next

    @property
    def chunks(self) -> int:
        """Chunks read so far."""
        return len(self.chunk_starts)

    def __post_init__(self) -> None:
        self.scratch = self.writer.scratch()
        self.calls = _Reorder(self.window_ns)

    def _file(self, kind: str, *keys: int) -> Path:
        """A working file: ``kind/key/.../last key.parquet``."""
        directory = self.scratch.joinpath(kind, *map(str, keys[:-1]))
        directory.mkdir(parents=True, exist_ok=True)
        return directory / f"{keys[-1]}.parquet"

    def _parts(self, kind: str, *keys: int) -> pd.DataFrame | None:
        """The rows of every working file in ``kind/key/...``, in the order they were
        written, or None if none was."""
        files = sorted(self.scratch.joinpath(kind, *map(str, keys)).glob("*.parquet"), key=lambda p: int(p.stem))
        return dataset.concat_frames([dataset.read_frame(f) for f in files]) if files else None

    def _write_by(
        self, kind: str, rows: pd.DataFrame, linenos: Any, part: int, buckets: npt.NDArray[np.int64] | None = None
    ) -> None:
        """Write ``rows`` as ``part`` of ``kind/chunk`` (or ``kind/bucket/chunk``) by the chunk
        of ``linenos``, the lines of the events they belong to: a later pass reads them with
        that chunk."""
        n = len(self.chunk_starts)
        keys = np.searchsorted(np.asarray(self.chunk_starts, np.int64), np.asarray(linenos, np.int64), "right") - 1
        if buckets is not None:
            keys = buckets * n + keys
        for key in np.unique(keys):
            where = (int(key),) if buckets is None else divmod(int(key), n)
            dataset.write_frame(rows[keys == key], self._file(kind, *where, part))

    # --- pass 1 -------------------------------------------------------------------------

    def read(self, columns: Columns, variant: Variant, recognised: bool, first_lineno: int) -> None:
        """Take one chunk (its first line is ``first_lineno``): its details, messages and bad
        lines into the dataset, its events into the working files."""
        k = self.chunks
        self.chunk_starts.append(first_lineno)
        self.recognised |= recognised
        if columns.errors and self.first_error is None:
            self.first_error = columns.errors[0]
        self.lost_linenos += [m.lineno for m in columns.messages if m.lost]
        trace = Trace(columns, variant)
        ids = []
        for shape in columns.shapes:
            key = (shape.event, shape.names)
            if key not in self.shape_ids:
                self.shape_ids[key] = len(self.shapes)
                self.shapes.append({"event": shape.event, "names": list(shape.names), "dtypes": list(shape.dtypes)})
            ids.append(self.shape_ids[key])
        for event in dict.fromkeys(shape.event for shape in columns.shapes):
            self.writer.add(dataset.detail_table(event), dataset.details(trace, ids, event))
        self.writer.add("messages", trace.messages)
        self.writer.add("errors", trace.errors)
        events = trace.events
        del trace
        if len(events):
            self.n_events += len(events)
            first = int(events["time_ns"].iloc[0])
            self.start_ns = first if self.start_ns is None else min(self.start_ns, first)
        dataset.write_frame(events, self.scratch / f"chunk-{k}.parquet")
        plain = events.drop(columns="callchain")
        addressed = plain["skbaddr"].notna().to_numpy()
        exits = plain["event"].isin(paths.EXITS).to_numpy(bool)
        by_address = _hash(plain["skbaddr"].to_numpy(np.uint64, na_value=0), self.buckets)
        for b in range(self.buckets):
            rows = np.flatnonzero(addressed & (by_address == b))
            if rows.size:
                dataset.write_frame(plain.take(rows), self._file("address", b, k))
        self.threads(self.calls.push(plain[addressed | exits][_THREAD_COLUMNS]))
        release_memory()

    # --- pass 2 -------------------------------------------------------------------------

    def threads(self, rows: pd.DataFrame | None) -> None:
        """Take the next slice of the calls and addressed events in time order (None: no
        rows are ready yet): match exits to entries (they go to their entry's address
        bucket) and link each addressed event to the next of its thread.  What crosses into
        the next slice goes on with it: the open entries, and each thread's last addressed
        event (``linked`` says whether its link is already out)."""
        if rows is None:
            return
        frame = _sorted(_joined(self.carried, rows.assign(linked=False)))
        t = self.slices
        self.slices += 1
        lineno = frame["lineno"].to_numpy(np.int64)
        entries, still_open = paths.match_calls(frame)
        following = infer.next_on_thread(frame)
        addr = frame["skbaddr"].to_numpy(np.uint64, na_value=0)
        addressed = frame["skbaddr"].notna().to_numpy()
        linked = frame["linked"].to_numpy(bool)
        links = addressed & (following >= 0) & ~linked
        closes = np.flatnonzero(entries >= 0)
        exit_addr = addr[_lookup(entries[closes], lineno, np.arange(lineno.size))]
        next_lines = pd.DataFrame({"lineno": lineno[links], "next_lineno": following[links]})
        self._write_by("next", next_lines, lineno[links], t, _hash(addr[links], self.buckets))
        exits = frame.take(closes).drop(columns="linked").assign(entry_lineno=entries[closes])
        self._write_by("exit", exits, entries[closes], t, _hash(exit_addr, self.buckets))
        last_on_thread = addressed & (following < 0)
        carried = frame[still_open | last_on_thread]
        self.carried = carried.assign(
            linked=carried["linked"].to_numpy(bool) | (following[still_open | last_on_thread] >= 0)
        )

    def _slices(self, b: int, links: bool = False) -> Iterator[tuple[int, pd.DataFrame]]:
        """Address bucket ``b``'s events in time order, a slice at a time: its part of each
        chunk, through a reorder window; each slice with the last chunk read for it.  With
        ``links``, each event has the line of the next event of its thread
        (``next_lineno``, -1 if none is)."""
        window = _Reorder(self.window_ns)
        for k in range(self.chunks):
            path = self._file("address", b, k)
            if not path.exists():
                continue
            rows = dataset.read_frame(path)
            if links:
                found = self._parts("next", b, k)
                lineno = rows["lineno"].to_numpy(np.int64)
                rows["next_lineno"] = (
                    _lookup(lineno, *(found[c].to_numpy(np.int64) for c in ("lineno", "next_lineno")))
                    if found is not None
                    else np.full(lineno.size, -1, np.int64)
                )
            if (ready := window.push(rows)) is not None:
                yield k, ready
        if (rest := window.flush()) is not None:
            yield self.chunks - 1, rest

    # --- pass 3 -------------------------------------------------------------------------

    def infer(self, bar: tqdm[Any]) -> Topology:
        """The topology inferred from the evidence of every address bucket, read a slice at a
        time: each address's rows are counted once their :data:`infer.LOOKAHEAD_ROWS` later
        rows are there, read with the :data:`infer.CONTEXT_ROWS` rows before them."""
        return infer.topology_of(self._evidence(bar))

    def _evidence(self, bar: tqdm[Any]) -> Iterator[Evidence]:
        for b in range(self.buckets):
            bar.update()
            pending: pd.DataFrame | None = None
            slices = (rows for _, rows in self._slices(b, links=True))
            for rows in itertools.chain(slices, [None]):  # None: the end, nothing more comes
                frame = _joined(pending, rows.assign(done=False) if rows is not None else None)
                if frame is None:
                    continue
                frame = _sorted(frame)
                from_end = (
                    frame.groupby(frame["skbaddr"].to_numpy(np.uint64), sort=False).cumcount(ascending=False).to_numpy()
                )
                done = frame["done"].to_numpy(bool)
                ready = ~done & ((from_end >= infer.LOOKAHEAD_ROWS) | (rows is None))
                if ready.any():
                    following = frame["next_lineno"].to_numpy(np.int64)
                    yield infer.evidence(frame.drop(columns=["done", "next_lineno"]), following, counted=ready)
                keep = from_end < infer.CONTEXT_ROWS + infer.LOOKAHEAD_ROWS
                pending = frame[keep].assign(done=(done | ready)[keep])
            release_memory()

    # --- pass 4 -------------------------------------------------------------------------

    def packets(self, topology: Topology, variant: Variant, bar: tqdm[Any]) -> int:
        """Rebuild the packets of every address bucket a slice at a time, number them over all
        of the capture, and write their frames and the drops; keep each event's labels for
        the events pass.  Returns the number of packets.

        Each address's rows go on to the next slice from its last restart (see
        :func:`paths.restarts`) on; those before it are segmented now, with the restart row
        after them (which tells how their last packet ended).  The exits of the entries read
        so far wait with them until their entries are segmented."""
        units: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]] = []  # first event of each packet
        drops: list[pd.DataFrame] = []
        for b in range(self.buckets):
            bar.update()
            exits: pd.DataFrame | None = None
            loaded = 0  # the chunks whose entries' exits are in ``exits``
            pending: pd.DataFrame | None = None
            for k, rows in self._slices(b):
                exits = _joined(exits, *(self._parts("exit", b, c) for c in range(loaded, k + 1)))
                loaded = k + 1
                frame = _sorted(_joined(pending, rows))
                cut = paths.restarts(frame)
                addr = frame["skbaddr"].to_numpy(np.uint64)
                position = np.arange(len(frame))
                last_cut = pd.Series(np.where(cut, position, -1)).groupby(addr, sort=False).transform("max").to_numpy()
                owned = position < last_cut
                unit = owned | (position == last_cut)
                if owned.any():
                    exits = self._unit(frame[unit].reset_index(drop=True), ~owned[unit], exits, topology, units, drops)
                pending = frame[~owned].reset_index(drop=True)
            if pending is not None and len(pending):
                self._unit(pending, np.zeros(len(pending), np.bool_), exits, topology, units, drops)
            release_memory()
        return self._number(units, drops, variant)

    def _unit(
        self,
        rows: pd.DataFrame,
        lookahead: npt.NDArray[np.bool_],
        exits: pd.DataFrame | None,
        topology: Topology,
        units: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        drops: list[pd.DataFrame],
    ) -> pd.DataFrame | None:
        """Segment a piece of addresses' rows with the exits of its entries; the ``lookahead``
        rows only tell how the piece's last packets ended.  Returns the exits not taken."""
        u = len(units)
        frame, entries = rows, np.full(len(rows), -1, dtype=np.int64)
        if exits is not None:
            taken = np.isin(exits["entry_lineno"].to_numpy(np.int64), rows["lineno"].to_numpy(np.int64)[~lookahead])
            mine, exits = exits[taken], exits[~taken]
            if len(mine):
                missing = rows.iloc[:0].reindex(pd.RangeIndex(len(mine)))  # the columns exits do not have
                for column in _THREAD_COLUMNS:
                    missing[column] = (
                        mine[column].to_numpy()
                        if column in ("time_ns", "lineno")
                        else mine[column].reset_index(drop=True)
                    )
                frame = _sorted(dataset.concat_frames([rows, missing]))
                lookahead = np.isin(frame["lineno"].to_numpy(np.int64), rows["lineno"].to_numpy(np.int64)[lookahead])
                entries = _lookup(
                    frame["lineno"].to_numpy(np.int64),
                    mine["lineno"].to_numpy(np.int64),
                    mine["entry_lineno"].to_numpy(np.int64),
                )
        labels = paths.segment(frame, topology=topology, lost_linenos=self.lost_linenos, entries=entries)
        packet_id = labels["packet_id"].to_numpy(np.int64)
        dropped = np.isin(packet_id, packet_id[lookahead])  # the lookahead rows' own packets
        kept, local = np.unique(np.where(dropped, -1, packet_id), return_inverse=True)
        labels["packet_id"] = np.where(dropped | (packet_id < 0), -1, local - (kept[0] < 0))
        labels.loc[dropped, "visit"] = -1
        labels["ended_by"] = labels["ended_by"].where(~dropped)
        frames = paths.frames(frame, labels)
        packets = netns_packets(frames.packets, topology)
        dataset.write_frame(packets, self._file("packets", u))
        dataset.write_frame(netns_hops(frames.hops, packets), self._file("hops", u))
        dataset.write_frame(netns_stages(frames.stages, packets), self._file("stages", u))
        own = pd.DataFrame(
            {
                "lineno": frame["lineno"].to_numpy(np.int64),
                "unit": np.full(len(frame), u, np.int32),
                "packet_id": labels["packet_id"].to_numpy(np.int32),  # the piece's own numbers
                "visit": labels["visit"].to_numpy(np.int16),
                "ended_by": pd.Categorical(labels["ended_by"], categories=paths.ENDED_BY).codes,
            }
        )[~lookahead]
        self._write_by("labels", own, own["lineno"], u)
        netns_dev = netns_devices(packets, labels["packet_id"], labels["visit"])
        drops.append(_partial_counts(paths.drop_events(frame, labels, netns_dev)))
        if len(drops) >= _FOLD_DROPS:  # the counts so far as one frame, not a frame per piece
            drops[:] = [_partial_counts(pd.concat(drops, ignore_index=True))]
        # local ids count packets in order of their first event; the rows are in time order
        packet_id = labels["packet_id"].to_numpy(np.int64)
        in_packet = np.flatnonzero(packet_id >= 0)
        first = in_packet[np.unique(packet_id[in_packet], return_index=True)[1]]
        units.append((frame["time_ns"].to_numpy(np.int64)[first], frame["lineno"].to_numpy(np.int64)[first]))
        return exits

    def _number(
        self,
        units: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]],
        drops: list[pd.DataFrame],
        variant: Variant,
    ) -> int:
        """Number the packets of all pieces by first event (ties: line order), and write their
        frames and the drops.  Keeps the numbers (:attr:`packet_ids`, by piece from
        :attr:`unit_starts` on) for the events pass."""
        time = np.concatenate([t for t, _ in units]) if units else np.zeros(0, np.int64)
        lineno = np.concatenate([n for _, n in units]) if units else np.zeros(0, np.int64)
        self.packet_ids = np.empty(time.size, dtype=np.int64)
        self.packet_ids[np.lexsort((lineno, time))] = np.arange(time.size)
        self.unit_starts = np.cumsum([0, *(t.size for t, _ in units)])
        empty = Trace(build_columns([]), variant)
        for u in range(len(units)):
            ids = self.packet_ids[self.unit_starts[u] : self.unit_starts[u + 1]]
            for name in ("packets", "hops", "stages"):
                table = dataset.read_frame(self._file(name, u))
                table["packet_id"] = ids[table["packet_id"].to_numpy(np.int64)]
                self.writer.add(name, table)
        for name in ("packets", "hops", "stages"):
            if not (self.writer.work / name).exists():  # no event had an address
                self.writer.add(name, getattr(empty, name))
        self.writer.add("drops", paths.count_drops(pd.concat(drops, ignore_index=True)) if drops else empty.drops)
        return int(time.size)

    # --- pass 5 -------------------------------------------------------------------------

    def events(self, variant: Variant, bar: tqdm[Any]) -> list[int]:
        """Write the events with their labels, in time order through the reorder window.
        Returns the line numbers of the events later than the window."""
        window = _Reorder(self.window_ns)
        ready: list[pd.DataFrame] = []  # written in parts of a chunk's worth of rows

        def write(rows: pd.DataFrame | None, last: bool = False) -> None:
            if rows is not None:
                ready.append(rows)
            if not ready or (sum(len(r) for r in ready) < self.chunk_rows and not last):
                return
            rows = dataset.concat_frames(ready)
            ready.clear()
            written = len(rows) if last else len(rows) - len(rows) % self.chunk_rows
            for start in range(0, written, self.chunk_rows):
                self.writer.add("events", rows.iloc[start : start + self.chunk_rows].reset_index(drop=True))
            if written < len(rows):
                ready.append(rows.iloc[written:].reset_index(drop=True))

        for k in range(self.chunks):
            bar.update()
            chunk = self.scratch / f"chunk-{k}.parquet"
            write(window.push(self._labelled(dataset.read_frame(chunk), k)))
            chunk.unlink()
            release_memory()
        write(window.flush(), last=True)
        if not (self.writer.work / "events").exists():  # no event at all
            empty = Trace(build_columns([]), variant)
            self.writer.add("events", pd.concat([empty.events, empty.labels[list(_LABELS)]], axis=1))
        for name in ("messages", "errors"):
            if not (self.writer.work / name).exists():  # nothing read
                self.writer.add(
                    name, getattr(empty if "empty" in locals() else Trace(build_columns([]), variant), name)
                )
        return window.late

    def _labelled(self, events: pd.DataFrame, k: int) -> pd.DataFrame:
        """Chunk ``k``'s events with their packet, visit and ``ended_by`` (-1, -1 and missing
        for an event in no packet)."""
        packet_id, visit = np.full(len(events), -1, np.int64), np.full(len(events), -1, np.int64)
        ended_by = np.full(len(events), -1, np.int8)
        labels = self._parts("labels", k)
        if labels is not None:
            at = _find(events["lineno"].to_numpy(np.int64), labels["lineno"].to_numpy(np.int64))
            mine = np.flatnonzero(at >= 0)
            rows = at[mine]
            local = labels["packet_id"].to_numpy(np.int64)[rows]
            unit = labels["unit"].to_numpy(np.int64)[rows]
            inside = local >= 0
            packet_id[mine[inside]] = self.packet_ids[self.unit_starts[unit[inside]] + local[inside]]
            visit[mine] = labels["visit"].to_numpy(np.int64)[rows]
            ended_by[mine] = labels["ended_by"].to_numpy(np.int8)[rows]
        events["packet_id"] = packet_id
        events["visit"] = visit
        events["ended_by"] = pd.Categorical.from_codes(ended_by, categories=pd.Index(paths.ENDED_BY))
        return events


def _partial_counts(rows: pd.DataFrame) -> pd.DataFrame:
    """A bucket's drop rows counted by reason, location and device, each count with its first
    event's time and line (what :func:`paths.count_drops` orders the buckets' counts by)."""
    keys = [name for name in rows.columns if name not in ("count", "time_ns", "lineno")]
    return (
        rows.sort_values(["time_ns", "lineno"], kind="stable")
        .groupby(keys, dropna=False, sort=False)
        .agg(count=("count", "sum"), time_ns=("time_ns", "first"), lineno=("lineno", "first"))
        .reset_index()
    )


class _Reorder:
    """Events in time order (ties: line order) from chunks in line order: each chunk's rows
    wait until an event ``window_ns`` later has been read.  A row earlier than rows already
    given out is late: given out at once, and its line number kept in ``late``."""

    def __init__(self, window_ns: int) -> None:
        self._window_ns = window_ns
        self._waiting: pd.DataFrame | None = None
        self._newest: int | None = None
        self._given: tuple[int, int] | None = None  # (time, lineno) of the last row given out
        self.late: list[int] = []

    def push(self, events: pd.DataFrame) -> pd.DataFrame | None:
        """Take a chunk's events; the rows now ready, in order (None if none is)."""
        if not len(events):
            return None
        waiting = _sorted(_joined(self._waiting, events))
        time = waiting["time_ns"].to_numpy(np.int64)
        newest = int(time.max())
        self._newest = newest if self._newest is None else max(self._newest, newest)
        ready = time < self._newest - self._window_ns  # equal times wait together
        if self._given is not None:
            lineno = waiting["lineno"].to_numpy(np.int64)
            late = (time < self._given[0]) | ((time == self._given[0]) & (lineno < self._given[1]))
            self.late += lineno[late].tolist()
            ready |= late
        given = int(ready.sum())  # a first stretch of the rows: both are before the rest in their order
        self._waiting = waiting.iloc[given:].reset_index(drop=True)
        return self._give(waiting.iloc[:given])

    def flush(self) -> pd.DataFrame | None:
        """The rows still waiting, at the end."""
        waiting, self._waiting = self._waiting, None
        return self._give(waiting) if waiting is not None and len(waiting) else None

    def _give(self, rows: pd.DataFrame) -> pd.DataFrame | None:
        if not len(rows):
            return None
        last = rows.iloc[-1]
        key = (int(last["time_ns"]), int(last["lineno"]))
        self._given = key if self._given is None else max(self._given, key)
        return rows.reset_index(drop=True)
