"""Parquet datasets: a Trace written by write_dataset and read back (perfnet.read(DIR)) is the
same Trace; writing is atomic; columns keep their types for other tools."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

import perfnet
from perfnet import dataset
from perfnet.grammar import Variant
from perfnet.records import Record

FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = [
    "lab-trace.txt",
    "lab-trace-callgraph.txt",
    "lab-script.txt",
    "lab-script-g.txt",
    "lab-trace-libtraceevent.txt",
    "lab-ftrace.txt",
    "lab-trace-old-converted.txt",
    "seed-old-perf-1.txt",
    "tbf-limited.txt",
    "paths/mixed-script.txt.gz",
    "paths/tcp-up-trace.txt.gz",
]
FRAMES = ("events", "labels", "packets", "hops", "stages", "drops", "messages", "errors")


def assert_same_trace(a: perfnet.Trace, b: perfnet.Trace) -> None:
    for name in FRAMES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), obj=name, check_exact=True)
    for event in a.event_counts():
        pd.testing.assert_frame_equal(a.df(event), b.df(event), obj=event, check_exact=True)
    assert list(a.records()) == list(b.records())
    assert (a.format, a.source, a.partial) == (b.format, b.source, b.partial)
    assert a.topology == b.topology


@pytest.mark.parametrize("name", SOURCES)
def test_a_dataset_gives_the_same_trace_back(name: str, tmp_path: Path) -> None:
    trace = perfnet.read(FIXTURES / name)
    out = dataset.write_dataset(trace, tmp_path / "ds")
    assert_same_trace(trace, perfnet.read(out))


def test_a_snapshot_topology_and_packet_ids_are_kept(tmp_path: Path) -> None:
    paths = FIXTURES / "paths"
    trace = perfnet.read(paths / "mixed-script.txt.gz", topology=paths / "paths.topology.json")
    back = perfnet.read(dataset.write_dataset(trace, tmp_path / "ds"))
    assert not back.topology.inferred and back.topology.home == "netns:4026531833"
    assert back.packets["netns_path"].value_counts().iloc[0] == 405
    assert back.packets["packet_id"].tolist() == list(range(1039))
    # a filtered trace keeps its packets' ids through a dataset too
    only = trace.filter(dev="mv0")
    again = perfnet.read(dataset.write_dataset(only, tmp_path / "mv0"))
    assert again.packets["packet_id"].tolist() == only.packets["packet_id"].tolist()
    assert len(again.packets) == 60
    assert_same_trace(only, again)


def test_tables_are_typed_for_other_tools(tmp_path: Path) -> None:
    trace = perfnet.read(FIXTURES / "lab-trace-callgraph.txt")
    out = dataset.write_dataset(trace, tmp_path / "ds")
    assert sorted(p.name for p in out.iterdir()) == [
        "details",
        "drops",
        "errors",
        "events",
        "hops",
        "messages",
        "metadata.json",
        "packets",
        "stages",
    ]
    assert sorted(p.name for p in (out / "events").iterdir()) == ["part-00000.parquet"]
    events = pq.read_table(out / "events")
    types = {field.name: str(field.type) for field in events.schema}
    assert types["skbaddr"] == "uint64" and types["len"] == "uint32" and types["tid"] == "uint32"
    assert types["callchain"] == "list<element: string>" and types["time_ns"] == "int64"
    assert types["packet_id"] == "int64" and types["dev"] == "string"
    chains = events.column("callchain").to_pylist()
    assert chains[0] == list(trace.events["callchain"].iloc[0]) and len(chains[0]) == 12
    assert events.column("skbaddr").to_pylist()[0] == int(trace.events["skbaddr"].iloc[0]) > 2**63
    details = sorted(p.name for p in (out / "details").iterdir())
    assert details == ["net.net_dev_queue", "net.netif_receive_skb"]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["schema_version"] == 2 and metadata["variant"] == "trace"
    assert metadata["events"] == 240 and metadata["capture_stats"] is None
    assert metadata["perfnet_version"] == perfnet.__version__


def test_values_of_mixed_types_are_kept_exactly(tmp_path: Path) -> None:
    # An event without a schema keeps its fields as printed: a number on one line, a word on another.
    records = [
        Record(1, 1000, "foo:bar", "ping", 7, 0, {"state": 3, "big": 2**64 - 1, "ok": True}),
        Record(2, 2000, "foo:bar", "ping", 7, 0, {"state": "RUNNING", "big": 5, "ok": None}),
    ]
    trace = perfnet.Trace.from_items(records, Variant.TRACE, source="made")
    out = dataset.write_dataset(trace, tmp_path / "ds")
    back = perfnet.read(out)
    assert [r.fields for r in back.records()] == [r.fields for r in records]
    table = pq.read_table(out / "details" / "foo.bar")
    assert table.column("state").to_pylist() == ["3", '"RUNNING"']  # JSON text, said so in the codec
    assert str(table.schema.field("big").type) == "uint64"
    assert_same_trace(trace, back)


def test_field_sets_keep_their_order_and_the_frames_their_categories(tmp_path: Path) -> None:
    # One event printing two field sets, interleaved with another event: three shapes, and
    # device names first seen in different shapes.
    records = [
        Record(1, 1000, "foo:a", "x", 1, 0, {"dev": "b0", "len": 1}),
        Record(2, 2000, "foo:b", "x", 1, 0, {"dev": "a0"}),
        Record(3, 3000, "foo:a", "x", 1, 0, {"dev": "c0", "len": 2, "extra": "yes"}),
        Record(4, 4000, "foo:a", "x", 1, 0, {"dev": "a0", "len": 3}),
    ]
    trace = perfnet.Trace.from_items(records, Variant.TRACE)
    assert [(s.event, s.names) for s in trace.columns.shapes] == [
        ("foo:a", ("dev", "len")),
        ("foo:b", ("dev",)),
        ("foo:a", ("dev", "len", "extra")),
    ]
    back = perfnet.read(dataset.write_dataset(trace, tmp_path / "ds"))
    assert [(s.event, s.names) for s in back.columns.shapes] == [(s.event, s.names) for s in trace.columns.shapes]
    assert list(back.events["dev"].cat.categories) == list(trace.events["dev"].cat.categories) == ["a0", "b0", "c0"]
    assert_same_trace(trace, back)


def test_an_existing_directory_is_refused_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = perfnet.read(perfnet.example_capture())
    out = dataset.write_dataset(trace, tmp_path / "ds")
    with pytest.raises(perfnet.UsageError, match="exists; give --force"):
        dataset.write_dataset(trace, out)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    with pytest.raises(perfnet.UsageError, match="not a perfnet dataset"):
        dataset.write_dataset(trace, tmp_path / "other", force=True)
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    # a metadata.json alone does not make a dataset, and a dataset with files of someone else's
    # is not replaced either
    (tmp_path / "other" / "metadata.json").write_text('{"schema_version": 1}')
    with pytest.raises(perfnet.UsageError, match="not a perfnet dataset"):
        dataset.write_dataset(trace, tmp_path / "other", force=True)
    (out / "notes.txt").write_text("mine")
    with pytest.raises(perfnet.UsageError, match="holds files a dataset does not have"):
        dataset.write_dataset(trace, out, force=True)
    (out / "notes.txt").unlink()
    bigger = perfnet.read(FIXTURES / "lab-trace.txt")
    dataset.write_dataset(bigger, out, force=True)
    assert len(perfnet.read(out).events) == 883
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "other"]  # no temporary left
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"
    # readable by others as mkdir would make it, and "." works as a name
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    assert dataset.write_dataset(trace, ".", force=True) == tmp_path / "empty"
    assert len(perfnet.read(tmp_path / "empty").packets) == 26


def test_fields_named_like_header_columns_keep_their_values(tmp_path: Path) -> None:
    records = [
        Record(5, 1000, "probe:bar", "x", 1, 0, {"lineno": 2, "shape": 3, "x": 111}),
        Record(6, 2000, "probe:bar", "x", 1, 0, {"lineno": 1, "shape": 4, "x": 222}),
    ]
    trace = perfnet.Trace.from_items(records, Variant.TRACE)
    frame = trace.df("probe:bar")
    assert frame[["lineno", "lineno_field", "shape", "x"]].values.tolist() == [[5, 2, 3, 111], [6, 1, 4, 222]]
    back = perfnet.read(dataset.write_dataset(trace, tmp_path / "ds"))
    assert [r.fields for r in back.records()] == [r.fields for r in records]
    assert_same_trace(trace, back)


def test_an_interrupted_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = perfnet.read(perfnet.example_capture())
    written: list[str] = []
    real = dataset.write_frame

    def interrupted(frame: pd.DataFrame, path: Path) -> None:
        written.append(path.parent.name)
        if path.parent.name == "hops":  # Ctrl-C half-way through
            raise KeyboardInterrupt
        real(frame, path)

    monkeypatch.setattr(dataset, "write_frame", interrupted)
    with pytest.raises(KeyboardInterrupt):
        dataset.write_dataset(trace, tmp_path / "ds")
    assert "events" in written and list(tmp_path.iterdir()) == []


def test_newer_or_broken_datasets_are_named_errors(tmp_path: Path) -> None:
    out = dataset.write_dataset(perfnet.read(perfnet.example_capture()), tmp_path / "ds")
    metadata = json.loads((out / "metadata.json").read_text())
    (out / "metadata.json").write_text(json.dumps({**metadata, "schema_version": 99}))
    with pytest.raises(
        dataset.DatasetError, match="schema version 99; this perfnet reads version 2\nhint: upgrade perfnet"
    ):
        perfnet.read(out)
    (out / "metadata.json").write_text(json.dumps({**metadata, "schema_version": 1}))
    with pytest.raises(
        dataset.DatasetError, match="schema version 1; this perfnet reads version 2\nhint: convert it again"
    ):
        perfnet.read(out)
    with pytest.raises(dataset.DatasetError, match="not a perfnet dataset"):
        dataset.read_dataset(tmp_path)
    (out / "metadata.json").write_text(json.dumps(metadata))
    (out / "hops" / "part-00000.parquet").write_bytes(b"PAR1 truncated")
    with pytest.raises(dataset.DatasetError, match="damaged perfnet dataset"):
        perfnet.read(out)
    shutil.rmtree(out / "events")
    with pytest.raises(dataset.DatasetError, match="damaged perfnet dataset"):
        dataset.read_dataset(out)


def test_a_full_disk_leaves_no_half_written_dataset(small_disk: Path) -> None:
    trace = perfnet.read(FIXTURES / "paths" / "mixed-script.txt.gz")
    with pytest.raises(OSError, match="No space left on device"):
        dataset.write_dataset(trace, small_disk / "ds")
    assert list(small_disk.iterdir()) == []


def test_a_frame_comes_back_exact(tmp_path: Path) -> None:
    # 64-bit addresses beside missing values (the exits have none): through float64 they would
    # lose their low bits (0xffff888104dcbc00 came back 0xffff888104dcb800)
    events = perfnet.read(FIXTURES / "lab-trace.txt").events
    assert events["skbaddr"].isna().sum() == 118
    dataset.write_frame(events, tmp_path / "events.parquet")
    back = dataset.read_frame(tmp_path / "events.parquet")
    pd.testing.assert_frame_equal(back, events, check_exact=True)
    assert (
        back["skbaddr"].to_numpy("uint64", na_value=0).tolist()
        == events["skbaddr"].to_numpy("uint64", na_value=0).tolist()
    )


@pytest.mark.parametrize(("name", "rows", "groups"), [("lab-trace.txt", 300, 3), ("lab-script-g.txt", 100, 3)])
def test_a_frame_is_written_a_row_group_at_a_time(
    name: str, rows: int, groups: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # lab-trace: 883 events, missing addresses and devices in every row group; lab-script-g:
    # 240 events with their callchains (a category of tuples)
    monkeypatch.setattr(dataset, "ROW_GROUP_ROWS", rows)
    events = perfnet.read(FIXTURES / name).events
    dataset.write_frame(events, tmp_path / "events.parquet")
    assert pq.ParquetFile(tmp_path / "events.parquet").metadata.num_row_groups == groups
    pd.testing.assert_frame_equal(dataset.read_frame(tmp_path / "events.parquet"), events, check_exact=True)
    dataset.write_frame(events.iloc[:0], tmp_path / "empty.parquet")
    pd.testing.assert_frame_equal(dataset.read_frame(tmp_path / "empty.parquet"), events.iloc[:0], check_exact=True)
