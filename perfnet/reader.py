"""Sources of perf output, variant detection, and the streaming line-to-record loop.

A source is a path (plain or ``.gz``/``.bz2``/``.xz``/``.zst``), a text or binary file object,
an iterable of lines, or ``"-"`` for standard input.  Lines are decoded leniently (invalid UTF-8
becomes U+FFFD), CR/LF line ends and ANSI colour codes (perf colours ``LOST`` lines on a
terminal) are removed, and every non-blank line becomes exactly one :class:`~perfnet.records.Record`,
:class:`~perfnet.records.Message` or :class:`~perfnet.records.BadLine`; callchain lines are
folded into the record above them.
"""

from __future__ import annotations

import bz2
import gzip
import io
import itertools
import lzma
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

import numpy as np
import numpy.typing as npt
import pyparsing as pp
import zstandard

from perfnet.errors import NotPerfOutputError, ParseError, PerfnetError, UsageError
from perfnet.grammar import (
    BodyError,
    BodyParser,
    EnumTables,
    Header,
    HeaderError,
    Variant,
    checked_int,
    match_header,
    parse_header,
    parse_header_grammar,
)
from perfnet.host.perf import PERF_DATA_MAGIC, read_perf_data
from perfnet.kallsyms import Kallsyms
from perfnet.records import BadLine, Item, Message, MessageKind, Record
from perfnet.schema import EventSchema

Source = str | Path | IO[str] | IO[bytes] | Iterable[str] | Iterable[bytes]

ANSI_ESCAPE = r"\x1b\[[0-9;]*[A-Za-z]"
"""The colour codes perf adds on a terminal (``LOST`` lines in red), removed from every line."""
_ANSI = re.compile(ANSI_ESCAPE)

# Non-event lines perf and ftrace print, by kind.  Order matters: first match wins.
_MESSAGES: tuple[tuple[MessageKind, re.Pattern[str]], ...] = (
    ("lost", re.compile(r"^\s*(?:[\d.]+\s+)?LOST (?P<lost>\d+) events!")),
    ("lost", re.compile(r"^.*\bPERF_RECORD_LOST lost (?P<lost>\d+)\s*$")),  # perf script --show-lost-events
    ("lost", re.compile(r"^\s*CPU:\s*\d+ \[LOST (?P<lost>\d+) EVENTS\]")),
    ("header", re.compile(r"^\s*#")),
    ("summary", re.compile(r"^\s*Summary of events:")),
    ("syscall", re.compile(r"^\s*\d+\.\d+\s+\(\s*(?:[\d.]+ ms)?\s*\):\s")),
    ("error", re.compile(r"^\s*(?:Error|ERROR|Fatal|FATAL)\b")),
    ("warning", re.compile(r"^\s*(?:Warning|WARNING|Info|Hint|Note|Problems?)\b")),
    ("perf", re.compile(r"^\s*\[ perf [\w -]*:.*\]\s*$")),
)
# The lines of perf trace's summary (``-s``/``-S``): a thread's line, the syscall table's header,
# units, rule and rows.  Anything else ends the summary block.
_SUMMARY_LINE = re.compile(
    r"^\s*(?:\S.* \(\d+\), \d+ events, [\d.]+%"
    r"|syscall\s+calls\s+errors\s+total.*|\(msec\).*|-[-\s]*"
    r"|\w+\s+\d+\s+\d+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+%)\s*$",
    re.ASCII,
)
# Callchain frames: perf trace --call-graph prints `    sym (dso)` under its event; perf
# script -g prints `\taddr sym+off (dso)`.
_FRAME = re.compile(r"^\s+(?:[0-9a-f]+ )?(?P<sym>\S.*?) \((?P<dso>[^()]*)\)$")
# The `perf trace` family shares a header; its body tells the field printer apart.
_PRINTER_BODY = re.compile(r"^\w+: ")
_FORMAT_BODY = re.compile(r"^(?:\w+=|\S.*\s)")

_DETECT_ORDER = (Variant.SCRIPT, Variant.FTRACE, Variant.TRACE, Variant.TRACE_OLD)
_DETECT_LOOKAHEAD = 2000


MAX_LINE_BYTES: Final = 65536
"""Longest line read whole: the kernel prints at most a page per event, so a longer line is a
bad line (its first :data:`MAX_LINE_BYTES` bytes are kept, the rest skipped unread)."""

_LINE_END = re.compile(rb"\r\n|\r|\n")
_CHUNK = 1 << 20
_BLOCK = 2 << 20  # bytes read per block: large enough that column-wise calls are few


class TooLong(str):
    """The start of a line longer than :data:`MAX_LINE_BYTES` (the rest was skipped)."""


