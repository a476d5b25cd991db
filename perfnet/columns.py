"""Lines to columns: the columnar fast path, and the builder every :class:`~perfnet.trace.Trace`
is made from.

A block of lines (:class:`~perfnet.reader.Block`) is parsed column-wise, without a Python object
per line: one capture-free RE2 match per line accepts the lines whose header is in a plain form
(printable ASCII, single spaces where the grammar allows any whitespace, nothing the grammar
would have to backtrack over); literal splits (``pyarrow.compute``) cut those lines into header
fields and bodies; each tracepoint's bodies are cut at the literals of its print formats (or
perf trace's ``name: value`` list) from the same schemas the pyparsing grammar is built from.
Field values are typed by the grammar's own converters, called once per *distinct* printed
value, so a value types exactly as on the per-line path and one that does not convert is
caught at once.  Every line the fast path does not accept, in whole or in any field, goes to
the per-line path (:class:`~perfnet.reader.LineParser`) by line number: messages, callchain
frames, bad lines, and the rare event in an unusual form.  Tests hold both paths to identical
records on every fixture and on generated lines.

Variants read column-wise: ``trace``, ``trace-libtraceevent`` and ``script``; ``ftrace`` and
``trace-old`` lines all take the per-line path.

:class:`ColumnBuilder` collects blocks (or single items, from a live capture) into
:class:`Columns`: per event its header values, its tracepoint's fields as codes into tables of
distinct typed values (one table per field of each *shape*: event and field names), and the
messages and bad lines.  Records are made from them on demand.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import ctypes.util
import dataclasses
import itertools
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from perfnet.errors import NotPerfOutputError, ParseError
from perfnet.grammar import BodyFormat, BodyParser, Converter, EnumTables, Variant
from perfnet.kallsyms import Kallsyms
from perfnet.reader import (
    MAX_LINE_BYTES,
    Block,
    LineParser,
    Source,
    detect_blocks,
    kind_of,
    line_blocks,
    open_blocks,
    open_items,
    variant_of,
)
from perfnet.records import ADDRESS_FIELDS, BadLine, FieldValue, Item, Message, Record
from perfnet.schema import EventSchema, load_schemas

IntArray = npt.NDArray[np.integer[Any]]
_Chunk = tuple[npt.NDArray[Any], ...]  # lineno, time_ns, tid, cpu, comm, event and shape of some rows

# The fast path reads printable ASCII.  Any other byte (control codes, UTF-8 sequences,
# invalid bytes) is replaced by 0x01, which no fast pattern accepts: its line takes the per-line
# path, which decodes it as it should.
# An event name as the headers print it; a leading digit is refused (perf script's optional
# period column, `: 1 net:...`, would make it ambiguous).
_EVENT = r"[A-Za-z_-][A-Za-z0-9_-]*:[A-Za-z0-9_-]+"
# perf trace: `  2002.313 ping/32272 net:net_dev_queue(skbaddr: 0x..., len: 98, name: "pnv0")`;
# a comm of printable characters without spaces or parentheses.  Times have at most 12 digits
# of milliseconds (perf trace) or 9 of seconds (perf script), so nanoseconds fit int64; the
# per-line path checks longer ones.
_TRACE_LINE: Final = rf"^ *[0-9]{{1,12}}\.[0-9]+ +(?:(?:[!-'*-~]*/)?[0-9]{{1,10}} +)?{_EVENT}\([ -~]*\) *$"
# perf script: `  ping 32272 [000]  2089.843380:   net:net_dev_queue: dev=pnbr skbaddr=0x... len=98`;
# a comm of printable characters without brackets, words single-spaced.
_SCRIPT_LINE: Final = (
    rf"^ *[!-Z\\^-~]+(?: [!-Z\\^-~]+)* +(?:[0-9]{{1,10}}/)?[0-9]{{1,10}} +\[[0-9]{{1,10}}\] +"
    rf"[0-9]{{1,9}}\.[0-9]+: +{_EVENT}: +(?:[!-~][ -~]*)?$"
)
# perf trace's printer: `name: value, name: "string"`, values without commas or escapes.
_PRINTED_VALUE = r'(?:"[^"\\,]*"|[^,"]*)'
_PRINTED_LIST: Final = rf"^(?:\w+: {_PRINTED_VALUE}(?:, \w+: {_PRINTED_VALUE})*)?$"

_U32: Final = (1 << 32) - 1


@dataclass(frozen=True, slots=True)
class _Header:
    """Header columns of the accepted lines of a block (``rows``: their indices in the block)."""

    rows: IntArray
    time_ns: IntArray
    comm: pa.Array  # strings, null where not printed
    tid: npt.NDArray[np.float64]  # NaN where not printed (values fit 32 bits, exact as float64)
    cpu: npt.NDArray[np.float64]
    event: pa.Array
    body: pa.Array


def _lines_array(block: Block) -> pa.StringArray:
    """The block's lines as one Arrow string array, line ends removed, odd bytes made 0x01."""
    data = np.frombuffer(block.data, np.uint8)[: block.ends[-1]]
    ends = block.starts[1:] - block.ends[:-1]  # each line end's length: 1 or 2 bytes
    inside = np.ones(len(data), np.bool_)
    inside[block.ends[:-1]] = False
    inside[block.ends[:-1][ends == 2] + 1] = False
    clean = data[inside]
    odd = (clean < 0x20) | (clean > 0x7E)
    if odd.any():
        clean = np.where(odd, np.uint8(1), clean)
    offsets = np.concatenate([[0], np.cumsum(block.ends - block.starts)]).astype(np.int32)
    return pa.StringArray.from_buffers(len(block), pa.py_buffer(offsets), pa.py_buffer(clean))


def _nth(lists: pa.Array, i: int) -> pa.Array:
    return pc.list_element(lists, i)


