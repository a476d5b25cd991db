"""The columnar fast path reads exactly what the per-line grammar path reads: every fixture,
100,000 mutated lines, and generated lines of every tracepoint in every variant it reads; and
it reads the event lines itself (the per-line path sees only the rest)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_generated_lines import SCHEMAS, body
from test_mutations import mutated

import perfnet
import perfnet.columns
from perfnet.columns import ColumnBuilder, read_columns
from perfnet.errors import ParseError
from perfnet.reader import open_items
from perfnet.records import BadLine, Message, Record
from perfnet.schema import load_schemas

FIXTURES = Path(__file__).parent / "fixtures"
TEXT_FIXTURES = sorted(FIXTURES.glob("*.txt")) + sorted((FIXTURES / "paths").glob("*.txt.gz"))


def per_line(data: bytes, format: str | None = None) -> tuple[list[Record], list[Message], list[BadLine]]:
    _, items = open_items(io.BytesIO(data), format=format, schemas=load_schemas(), enums={})
    listed = list(items)
    return (
        [i for i in listed if isinstance(i, Record)],
        [i for i in listed if isinstance(i, Message)],
        [i for i in listed if isinstance(i, BadLine)],
    )


def columnar(data: bytes, format: str | None = None) -> tuple[list[Record], list[Message], list[BadLine]]:
    _, columns = read_columns(io.BytesIO(data), format=format, schemas=load_schemas(), enums={})
    return list(columns.records()), list(columns.messages), list(columns.errors)


@pytest.fixture
def slow_lines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The line numbers the per-line path was given."""
    seen: list[int] = []
    add_line = ColumnBuilder.add_line

    def counting(self: ColumnBuilder, lineno: int, line: str) -> None:
        seen.append(lineno)
        add_line(self, lineno, line)

    monkeypatch.setattr(ColumnBuilder, "add_line", counting)
    return seen


@pytest.mark.parametrize("path", TEXT_FIXTURES, ids=[p.name for p in TEXT_FIXTURES])
def test_every_fixture_reads_alike_on_both_paths(path: Path, slow_lines: list[int]) -> None:
    data = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        data = gzip.decompress(data)
    fast = columnar(data)
    assert fast == per_line(data)
    records = fast[0]
    lines = data.count(b"\n")
    if "ftrace" in path.name or "old" in path.name:  # variants read line by line
        assert len(slow_lines) == lines
    elif path.name.startswith(("lab-script-g", "lab-trace-callgraph")):  # callchain frames are per line
        assert len(slow_lines) == lines - len(records)
    else:  # every event line is read column-wise
        assert len(slow_lines) == lines - len(records) and len(records) > 0


@pytest.mark.parametrize(
    ("name", "format"),
    [("lab-trace.txt", "trace"), ("lab-trace-libtraceevent.txt", "trace-libtraceevent"), ("lab-script.txt", "script")],
)
def test_mutated_lines_read_alike_on_both_paths(name: str, format: str) -> None:
    for seed in range(3):
        lines = mutated(name, 12_000, seed=seed + sum(map(ord, name)))
        data = b"\n".join(lines) + b"\n"
        fast = columnar(data, format)
        assert fast == per_line(data, format)
        assert len(fast[0]) > len(lines) // 4  # many mutated lines still read as events


# --- generated lines -------------------------------------------------------------------------

COMM = st.text(alphabet="abcxyz019/:-_. []()", min_size=0, max_size=16)
TIME = st.tuples(st.integers(0, 10**13), st.integers(0, 10**10)).map(lambda t: f"{t[0]}.{t[1]:06d}")
TID = st.integers(0, 1 << 33)


@st.composite
def event_line(draw: st.DrawFn, variant: str) -> str:
    """A line of ``variant`` for a random tracepoint: its header fields drawn wide (comms with
    spaces, slashes and brackets; tids and times beyond their types) and its body generated
    from the schema; sometimes with extra spaces."""
    event = draw(st.sampled_from(sorted(SCHEMAS)))
    schema = SCHEMAS[event]
    index = None if variant == "trace" else draw(st.integers(0, len(schema.formats) - 1))
    text = draw(body(schema, index))
    comm, tid, time = draw(COMM), draw(TID), draw(TIME)
    gap = draw(st.sampled_from([" ", "  ", "\t"]))
    if variant == "script":
        return f"{comm:>16} {tid:>5} [{draw(st.integers(0, 1 << 33)):03d}]{gap}{time}:{gap}{event}: {text}"
    task = draw(st.sampled_from(["", f"{comm}/{tid} ", f"{tid} "]))
    return f"{draw(st.sampled_from(['', ' ']))}{time} {task}{event}({text}){draw(st.sampled_from(['', ' ']))}"


