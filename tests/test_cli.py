"""The `perfnet` command, run as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from perfnet import read
from perfnet.topology import Topology

FIXTURES = Path(__file__).parent / "fixtures"


def perfnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "perfnet.cli", *args], capture_output=True, text=True)


def test_parse_json_on_seed_capture() -> None:
    out = perfnet("parse", str(FIXTURES / "seed-old-perf-2.txt"), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["format"] == "trace-old" and summary["events"] == 6 and summary["errors"] == 0
    assert summary["events_per_tracepoint"] == {
        "net:net_dev_queue": 3,
        "net:netif_rx": 2,
        "net:netif_receive_skb_entry": 1,
    }


def test_parse_reports_first_errors_with_line_numbers(tmp_path: Path) -> None:
    cap = tmp_path / "cap.txt"
    cap.write_text('  0.000 ping/1 net:net_dev_queue(skbaddr: 0x1, len: 42, name: "brx")\ngarbage\nLOST 2 events!\n')
    out = perfnet("parse", str(cap))
    assert out.returncode == 0
    assert "lost:    2" in out.stdout and "errors:  1" in out.stdout
    assert "line 2, column 1: not a trace event line: Expected timestamp" in out.stdout


def test_strict_parse_fails_with_exit_code_2(tmp_path: Path) -> None:
    cap = tmp_path / "cap.txt"
    cap.write_text("garbage\n")
    out = perfnet("parse", str(cap), "--strict")
    assert out.returncode == 2 and "line 1, column 1" in out.stderr


def test_example_capture_is_bundled() -> None:
    out = perfnet("parse", "--example", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["errors"] == 0 and summary["events"] > 0


def test_report_json_on_lab_capture() -> None:
    lab = json.loads((FIXTURES / "lab.json").read_text())["captures"]["lab"]["lab"]
    out = perfnet("report", str(FIXTURES / "lab-trace.txt"), "--formats", str(FIXTURES / "lab.formats"), "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert (report["format"], report["events"], report["packets"], report["errors"]) == ("trace", 883, 48, 0)
    # no snapshot beside the capture: namespaces inferred from the events, ctr2 first by name
    assert report["topology"] == "inferred from the events"
    ctr1, ctr2 = "eth0@inferred-2", "eth0@inferred-1"
    forward = f"{lab['bridge']}>{lab['host_veth']}>{ctr1}>eth1@inferred-2>{ctr2}"
    assert [(p["path"], p["count"]) for p in report["paths"]] == [
        (forward, 26),
        (">".join(reversed(forward.split(">"))), 22),
    ]
    assert [(h["from_dev"], h["to_dev"], h["count"]) for h in report["hops"]] == [
        (ctr1, "eth1@inferred-2", 26),
        ("eth1@inferred-2", ctr2, 26),
        (lab["bridge"], lab["host_veth"], 26),
        (lab["host_veth"], ctr1, 26),
        (ctr2, "eth1@inferred-2", 22),
        (ctr1, lab["host_veth"], 22),
        ("eth1@inferred-2", ctr1, 22),
        (lab["host_veth"], lab["bridge"], 22),
    ]
    assert report["ended_by"] == {
        "capture end": 5, "free": 27, "infeasible step": 0, "repeat": 0, "length": 0, "idle": 16, "lost": 0
    }  # fmt: skip
    assert [(d["reason"], d["count"]) for d in report["drops"]] == [("NO_SOCKET", 5), ("QUEUE_PURGE", 3)]


def test_report_text_shows_paths_and_hop_latency() -> None:
    out = perfnet("report", "--example")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2] == "packets: 6    devices: inferred from the events"
    assert lines[3] == "ended by: capture end 2, idle 4  (4 rest only on the idle rule: the least certain)"
    assert lines[5].split() == ["path", "packets", "share", "transit", "µs", "to", "free", "µs"]
    assert [line.split()[:2] for line in lines[6:8]] == [
        ["eth0@inferred-1>pnv0997>pnbr0997", "3"],
        ["pnbr0997>pnv0997>eth0@inferred-1", "3"],
    ]
    assert "hop latency (µs)" in out.stdout


def test_compare_json_flags_only_the_rate_limited_hop() -> None:
    out = perfnet("compare", str(FIXTURES / "tbf-base.txt"), str(FIXTURES / "tbf-limited.txt"), "--json")
    assert out.returncode == 0, out.stderr
    hops = json.loads(out.stdout)
    assert set(hops[0]) >= {
        "from_dev",
        "to_dev",
        "count_a",
        "count_b",
        "median_a_ns",
        "median_b_ns",
        "p99_a_ns",
        "p99_b_ns",
        "ci_low_ns",
        "ci_high_ns",
        "significant",
    }
    veth = json.loads((FIXTURES / "tbf.json").read_text())["lab"]["host_veth"]
    assert [(h["from_dev"], h["to_dev"]) for h in hops if h["significant"]] == [(veth, "eth0")]


def test_compare_same_events_in_two_variants_flags_nothing() -> None:
    out = perfnet("compare", str(FIXTURES / "lab-trace.txt"), str(FIXTURES / "lab-script-ns.txt"), "--json")
    assert out.returncode == 0, out.stderr
    hops = json.loads(out.stdout)
    assert len(hops) == 6 and not any(h["significant"] for h in hops)


def test_html_report_is_self_contained(tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    out = perfnet("report", str(FIXTURES / "tbf-limited.txt"), "--html", str(html))
    assert out.returncode == 0, out.stderr
    text = html.read_text()
    assert text.count('src="data:image/png;base64,') == 5
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "<h2>Hop latency</h2>" in text and "pnv2fdd" in text and "p99 (µs)" in text


def test_plot_writes_each_kind_and_reports_unknown_packets(tmp_path: Path) -> None:
    for kind in ("hops", "timeline", "stages", "over-time", "paths"):
        png = tmp_path / f"{kind}.png"
        out = perfnet("plot", str(FIXTURES / "lab-trace.txt"), "--kind", kind, "-o", str(png))
        assert out.returncode == 0, out.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    bad = perfnet("plot", str(FIXTURES / "lab-trace.txt"), "--kind", "timeline", "--packet", "99999", "-o", "x.png")
    assert bad.returncode == 2 and "no such packets in lab-trace.txt: [99999]" in bad.stderr
    bad = perfnet("plot", str(FIXTURES / "lab-trace.txt"), "--kind", "over-time", "--hop", "a>b", "-o", "x.png")
    assert bad.returncode == 2 and "no hop a>b" in bad.stderr


def test_compare_text_table_in_microseconds() -> None:
    out = perfnet("compare", str(FIXTURES / "tbf-base.txt"), str(FIXTURES / "tbf-limited.txt"))
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()[2:]
    assert "median diff (µs)" in header and "ci low (µs)" in header
    flagged = [row.split() for row in rows if row.endswith("True")]
    veth = json.loads((FIXTURES / "tbf.json").read_text())["lab"]["host_veth"]
    assert [(row[0], row[1], row[8]) for row in flagged] == [(veth, "eth0", "7314.5")]


def test_output_that_cannot_be_written_is_a_named_error(tmp_path: Path) -> None:
    capture = str(FIXTURES / "seed-old-perf-2.txt")
    out = perfnet("report", capture, "--html", str(tmp_path / "missing" / "r.html"))
    assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr
    out = perfnet("plot", capture, "-o", str(tmp_path / "figure.nosuchformat"))
    assert out.returncode == 2 and "cannot write" in out.stderr and "Traceback" not in out.stderr
    out = perfnet("parse", capture, "--format", "trace")
    assert out.returncode == 0 and "errors:  6" in out.stdout  # the old format read as perf trace's: all bad


def test_topology_show_of_a_capture_without_snapshot_infers_it() -> None:
    out = perfnet("topology", "show", str(FIXTURES / "paths" / "mixed-trace.txt.gz"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "inferred from the events; home namespace: inferred-3",
        "inferred-1 (does not forward)",
        "  eth0: veth, under mv0, peer eth1@inferred-2",
        "  mv0: device",
        "inferred-2 (forwards)",
        "  eth0: veth, peer pnvpgt1@inferred-3",
        "  eth1: veth, peer eth0@inferred-1",
        "inferred-3 (does not forward)",
        "  pnbrpgt1: device",
        "  pnvpgt1: veth, under pnbrpgt1, peer eth0@inferred-2",
    ]


def test_topology_save_writes_the_snapshot_read_finds(tmp_path: Path) -> None:
    capture = tmp_path / "ping.txt"
    shutil.copyfile(FIXTURES / "ping-bridge.txt", capture)
    out = perfnet("topology", "save", str(capture))
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"wrote {capture}.topology.json: ")
    trace = read(capture)
    assert not trace.topology.inferred and trace.topology == Topology.load(f"{capture}.topology.json")
    assert perfnet("topology", "save").returncode == 2


def test_trace_options_are_checked_in_the_cli_s_words(tmp_path: Path) -> None:
    # Refused before perf starts (no root needed): the messages name the CLI's options.
    nothing = perfnet("trace")
    assert nothing.returncode == 2 and nothing.stdout == ""
    assert (
        nothing.stderr == "perfnet: nothing to trace: give a command (perfnet trace -- ping -c 3 ADDR), -a or -p PID\n"
    )
    duration = perfnet("trace", "-a", "--duration", "0")
    assert (duration.returncode, duration.stderr) == (2, "perfnet: --duration must be positive, not 0\n")
    folder = perfnet("trace", "-a", "-o", str(tmp_path))
    assert folder.returncode == 2
    assert folder.stderr == f"perfnet: the raw output {tmp_path} is a directory; give a file name in it\n"
    assert "Traceback" not in nothing.stderr + duration.stderr + folder.stderr
