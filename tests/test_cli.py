"""The `perfnet` command, run as users run it."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from perfnet import __version__, read
from perfnet.topology import Topology

FIXTURES = Path(__file__).parent / "fixtures"
MIXED = str(FIXTURES / "paths" / "mixed-script.txt.gz")  # TCP, HTTP, UDP and a macvlan, 1039 packets
PATHS_TOPOLOGY = str(FIXTURES / "paths" / "paths.topology.json")
MACVLAN_PATH = "mv0@inferred-1>eth0@inferred-1>eth1@inferred-2"  # namespaces inferred: the only path through mv0
TBF = json.loads((FIXTURES / "tbf.json").read_text())["lab"]
COMMAND = [sys.executable, "-m", "perfnet.cli"]


def perfnet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], capture_output=True, text=True)


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
    # the routed lab: namespaces from the snapshot beside the capture, both containers' eth0 told apart
    assert lines[2] == "packets: 26    devices: snapshot of the capturing host"
    assert lines[3] == "ended by: capture end 3, free 19, repeat 4  (0 rest only on the idle rule: the least certain)"
    assert lines[5].split() == ["path", "packets", "share", "transit", "µs", "to", "free", "µs"]
    assert [line.split() for line in lines[6:9]] == [
        ["pnbr463d>pnv463d>eth0@pnc1-463d>eth1@pnc1-463d>eth0@pnc2-463d", "14", "53.8%", "277.0", "312.5"],
        ["eth0@pnc2-463d>eth1@pnc1-463d>eth0@pnc1-463d>pnv463d>pnbr463d", "12", "46.2%", "305.5", "343.5"],
        [],
    ]
    assert lines[9].split() == ["hop", "latency", "(µs)", "count", "mean", "p50", "p90", "p99", "max"]
    assert [line.split(maxsplit=3)[:3] + line.split()[-6:] for line in lines[10:19]] == [
        ["eth0@pnc1-463d", ">", "eth1@pnc1-463d", "14", "109.1", "100.0", "136.8", "145.8", "147.0"],
        ["eth1@pnc1-463d", ">", "eth0@pnc2-463d", "14", "33.6", "30.0", "47.4", "48.9", "49.0"],
        ["pnbr463d", ">", "pnv463d", "14", "46.4", "53.0", "62.1", "69.1", "70.0"],
        ["pnv463d", ">", "eth0@pnc1-463d", "14", "32.9", "30.5", "43.2", "51.5", "52.0"],
        ["eth0@pnc1-463d", ">", "pnv463d", "12", "29.4", "29.0", "30.0", "30.0", "30.0"],
        ["eth0@pnc2-463d", ">", "eth1@pnc1-463d", "12", "39.8", "30.5", "47.9", "96.1", "102.0"],
        ["eth1@pnc1-463d", ">", "eth0@pnc1-463d", "12", "91.2", "87.0", "106.9", "132.8", "136.0"],
        ["pnv463d", ">", "pnbr463d", "12", "76.9", "75.5", "77.9", "94.9", "97.0"],
        [],
    ]
    # the drops, each at the kernel function that dropped it, on the device named by its namespace
    assert lines[19] == "drops (skb:kfree_skb)"
    assert [line.split() for line in lines[20:]] == [
        ["2", "NO_SOCKET", "at", "ping_rcv+0xab", "dev", "pnbr463d"],
        ["1", "QUEUE_PURGE", "at", "sk_stream_kill_queues+0x57", "dev", "pnbr463d"],
        ["1", "QUEUE_PURGE", "at", "sk_stream_kill_queues+0x57", "dev", "eth0@pnc2-463d"],
        ["1", "NO_SOCKET", "at", "__udp4_lib_rcv+0x4bc", "dev", "eth0@pnc2-463d"],
    ]


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


def test_version() -> None:
    out = perfnet("--version")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"perfnet {__version__}\n", "")


@pytest.mark.parametrize(("given", "pool"), [(None, "system"), ("jemalloc", "jemalloc")])
def test_the_command_runs_arrow_on_malloc_unless_told_otherwise(given: str | None, pool: str) -> None:
    # mimalloc, Arrow's default, kept 70 MiB of freed pages in a 5.1M-line convert
    program = (
        "import sys; from perfnet.__main__ import main; sys.argv = ['perfnet', 'report', '--example', '--json']; "
        "main(); import pyarrow; print(pyarrow.default_memory_pool().backend_name, file=sys.stderr)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if given is not None:
        env["ARROW_DEFAULT_MEMORY_POOL"] = given
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, env=env, timeout=120)
    assert (out.returncode, out.stderr) == (0, f"{pool}\n")
    assert json.loads(out.stdout)["packets"] == 26


# --- Ctrl-C and OS errors: a line in the CLI's words, never a traceback --------------------------


def interrupted(process: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    """Ctrl-C as a terminal sends it (SIGINT to the process group), then how the command ended."""
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


@pytest.mark.parametrize("command", ["parse", "report", "plot", "compare", "export"])
def test_ctrl_c_while_reading_standard_input_exits_130_quietly(command: str, tmp_path: Path) -> None:
    output = tmp_path / "out.png" if command == "plot" else tmp_path / "out.csv"
    argv = {
        "parse": ["parse", "-"],
        "report": ["report", "-"],
        "plot": ["plot", "-", "-o", str(output)],
        "compare": ["compare", "-", str(FIXTURES / "tbf-base.txt")],
        "export": ["export", "-", "--table", "packets", "-o", str(output)],
    }[command]
    process = subprocess.Popen(
        [*COMMAND, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert process.stdin is not None
    lines = (FIXTURES / "lab-trace.txt").read_bytes()
    for _ in range(20):  # 2 MB through a 64 KiB pipe: once written, perfnet is reading (the pipe stays open)
        process.stdin.write(lines)
    process.stdin.flush()
    assert interrupted(process) == (130, b"", b"")
    assert not output.exists()


def open_files(pid: int) -> set[str]:
    """The files a process has open now (descriptors come and go while they are listed)."""
    files = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            files.add(os.readlink(fd))
    return files


def test_ctrl_c_while_reading_a_large_file_exits_130_quietly(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"  # 21 MB: read by several threads
    lines = (FIXTURES / "lab-trace.txt").read_bytes()
    with big.open("wb") as file:
        for _ in range(200):
            file.write(lines)
    process = subprocess.Popen(
        [*COMMAND, "report", str(big)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while str(big) not in open_files(process.pid):  # the read has begun
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    assert interrupted(process) == (130, b"", b"")


def test_os_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    out = perfnet("report", str(missing))
    assert (out.returncode, out.stderr) == (2, f"perfnet: cannot read {missing}: No such file or directory\n")
    out = perfnet("report", "--example", "--topology", str(missing))
    assert (out.returncode, out.stderr) == (2, f"perfnet: cannot read topology {missing}: No such file or directory\n")
    with open(os.devnull, "rb") as read_only:  # standard output that cannot be written
        out = subprocess.run([*COMMAND, "parse", "--example"], stdout=read_only, stderr=subprocess.PIPE, text=True)
    assert (out.returncode, out.stderr) == (2, "perfnet: Bad file descriptor\n")


# --- plot ----------------------------------------------------------------------------------------


def test_plot_without_extension_names_the_file_it_wrote(tmp_path: Path) -> None:
    out = perfnet("plot", "--example", "-o", str(tmp_path / "noext"))
    assert (out.returncode, out.stdout) == (0, f"wrote {tmp_path / 'noext.png'}\n"), out.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["noext.png"]
    assert (tmp_path / "noext.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_takes_a_hop_as_the_report_prints_it(tmp_path: Path) -> None:
    report = perfnet("report", "--example").stdout.splitlines()
    start = next(i for i, line in enumerate(report) if line.startswith("hop latency")) + 1
    end = report.index("", start)  # the drops follow after a blank line
    hops = [line.split("  ")[0] for line in report[start:end]]
    assert hops == [
        "eth0@pnc1-463d > eth1@pnc1-463d",
        "eth1@pnc1-463d > eth0@pnc2-463d",
        "pnbr463d > pnv463d",
        "pnv463d > eth0@pnc1-463d",
        "eth0@pnc1-463d > pnv463d",
        "eth0@pnc2-463d > eth1@pnc1-463d",
        "eth1@pnc1-463d > eth0@pnc1-463d",
        "pnv463d > pnbr463d",
    ]
    for i, hop in enumerate([hops[0], hops[2]]):  # with namespace labels, and without (the host's devices)
        png = tmp_path / f"{i}.png"
        out = perfnet("plot", "--example", "--kind", "over-time", "--hop", hop, "-o", str(png))
        assert (out.returncode, out.stdout) == (0, f"wrote {png}\n"), out.stderr
        assert png.stat().st_size > 10_000
    # the other namespace's eth0: a device of the capture, but no hop from it to pnv463d
    png = tmp_path / "none.png"
    out = perfnet("plot", "--example", "--kind", "over-time", "--hop", "eth0@pnc2-463d > pnv463d", "-o", str(png))
    assert out.returncode == 2 and "no hop eth0@pnc2-463d>pnv463d" in out.stderr
    assert not png.exists()


# --- compare --stages ----------------------------------------------------------------------------


def test_compare_stages_json_flags_the_queue_of_the_rate_limited_veth() -> None:
    out = perfnet("compare", str(FIXTURES / "tbf-base.txt"), str(FIXTURES / "tbf-limited.txt"), "--stages", "--json")
    assert out.returncode == 0, out.stderr
    stages = json.loads(out.stdout)
    assert len(stages) == 31
    assert list(stages[0])[:3] == ["dev", "from_event", "to_event"]
    flagged = [(s["dev"], s["from_event"], s["to_event"], s["median_diff_ns"]) for s in stages if s["significant"]]
    # the token bucket delays the veth's queue; the bridge's transmit returns sooner (fixtures/tbf.md)
    assert flagged == [
        (TBF["bridge"], "net:net_dev_start_xmit", "net:net_dev_xmit", -50_500.0),
        (TBF["host_veth"], "net:net_dev_queue", "net:net_dev_start_xmit", 7_300_000.0),
    ]


def test_compare_stages_text_in_microseconds() -> None:
    out = perfnet("compare", str(FIXTURES / "tbf-base.txt"), str(FIXTURES / "tbf-limited.txt"), "--stages")
    assert out.returncode == 0, out.stderr
    header, *rows = out.stdout.splitlines()[2:]
    assert header.split()[:3] == ["dev", "from_event", "to_event"] and len(rows) == 31
    flagged = [row.split() for row in rows if row.endswith("True")]
    assert [(row[0], row[1], row[2], row[9]) for row in flagged] == [
        (TBF["bridge"], "net:net_dev_start_xmit", "net:net_dev_xmit", "-50.5"),
        (TBF["host_veth"], "net:net_dev_queue", "net:net_dev_start_xmit", "7300.0"),
    ]


# --- filters -------------------------------------------------------------------------------------


def report_json(*args: str) -> dict[str, Any]:
    out = perfnet("report", *args, "--json")
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(out.stdout)
    return report


def paths_of(report: dict[str, Any]) -> dict[str, int]:
    return {p["path"]: p["count"] for p in report["paths"]}


def test_report_filtered_by_device() -> None:
    report = report_json(MIXED, "--dev", "mv0")
    assert (report["packets"], report["events"]) == (60, 601)
    assert report["filtered"] == {"by": {"dev": ["mv0"]}, "packets": 60, "of": 1039}
    assert paths_of(report) == {MACVLAN_PATH: 60}
    out = perfnet("report", MIXED, "--dev", "mv0", "--dev", "nosuchdev")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2:4] == [
        "packets: 60    devices: inferred from the events",
        "filtered: dev mv0 or nosuchdev: 60 of 1039 packets",
    ]
    assert not any(line.startswith("filtered") for line in perfnet("report", MIXED).stdout.splitlines())


def test_report_filtered_by_namespace_inferred_or_saved() -> None:
    inferred = report_json(MIXED, "--netns", "inferred-3")  # the namespace of the bridge: perfnet's own
    assert inferred["packets"] == 919 and inferred["filtered"] == {
        "by": {"netns": ["inferred-3"]},
        "packets": 919,
        "of": 1039,
    }
    forward = "pnbrpgt1>pnvpgt1>eth0@pnc1-pgt1>eth1@pnc1-pgt1>eth0@pnc2-pgt1"
    saved = report_json(MIXED, "--topology", PATHS_TOPOLOGY, "--netns", "pnc2-pgt1")
    assert saved["topology"] == "snapshot of the capturing host"
    assert paths_of(saved) == {
        forward: 405,
        ">".join(reversed(forward.split(">"))): 374,
        "eth1@pnc1-pgt1>eth0@pnc2-pgt1": 60,
        "mv0@pnc2-pgt1>eth0@pnc2-pgt1>eth1@pnc1-pgt1": 60,
    }


def test_report_filtered_by_protocol_and_time() -> None:
    ipv4 = report_json(MIXED, "--protocol", "0x0800")
    assert ipv4["packets"] == 1039 and ipv4["filtered"] == {"by": {"protocol": [0x0800]}, "packets": 1039, "of": 1039}
    assert report_json(MIXED, "--protocol", "arp", "--protocol", "ipv6")["packets"] == 0
    window = report_json(MIXED, "--since", "0.5", "--until", "1")
    assert window["packets"] == 16 and sum(paths_of(window).values()) == 16
    out = perfnet("report", MIXED, "--protocol", "ipv4", "--dev", "mv0", "--since", "0.5", "--until", "2.5")
    assert "filtered: dev mv0, protocol ipv4, since 0.5 s, until 2.5 s: 60 of 1039 packets" in out.stdout.splitlines()


def test_filter_options_are_checked_in_the_cli_s_words(tmp_path: Path) -> None:
    backwards = perfnet("report", MIXED, "--since", "2", "--until", "1")
    assert (backwards.returncode, backwards.stderr) == (
        2,
        "perfnet: --until 1 is before --since 2: no packet can match\n",
    )
    ipx = perfnet("report", MIXED, "--protocol", "ipx")
    assert ipx.returncode == 2 and "error: argument --protocol: unknown protocol 'ipx'" in ipx.stderr
    negative = perfnet("export", MIXED, "--table", "packets", "-o", str(tmp_path / "x.csv"), "--since", "-1")
    assert negative.returncode == 2
    assert "error: argument --since: seconds from the capture's first event (0 or more), not '-1'" in negative.stderr
    empty = perfnet("plot", MIXED, "--dev", "nosuchdev", "-o", str(tmp_path / "x.png"))
    assert (empty.returncode, empty.stderr) == (
        2,
        "perfnet: no packets to plot: none of the 1039 packets matches dev nosuchdev\n",
    )
    for out in (backwards, ipx, negative, empty):
        assert "Traceback" not in out.stderr and "since=" not in out.stderr and "until (" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_plot_and_compare_take_the_filters(tmp_path: Path) -> None:
    png = tmp_path / "mv0.png"
    out = perfnet(
        "plot",
        MIXED,
        "--dev",
        "mv0",
        "--kind",
        "over-time",
        "--hop",
        "mv0@inferred-1 > eth0@inferred-1",
        "-o",
        str(png),
    )
    assert (out.returncode, out.stdout) == (0, f"wrote {png}\n"), out.stderr
    # the hop is not in the filtered packets: refused
    out = perfnet("plot", MIXED, "--dev", "mv0", "--kind", "over-time", "--hop", "pnbrpgt1 > pnvpgt1", "-o", str(png))
    assert out.returncode == 2 and "no hop pnbrpgt1>pnvpgt1" in out.stderr
    veth = TBF["host_veth"]
    base, limited = str(FIXTURES / "tbf-base.txt"), str(FIXTURES / "tbf-limited.txt")
    out = perfnet("compare", base, limited, "--stages", "--dev", veth, "--json")
    assert out.returncode == 0, out.stderr
    stages = json.loads(out.stdout)
    assert len(stages) == 21 and {s["dev"] for s in stages} == {"eth0", "eth1", TBF["bridge"], veth}
    text = perfnet("compare", base, limited, "--stages", "--dev", veth).stdout.splitlines()
    assert text[2] == f"filtered: dev {veth}: A 320 of 320 packets, B 320 of 336"


# --- export --------------------------------------------------------------------------------------


def test_export_filtered_packets_as_csv(tmp_path: Path) -> None:
    target = tmp_path / "packets.csv"
    out = perfnet("export", MIXED, "--table", "packets", "--dev", "mv0", "-o", str(target))
    assert (out.returncode, out.stdout) == (0, f"wrote {target}: 60 rows of packets (csv)\n"), out.stderr
    with target.open(newline="") as file:
        rows = list(csv.DictReader(file))
    expected = read(MIXED).filter(dev="mv0").packets
    assert [int(r["packet_id"]) for r in rows] == expected["packet_id"].tolist()
    assert [int(r["skbaddr"]) for r in rows] == [int(a) for a in expected["skbaddr"]]
    assert {r["netns_path"] for r in rows} == {MACVLAN_PATH}


def test_export_events_as_parquet_and_jsonl(tmp_path: Path) -> None:
    parquet = tmp_path / "events.parquet"
    out = perfnet("export", "--example", "--table", "events", "-o", str(parquet))
    assert out.stdout == f"wrote {parquet}: 482 rows of events (parquet)\n", out.stderr
    table = pq.read_table(parquet)
    assert table.num_rows == 482 and table.column("skbaddr").to_pylist()[0] == 0xFFFF888136614200
    named = tmp_path / "events.txt"  # any name, with --to
    out = perfnet("export", "--example", "--table", "hops", "-o", str(named), "--to", "jsonl")
    assert out.stdout == f"wrote {named}: 104 rows of hops (jsonl)\n", out.stderr
    hops = [json.loads(line) for line in named.read_text().splitlines()]
    # the first packet's hops: plain device names, and the two eth0s told apart by namespace
    assert [
        (h["from_dev"], h["to_dev"], h["from_netns_dev"], h["to_netns_dev"], h["latency_ns"]) for h in hops[:4]
    ] == [
        ("pnbr463d", "pnv463d", "pnbr463d", "pnv463d", 53_000),
        ("pnv463d", "eth0", "pnv463d", "eth0@pnc1-463d", 30_000),
        ("eth0", "eth1", "eth0@pnc1-463d", "eth1@pnc1-463d", 98_000),
        ("eth1", "eth0", "eth1@pnc1-463d", "eth0@pnc2-463d", 30_000),
    ]


def test_export_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    target = tmp_path / "packets.txt"
    out = perfnet("export", "--example", "--table", "packets", "-o", str(target))
    assert (out.returncode, out.stderr) == (
        2,
        f"perfnet: cannot tell which format to write {target} in: name it .csv, .jsonl, .parquet or give --to\n",
    )
    out = perfnet("export", "--example", "--table", "packets", "-o", str(tmp_path), "--to", "csv")
    assert (out.returncode, out.stderr) == (2, f"perfnet: cannot write {tmp_path}: Is a directory\n")
    out = perfnet("export", "--example", "--table", "labels", "-o", str(target))
    assert out.returncode == 2 and "argument --table: invalid choice: 'labels'" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_convert_writes_a_dataset_every_command_reads(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    done = perfnet("convert", "--example", "-o", str(out))
    assert done.returncode == 0, done.stderr
    # metadata.json, a part each of events, messages, errors and drops, a details part per
    # tracepoint (9 of net, 2 of skb, 1 of kmem), and 3 parts each of packets, hops and stages:
    # the packets of 3 pieces (the reorder window gives 2 slices, and the rest after the last
    # restart of each address is the third)
    assert done.stdout == f"wrote {out}: 482 events, 26 packets, 26 files\n"
    # any command takes the dataset as it takes the capture (the dataset keeps the source's name)
    assert perfnet("report", str(out), "--json").stdout == perfnet("report", "--example", "--json").stdout
    again = perfnet("convert", "--example", "-o", str(out))
    assert (again.returncode, again.stderr) == (2, f"perfnet: {out} exists; give --force to replace it\n")
    assert perfnet("convert", "--example", "-o", str(out), "--force").returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = perfnet("convert", "--example", "-o", str(tmp_path / "mine"), "--force")
    assert refused.stderr == f"perfnet: {tmp_path / 'mine'} exists; it is not a perfnet dataset: choose another\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "mine"]


@pytest.mark.parametrize("after", [0.2, 0.5, 0.9])
def test_ctrl_c_while_perfnet_starts_exits_130_quietly(after: float) -> None:
    # `python -m perfnet` starts as the `perfnet` command does: Ctrl-C while pandas and pyarrow
    # are still being imported, or later while it waits for input, is as quiet (standard input
    # stays open, so the command cannot end on its own first)
    proc = subprocess.Popen(
        [sys.executable, "-m", "perfnet", "report", "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        process_group=0,
    )
    time.sleep(after)
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    # 130; or, on a loaded machine, killed by the SIGINT itself (-2, which a shell shows as 130
    # too) before Python had set up its handling of it; in no case a word on either stream
    assert (proc.returncode in (130, -signal.SIGINT), out, err) == (True, "", ""), proc.returncode


def test_files_written_to_standard_output_are_said_on_standard_error() -> None:
    # `-o /dev/stdout > file`: the data alone goes to the file, the line saying so to stderr
    html = subprocess.run(
        [*COMMAND, "report", "--example", "--html", "/dev/stdout"], capture_output=True, text=True, check=True
    )
    assert html.stdout.startswith("<!DOCTYPE html>") and html.stderr == "wrote /dev/stdout\n"
    png = subprocess.run([*COMMAND, "plot", "--example", "-o", "/dev/stdout"], capture_output=True, check=False)
    assert png.returncode == 0, png.stderr
    assert png.stdout.startswith(b"\x89PNG") and png.stderr == b"wrote /dev/stdout\n"
