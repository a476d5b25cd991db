"""perfnet.export: a capture's frames as CSV, JSON Lines and Parquet, read back exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import perfnet
from perfnet import export
from perfnet.export import TABLES, format_of, write_table

FIXTURES = Path(__file__).parent / "fixtures"

# The first skb of the bundled capture (line 1 of lab-example.txt): a real kernel address,
# above 2**63 and not a multiple of the spacing of doubles there, so a double cannot hold it
# (a float anywhere on the way would change its last digits; a signed int64 would overflow).
FIRST_SKB = 0xFFFF888136614200
CALLGRAPH_FIRST_CHAIN = [
    "__traceiter_net_dev_queue",
    "__dev_queue_xmit",
    "ip_finish_output2",
    "ip_output",
    "ip_push_pending_frames",
    "raw_sendmsg",
    "__sys_sendto",
    "__x64_sys_sendto",
    "do_syscall_64",
    "entry_SYSCALL_64_after_hwframe",
    "__libc_sendto",
    "[0]",
]


@pytest.fixture(scope="module")
def example() -> perfnet.Trace:
    return perfnet.read(perfnet.example_capture())


@pytest.fixture(scope="module")
def callgraph() -> perfnet.Trace:
    return perfnet.read(FIXTURES / "lab-trace-callgraph.txt")


def read_back(path: Path, to: str) -> list[dict[str, Any]]:
    """The rows of a written file as Python values, as another tool reads them: CSV fields as
    text, JSON Lines as JSON, Parquet through pyarrow."""
    if to == "csv":
        with path.open(newline="", encoding="utf-8") as file:
            return list(csv.DictReader(file))
    if to == "jsonl":
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return pq.read_table(path).to_pylist()


def python_values(column: pd.Series) -> list[Any]:
    """A frame's column as plain Python values: ints, strings, lists for callchains, None."""
    return [list(v) if isinstance(v, tuple) else None if pd.isna(v) else v for v in column.astype(object)]


def as_written(values: list[Any], to: str) -> list[Any]:
    """Values as a format writes them: CSV has only text (missing: empty, lists: JSON arrays)."""
    if to != "csv":
        return values
    return ["" if v is None else json.dumps(v) if isinstance(v, list) else str(v) for v in values]


def test_format_from_extension() -> None:
    assert [format_of(name) for name in ("a.csv", "b.JSONL", "c.parquet", "d.json", "e", "f.csv.gz")] == [
        "csv",
        "jsonl",
        "parquet",
        None,
        None,
        None,
    ]


@pytest.mark.parametrize("to", export.FORMATS)
@pytest.mark.parametrize("table", TABLES)
def test_every_table_of_the_bundled_capture_round_trips(
    example: perfnet.Trace, table: str, to: str, tmp_path: Path
) -> None:
    frame = getattr(example, table)
    path = tmp_path / f"{table}.{to}"
    assert write_table(frame, path) == path  # the format from the extension
    rows = read_back(path, to)
    assert len(rows) == len(frame) == {"events": 482, "packets": 26, "hops": 104, "stages": 332, "drops": 4}[table]
    for name in frame.columns:  # every column, every value
        assert [row[name] for row in rows] == as_written(python_values(frame[name]), to), name
    if table == "drops":  # categoricals written as their text, the count as a number
        assert [(row["reason"], row["location"], row["dev"], row["netns_dev"], row["count"]) for row in rows] == [
            ("NO_SOCKET", "ping_rcv+0xab", "pnbr463d", "pnbr463d", as_written([2], to)[0]),
            ("QUEUE_PURGE", "sk_stream_kill_queues+0x57", "pnbr463d", "pnbr463d", as_written([1], to)[0]),
            ("QUEUE_PURGE", "sk_stream_kill_queues+0x57", "eth0", "eth0@pnc2-463d", as_written([1], to)[0]),
            ("NO_SOCKET", "__udp4_lib_rcv+0x4bc", "eth0", "eth0@pnc2-463d", as_written([1], to)[0]),
        ]
    if to == "csv":
        assert path.read_text(encoding="utf-8").splitlines()[0].split(",") == [f'"{c}"' for c in frame.columns]


@pytest.mark.parametrize("to", export.FORMATS)
def test_skb_addresses_are_exact_unsigned_64_bit_integers(example: perfnet.Trace, to: str, tmp_path: Path) -> None:
    assert FIRST_SKB > 2**63 and int(float(FIRST_SKB)) != FIRST_SKB  # so a float or an int64 on the way would show
    path = write_table(example.events, tmp_path / "events", to)
    first = read_back(path, to)[0]
    assert first["skbaddr"] == (str(FIRST_SKB) if to == "csv" else FIRST_SKB)
    assert first["lineno"] == ("1" if to == "csv" else 1)
    if to == "parquet":
        assert pq.read_schema(path).field("skbaddr").type == pa.uint64()
    else:  # written as a number, digit for digit
        assert str(FIRST_SKB) in path.read_text(encoding="utf-8").splitlines()[1]


