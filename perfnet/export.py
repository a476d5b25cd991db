"""A capture's frames written as files other tools read: CSV, JSON Lines and Parquet.

The frames' own types do not all travel: a callchain is a tuple of frames, strings are
categoricals, missing integers are ``pd.NA`` and skb addresses are unsigned 64-bit integers,
beyond the 2**53 a JSON reader's double holds exactly.  Each frame is made an Arrow table of
plain types once, and every format is written from it:

- a callchain is a list of strings: ``list<string>`` in Parquet, a JSON array in JSON Lines,
  the text of a JSON array in CSV;
- a categorical is its values as strings (a drop reason no table named, kept as its number
  in the events, is written as that number's text, so the column has one type whatever the
  capture named);
- a missing value is null in Parquet and JSON Lines, an empty field in CSV;
- integers keep their C type and every digit (``skbaddr`` is ``uint64`` in Parquet, and a
  plain integer in CSV and JSON Lines, written by Arrow and by Python's ``json``, never
  through a float).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Final

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from perfnet.errors import UsageError

__all__ = ["FORMATS", "TABLES", "format_of", "write_table"]

FORMATS: Final = ("csv", "jsonl", "parquet")
"""The file formats :func:`write_table` writes, named as their file extensions."""

TABLES: Final = ("events", "packets", "hops", "stages", "drops")
"""The frames of a :class:`perfnet.Trace` that are worth a file of their own."""

# JSON Lines are written a batch of rows at a time: Python objects for this many rows at most.
_JSONL_BATCH_ROWS: Final = 65_536


def format_of(path: str | Path) -> str | None:
    """The format a file name asks for by its extension (``.csv``, ``.jsonl``, ``.parquet``,
    in any case), or None."""
    suffix = Path(path).suffix.lower().removeprefix(".")
    return suffix if suffix in FORMATS else None


def _plain(values: Iterable[object], json_lists: bool, lists: bool = False) -> pa.Array:
    """Values as an Arrow array: tuples (callchains) as lists of strings, or as the text of
    JSON arrays if ``json_lists``; anything else as a string; missing values as nulls.  With
    ``lists`` the array is of lists even without a value (an empty frame's callchains)."""
    plain: list[object] = []
    for value in values:
        if isinstance(value, tuple):
            lists = True
            plain.append(json.dumps([str(v) for v in value]) if json_lists else [str(v) for v in value])
        else:
            plain.append(None if pd.isna(value) else str(value))  # type: ignore[call-overload]
    return pa.array(plain, pa.list_(pa.string()) if lists and not json_lists else pa.string())


def _arrow_column(column: pd.Series, json_lists: bool) -> pa.Array:
    """One column of a frame as an Arrow array of plain types (see the module's docstring)."""
    chains = column.name == "callchain"  # lists, also in a table without rows
    if isinstance(column.dtype, pd.CategoricalDtype):
        categories = _plain(column.cat.categories, json_lists, chains)  # each distinct value converted once
        codes = column.cat.codes.to_numpy()
        return categories.take(pa.array(codes, mask=codes < 0))
    if column.dtype == object:
        return _plain(column, json_lists, chains)
    # numbers (nullable ones keep their missing values), booleans and pandas' strings
    return pa.Array.from_pandas(column)


def _arrow_table(frame: pd.DataFrame, json_lists: bool = False) -> pa.Table:
    """The frame as an Arrow table of plain types, without pandas' metadata (which would make
    readers rebuild categoricals); its index is left out."""
    return pa.table({str(name): _arrow_column(frame[name], json_lists) for name in frame.columns})


def _write_csv(table: pa.Table, out: BinaryIO) -> None:
    pa_csv.write_csv(table, out, pa_csv.WriteOptions(quoting_style="needed"))


def _write_jsonl(table: pa.Table, out: BinaryIO) -> None:
    for batch in table.to_batches(max_chunksize=_JSONL_BATCH_ROWS):
        # Python's json writes ints of any size exactly, from Arrow's values, never a float
        rows = batch.to_pylist()
        out.writelines(json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for row in rows)


def _write_parquet(table: pa.Table, out: BinaryIO) -> None:
    pq.write_table(table, out)


_WRITERS: Final = {"csv": _write_csv, "jsonl": _write_jsonl, "parquet": _write_parquet}


def write_table(frame: pd.DataFrame, path: str | Path, to: str | None = None) -> Path:
    """Write one frame of a capture (``trace.events``, ``trace.packets``, ...) to a file.

    Args:
        frame: the frame; its index is not written.
        path: the file to write (replaced if it exists).  A regular file (or a new one) is
            written beside ``path`` under a temporary name and renamed over it at the end, so a
            failure or Ctrl-C leaves the old file as it was; anything else (``/dev/stdout``, a
            pipe) is written to directly.
        to: ``"csv"``, ``"jsonl"`` or ``"parquet"``; default: from the extension of ``path``.

    Returns:
        ``path``, as a Path.

    Raises:
        UsageError: ``to`` is unknown, or not given and ``path`` has no extension of
            :data:`FORMATS`.
        OSError: the file cannot be written.
    """
    target = Path(path)
    chosen = to if to is not None else format_of(target)
    if chosen not in _WRITERS:
        raise UsageError(
            f"cannot tell which format to write {target.name!r} in: give to= one of {list(FORMATS)}"
            if to is None
            else f"to must be one of {list(FORMATS)}, not {to!r}"
        )
    table = _arrow_table(frame, json_lists=chosen == "csv")  # CSV has no lists
    if target.exists() and not target.is_file():  # a device or a pipe: nothing to put back
        with target.open("wb") as out:  # Python's own errors, naming the file, for every format
            _WRITERS[chosen](table, out)
        return target
    final = target.resolve()  # a symlink's file is replaced, not the link
    work = final.with_name(f".{final.name}.{os.getpid()}.partial")
    try:
        out = work.open("wb")
    except OSError as exc:  # named as the user named it
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    try:
        with out:
            _WRITERS[chosen](table, out)
        work.replace(final)
    except BaseException:  # a half-written table reads as a shorter one, or not at all
        work.unlink(missing_ok=True)
        raise
    return target