class ControlCodes(str):
    """A line of terminal control codes alone (perf colours its messages on a terminal)."""


def _decode(line: str | bytes) -> str:
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    line = line.rstrip("\r\n")
    if "\x1b" not in line:
        return line
    plain = _ANSI.sub("", line)
    return plain if plain.strip(" \t") else ControlCodes(plain)


@dataclass(frozen=True, slots=True, eq=False)
class Block:
    """Consecutive lines of a source, undecoded: line ``lineno + i`` is
    ``data[starts[i]:ends[i]]`` (without its line end)."""

    lineno: int
    data: bytes
    starts: npt.NDArray[np.int64]
    ends: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.starts)

    def line(self, i: int) -> str:
        """Line ``lineno + i``, decoded (UTF-8 with U+FFFD, no ANSI codes); a :class:`TooLong`
        of its start if it is longer than :data:`MAX_LINE_BYTES`."""
        return _line(self.data[self.starts[i] : self.ends[i]])


def _line_ends(data: bytes) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Where each line of ``data`` ends, and its line end's length: CR LF (2), lone CR or LF (1).
    A CR that is the last byte may be the first half of a CR LF and is not counted."""
    buf = np.frombuffer(data, np.uint8)
    lf = np.flatnonzero(buf == 10)
    if b"\r" not in data:
        return lf, np.ones(len(lf), np.int64)
    cr = np.flatnonzero(buf[:-1] == 13)
    crlf = buf[cr + 1] == 10
    lone_lf = lf[~np.isin(lf - 1, cr[crlf])]
    ends = np.concatenate([cr, lone_lf])
    lengths = np.concatenate([np.where(crlf, 2, 1), np.ones(len(lone_lf), np.int64)])
    order = np.argsort(ends, kind="stable")
    return ends[order], lengths[order]


def line_blocks(stream: IO[bytes], tick: Callable[[], object] | None = None) -> Iterator[Block]:
    """The lines of a binary stream in blocks, split exactly at CR, LF and CR LF.

    Python's own line splitting is either LF-only (binary files: a file with CR line ends is
    one line) or splits at VT, FF, FS, GS, RS, NEL and U+2028 too (``str.splitlines``), none of
    which end a line perf printed.  Reads in chunks, so memory stays bounded whatever the
    line: of a line longer than :data:`MAX_LINE_BYTES`, a block holds its first
    ``MAX_LINE_BYTES + 1`` bytes (the rest is skipped unread).  A UTF-8 byte order mark
    before the first line is skipped.  ``tick`` is called after each chunk (to show progress).
    """
    pending = b""
    dropping = False  # inside a too long line, skipping to its end
    first = True
    lineno = 1
    while chunk := stream.read(_BLOCK):
        if tick is not None:
            tick()
        if first:
            chunk, first = chunk.removeprefix(b"\xef\xbb\xbf"), False
        data = pending + chunk
        ends, lengths = _line_ends(data)
        if dropping and len(ends):
            data, ends, lengths = data[ends[0] + lengths[0] :], ends[1:] - ends[0] - lengths[0], lengths[1:]
            dropping = False
        if dropping:
            pending = data[-1:] if data.endswith(b"\r") else b""
            continue
        if len(ends):
            nexts = ends + lengths
            yield Block(lineno, data, np.concatenate([[0], nexts[:-1]]), ends)
            lineno += len(ends)
            data = data[nexts[-1] :]
        if len(data) > MAX_LINE_BYTES:
            yield Block(lineno, data[: MAX_LINE_BYTES + 1], np.zeros(1, np.int64), np.full(1, MAX_LINE_BYTES + 1))
            lineno += 1
            dropping = True
            pending = data[-1:] if data.endswith(b"\r") else b""
        else:
            pending = data
    if pending and not dropping:  # a lone CR left over is an empty last line
        yield Block(lineno, pending, np.zeros(1, np.int64), np.full(1, len(pending)))


def _line(raw: bytes) -> str:
    return TooLong(_decode(raw[:MAX_LINE_BYTES])) if len(raw) > MAX_LINE_BYTES else _decode(raw)


class _ZstdStream:
    """Decompresses zstd frames one after another, and fails on a truncated last frame
    (python-zstandard's stream reader ends quietly there: a truncated capture read short)."""

    def __init__(self, raw: IO[bytes], name: str) -> None:
        self._raw = raw
        self._name = name
        self._frame = zstandard.ZstdDecompressor().decompressobj()
        self._started = False

    def read(self, size: int = -1) -> bytes:
        while True:
            chunk = self._raw.read(_CHUNK)
            if not chunk:
                if self._started and not self._frame.eof:
                    raise PerfnetError(f"cannot read {self._name}: truncated zstd data (the last frame is cut short)")
                return b""
            self._started = True
            out = self._frame.decompress(chunk)
            while self._frame.eof and self._frame.unused_data:  # the next frame
                rest = self._frame.unused_data
                self._frame = zstandard.ZstdDecompressor().decompressobj()
                out += self._frame.decompress(rest)
            if out:
                return out


# Magic bytes of what perfnet can read besides text, whatever the file is called.
_MAGIC: Final = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (PERF_DATA_MAGIC, "perf.data"),
)