def _uint(texts: pa.Array) -> npt.NDArray[np.float64]:
    """Decimal strings (already checked to be 1-10 ASCII digits, or null) as floats, NaN for null."""
    return pc.cast(texts, pa.uint64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _time_ns(texts: pa.Array, digits: int) -> IntArray:
    """``seconds.fraction`` strings as integer units of 10**-digits, exactly as
    :func:`~perfnet.grammar.time_to_ns` (the fraction cut or padded to ``digits``)."""
    parts = pc.split_pattern(texts, ".", max_splits=1)
    whole = pc.cast(_nth(parts, 0), pa.int64()).to_numpy()
    frac = pc.utf8_slice_codeunits(_nth(parts, 1), 0, digits)
    scale = 10 ** (digits - pc.utf8_length(frac).to_numpy().astype(np.int64))
    return whole * 10**digits + pc.cast(frac, pa.int64()).to_numpy() * scale


def _trace_header(lines: pa.StringArray) -> _Header:
    ok = pc.match_substring_regex(lines, _TRACE_LINE)
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    accepted = lines.take(rows)
    head_rest = pc.split_pattern(accepted, "(", max_splits=1)
    head = pc.utf8_trim(_nth(head_rest, 0), " ")
    prefix_event = pc.utf8_split_whitespace(head, max_splits=1, reverse=True)
    time_task = pc.split_pattern(pc.binary_join_element_wise(_nth(prefix_event, 0), " ", ""), " ", max_splits=1)
    task = pc.utf8_trim(_nth(time_task, 1), " ")
    # `comm/tid`, `tid` or nothing: with a `/` in front, the last `/` splits comm from tid
    comm_tid = pc.split_pattern(pc.binary_join_element_wise("/", task, ""), "/", max_splits=1, reverse=True)
    comm = pc.utf8_slice_codeunits(_nth(comm_tid, 0), 1)
    tid = _nth(comm_tid, 1)
    body = pc.utf8_slice_codeunits(pc.utf8_rtrim(_nth(head_rest, 1), " "), 0, -1)  # the closing `)`
    return _Header(
        rows=rows,
        time_ns=_time_ns(_nth(time_task, 0), 6),
        comm=pc.if_else(pc.equal(comm, ""), pa.scalar(None, pa.string()), comm),
        tid=_uint(pc.if_else(pc.equal(tid, ""), pa.scalar(None, pa.string()), tid)),
        cpu=np.full(len(rows), np.nan),
        event=_nth(prefix_event, 1),
        body=body,
    )


def _script_header(lines: pa.StringArray) -> _Header:
    ok = pc.match_substring_regex(lines, _SCRIPT_LINE)
    rows = np.flatnonzero(ok.to_numpy(zero_copy_only=False))
    accepted = lines.take(rows)
    task_rest = pc.split_pattern(accepted, "[", max_splits=1)
    comm_tid = pc.utf8_split_whitespace(pc.utf8_trim(_nth(task_rest, 0), " "), max_splits=1, reverse=True)
    tid = pc.replace_substring_regex(_nth(comm_tid, 1), "^[0-9]*/", "")  # pid/tid
    time_event_body = pc.split_pattern(_nth(task_rest, 1), ": ", max_splits=2)
    cpu_time = pc.split_pattern(_nth(time_event_body, 0), "]", max_splits=1)
    return _Header(
        rows=rows,
        time_ns=_time_ns(pc.utf8_trim(_nth(cpu_time, 1), " "), 9),
        comm=_nth(comm_tid, 0),
        tid=_uint(tid),
        cpu=_uint(_nth(cpu_time, 0)),
        event=pc.utf8_trim(_nth(time_event_body, 1), " "),
        body=pc.utf8_ltrim(_nth(time_event_body, 2), " "),
    )


_HEADERS = {
    Variant.TRACE: _trace_header,
    Variant.TRACE_LIBTRACEEVENT: _trace_header,
    Variant.SCRIPT: _script_header,
}


@dataclass(slots=True)
class _Typed:
    """One field's values over some rows: ``codes`` into ``values`` (distinct typed values)."""

    codes: IntArray
    values: list[FieldValue]


def _typed(texts: pa.Array, convert: Converter) -> tuple[_Typed, npt.NDArray[np.bool_]]:
    """Type printed values with the grammar's converter, once per distinct text; also which
    rows hold a text the converter refuses."""
    encoded = pc.dictionary_encode(texts)
    values: list[FieldValue] = []
    refused = []
    for i, text in enumerate(encoded.dictionary.to_pylist()):
        try:
            values.append(convert(text))
        except ValueError:
            values.append(None)
            refused.append(i)
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    return _Typed(codes, values), np.isin(codes, refused)


def _format_regex(fmt: BodyFormat) -> str | None:
    """The format's regex in RE2's syntax (a ``%s`` is lazy up to its literal, as a lookahead
    made it), or None if cutting at the first occurrence of each literal could read a body
    otherwise than the regex: a field not followed by a literal (unless it ends the body), or
    a literal starting with a character the field before it could print."""
    parts = ["^", re.escape(fmt.literals[0])]
    for i, pattern in enumerate(fmt.patterns):
        following = fmt.literals[i + 1]
        lazy = pattern.startswith(".*")
        if not following and i < len(fmt.patterns) - 1:
            return None
        if following and not lazy and re.fullmatch(pattern, following[0]):
            return None
        parts += [".*?" if lazy and following else f"(?:{pattern})", re.escape(following)]
    return "".join([*parts, "$"])


@dataclass(frozen=True, slots=True)
class _Layout:
    """A format whose fields are each inside one space-separated word, when no value holds a
    space: ``regex`` (RE2) accepts such bodies; field ``i`` is word ``words[i][0]`` without
    ``words[i][1]`` characters of literal before it and ``words[i][2]`` after it."""

    regex: str
    count: int
    words: tuple[tuple[int, int, int], ...]


def _layout(fmt: BodyFormat) -> _Layout | None:
    """The format's space-separated layout, or None if two fields share a word (or a field
    could print a space: ``%c``)."""
    regex = ["^", re.escape(fmt.literals[0])]
    words: list[tuple[int, int, int]] = []
    spaces = 0
    for i, pattern in enumerate(fmt.patterns):
        before, following = fmt.literals[i], fmt.literals[i + 1]
        if pattern == "." or (i and " " not in before):
            return None
        spaces += before.count(" ")
        words.append((spaces, len(before.rsplit(" ", 1)[-1]), len(following.split(" ", 1)[0])))
        regex += ["[^ ]*" if pattern.startswith(".*") else f"(?:{pattern})", re.escape(following)]
    count = spaces + fmt.literals[-1].count(" ") + 1
    return _Layout("".join([*regex, "$"]), count, tuple(words))


def _split_words(
    bodies: pa.Array, fmt: BodyFormat, layout: _Layout
) -> tuple[npt.NDArray[np.bool_], list[tuple[str, _Typed]]]:
    """Cut bodies ``layout.regex`` accepts at their spaces: every row is read, but for values
    that do not convert.  The words of all fields are told apart in one pass."""
    words = pc.dictionary_encode(pc.split_pattern(bodies, " ").flatten())
    texts = words.dictionary.to_pylist()
    codes = words.indices.to_numpy(zero_copy_only=False).reshape(len(bodies), layout.count)
    ok = np.ones(len(bodies), np.bool_)
    fields = []
    for (name, convert), (word, before, after) in zip(fmt.converters, layout.words, strict=True):
        used, local = np.unique(codes[:, word], return_inverse=True)
        values: list[FieldValue] = []
        refused = []
        for i, text in enumerate(texts[c] for c in used.tolist()):
            try:
                values.append(convert(text[before : len(text) - after]))
            except ValueError:
                values.append(None)
                refused.append(i)
        if refused:
            ok &= ~np.isin(local, refused)
        fields.append((name, _Typed(local.astype(np.int64), values)))
    for _, typed in fields:
        typed.codes = typed.codes[ok]
    return ok, fields


def _split_format(bodies: pa.Array, fmt: BodyFormat) -> tuple[npt.NDArray[np.bool_], list[tuple[str, _Typed]]]:
    """Cut bodies the format's regex matches at its literals; which rows are read (with every
    value typed), and their fields.  A row whose cut differs from the regex's reading (a
    ``%s`` holding its own literal) or whose value does not convert is not read."""
    n = len(bodies)
    ok = np.ones(n, np.bool_)
    rest = pc.utf8_slice_codeunits(bodies, len(fmt.literals[0])) if fmt.literals[0] else bodies
    texts = []
    for i, pattern in enumerate(fmt.patterns):
        following = fmt.literals[i + 1]
        if following:
            parts = pc.split_pattern(rest, following, max_splits=1)
            ok &= pc.equal(pc.list_value_length(parts), 2).to_numpy(zero_copy_only=False)
            parts = pc.if_else(pa.array(ok), parts, pa.scalar(["", ""], parts.type))
            value, rest = _nth(parts, 0), _nth(parts, 1)
        else:
            value, rest = rest, None
        if not pattern.startswith(".*"):
            ok &= pc.match_substring_regex(value, f"^(?:{pattern})$").to_numpy(zero_copy_only=False)
        texts.append(value)
    if rest is not None:
        ok &= pc.equal(rest, "").to_numpy(zero_copy_only=False)
    return _typed_fields(ok, list(zip((name for name, _ in fmt.converters), texts, strict=True)), dict(fmt.converters))


def _typed_fields(
    ok: npt.NDArray[np.bool_], texts: list[tuple[str, pa.Array]], converters: Mapping[str, Converter]
) -> tuple[npt.NDArray[np.bool_], list[tuple[str, _Typed]]]:
    """Type each field's texts of the rows ``ok`` says were cut right; rows with a text the
    converter refuses are dropped from ``ok`` too."""
    rows = np.flatnonzero(ok)
    fields = []
    for name, text in texts:
        typed, refused = _typed(text.take(rows), converters[name])
        ok[rows[refused]] = False
        fields.append((name, typed))
    keep = ok[rows]
    for _, typed in fields:
        typed.codes = typed.codes[keep]
    return ok, fields


def _split_printed(bodies: pa.Array, parser: BodyParser) -> tuple[npt.NDArray[np.bool_], list[tuple[str, _Typed]]]:
    """Cut perf trace printer bodies (``name: value, ...``, zero fields omitted); which rows are
    read, and their fields in schema order (an omitted field has its zero value)."""
    n = len(bodies)
    ok = pc.match_substring_regex(bodies, _PRINTED_LIST).to_numpy(zero_copy_only=False).copy()
    listed = ok & pc.not_equal(bodies, "").to_numpy(zero_copy_only=False)
    pairs = pc.split_pattern(bodies.filter(pa.array(listed)), ", ")
    row_of = np.flatnonzero(listed)[pc.list_parent_indices(pairs).to_numpy()]
    key_value = pc.split_pattern(pairs.flatten(), ": ", max_splits=1)
    keys = pc.dictionary_encode(_nth(key_value, 0))
    names = list(parser.zeros)
    converters = {name: convert for name, convert in parser.printed.values()}
    slots = np.array(
        [names.index(parser.printed[k][0]) if k in parser.printed else -1 for k in keys.dictionary.to_pylist()] + [-1]
    )
    slot = slots[keys.indices.to_numpy(zero_copy_only=False)]
    ok[row_of[slot < 0]] = False  # a name the schema does not know is typed by inference
    known = slot >= 0
    pair_ids, counts = np.unique(row_of[known] * len(names) + slot[known], return_counts=True)
    ok[pair_ids[counts > 1] // max(len(names), 1)] = False  # a name printed twice: the last one wins
    values = _nth(key_value, 1)
    fields = []
    for index, name in enumerate(names):
        mine = np.flatnonzero(slot == index)
        typed, refused = _typed(values.take(mine), converters[name])
        ok[row_of[mine[refused]]] = False
        codes = np.full(n, len(typed.values), np.int64)
        typed.values.append(parser.zeros[name])
        codes[row_of[mine]] = typed.codes
        typed.codes = codes
        fields.append((name, typed))
    keep = np.flatnonzero(ok)
    for _, typed in fields:
        typed.codes = typed.codes[keep]
    return ok, fields


def _key(value: FieldValue) -> tuple[type, FieldValue]:
    return type(value), value  # True and 1 are equal and hash alike: the type tells them apart


class Table:
    """Distinct values in order of first appearance, and their codes (True and 1 kept apart)."""

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._codes: dict[Any, int] = {}

    def code(self, value: Any) -> int:
        key = _key(value)
        code = self._codes.get(key)
        if code is None:
            code = self._codes[key] = len(self.values)
            self.values.append(value)
        return code

    def codes(self, values: Sequence[Any]) -> IntArray:
        return np.fromiter((self.code(v) for v in values), np.int64, len(values))


class _Shape:
    """The rows of one event with one set of field names, in input order: each field's codes
    into its table of distinct typed values."""

    def __init__(self, event: str, names: tuple[str, ...]) -> None:
        self.event = event
        self.names = names
        self.linenos: list[IntArray] = []
        self.codes: list[list[IntArray]] = [[] for _ in names]
        self.tables = [Table() for _ in names]

    def global_codes(self, fields: Sequence[_Typed]) -> list[IntArray]:
        """The fields' codes into this shape's tables."""
        return [
            self.tables[i].codes(typed.values)[typed.codes] if typed.values else typed.codes
            for i, typed in enumerate(fields)
        ]

    def add(self, linenos: IntArray, codes: Sequence[IntArray]) -> None:
        """Rows at ``linenos``, with each field's codes into this shape's tables."""
        self.linenos.append(linenos)
        for i, column in enumerate(codes):  # narrow while the tables are small (few values repeat)
            self.codes[i].append(column.astype(np.int16 if len(self.tables[i].values) <= 32767 else np.int32))


@dataclass(slots=True)
class _Known:
    """The distinct bodies of one event read so far (at most :data:`_KNOWN_BODIES`), each
    with its shape (-1: left to the per-line path) and its fields' codes."""

    entries: dict[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)


_KNOWN_BODIES: Final = 65536
"""Distinct bodies remembered per event while a source is read: a capture repeats few (the
flood benchmark's 244,851 events have 8,447), so most blocks only look them up; the bound
keeps memory flat where every body differs."""


@dataclass(frozen=True, slots=True, eq=False)
class Columns:
    """A capture's events as columns, its messages and its bad lines.

    Rows are in time order (stable: in line order where times are equal), the order of the
    events frame, which can then share these arrays.  Each event's fields live in the shape of
    its event and field names (``shapes``: its rows, in line order, and each field's codes
    into a table of typed values); records are made from them on demand, in line order.
    """

    lineno: IntArray
    time_ns: IntArray
    tid: pd.arrays.IntegerArray  # UInt32, missing where not printed
    cpu: pd.arrays.IntegerArray
    comm: pd.Categorical
    event: pd.Categorical
    callchain: Mapping[int, tuple[str, ...]]  # by lineno; events without one are absent
    shapes: tuple[FinalShape, ...]
    messages: tuple[Message, ...]
    errors: tuple[BadLine, ...]

    def __len__(self) -> int:
        return len(self.lineno)

    def callchains(self) -> pd.Categorical:
        """Each event's callchain (a tuple of frames, empty if none), as a categorical."""
        table = Table()
        codes = np.full(len(self), table.code(()), np.int64)
        if self.callchain:
            linenos = np.fromiter(self.callchain, np.int64, len(self.callchain))
            by_line = np.argsort(self.lineno, kind="stable")
            codes[by_line[np.searchsorted(self.lineno[by_line], linenos)]] = table.codes(list(self.callchain.values()))
        return categorical(codes, table.values)

    def event_counts(self) -> dict[str, int]:
        """Events per tracepoint, most frequent first (ties in order of first appearance)."""
        codes = self.event.codes.astype(np.int64)
        counts = np.bincount(codes, minlength=len(self.event.categories))
        first = np.full(len(counts), np.iinfo(np.int64).max)
        np.minimum.at(first, codes, self.lineno)
        order = sorted(np.flatnonzero(counts).tolist(), key=lambda c: (-counts[c], first[c]))
        names = list(self.event.categories)
        return {str(names[c]): int(counts[c]) for c in order}

    def field_column(self, name: str, address: bool = False) -> list[tuple[IntArray, list[FieldValue], IntArray]]:
        """Per shape having field ``name`` (with ``address``, the skb address field of its
        event): row positions, the field's distinct values and each row's code."""
        out = []
        for shape in self.shapes:
            wanted = ADDRESS_FIELDS.get(shape.event, "skbaddr") if address else name
            if wanted in shape.names:
                i = shape.names.index(wanted)
                out.append((shape.rows, shape.values[i], shape.codes[i]))
        return out

    def take(self, rows: IntArray) -> Columns:
        """These rows only (positions, ascending), with every message and bad line."""
        keep = np.zeros(len(self), bool)
        keep[rows] = True
        position = np.cumsum(keep) - 1
        shapes = []
        for shape in self.shapes:
            kept = keep[shape.rows]
            shapes.append(
                FinalShape(
                    shape.event,
                    shape.names,
                    shape.dtypes,
                    position[shape.rows[kept]],
                    shape.values,
                    tuple(codes[kept] for codes in shape.codes),
                )
            )
        linenos = set(self.lineno[rows].tolist())
        return Columns(
            self.lineno[rows],
            self.time_ns[rows],
            self.tid[rows],
            self.cpu[rows],
            self.comm[rows],
            self.event[rows],
            {lineno: chain for lineno, chain in self.callchain.items() if lineno in linenos},
            tuple(shapes),
            self.messages,
            self.errors,
        )

    def records(self, event: str | None = None) -> Iterator[Record]:
        """The events as :class:`Record` objects, in input order (of one tracepoint only, if given)."""
        chosen = [s for s in self.shapes if event is None or s.event == event]
        if not chosen:
            return
        rows = np.concatenate([s.rows for s in chosen])
        which = np.concatenate([np.full(len(s.rows), i) for i, s in enumerate(chosen)])
        index = np.concatenate([np.arange(len(s.rows)) for s in chosen])
        order = np.argsort(self.lineno[rows], kind="stable")
        rows, which, index = rows[order], which[order], index[order]
        comms = [None, *map(str, self.comm.categories)]
        events = list(map(str, self.event.categories))
        tids, cpus = (
            [None if v != v else int(v) for v in column.to_numpy(dtype="float64", na_value=np.nan)[rows].tolist()]
            for column in (self.tid, self.cpu)
        )
        for k, (row, shape_i, i) in enumerate(zip(rows.tolist(), which.tolist(), index.tolist(), strict=True)):
            shape = chosen[shape_i]
            lineno = int(self.lineno[row])
            yield Record(
                lineno,
                int(self.time_ns[row]),
                events[self.event.codes[row]],
                comms[self.comm.codes[row] + 1],
                tids[k],
                cpus[k],
                {name: shape.values[f][shape.codes[f][i]] for f, name in enumerate(shape.names)},
                self.callchain.get(lineno, ()),
            )


@dataclass(frozen=True, slots=True, eq=False)
class FinalShape:
    event: str
    names: tuple[str, ...]
    dtypes: tuple[str, ...]  # each field's pandas dtype, from its schema (object if it has none)
    rows: IntArray  # positions in Columns (input order)
    values: tuple[list[FieldValue], ...]
    codes: tuple[npt.NDArray[np.integer[Any]], ...]


def narrow(codes: IntArray, count: int) -> npt.NDArray[np.integer[Any]]:
    return codes.astype(np.int8 if count <= 127 else np.int16 if count <= 32767 else np.int32)


@dataclass(slots=True)
class _Pending:
    """The per-line path's records of the current block, before they join their shapes."""

    linenos: list[int] = field(default_factory=list)
    time_ns: list[int] = field(default_factory=list)
    tid: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    comm: list[str | None] = field(default_factory=list)
    event: list[str] = field(default_factory=list)
    shape: list[int] = field(default_factory=list)
    # per shape: the records' line numbers and each field's codes
    fields: dict[int, tuple[list[int], list[list[int]]]] = field(default_factory=dict)


class ColumnBuilder:
    """Collects the items of one capture into :class:`Columns`, block by block (:meth:`add_block`,
    read from a file) or item by item (:meth:`add_item`, from a stream of records).

    Args:
        parser: the per-line parser of the capture's variant (also the fast path's schemas);
            None if only parsed items are added.
        schemas: the schemas that type the fields' columns (default: the parser's, else
            perfnet's own).
        strict: raise :class:`ParseError` at the first bad line.
        detected: the variant was detected; if no line is an event or a perf message,
            :meth:`finish` raises :class:`NotPerfOutputError`.
    """

    def __init__(
        self,
        parser: LineParser | None,
        strict: bool = False,
        detected: bool = True,
        schemas: Mapping[str, EventSchema] | None = None,
    ) -> None:
        self._parser = parser
        self._schemas = schemas if schemas is not None else parser.schemas if parser is not None else load_schemas()
        self._strict = strict
        self._detected = detected
        self._header = _HEADERS.get(parser.variant) if parser is not None else None
        self._format_regexes: dict[str, list[tuple[str, _Layout | None] | None]] = {}
        self._known: dict[str, _Known] = {}
        self._shapes: list[_Shape] = []
        self._shape_ids: dict[tuple[str, tuple[str, ...]], int] = {}
        self._comms = Table()
        self._events = Table()
        self._chunks: list[_Chunk] = []
        self._callchain: dict[int, tuple[str, ...]] = {}
        self._messages: list[Message] = []
        self._errors: list[BadLine] = []
        self._recognised = False
        # the per-line state that crosses lines: the event callchain frames belong to
        self._owner: int | None = None
        self._frames: list[str] = []
        self._pending = _Pending()

    # --- shapes ---------------------------------------------------------------------------

    def _shape(self, event: str, names: tuple[str, ...]) -> int:
        key = (event, names)
        shape_id = self._shape_ids.get(key)
        if shape_id is None:
            shape_id = self._shape_ids[key] = len(self._shapes)
            self._shapes.append(_Shape(event, names))
        return shape_id

    def _body_parser(self, event: str) -> BodyParser | None:
        """The per-line parser's body parser of ``event``; None for an event without a schema
        (its fields are typed by inference, line by line)."""
        assert self._parser is not None
        schema = self._parser.schemas.get(event)
        return self._parser.body_parser(event, schema) if schema is not None else None

    def _regexes(self, event: str, parser: BodyParser) -> list[tuple[str, _Layout | None] | None]:
        """Per print format of the event: its RE2 regex and space layout, or None if the
        fast path cannot read it (nor the formats after it)."""
        regexes = self._format_regexes.get(event)
        if regexes is None:
            regexes = self._format_regexes[event] = [
                (regex, _layout(f)) if (regex := _format_regex(f)) is not None else None for f in parser.formats
            ]
        return regexes

    # --- the fast path --------------------------------------------------------------------

    def _fast(self, block: Block) -> tuple[npt.NDArray[np.bool_], _Chunk | None]:
        """Which lines of the block the fast path reads, and their header columns."""
        accepted = np.zeros(len(block), np.bool_)
        if self._header is None:
            return accepted, None
        header = self._header(_lines_array(block))
        rows = header.rows
        too_long = (block.ends - block.starts)[rows] > MAX_LINE_BYTES
        good = ~too_long & ~(header.tid > _U32) & ~(header.cpu > _U32)
        events = pc.dictionary_encode(header.event)
        event_names = events.dictionary.to_pylist()
        event_index = events.indices.to_numpy(zero_copy_only=False)
        shape_of = np.full(len(rows), -1, np.int64)
        for e, name in enumerate(event_names):
            parser = self._body_parser(name)
            mine = np.flatnonzero((event_index == e) & good)
            if parser is None or not len(mine):
                continue
            # bodies repeat (the kernel reuses few skb addresses): each distinct one is read once
            distinct = pc.dictionary_encode(header.body.take(mine))
            entries = self._entries(name, parser, distinct.dictionary)
            index = distinct.indices.to_numpy(zero_copy_only=False)
            shapes = np.array([shape_id for shape_id, _ in entries], np.int64)
            for shape_id in np.unique(shapes[shapes >= 0]).tolist():
                members = np.flatnonzero(shapes == shape_id)
                matrix = np.array([entries[d][1] for d in members.tolist()], np.int64)
                position = np.zeros(len(entries), np.int64)
                position[members] = np.arange(len(members))
                ours = shapes[index] == shape_id
                codes = matrix[position[index[ours]]]
                self._shapes[shape_id].add(block.lineno + rows[mine[ours]], list(codes.T))
                shape_of[mine[ours]] = shape_id
        done = shape_of >= 0
        accepted[rows[done]] = True
        comms = pc.dictionary_encode(pc.fill_null(header.comm.filter(pa.array(done)), ""))
        comm_table = self._comms.codes([c or None for c in comms.dictionary.to_pylist()])  # "" is not printed
        event_table = self._events.codes(event_names)
        columns = (
            block.lineno + rows[done],
            header.time_ns[done],
            header.tid[done],
            header.cpu[done],
            comm_table[comms.indices.to_numpy(zero_copy_only=False)] if len(comm_table) else np.zeros(0, np.int64),
            event_table[event_index[done]] if len(event_table) else np.zeros(0, np.int64),
            shape_of[done],
        )
        return accepted, columns

    def _entries(self, event: str, parser: BodyParser, bodies: pa.Array) -> list[tuple[int, tuple[int, ...]]]:
        """Per distinct body: its shape (-1 if the fast path does not read it) and its fields'
        codes, remembered from earlier blocks or read now."""
        known = self._known.setdefault(event, _Known())
        texts = bodies.to_pylist()
        new = [i for i, text in enumerate(texts) if text not in known.entries]
        fresh: dict[str, tuple[int, tuple[int, ...]]] = {texts[i]: (-1, ()) for i in new}
        if new:
            for read, fields in self._read_bodies(event, parser, bodies.take(pa.array(new, pa.int64()))):
                shape_id = self._shape(event, tuple(n for n, _ in fields))
                codes = np.stack(self._shapes[shape_id].global_codes([t for _, t in fields]), axis=1)
                for i, row in zip(np.flatnonzero(read).tolist(), codes.tolist(), strict=True):
                    fresh[texts[new[i]]] = (shape_id, tuple(row))
            if len(known.entries) < _KNOWN_BODIES:
                known.entries.update(fresh)
        return [known.entries.get(text) or fresh[text] for text in texts]

    def _read_bodies(
        self, event: str, parser: BodyParser, bodies: pa.Array
    ) -> Iterator[tuple[npt.NDArray[np.bool_], list[tuple[str, _Typed]]]]:
        """Read an event's bodies: per group of bodies read alike (one print format, cut at
        spaces or at its literals), which bodies, and their fields.  Bodies no group reads
        are left to the per-line path."""
        if parser.printer_fields:
            yield _split_printed(bodies, parser)
            return
        left = np.arange(len(bodies))  # bodies no format matched yet: the next one is tried
        for fmt, compiled in zip(parser.formats, self._regexes(event, parser), strict=True):
            if compiled is None or not len(left):
                return  # the per-line path tries this format and the later ones
            regex, layout = compiled
            candidates = bodies.take(left)
            spaced = np.zeros(len(left), np.bool_)
            if layout is not None:  # its regex accepts a part of what the format's accepts
                spaced = pc.match_substring_regex(candidates, layout.regex).to_numpy(zero_copy_only=False)
            matched = spaced.copy()
            if not spaced.all():
                others = candidates.filter(pa.array(~spaced))
                matched[~spaced] = pc.match_substring_regex(others, regex).to_numpy(zero_copy_only=False)
            for group, cut in ((spaced, "words"), (matched & ~spaced, "literals")):
                if not group.any():
                    continue
                chosen = candidates.filter(pa.array(group))
                ok, fields = (
                    _split_words(chosen, fmt, layout) if cut == "words" and layout else _split_format(chosen, fmt)
                )
                read = np.zeros(len(bodies), np.bool_)
                read[left[group][ok]] = True
                yield read, fields
            left = left[~matched]

    # --- input ----------------------------------------------------------------------------

    def add_block(self, block: Block) -> None:
        """Parse a block: the fast path first, its refused lines one by one, in line order."""
        accepted, fast = self._fast(block)
        if fast is not None and len(fast[0]):
            self._recognised = True
        refused = np.flatnonzero(~accepted)
        previous = -1
        for i in refused.tolist():
            if i - 1 > previous:  # the line before was an event the fast path read
                self._close_owner()
                self._owner = block.lineno + i - 1
            previous = i
            self.add_line(block.lineno + i, block.line(i))
        if fast is not None and len(fast[0]) and (not len(refused) or refused[-1] < len(block) - 1):
            self._close_owner()
            self._owner = block.lineno + len(block) - 1
        self._flush(fast)

    def add_line(self, lineno: int, line: str) -> None:
        """Parse one line with the per-line path."""
        assert self._parser is not None
        item = self._parser.parse(lineno, line, after_event=self._owner is not None)
        if item is None:
            return
        if isinstance(item, str):
            self._recognised = True
            self._frames.append(item)
            return
        self.add_item(item)

    def add_item(self, item: Item) -> None:
        """Add one parsed item (a record's callchain already folded in)."""
        self._close_owner()
        if isinstance(item, Record):
            self._recognised = True
            self._owner = item.lineno
            pending = self._pending
            pending.linenos.append(item.lineno)
            pending.time_ns.append(item.time_ns)
            pending.tid.append(np.nan if item.tid is None else item.tid)
            pending.cpu.append(np.nan if item.cpu is None else item.cpu)
            pending.comm.append(item.comm)
            pending.event.append(item.event)
            pending.shape.append(self._shape(item.event, tuple(item.fields)))
            shape = self._shapes[pending.shape[-1]]
            linenos, codes = pending.fields.setdefault(pending.shape[-1], ([], [[] for _ in shape.names]))
            linenos.append(item.lineno)
            for table, column, value in zip(shape.tables, codes, item.fields.values(), strict=True):
                column.append(table.code(value))
            if item.callchain:
                self._callchain[item.lineno] = item.callchain
            if len(pending.linenos) >= 65536:
                self._flush(None)
            return
        if isinstance(item, BadLine):
            if self._strict:
                raise ParseError(item.lineno, item.column, item.line, item.message)
            self._errors.append(item)
            return
        self._recognised = True
        self._messages.append(item)

    def add_columns(self, columns: Columns, line_offset: int) -> None:
        """Add the columns another builder read (from a range of the input starting after
        ``line_offset`` lines), in line order after everything added so far."""
        self._close_owner()
        self._flush(None)
        n = len(columns)
        shape = np.full(n, -1, np.int64)
        for part in columns.shapes:
            shape_id = self._shape(part.event, part.names)
            ours = self._shapes[shape_id]
            shape[part.rows] = shape_id
            codes = [ours.tables[i].codes(values)[part.codes[i]] for i, values in enumerate(part.values)]
            ours.add(columns.lineno[part.rows] + line_offset, codes)
        comm = np.array([*self._comms.codes([*columns.comm.categories]), -1], np.int64)[columns.comm.codes]
        event = self._events.codes([*columns.event.categories])[columns.event.codes]
        self._chunks.append(
            (
                columns.lineno + line_offset,
                columns.time_ns,
                columns.tid.to_numpy(dtype="float64", na_value=np.nan),
                columns.cpu.to_numpy(dtype="float64", na_value=np.nan),
                comm,
                event,
                shape,
            )
        )
        self._callchain.update({lineno + line_offset: chain for lineno, chain in columns.callchain.items()})
        self._messages += [dataclasses.replace(m, lineno=m.lineno + line_offset) for m in columns.messages]
        self._errors += [dataclasses.replace(e, lineno=e.lineno + line_offset) for e in columns.errors]
        self._recognised |= bool(n or columns.messages or columns.callchain)

    @property
    def recognised(self) -> bool:
        """Some line added so far was an event, a perf message or a callchain frame."""
        return self._recognised

    def _close_owner(self) -> None:
        """The event before has no more frames: give it those read."""
        if self._owner is not None and self._frames:
            self._callchain[self._owner] = tuple(self._frames)
        self._owner, self._frames = None, []

    def _dtype(self, event: str, name: str) -> str:
        schema = self._schemas.get(event)
        field = schema.lookup.get(name) if schema is not None else None
        return field.dtype if field is not None else "object"

    @staticmethod
    def _empty_chunk() -> _Chunk:
        return tuple(np.zeros(0, np.float64 if i in (2, 3) else np.int64) for i in range(7))

    def _flush(self, fast: _Chunk | None) -> None:
        """Join the block's fast columns and the per-line records, in line order."""
        pending = self._pending
        for shape_id, (linenos, codes) in pending.fields.items():
            self._shapes[shape_id].add(np.array(linenos, np.int64), [np.array(c, np.int64) for c in codes])
        slow = (
            np.array(pending.linenos, np.int64),
            np.array(pending.time_ns, np.int64),
            np.array(pending.tid, np.float64),
            np.array(pending.cpu, np.float64),
            self._comms.codes(pending.comm) if pending.comm else np.zeros(0, np.int64),
            self._events.codes(pending.event) if pending.event else np.zeros(0, np.int64),
            np.array(pending.shape, np.int64),
        )
        self._pending = _Pending()
        parts = [p for p in (fast, slow) if p is not None and len(p[0])]
        if len(parts) == 2:
            order = np.argsort(np.concatenate([parts[0][0], parts[1][0]]), kind="stable")
            parts = [tuple(np.concatenate([a, b])[order] for a, b in zip(*parts, strict=True))]
        if parts:  # codes of comm, event and shape in 32 bits
            self._chunks.append((*parts[0][:4], *(a.astype(np.int32) for a in parts[0][4:])))

    def finish(self) -> Columns:
        """The columns of everything added.

        Raises:
            NotPerfOutputError: see the class.
        """
        self._close_owner()
        self._flush(None)
        if self._detected and self._errors and not self._recognised:
            raise not_perf_output(self._errors[0])
        chunks: list[list[npt.NDArray[Any] | None]] = [list(c) for c in self._chunks or [self._empty_chunk()]]
        self._chunks = []
        columns = []
        for i in range(7):  # each column's chunks are let go once joined (memory stays flat)
            columns.append(np.concatenate([c[i] for c in chunks if c[i] is not None]))
            for c in chunks:
                c[i] = None
        # in time order, stable: input order (line order) where times are equal
        for key in (0, 1):
            if np.any(columns[key][1:] < columns[key][:-1]):
                order = np.argsort(columns[key], kind="stable")
                for i in range(7):
                    columns[i] = columns[i][order]
        lineno, time_ns, tid, cpu, comm, event, shape = columns
        del columns
        shapes = []
        for shape_id, s in enumerate(self._shapes):
            rows = np.flatnonzero(shape == shape_id)
            if not len(rows):
                continue
            rows = rows[np.argsort(lineno[rows], kind="stable")].astype(np.int32)  # in line order, as the codes
            order = np.argsort(np.concatenate(s.linenos), kind="stable")
            shapes.append(
                FinalShape(
                    s.event,
                    s.names,
                    tuple(self._dtype(s.event, name) for name in s.names),
                    rows,
                    tuple(t.values for t in s.tables),
                    tuple(
                        narrow(np.concatenate(c)[order], len(t.values)) for c, t in zip(s.codes, s.tables, strict=True)
                    ),
                )
            )
        return Columns(
            lineno=lineno,
            time_ns=time_ns,
            tid=_uint32(tid),
            cpu=_uint32(cpu),
            comm=categorical(comm, self._comms.values),
            event=categorical(event, self._events.values),
            callchain=self._callchain,
            shapes=tuple(shapes),
            messages=tuple(self._messages),
            errors=tuple(self._errors),
        )


def not_perf_output(first: BadLine) -> NotPerfOutputError:
    """The error of a detected source of which no line is an event or a perf message."""
    return NotPerfOutputError(
        f"not perf output: no event and no perf message in it; line {first.lineno} reads "
        f"{first.line[:80]!r}\nhint: perfnet reads what perf trace, perf script or ftrace print"
    )


def categorical(codes: IntArray, values: list[Any]) -> pd.Categorical:
    """Codes into ``values`` (-1 or a None value: missing) as a categorical of the values
    used, sorted where they can be (else in order of first appearance)."""
    used = np.zeros(len(values) + 1, np.bool_)
    used[codes] = True
    present = list(dict.fromkeys(v for v, use in zip(values, used.tolist(), strict=False) if use and v is not None))
    with contextlib.suppress(TypeError):  # ints and names mixed (drop reasons without a table)
        present.sort()
    categories = pd.Index(present, dtype=object, tupleize_cols=False)  # the same under pandas 2 and 3
    position = {_key(v): i for i, v in enumerate(present)}
    remap = np.array([position.get(_key(v), -1) for v in values] + [-1], np.int64)
    return pd.Categorical.from_codes(remap[codes], categories=categories)


def _uint32(values: npt.NDArray[np.float64]) -> pd.arrays.IntegerArray:
    """Nullable UInt32 from floats with NaN for missing."""
    missing = np.isnan(values)
    return pd.arrays.IntegerArray(np.where(missing, 0, values).astype(np.uint32), missing)


def build_columns(items: Iterable[Item]) -> Columns:
    """The columns of parsed items (records with their callchains, messages, bad lines), as
    a live capture or a stream of records hands them over."""
    builder = ColumnBuilder(None, detected=False)
    for item in items:
        builder.add_item(item)
    return builder.finish()


def _libc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):  # not glibc
        return None


_MALLOC_TRIM: Final = _libc_trim()


def release_memory() -> None:
    """Give the memory a large read freed back to the system: Arrow's pool keeps freed pages
    and glibc's malloc the freed heap below its top, which would otherwise stay resident as
    if the trace held them."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def read_columns(
    source: Source,
    *,
    format: Variant | str | None = None,
    schemas: Mapping[str, EventSchema],
    enums: EnumTables,
    symbols: Kallsyms | None = None,
    strict: bool = False,
    progress: Callable[[int], object] | None = None,
) -> tuple[Variant, Columns]:
    """Read a whole source into columns: files, binary streams and standard input block by
    block through the fast path, iterables of lines line by line.  Arguments as for
    :func:`~perfnet.reader.open_items`.

    Raises:
        ParseError: in strict mode, at the first bad line.
        NotPerfOutputError: the variant was detected, yet no line is an event or a perf message.
        PerfnetError: the source cannot be read.
    """
    with system_memory():
        return _read_columns(source, format, schemas, enums, symbols, strict, progress)


@contextlib.contextmanager
def system_memory() -> Iterator[None]:
    """Arrow allocates from the system's malloc while a source is read: mimalloc, its default,
    keeps the pages of freed blocks, and a read frees a block's worth every block (on the
    flood benchmark the peak was 540 bytes per event with mimalloc, 320 with malloc).  This
    reaches what pyarrow allocates; Arrow's C++ parts keep the pool chosen when pyarrow
    loaded (the ``perfnet`` command chooses malloc, see :mod:`perfnet.__main__`)."""
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


def _read_columns(
    source: Source,
    format: Variant | str | None,
    schemas: Mapping[str, EventSchema],
    enums: EnumTables,
    symbols: Kallsyms | None,
    strict: bool,
    progress: Callable[[int], object] | None,
) -> tuple[Variant, Columns]:
    blocks = open_blocks(source, progress)
    if blocks is None:
        variant, items = open_items(source, format=format, schemas=schemas, enums=enums, symbols=symbols, strict=strict)
        return variant, build_columns(items)
    if format is None:
        variant, blocks = detect_blocks(blocks)
    else:
        variant = variant_of(format)
    workers = min(os.cpu_count() or 1, _MAX_WORKERS)
    if isinstance(source, str | Path) and variant in _HEADERS and workers > 1 and _plain_and_large(Path(source)):
        del blocks  # the file is read again, by ranges
        tables = (schemas, enums, symbols)
        columns = _read_parallel(Path(source), variant, tables, strict, format is None, workers, progress)
        release_memory()
        return variant, columns
    columns = _read_blocks(blocks, ColumnBuilder(LineParser(variant, schemas, enums, symbols), strict, format is None))
    release_memory()  # the builder's working memory, now freed
    return variant, columns


def _plain_and_large(path: Path) -> bool:
    """A regular, uncompressed file of at least :data:`PARALLEL_BYTES`."""
    try:
        if not path.is_file() or path.stat().st_size < PARALLEL_BYTES:
            return False
        with path.open("rb") as file:
            return kind_of(file.read(8)) == "text"
    except OSError:
        return False


def _read_blocks(blocks: Iterator[Block], builder: ColumnBuilder) -> Columns:
    for block in blocks:
        builder.add_block(block)
    return builder.finish()


# --- several threads ------------------------------------------------------------------------

PARALLEL_BYTES: Final = 8 << 20
"""Plain text files at least this large are read by several threads (one per CPU, at most
:data:`_MAX_WORKERS`), each a range of lines starting at an event line.  Arrow's kernels
run without the GIL: on the flood benchmark, 2 threads read 1.25x as fast as one; 2
processes 1.2-1.5x, but each holds its own interpreter and Arrow's thread pools are not
safe to fork."""
_MAX_WORKERS: Final = 4


class _Done:
    """Bytes read by all ranges, reported to a progress callback."""

    def __init__(self, progress: Callable[[int], object] | None) -> None:
        self._progress = progress
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, count: int) -> None:
        with self._lock:
            self._bytes += count
            if self._progress is not None:
                self._progress(self._bytes)


class _Range:
    """The bytes ``start`` to ``end`` of a file, as a stream; ``read`` adds what it read to
    ``done``, the bytes all ranges have read (for progress)."""

    def __init__(self, path: Path, start: int, end: int, done: _Done) -> None:
        self._file = path.open("rb")
        self._file.seek(start)
        self._left = end - start
        self._done = done

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(min(self._left, size if size >= 0 else self._left))
        self._left -= len(data)
        self._done.add(len(data))
        return data

    def close(self) -> None:
        self._file.close()


def _cuts(path: Path, variant: Variant, parts: int) -> list[int]:
    """Offsets that split the file in about ``parts`` ranges, each starting at a line the fast
    path reads as an event (so no callchain frame or message block is cut from its event)."""
    header = _HEADERS[variant]
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as file:
        for k in range(1, parts):
            file.seek(size * k // parts)
            partial, *lines = file.read(1 << 20).split(b"\n")
            texts = pa.array([line.decode("ascii", errors="replace") for line in lines[:-1][:256]], pa.string())
            events = header(texts).rows if len(texts) else np.zeros(0, np.int64)
            if len(events):
                cut = size * k // parts + len(partial) + 1 + sum(len(line) + 1 for line in lines[: events[0]])
                if cut > cuts[-1]:
                    cuts.append(cut)
    return [*cuts, size]


_Tables = tuple[Mapping[str, EventSchema], EnumTables, Kallsyms | None]


def _read_range(
    path: Path, start: int, end: int, variant: Variant, tables: _Tables, strict: bool, done: _Done
) -> tuple[Columns, int]:
    """One thread's range: its columns (line numbers counted from the range's start) and
    how many lines it has."""
    stream = _Range(path, start, end, done)
    try:
        builder = ColumnBuilder(LineParser(variant, *tables), strict, detected=False)
        lines = 0
        for block in line_blocks(stream):  # type: ignore[arg-type]
            builder.add_block(block)
            lines = block.lineno + len(block) - 1
        return builder.finish(), lines
    finally:
        stream.close()


def _read_parallel(
    path: Path,
    variant: Variant,
    tables: _Tables,
    strict: bool,
    detected: bool,
    workers: int,
    progress: Callable[[int], object] | None,
) -> Columns:
    """Read a file's ranges on several threads and join their columns in line order."""
    cuts = _cuts(path, variant, workers)
    builder = ColumnBuilder(None, strict, detected, schemas=tables[0])
    with concurrent.futures.ThreadPoolExecutor(len(cuts) - 1) as pool:
        done = _Done(progress)
        futures = [
            pool.submit(_read_range, path, a, b, variant, tables, strict, done) for a, b in itertools.pairwise(cuts)
        ]
        offset = 0
        while futures:
            future = futures.pop(0)  # each range's columns are let go once joined
            try:
                columns, lines = future.result()
            except ParseError as exc:  # the first bad line of the whole input: no earlier range had one
                raise ParseError(exc.lineno + offset, exc.column, exc.line, exc.reason) from None
            del future
            builder.add_columns(columns, offset)
            del columns
            offset += lines
    return builder.finish()
