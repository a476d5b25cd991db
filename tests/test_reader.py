"""Sources, bad input, messages and strict mode."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import zstandard

import perfnet
from perfnet import ParseError, PerfnetError

FIXTURES = Path(__file__).parent / "fixtures"
GOOD = [
    '     0.000 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959d00, len: 42, name: "brx")',
    '     0.045 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959d00, len: 42, name: "vethx0")',
    "     0.090 ping/2000 net:netif_rx_exit()",
]


def test_seed_lines_parse_exactly() -> None:
    first = perfnet.read(FIXTURES / "seed-old-perf-1.txt")
    second = perfnet.read(FIXTURES / "seed-old-perf-2.txt")
    assert first.format == second.format == "trace-old"
    assert first.errors.empty and second.errors.empty
    assert first.event_counts() == {"net:net_dev_queue": 2, "net:net_dev_start_xmit": 2, "net:netif_rx_entry": 1}
    assert second.event_counts() == {"net:net_dev_queue": 3, "net:netif_rx": 2, "net:netif_receive_skb_entry": 1}
    ev = second.events
    assert ev["dev"].tolist() == ["docker0", "veth1127065", "eth0", "eth0", "veth1127065", "docker0"]
    assert ev["len"].tolist() == [98, 98, 84, 98, 84, 84]
    assert ev["skbaddr"].tolist() == [0xFFFF893AA4A03500] * 3 + [0xFFFF893AA4A03C00] * 3
    assert ev["time_ns"].tolist() == [0, 12_000, 16_000, 31_000, 33_000, 40_000]
    entry = second.df("net:netif_receive_skb_entry")
    assert entry.loc[0, "napi_id"] == 1 and entry.loc[0, "ip_summed"] == 2 and entry.loc[0, "mac_header"] == -14


@pytest.mark.parametrize("opener", [gzip.open, bz2.open, lzma.open, None])
def test_compressed_paths(tmp_path: Path, opener: object) -> None:
    data = ("\n".join(GOOD) + "\n").encode()
    if opener is None:
        path = tmp_path / "cap.txt.zst"
        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        suffix = {gzip.open: ".gz", bz2.open: ".bz2", lzma.open: ".xz"}[opener]  # type: ignore[index]
        path = tmp_path / f"cap.txt{suffix}"
        with opener(path, "wb") as f:  # type: ignore[operator]
            f.write(data)
    events = perfnet.read(path).events
    assert events["dev"].tolist()[:2] == ["brx", "vethx0"] and events["dev"].isna().tolist() == [False, False, True]


def test_file_objects_iterables_and_stdin(tmp_path: Path) -> None:
    text = "\n".join(GOOD) + "\n"
    assert len(perfnet.read(io.StringIO(text)).events) == 3
    assert len(perfnet.read(io.BytesIO(text.encode())).events) == 3
    assert len(perfnet.read([line.encode() for line in GOOD]).events) == 3
    path = tmp_path / "cap.txt"
    path.write_text(text)
    out = subprocess.run(
        [sys.executable, "-c", "import perfnet; t = perfnet.read('-'); print(len(t.events), t.format)"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["3", "trace"]


def test_missing_file_is_a_named_error(tmp_path: Path) -> None:
    with pytest.raises(PerfnetError, match="cannot read"):
        perfnet.read(tmp_path / "nope.txt")


def test_crlf_ansi_and_non_utf8() -> None:
    lines = [
        (GOOD[0] + "\r\n").encode(),
        b'     0.010 p\xffng/2000 net:net_dev_queue(skbaddr: 0x1, len: 42, name: "brx")\r\n',
        b"\x1b[31mLOST 7 events!\x1b[m\r\n",
    ]
    trace = perfnet.read(lines)
    assert trace.errors.empty
    assert trace.events["comm"].tolist() == ["ping", "p\ufffdng"]
    assert trace.lost == 7 and trace.messages["kind"].tolist() == ["lost"]


def test_bad_input_keeps_every_good_line_and_reports_every_bad_one() -> None:
    huge = '     0.500 ping/2000 net:net_dev_queue(skbaddr: 0x1, len: 42, name: "' + "x" * 200_000
    lines = [
        GOOD[0],
        "     0.010 ping/2000 net:net_dev_queue(skbaddr: 0xffff8881",  # truncated
        "\x00\x01\x02 binary junk \xfe",
        GOOD[1],
        "LOST 3 events!",
        huge,
        "",
        "     0.020 ping/2000 net:netif_rx(dev=eth0 skbaddr=0x1 len=)",  # bad value
        "Warning: Problems creating module maps, continuing anyway...",
        GOOD[2],
        '     0.030 ping/2000 net:net_dev_queue(skbaddr: 0x2, len: 43, name: "brx")',
    ]
    trace = perfnet.read(lines, format="trace")
    assert trace.errors["lineno"].tolist() == [2, 3, 6, 8]
    assert trace.events["lineno"].tolist() == [1, 11, 4, 10]  # sorted by time
    assert trace.messages[["lineno", "kind"]].values.tolist() == [[5, "lost"], [9, "warning"]]
    assert trace.lost == 3
    # every non-blank line is in exactly one place
    assert len(trace.events) + len(trace.messages) + len(trace.errors) == len([x for x in lines if x])


def test_strict_mode_raises_at_first_bad_line_with_column_and_caret() -> None:
    lines = [
        "     0.000 ping/2018 net:net_dev_queue(dev=brx skbaddr=0xffff888105959100 len=98)",
        "     0.001 ping/2018 net:netif_rx_exit(ret=0)",
        "     0.010 ping/2000 net:netif_rx(dev=eth0 skbaddr=0x1 len=)",
    ]
    with pytest.raises(ParseError) as info:
        perfnet.read(lines, format="trace-libtraceevent", strict=True)
    err = info.value
    assert (err.lineno, err.column) == (3, 60)
    assert lines[2][err.column - 1] == ")"  # `len=` has no value: the grammar stops at `)`
    assert str(err).splitlines()[-1] == " " * 59 + "^"
    assert isinstance(err, PerfnetError)


def test_strict_mode_error_column_in_header() -> None:
    with pytest.raises(ParseError) as info:
        list(perfnet.iter_records([GOOD[0], "     0.010 ping/2000 net:netif_rx[dev]"], strict=True))
    assert (info.value.lineno, info.value.column) == (2, 34)  # at the `[`


def test_callchains_are_folded_into_their_event() -> None:
    lines = [
        GOOD[0],
        "                                       __dev_queue_xmit ([kernel.kallsyms])",
        "                                       [0] ([unknown])",
        GOOD[1],
    ]
    trace = perfnet.read(lines)
    assert trace.events["callchain"].tolist() == [("__dev_queue_xmit", "[0]"), ()]
    orphan = perfnet.read(["                                       __dev_queue_xmit ([kernel.kallsyms])", *GOOD])
    assert orphan.errors["lineno"].tolist() == [1]


def test_syscall_lines_and_summary_block_are_messages() -> None:
    lines = [
        "     0.000 (         ): ping/2108 sendto(fd: 3, buff: 0x5617d5383b80, len: 64) ...",
        '     0.053 (         ): ping/2108 net:net_dev_queue(skbaddr: 0x1, len: 98, name: "brx")',
        "     0.000 ( 0.126 ms): ping/2108  ... [continued]: sendto())                     = 64",
        "",
        " Summary of events:",
        "",
        " ping (2108), 12 events, 100.0%",
        "   syscall            calls  errors  total       min       avg       max       stddev",
        "                                     (msec)    (msec)    (msec)    (msec)        (%)",
        "   --------------- --------  ------ -------- --------- --------- ---------     ------",
        "   sendto                 1      0     0.126     0.126     0.126     0.126      0.00%",
    ]
    trace = perfnet.read(lines)
    assert trace.errors.empty and len(trace.events) == 1
    assert trace.messages["kind"].tolist() == ["syscall", "syscall"] + ["summary"] * 6


def test_events_are_sorted_by_time_stably() -> None:
    lines = [
        '     0.500 a/1 net:net_dev_queue(skbaddr: 0x1, len: 1, name: "a")',
        '     0.100 b/2 net:net_dev_queue(skbaddr: 0x1, len: 1, name: "b")',
        '     0.500 c/3 net:net_dev_queue(skbaddr: 0x1, len: 1, name: "c")',
    ]
    ev = perfnet.read(lines).events
    assert ev["dev"].tolist() == ["b", "a", "c"]
    assert str(ev["time_ns"].dtype) == "int64" and str(ev["skbaddr"].dtype) == "UInt64"


def test_ftrace_headers_and_lost_lines() -> None:
    lines = [
        "# tracer: nop",
        "#",
        "            ping-2064    [001] b....    99.931856: net_dev_queue: dev=brx skbaddr=000000000f0ffb08 len=98",
        "CPU:1 [LOST 12 EVENTS]",
        "##### CPU 1 buffer started ####",
    ]
    trace = perfnet.read(lines)
    assert trace.format == "ftrace" and trace.lost == 12 and len(trace.events) == 1
    assert trace.messages["kind"].tolist() == ["header", "header", "lost", "header"]


def test_events_without_schema_never_break_the_events_frame() -> None:
    """ftrace prints hashed pointers without 0x: without a schema they stay text, and are
    left out of the typed skbaddr column rather than failing the frame."""
    lines = [
        "ping-1 [000] ..s1. 1.000000: net_dev_queue: dev=br0 skbaddr=ffff888105959100 len=98",
        "ping-1 [000] ..s1. 1.000001: tcp_retransmit_skb: skbaddr=00000000a1b2c3d4 len=x dev=7",
    ]
    trace = perfnet.read(lines)
    assert trace.errors.empty
    assert trace.events["skbaddr"].tolist() == [0xFFFF888105959100, pd.NA]
    assert trace.events["dev"].tolist()[0] == "br0" and pd.isna(trace.events["dev"].tolist()[1])
    assert trace.df("ftrace:tcp_retransmit_skb").loc[0, "skbaddr"] == "00000000a1b2c3d4"


def test_corrupt_compressed_input_and_unknown_format_are_named_errors(tmp_path: Path) -> None:
    good = gzip.compress(("\n".join(GOOD) + "\n").encode())
    truncated = tmp_path / "cap.txt.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(PerfnetError, match=f"cannot read {truncated}"):
        perfnet.read(truncated)
    garbage = tmp_path / "cap.txt.xz"
    garbage.write_bytes(b"not xz at all")  # read by its bytes, not its name: text, and not perf's
    with pytest.raises(perfnet.NotPerfOutputError, match="line 1 reads 'not xz at all'"):
        perfnet.read(garbage)
    with pytest.raises(perfnet.UsageError, match="unknown format 'perf'; one of trace, "):
        perfnet.read(GOOD, format="perf")


def test_the_events_frame_is_compact_and_typed_alike_everywhere() -> None:
    """Narrow integers and categorical labels, whatever else is installed: under 64 bytes an event."""
    events = perfnet.read(FIXTURES / "lab-trace-callgraph.txt").events
    assert {name: str(dtype) for name, dtype in events.dtypes.items()} == {
        "time_ns": "int64", "comm": "category", "tid": "UInt32", "cpu": "UInt32", "event": "category",
        "dev": "category", "skbaddr": "UInt64", "len": "UInt32", "protocol": "UInt16", "reason": "category",
        "location": "category", "lineno": "int64", "callchain": "category",
    }  # fmt: skip
    assert all(isinstance(chain, tuple) and len(chain) > 3 for chain in events["callchain"])
    bulk = perfnet.read(FIXTURES / "paths" / "tcp-up-script.txt.gz").events  # 9,554 events
    assert bulk.memory_usage(deep=True).sum() / len(bulk) < 64


def test_progress_shows_on_standard_error_only_when_asked(capsys: pytest.CaptureFixture[str]) -> None:
    path = FIXTURES / "paths" / "mixed-trace.txt.gz"
    quiet = perfnet.read(path)
    assert capsys.readouterr().err == ""
    shown = perfnet.read(path, progress=True)
    err = capsys.readouterr().err
    assert "mixed-trace.txt.gz" in err and "100%" in err
    assert len(shown.events) == len(quiet.events)


def test_record_get_gives_a_default_where_an_event_has_no_such_field() -> None:
    records = list(perfnet.iter_records(perfnet.example_capture()))  # perf trace: queue has 3 fields
    start = next(r for r in records if r.event == "net:net_dev_start_xmit")
    queue = next(r for r in records if r.event == "net:net_dev_queue")
    assert start.get("gso_size") == 0 and start.get("network_offset") == 14
    assert queue.get("gso_size") is None and queue.get("gso_size", -1) == -1  # perf trace prints no more
    assert queue.get("len") == 98


def test_the_version_is_the_installed_distribution_s() -> None:
    import importlib.metadata

    assert perfnet.__version__ == importlib.metadata.version("perfnet")
    assert perfnet.__version__.count(".") == 2