def kind_of(head: bytes) -> str:
    """What a source is by its first bytes: "gzip", "bzip2", "xz", "zstd", "perf.data" or "text"."""
    return next((kind for magic, kind in _MAGIC if head.startswith(magic)), "text")


def _decompressed(raw: io.BufferedReader, name: str) -> Any:
    """``raw`` decompressed by what its first bytes say it is (text stays as it is)."""
    kind = kind_of(raw.peek(8)[:8])
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw)
    if kind == "bzip2":
        return bz2.BZ2File(raw)
    if kind == "xz":
        return lzma.LZMAFile(raw)
    if kind == "zstd":
        return _ZstdStream(raw, name)
    return raw


def open_lines(source: Source, progress: Callable[[int], object] | None = None) -> Iterator[str]:
    """Yield the decoded lines of a source, without line ends (see :func:`line_blocks` and
    :meth:`Block.line`).

    Compressed input (gzip, bzip2, xz, zstd) and ``perf.data`` recordings are recognised by
    their first bytes, whatever the name, also on standard input (a recording there is
    spooled to a temporary file for ``perf script``).

    ``progress``, if given, is called with the bytes of a file read so far (compressed
    bytes for compressed files).

    Raises:
        PerfnetError: a path that does not exist or cannot be read, or corrupt or truncated
            compressed data.
    """
    blocks = open_blocks(source, progress)
    if blocks is not None:
        for block in blocks:
            for i in range(len(block)):
                yield block.line(i)
        return
    lines = (_decode(line) for line in cast(Iterable[str | bytes], source))
    first = next(lines, None)
    if first is not None:
        yield first.removeprefix("\ufeff")
        yield from lines


def open_blocks(source: Source, progress: Callable[[int], object] | None = None) -> Iterator[Block] | None:
    """The lines of a path, a binary file or standard input (``"-"``) in blocks, as
    :func:`line_blocks` splits them; None for an iterable of lines (or a text file), which is
    read line by line (see :func:`open_lines`).

    Raises:
        PerfnetError: as :func:`open_lines` (while iterating).
    """
    if not isinstance(source, str | Path):
        if isinstance(source, io.BufferedReader):
            return _binary_blocks(source, "the input")
        if isinstance(source, io.IOBase) and isinstance(source, io.BufferedIOBase | io.RawIOBase):
            return _binary_blocks(io.BufferedReader(cast(Any, source)), "the input")
        return None
    if str(source) == "-":
        return _binary_blocks(cast(io.BufferedReader, sys.stdin.buffer), "standard input")
    return _path_blocks(Path(source), progress)


def _path_blocks(path: Path, progress: Callable[[int], object] | None) -> Iterator[Block]:
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise PerfnetError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with raw:
        yield from _binary_blocks(raw, str(path), path, progress)