@pytest.mark.parametrize("variant", ["trace", "trace-libtraceevent", "script"])
@settings(max_examples=60, derandomize=True, deadline=None)
@given(data=st.data())
def test_generated_lines_read_alike_on_both_paths(variant: str, data: st.DataObject) -> None:
    lines = data.draw(st.lists(event_line(variant), min_size=1, max_size=40))
    encoded = ("\n".join(lines) + "\n").encode()
    assert columnar(encoded, variant) == per_line(encoded, variant)


def test_a_trace_keeps_columns_and_makes_records_on_demand() -> None:
    trace = perfnet.read(FIXTURES / "lab-trace.txt")
    records = list(trace.records())
    assert len(records) == 883 and records[0].lineno < records[-1].lineno
    first = next(trace.records("net:net_dev_queue"))
    assert (first.event, first.dev, first.len) == ("net:net_dev_queue", first.fields["dev"], first.fields["len"])
    assert not hasattr(trace, "_records")


@pytest.mark.parametrize(
    "body",
    [
        "dev=a b skbaddr=0xffff888117519700 len=98",  # a name with a space: cut at the literals
        "dev=x skbaddr=y skbaddr=0x1 len=5",  # a name holding the next literal: read line by line
        "dev=pnbr skbaddr=0x1 len=99999999999",  # beyond unsigned int: a bad line
    ],
)
def test_bodies_the_space_layout_refuses_read_alike(body: str, slow_lines: list[int]) -> None:
    data = f"ping 32272 [000]  2089.843380:   net:net_dev_queue: {body}\n".encode()
    fast = columnar(data, "script")
    assert fast == per_line(data, "script")
    assert len(fast[0]) + len(fast[2]) == 1
    assert slow_lines == ([] if body.startswith("dev=a b") else [1])


def test_frames_have_compact_dtypes_of_their_own() -> None:
    """The same dtypes whatever else is installed: categories of objects, nullable C integers."""
    trace = perfnet.read(FIXTURES / "lab-script.txt")
    category = {"comm", "event", "dev", "reason", "location", "callchain"}
    dtypes = {name: str(dtype) for name, dtype in trace.events.dtypes.items() if name not in category}
    assert dtypes == {
        "time_ns": "int64",
        "tid": "UInt32",
        "cpu": "UInt32",
        "skbaddr": "UInt64",
        "len": "UInt32",
        "protocol": "UInt16",
        "lineno": "int64",
    }
    for name in category:
        assert trace.events[name].cat.categories.dtype == object
    entry = trace.df("net:netif_receive_skb_entry")
    assert {name: str(entry[name].dtype) for name in ("napi_id", "queue_mapping", "vlan_tagged", "ip_summed")} == {
        "napi_id": "UInt32",
        "queue_mapping": "UInt16",
        "vlan_tagged": "boolean",
        "ip_summed": "UInt8",
    }
    assert (str(entry["mac_header"].dtype), entry["mac_header"].iloc[0]) == ("Int32", -14)
    assert entry["dev"].dtype == "category" and trace.df("skb:kfree_skb")["reason"].dtype == object
    assert trace.events.memory_usage(deep=True).sum() / len(trace.events) < 64


@pytest.mark.parametrize("name", ["lab-script.txt", "lab-script-g.txt", "lab-trace.txt", "lab-trace-callgraph.txt"])
def test_a_large_file_read_on_several_threads_reads_as_in_one(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / name
    lines = (FIXTURES / name).read_bytes().splitlines(keepends=True)
    lines[len(lines) * 3 // 4] = b"a bad line in the last range\n"
    path.write_bytes(b"".join(lines))
    one = perfnet.read(path)
    monkeypatch.setattr(perfnet.columns, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(perfnet.columns.os, "cpu_count", lambda: 4)
    cuts = perfnet.columns._cuts(path, one.format, 4)
    assert len(cuts) == 5  # four ranges, each from an event line
    several = perfnet.read(path)
    assert list(several.records()) == list(one.records())
    pd.testing.assert_frame_equal(several.messages, one.messages)
    pd.testing.assert_frame_equal(several.errors, one.errors)
    assert several.errors["lineno"].iloc[0] == len(lines) * 3 // 4 + 1  # (a callgraph's frames after it too)
    with pytest.raises(ParseError) as raised:
        perfnet.read(path, strict=True)
    assert raised.value.lineno == len(lines) * 3 // 4 + 1