@pytest.mark.parametrize("to", export.FORMATS)
def test_callchains_are_lists_of_frames(callgraph: perfnet.Trace, to: str, tmp_path: Path) -> None:
    events = callgraph.events
    path = write_table(events, tmp_path / "events", to)
    rows = read_back(path, to)
    assert len(rows) == len(events) == 240
    chains = [json.loads(row["callchain"]) if to == "csv" else row["callchain"] for row in rows]
    assert chains[0] == CALLGRAPH_FIRST_CHAIN
    assert chains == [list(chain) for chain in events["callchain"]]
    assert all(chains)  # every event of this capture has its callchain
    assert [row["lineno"] for row in rows] == as_written(events["lineno"].tolist(), to)
    assert rows[0]["skbaddr"] == as_written([int(events["skbaddr"].iloc[0])], to)[0]


def test_parquet_types_are_plain(callgraph: perfnet.Trace, tmp_path: Path) -> None:
    schema = pq.read_schema(write_table(callgraph.events, tmp_path / "events.parquet"))
    types = {field.name: str(field.type) for field in schema}
    assert types == {
        "time_ns": "int64",
        "comm": "string",  # categoricals as their values, not dictionaries
        "tid": "uint32",
        "cpu": "uint32",
        "event": "string",
        "dev": "string",
        "skbaddr": "uint64",
        "len": "uint32",
        "protocol": "uint16",
        "reason": "string",
        "location": "string",
        "lineno": "int64",
        "callchain": "list<element: string>",
    }
    assert schema.metadata is None  # no pandas metadata that would turn columns back into categoricals


@pytest.mark.parametrize(("to", "missing"), [("csv", ""), ("jsonl", None), ("parquet", None)])
def test_missing_integers_stay_missing(example: perfnet.Trace, to: str, missing: object, tmp_path: Path) -> None:
    events = example.events
    assert events["protocol"].iloc[:2].isna().tolist() == [True, False]  # net_dev_queue carries none
    rows = read_back(write_table(events, tmp_path / "events", to), to)
    assert [row["protocol"] for row in rows[:2]] == [missing, "2048" if to == "csv" else 2048]
    assert {row["cpu"] for row in rows} == {missing}  # perf trace prints no CPU


@pytest.mark.parametrize("to", export.FORMATS)
def test_a_drop_reason_number_is_written_as_text(to: str, tmp_path: Path) -> None:
    # Without the kernel's table the events keep kfree_skb's reason as a number.
    events = perfnet.read(FIXTURES / "lab-trace.txt").events
    rows = read_back(write_table(events, tmp_path / "events", to), to)
    reasons = [row["reason"] for row in rows if row["reason"] not in ("", None)]
    assert sorted(set(reasons)) == ["104", "3"] and len(reasons) == 8


def test_unknown_formats_are_refused(example: perfnet.Trace, tmp_path: Path) -> None:
    with pytest.raises(perfnet.UsageError, match=r"cannot tell which format to write 'events.txt' in: give to="):
        write_table(example.events, tmp_path / "events.txt")
    with pytest.raises(perfnet.UsageError, match="to must be one of"):
        write_table(example.events, tmp_path / "events.csv", to="xml")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_the_old_file(
    example: perfnet.Trace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(table: pa.Table, out: Any) -> None:
        out.write(b'{"time_ns":0')
        raise KeyboardInterrupt

    monkeypatch.setitem(export._WRITERS, "jsonl", interrupted)
    path = tmp_path / "events.jsonl"
    path.write_text("an older export\n")
    with pytest.raises(KeyboardInterrupt):
        write_table(example.events, path)
    assert path.read_text() == "an older export\n"  # as it was: the table went to a temporary file
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    with pytest.raises(KeyboardInterrupt):
        write_table(example.events, tmp_path / "new.jsonl")
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]  # nothing half-written


def test_a_symlink_s_file_is_replaced_not_the_link(example: perfnet.Trace, tmp_path: Path) -> None:
    (tmp_path / "real.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "real.csv")
    write_table(example.hops, tmp_path / "link.csv")
    assert (tmp_path / "link.csv").is_symlink()
    assert (tmp_path / "real.csv").read_text().count("\n") == 1 + 104


def test_unwritable_paths_raise_oserror_naming_the_file(example: perfnet.Trace, tmp_path: Path) -> None:
    for to in export.FORMATS:
        with pytest.raises(IsADirectoryError) as exc:
            write_table(example.packets, tmp_path, to)
        assert exc.value.filename == str(tmp_path)
        with pytest.raises(FileNotFoundError):
            write_table(example.packets, tmp_path / "missing" / "packets", to)
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []


def test_an_empty_table_keeps_its_types(example: perfnet.Trace, tmp_path: Path) -> None:
    # tables from many captures union only if an empty one has the same schema
    none = example.filter(dev="nosuchdev")
    assert none.events.empty
    empty = write_table(none.events, tmp_path / "empty.parquet")
    full = write_table(example.events, tmp_path / "full.parquet")
    assert pq.read_schema(empty) == pq.read_schema(full)
    assert str(pq.read_schema(empty).field("callchain").type) == "list<element: string>"