class _Encoded:
    """A binary stream of text lines (``perf script``'s, decoded as it printed them)."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines

    def read(self, size: int = -1) -> bytes:
        batch = "".join(line + "\n" for line in itertools.islice(self._lines, 4096))
        return batch.encode("utf-8", errors="surrogateescape")


def _binary_blocks(
    raw: io.BufferedReader, name: str, path: Path | None = None, progress: Callable[[int], object] | None = None
) -> Iterator[Block]:
    try:
        if kind_of(raw.peek(8)[:8]) == "perf.data":
            if path is not None:
                yield from line_blocks(_Encoded(read_perf_data(path)))  # type: ignore[arg-type]
                return
            with tempfile.NamedTemporaryFile(prefix="perfnet-stdin-", suffix=".data") as spool:
                shutil.copyfileobj(raw, spool)
                spool.flush()
                yield from line_blocks(_Encoded(read_perf_data(spool.name)))  # type: ignore[arg-type]
            return
        tick = (lambda: progress(raw.tell())) if progress is not None else None
        yield from line_blocks(_decompressed(raw, name), tick)
    # corrupt or truncated compressed data fails while reading, not when opening
    except (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise PerfnetError(f"cannot read {name}: {getattr(exc, 'strerror', None) or exc}") from exc


def _perf_trace_dialect(body: str) -> Variant | None:
    if _PRINTER_BODY.match(body):
        return Variant.TRACE
    if _FORMAT_BODY.match(body):
        return Variant.TRACE_LIBTRACEEVENT
    return None  # an empty body, `netif_rx_exit()`, is printed alike by both


def detect_variant(line: str) -> Variant | None:
    """The variant an event line is printed in, or None if this line cannot tell."""
    for variant in _DETECT_ORDER:
        try:
            header = parse_header(variant, line)
        except pp.ParseException:
            continue
        except HeaderError:  # an event line of this variant, with a value out of range
            return None if variant is Variant.TRACE else variant
        return _perf_trace_dialect(header.body) if variant is Variant.TRACE else variant
    return None


class LineParser:
    """Turns one line of a known variant into a record, message, callchain frame or bad line.

    It keeps one piece of state: after perf trace's ``Summary of events:`` every non-event
    line belongs to the summary block.
    """

    def __init__(
        self,
        variant: Variant,
        schemas: Mapping[str, EventSchema],
        enums: EnumTables,
        symbols: Kallsyms | None = None,
    ) -> None:
        self.variant = variant
        self.schemas = schemas
        self.enums = enums
        self.symbols = symbols
        self._by_short_name = {s.name: s for s in schemas.values()}  # ftrace omits the subsystem
        self._printer_fields = variant is Variant.TRACE
        self._bodies: dict[str, BodyParser] = {}
        self._in_summary = False

    def parse(self, lineno: int, line: str, after_event: bool = False) -> Item | str | None:
        """Classify and parse one decoded line; a ``str`` is a callchain frame, None a blank line.

        ``after_event`` says whether an event (not yet closed) precedes the line: only then can
        it be a callchain frame.
        """
        if isinstance(line, ControlCodes):
            return Message(lineno, "perf", "(terminal control codes)")
        if not line.strip(" \t"):
            return None  # blank; other spaces and control characters are accounted as bad lines
        if isinstance(line, TooLong):
            return BadLine(lineno, line[:200], f"line longer than {MAX_LINE_BYTES} bytes", MAX_LINE_BYTES + 1)
        try:
            header = match_header(self.variant, line)
            if header is None:
                return self._not_an_event(lineno, line, after_event)
        except HeaderError as exc:
            return BadLine(lineno, line, exc.message, exc.loc + 1)
        return self._record(lineno, line, header)

    def body_parser(self, event: str, schema: EventSchema | None) -> BodyParser:
        """The parser of ``event``'s bodies (built once per event)."""
        body_parser = self._bodies.get(event)
        if body_parser is None:
            body_parser = BodyParser(schema, self._printer_fields, self.enums.get(event, {}), self.symbols)
            self._bodies[event] = body_parser
        return body_parser

    def _record(self, lineno: int, line: str, header: Header) -> Record | BadLine:
        if self.variant is Variant.FTRACE:
            schema = self._by_short_name.get(header.event)
            event = schema.event if schema else f"ftrace:{header.event}"
        else:
            schema = self.schemas.get(header.event)
            event = header.event
        try:
            fields = self.body_parser(event, schema).parse(header.body)
        except BodyError as exc:
            return BadLine(lineno, line, exc.message, header.body_start + exc.loc + 1)
        return Record(lineno, header.time_ns, event, header.comm, header.tid, header.cpu, fields)

    def _not_an_event(self, lineno: int, line: str, after_event: bool) -> Item | str:
        """A line the fast header refused: a message, a frame, an event only the grammar reads, or bad."""
        for kind, pattern in _MESSAGES:
            match = pattern.match(line)
            if match:
                if kind == "summary":
                    self._in_summary = True
                if kind != "lost":
                    return Message(lineno, kind, line.strip())
                try:  # perf counts lost events in an unsigned 64-bit field
                    lost = checked_int(match["lost"], 64, signed=False)
                except ValueError as exc:
                    return BadLine(lineno, line, f"LOST count {exc}", match.start("lost") + 1)
                return Message(lineno, kind, line.strip(), lost)
        if self._in_summary and _SUMMARY_LINE.match(line):
            return Message(lineno, "summary", line.strip())
        self._in_summary = False  # perf's summary ends where its table does
        frame = _FRAME.match(line) if after_event else None
        if frame:
            return frame["sym"]
        try:  # the grammar is the reference; it also says where and why a line is not an event
            header = parse_header_grammar(self.variant, line)
        except pp.ParseException as exc:
            return BadLine(lineno, line, f"not a {self.variant} event line: {exc.msg}", exc.column)
        return self._record(lineno, line, header)


