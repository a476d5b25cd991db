"""perfnet.convert: a capture converted chunk by chunk and bucket by bucket reads back as the
Trace perfnet.read makes of it whole, on every kind of capture; late events are reported;
bad lines, Ctrl-C and a full disk behave as they do for a whole read."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_dataset import assert_same_trace

import perfnet
from perfnet import convert as converting
from perfnet.reader import open_blocks

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = FIXTURES / "paths"


def chunk_of(source: Path, chunk_lines: int, linenos: np.ndarray) -> np.ndarray:
    """The chunk each line number falls in, as convert cuts the source."""
    blocks = open_blocks(source)
    assert blocks is not None
    starts = [chunk[0].lineno for chunk in converting._chunks(blocks, chunk_lines)]
    return np.searchsorted(np.asarray(starts), linenos, side="right") - 1


@pytest.mark.parametrize(
    ("name", "chunk_lines", "buckets"),
    [
        ("lab-trace.txt", 97, 3),
        ("lab-trace-callgraph.txt", 97, 4),  # callchains: frames never cut from their event
        ("lab-script-g.txt", 131, 2),
        ("lab-ftrace.txt", 97, 3),
        ("lab-trace-libtraceevent.txt", 200, 5),
        ("tbf-limited.txt", 500, 3),
        ("paths/tcp-up-trace.txt.gz", 500, 4),  # TCP bulk
        ("paths/tcp-down-script.txt.gz", 500, 4),
        ("paths/http-short-trace.txt.gz", 700, 3),  # request/response
        ("paths/udp-script.txt.gz", 700, 3),
        ("paths/mixed-trace.txt.gz", 1000, 7),  # everything at once
        ("example/lab-example.txt", 60, 2),
    ],
)
def test_a_converted_capture_is_the_capture_read_whole(
    name: str, chunk_lines: int, buckets: int, tmp_path: Path
) -> None:
    source = FIXTURES / name
    done = converting.convert(source, tmp_path / "ds", chunk_lines=chunk_lines, buckets=buckets)
    whole, back = perfnet.read(source), perfnet.read(done.path)
    assert_same_trace(whole, back)
    assert (done.events, done.packets, done.late_events) == (len(whole.events), len(whole.packets), 0)
    conversion = json.loads((done.path / "metadata.json").read_text())["conversion"]
    assert conversion["buckets"] == buckets and conversion["chunks"] > 2
    # packets whose events fall in several chunks were rebuilt as in one piece
    labels = whole.labels["packet_id"].to_numpy()
    chunk = chunk_of(source, chunk_lines, whole.events["lineno"].to_numpy())
    in_packet = labels >= 0
    spans = np.unique(labels[in_packet] * 1000 + chunk[in_packet]) // 1000
    assert (np.bincount(spans) > 1).sum() >= 1


def test_packets_across_chunks_and_buckets_exactly(tmp_path: Path) -> None:
    # TCP bulk in 1,000-line chunks: 9,554 events, 544 packets, 13 of them across a chunk border
    source = PATHS / "tcp-up-trace.txt.gz"
    done = converting.convert(source, tmp_path / "ds", chunk_lines=1000, buckets=5)
    whole = perfnet.read(source)
    chunk = chunk_of(source, 1000, whole.events["lineno"].to_numpy())
    labels = whole.labels["packet_id"].to_numpy()
    spans = np.unique(labels[labels >= 0] * 1000 + chunk[labels >= 0]) // 1000
    assert (done.events, done.packets, int((np.bincount(spans) > 1).sum())) == (9554, 544, 13)
    # the frames are written piece by piece, bucket by bucket; read back, in packet order
    parts = sorted((done.path / "packets").iterdir())
    assert len(parts) >= 5 * 2
    first_ids = [pq.read_table(part).column("packet_id").to_pylist()[:1] for part in parts]
    assert first_ids != sorted(first_ids)
    assert perfnet.read(done.path).packets["packet_id"].tolist() == list(range(544))


def test_events_later_than_the_window_are_reported_and_put_back(tmp_path: Path) -> None:
    # perf trace -a prints up to 4.7 ms out of order on this capture: a window of 0 makes
    # 75 events late; the parts hold them out of order, perfnet.read puts them back
    source = FIXTURES / "lab-trace.txt"
    done = converting.convert(source, tmp_path / "late", chunk_lines=131, window_ns=0)
    assert done.late_events == 75
    assert done.late_linenos[:5] == (426, 427, 428, 429, 430) and len(done.late_linenos) == 20
    times = pq.read_table(done.path / "events").column("time_ns").to_numpy()
    assert (np.diff(times) < 0).sum() > 0
    metadata = json.loads((done.path / "metadata.json").read_text())["conversion"]
    assert (metadata["late_events"], metadata["late_linenos"][:2], metadata["reorder_window_ns"]) == (75, [426, 427], 0)
    whole = perfnet.read(source)
    assert_same_trace(whole, perfnet.read(done.path))
    # the default window (100 ms) holds them: every part in time order, one after another
    held = converting.convert(source, tmp_path / "held", chunk_lines=131)
    assert held.late_events == 0
    times = pq.read_table(held.path / "events").column("time_ns").to_numpy()
    assert (np.diff(times) >= 0).all() and times.size == 883


def test_the_topology_beside_the_capture_is_used(tmp_path: Path) -> None:
    source = PATHS / "mixed-script.txt.gz"
    topology = PATHS / "paths.topology.json"
    done = converting.convert(source, tmp_path / "ds", topology=topology, chunk_lines=2000, buckets=3)
    back = perfnet.read(done.path)
    assert not back.topology.inferred and back.topology.home == "netns:4026531833"
    assert_same_trace(perfnet.read(source, topology=topology), back)


def test_bad_lines_keep_their_numbers_and_strict_mode_stops(tmp_path: Path) -> None:
    lines = gzip.decompress((PATHS / "udp-script.txt.gz").read_bytes()).split(b"\n")
    lines[1499] = b"\xff\xfe not a line perf printed"
    source = tmp_path / "udp-bad.txt"
    source.write_bytes(b"\n".join(lines))
    done = converting.convert(source, tmp_path / "ds", chunk_lines=500, buckets=3)
    back = perfnet.read(done.path)
    assert back.errors["lineno"].tolist() == [1500]
    assert_same_trace(perfnet.read(source), back)
    with pytest.raises(perfnet.ParseError) as failed:
        converting.convert(source, tmp_path / "strict", strict=True, chunk_lines=500)
    assert failed.value.lineno == 1500
    garbage = tmp_path / "notes.txt"
    garbage.write_text("shopping list\nmilk\n")
    with pytest.raises(perfnet.NotPerfOutputError, match="line 1 reads 'shopping list'"):
        converting.convert(garbage, tmp_path / "garbage")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "notes.txt", "udp-bad.txt"]


def test_an_empty_capture_converts_to_an_empty_dataset(tmp_path: Path) -> None:
    source = tmp_path / "empty.txt"
    source.write_text("")
    done = converting.convert(source, tmp_path / "ds")
    assert (done.events, done.packets) == (0, 0)
    assert_same_trace(perfnet.read(source), perfnet.read(done.path))


def test_ctrl_c_or_a_full_disk_leave_nothing(tmp_path: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = PATHS / "mixed-trace.txt.gz"
    with pytest.raises(OSError, match="No space left on device"):
        converting.convert(source, small_disk / "ds", chunk_lines=2000)
    assert list(small_disk.iterdir()) == []

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(converting._Job, "packets", interrupted)  # Ctrl-C half-way, between passes
    with pytest.raises(KeyboardInterrupt):
        converting.convert(source, tmp_path / "ds", chunk_lines=2000)
    assert [p.name for p in tmp_path.iterdir()] == [small_disk.name]


def test_the_cli_converts_standard_input_and_reports_late_events(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "perfnet", "convert"]
    source = FIXTURES / "lab-trace.txt"
    with source.open("rb") as stdin:
        argv = [*command, "-", "-o", str(tmp_path / "ds"), "--window", "0", "--chunk-lines", "131"]
        done = subprocess.run(argv, stdin=stdin, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp_path / 'ds'}: 883 events, 48 packets, ")
    assert done.stderr.startswith(
        "perfnet: 75 events came more than 0 ms after later ones (lines 426, 427, 428, 429, 430, "
    )
    assert done.stderr.endswith(
        ", ...): written out of time order, perfnet.read puts them in place (a larger --window keeps them in order)\n"
    )
    whole = perfnet.read(source)
    back = perfnet.read(tmp_path / "ds")
    assert back.source == "-"
    assert back.packets["path"].tolist() == whole.packets["path"].tolist()
    argv = [*command, str(source), "-o", str(tmp_path / "x"), "--window", "-1"]
    refused = subprocess.run(argv, capture_output=True, text=True)
    assert refused.returncode == 2 and "milliseconds (0 or more), not '-1'" in refused.stderr