def _detect(lines: Iterator[tuple[int, str]]) -> tuple[Variant, list[tuple[int, str]]]:
    """Look ahead until a line settles the variant; return it and the lines read so far."""
    seen: list[tuple[int, str]] = []
    fallback: Variant | None = None
    for numbered in itertools.islice(lines, _DETECT_LOOKAHEAD):
        seen.append(numbered)
        variant = detect_variant(numbered[1])
        if variant is not None:
            return variant, seen
        if fallback is None:
            try:
                parse_header(Variant.TRACE, numbered[1])
                fallback = Variant.TRACE
            except HeaderError:
                fallback = Variant.TRACE
            except pp.ParseException:
                pass
    return fallback or Variant.TRACE, seen


def open_items(
    source: Source,
    *,
    format: Variant | str | None = None,
    schemas: Mapping[str, EventSchema],
    enums: EnumTables,
    symbols: Kallsyms | None = None,
    strict: bool = False,
    progress: Callable[[int], object] | None = None,
) -> tuple[Variant, Iterator[Item]]:
    """Open a source: its variant (detected now, from the first lines that can tell) and a
    stream of every item in input order, in constant memory.

    Args:
        source: see :data:`Source`.
        format: the variant, or None to detect it.
        schemas: tracepoint schemas by ``subsystem:name``.
        enums: symbolic names for numeric enum fields.
        symbols: kernel text symbols, to name code addresses perf trace prints in hex.
        strict: raise :class:`ParseError` at the first bad line instead of yielding it.
        progress: called with the bytes of a file read so far (see :func:`open_lines`).

    Raises:
        ParseError: in strict mode (while iterating), at the first line that does not parse.
    """
    numbered: Iterator[tuple[int, str]] = enumerate(open_lines(source, progress), start=1)
    if format is None:
        variant, head = _detect(numbered)
        numbered = itertools.chain(head, numbered)
    else:
        variant = variant_of(format)
    return variant, _items(numbered, LineParser(variant, schemas, enums, symbols), strict, detected=format is None)


def variant_of(format: Variant | str) -> Variant:
    """The variant a ``format=`` argument names.

    Raises:
        UsageError: it names none.
    """
    try:
        return Variant(format)
    except ValueError:
        raise UsageError(f"unknown format {format!r}; one of {', '.join(v.value for v in Variant)}") from None


def detect_blocks(blocks: Iterator[Block]) -> tuple[Variant, Iterator[Block]]:
    """The variant of a source read in blocks (see :func:`open_items`), and all its blocks."""
    head: list[Block] = []

    def numbered() -> Iterator[tuple[int, str]]:
        for block in blocks:
            head.append(block)
            for i in range(len(block)):
                yield block.lineno + i, block.line(i)

    variant, _ = _detect(numbered())
    return variant, itertools.chain(head, blocks)


def _items(
    numbered: Iterator[tuple[int, str]], parser: LineParser, strict: bool, detected: bool = True
) -> Iterator[Item]:
    """The items of the lines, callchain frames folded into their events.

    Raises:
        NotPerfOutputError: at the end, if the variant was ``detected`` and no line was an
            event or a perf message but some were not blank (``dmesg``, a binary, a config
            file): an empty Trace would hide that.  With a variant given, its bad lines stay.
        ParseError: in strict mode, at the first bad line.
    """
    pending: Record | None = None
    frames: list[str] = []
    first_bad: BadLine | None = None
    recognised = False
    for lineno, line in numbered:
        item = parser.parse(lineno, line, after_event=pending is not None)
        if item is None:
            continue
        if isinstance(item, BadLine):
            first_bad = first_bad or item
        else:
            recognised = True
        if isinstance(item, str):  # a callchain frame of the pending event
            frames.append(item)
            continue
        if pending is not None:
            yield _with_callchain(pending, frames)
            pending, frames = None, []
        if isinstance(item, Record):
            pending = item
            continue
        if strict and isinstance(item, BadLine):
            raise ParseError(item.lineno, item.column, item.line, item.message)
        yield item
    if pending is not None:
        yield _with_callchain(pending, frames)
    if detected and first_bad is not None and not recognised:
        raise NotPerfOutputError(
            f"not perf output: no event and no perf message in it; line {first_bad.lineno} reads "
            f"{first_bad.line[:80]!r}\nhint: perfnet reads what perf trace, perf script or ftrace print"
        )


def _with_callchain(record: Record, frames: list[str]) -> Record:
    if not frames:
        return record
    return Record(
        record.lineno, record.time_ns, record.event, record.comm, record.tid, record.cpu, record.fields, tuple(frames)
    )
