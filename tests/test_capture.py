"""Live captures (perfnet.live): real perf on a real namespace lab, exact counts, streaming,
raw output round trips, perf record, every error with its hint, Ctrl-C and no leftover process.

The lab (perfnet.lab) has static neighbours and IPv6 off, so its links carry only the workload:
``ping -c 3`` from the root namespace to ctr2 crosses bridge -> host veth -> ctr1 eth0, is routed
out of ctr1 eth1 to ctr2 eth0, and the replies come back the same way.  perf tracing ping itself
sees all of it (the whole path runs in ping's context, in softirqs it raises) and nothing of
other labs or tests running meanwhile, whose devices may also be called eth0 and eth1; the
system-wide captures here only count events on this lab's uniquely named bridge.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import psutil
import pytest
from conftest import run_as_nobody

import perfnet
from perfnet.filters import validate_filter
from perfnet.host.perf import (
    FilterError,
    PerfError,
    PerfNotFoundError,
    UnknownEventError,
    is_perf_data,
    read_perf_data,
)
from perfnet.kallsyms import load_kallsyms
from perfnet.lab import Lab, require_root_and_tools
from perfnet.live import CaptureStats, TracedCommandError, capture, stream

REASON = require_root_and_tools()
needs_lab = pytest.mark.skipif(REASON is not None, reason=REASON or "")
ROOT = Path(__file__).resolve().parent.parent
PINGS = 3
ICMP_LENGTHS = (98, 84)  # an echo frame (14 + 20 + 8 + 56 bytes) on transmit; without Ethernet on receive


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if REASON is not None:
        pytest.skip(REASON)
    with Lab() as lab:
        yield lab


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("capture")


@pytest.fixture(scope="module")
def ping_trace(lab: Lab, raw_dir: Path) -> perfnet.Trace:
    """One capture of 3 pings to ctr2, kept raw (shared by several tests)."""
    return capture(
        lab.ping_argv(lab.ctr2_addr, PINGS), events=("net:*", "skb:kfree_skb"), raw_output=raw_dir / "ping.txt"
    )


def expected_lab_events(lab: Lab, n: int) -> Counter[tuple[str, str]]:
    """(event, device) counts of n echo requests root -> ctr2 and their replies, ICMP-sized events only.

    ``eth0`` is both ctr1's (requests in, replies out) and ctr2's (requests in, replies out).
    """
    counts: Counter[tuple[str, str]] = Counter()
    for event in ("net:net_dev_queue", "net:net_dev_start_xmit", "net:net_dev_xmit"):
        for dev, k in ((lab.bridge, 1), (lab.host_veth, 1), ("eth1", 1), ("eth0", 2)):
            counts[(event, dev)] = k * n
    for dev, k in ((lab.bridge, 1), (lab.host_veth, 1), ("eth1", 1), ("eth0", 2)):
        counts[("net:netif_receive_skb", dev)] = k * n
    for dev, k in ((lab.host_veth, 1), ("eth1", 1), ("eth0", 2)):  # veth delivers through netif_rx
        for event in ("net:netif_rx_entry", "net:netif_rx"):
            counts[(event, dev)] = k * n
    counts[("net:netif_receive_skb_entry", lab.bridge)] = n  # the bridge passes frames up itself
    return counts


def lab_events(trace: perfnet.Trace, lab: Lab) -> Counter[tuple[str, str]]:
    ev = trace.events
    mask = ev["dev"].isin([lab.bridge, lab.host_veth, "eth0", "eth1"]) & ev["len"].isin(ICMP_LENGTHS)
    return Counter(zip(ev.loc[mask, "event"], ev.loc[mask, "dev"], strict=True))


def echo_requests_on_bridge(trace: perfnet.Trace, bridge: str) -> int:
    ev = trace.events
    return int(((ev["event"] == "net:net_dev_queue") & (ev["dev"] == bridge) & (ev["len"] == 98)).sum())


def gone(procs: list[psutil.Process]) -> list[str]:
    """The processes of ``procs`` still alive (zombies are dead: only their parent's reaping is left)."""
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{proc.pid} {proc.name()}")
        except psutil.NoSuchProcess:
            continue
    return alive


def descendants(pid: int | None = None) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def names(procs: list[psutil.Process]) -> set[str]:
    """The names of ``procs`` still running (short-lived helpers such as ``ip`` may be gone)."""
    found = set()
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.add(proc.name())
    return found


def wait_for_descendant(name: str, pid: int | None = None, timeout: float = 30) -> list[psutil.Process]:
    """The descendants of ``pid`` (default: this process) once one of them is called ``name``."""
    deadline = time.monotonic() + timeout
    while True:
        procs = descendants(pid)
        if name in names(procs):
            return procs
        assert time.monotonic() < deadline, f"no {name} process started"
        time.sleep(0.02)


# --- a capture through the lab: exact counts and loss accounting ------------------------------


def printed_lab_events(raw: Path, lab: Lab) -> Counter[tuple[str, str]]:
    """(event, device) counts of the ICMP-sized lab events in perf's text, read with a regex of
    their own, not with perfnet."""
    line = re.compile(r' (net:\w+)\((?=.*\blen: (\d+)\b)(?=.*\bname: "([^"]+)")')
    devices = {lab.bridge, lab.host_veth, "eth0", "eth1"}
    found = (line.search(text) for text in raw.read_text().splitlines())
    return Counter((m[1], m[3]) for m in found if m is not None and m[3] in devices and int(m[2]) in ICMP_LENGTHS)


@needs_lab
def test_ping_through_the_lab_gives_exact_events(ping_trace: perfnet.Trace, lab: Lab, raw_dir: Path) -> None:
    assert ping_trace.partial is None
    assert ping_trace.format == "trace"
    assert ping_trace.errors.empty, ping_trace.errors.head().to_dict("records")
    assert ping_trace.lost == 0
    assert echo_requests_on_bridge(ping_trace, lab.bridge) == PINGS
    # perfnet reads exactly what perf printed ...
    printed = printed_lab_events(raw_dir / "ping.txt", lab)
    assert lab_events(ping_trace, lab) == printed
    # ... and perf printed the kernel's events, but for perf trace's own silent misses (about
    # one event in 8,000 on this machine, no LOST line: one missing net_dev_queue was seen in
    # one of 9 CI runs on 2026-11-30): never an extra event, at most one missing
    expected = expected_lab_events(lab, PINGS)
    assert printed - expected == Counter()
    assert sum((expected - printed).values()) <= 1, expected - printed


@needs_lab
def test_interface_counters_match_the_events_on_every_lab_device(ping_trace: perfnet.Trace, lab: Lab) -> None:
    stats = ping_trace.capture_stats
    assert isinstance(stats, CaptureStats)
    counters = stats.counters
    assert list(counters.columns) == [
        "netns",
        "dev",
        "tx_packets",
        "rx_packets",
        "tx_events",
        "rx_events",
        "namesakes",
        "complete",
    ]
    rows = {
        (None if pd.isna(ns) else ns, dev): row
        for ns, dev, row in zip(counters.netns, counters.dev, counters.itertuples(), strict=True)
    }
    lab_devices = [
        (None, lab.bridge),
        (None, lab.host_veth),
        (lab.ctr1, "eth0"),
        (lab.ctr1, "eth1"),
        (lab.ctr2, "eth0"),
    ]
    for key in lab_devices:
        row = rows[key]
        assert (row.tx_packets, row.rx_packets) == (PINGS, PINGS), key
    for key in [(None, lab.bridge), (None, lab.host_veth)]:
        row = rows[key]
        assert (row.tx_events, row.rx_events, row.namesakes, row.complete) == (PINGS, PINGS, 1, True), key
    # eth0 is ctr1's and ctr2's (and maybe the host's and other labs'), eth1 ctr1's (and other
    # labs'): events are compared with the deltas summed over every device of the name, which
    # equal this lab's own while the others stay quiet.
    for dev, lab_share in (("eth0", 2), ("eth1", 1)):
        same_name = counters[counters.dev == dev]
        assert set(same_name.tx_events) == set(same_name.rx_events) == {lab_share * PINGS}
        if same_name[["tx_packets", "rx_packets"]].to_numpy().sum() == 2 * lab_share * PINGS:
            assert same_name.complete.all(), dev
    for ns in (lab.ctr1, lab.ctr2):
        assert (rows[(ns, "lo")].tx_packets, rows[(ns, "lo")].rx_packets) == (0, 0)


@needs_lab
def test_capture_stats_describe_perf_and_the_run(ping_trace: perfnet.Trace, lab: Lab) -> None:
    stats = ping_trace.capture_stats
    assert stats.cpu_s > 0 and stats.cpu_s == stats.cpu_user_s + stats.cpu_system_s
    assert stats.peak_rss_bytes > 1 << 20
    assert 0.4 < stats.wall_s < 30  # 3 pings 0.2 s apart
    assert stats.lost == 0
    assert stats.returncode == 0
    assert stats.command == tuple(lab.ping_argv(lab.ctr2_addr, PINGS))
    perf_version = subprocess.run(["perf", "--version"], capture_output=True, text=True).stdout
    assert stats.perf_version and stats.perf_version in perf_version
    assert stats.kernel == os.uname().release
    argv = list(stats.argv)
    assert Path(argv[0]).name == "perf" and argv[1:3] == ["trace", "--no-syscalls"]
    assert argv[argv.index("--") + 1 :] == list(stats.command)
    assert argv[3:8] == ["-e", "net:*", "-e", "skb:kfree_skb", "-o"]  # -o: the pseudo-terminal perf writes to


# --- raw output --------------------------------------------------------------------------------


@needs_lab
def test_raw_output_reads_back_to_the_same_events(ping_trace: perfnet.Trace, raw_dir: Path) -> None:
    raw = raw_dir / "ping.txt"
    text = raw.read_bytes()
    assert b"\x1b[" not in text and b"\r" not in text
    assert text.count(b"\n") == len(ping_trace.events) + len(ping_trace.messages) + len(ping_trace.errors)
    again = perfnet.read(raw)
    pd.testing.assert_frame_equal(again.events, ping_trace.events)
    assert again.event_counts() == ping_trace.event_counts()
    assert (Path(f"{raw}.formats") / "skb" / "kfree_skb" / "format").read_text().startswith("name: kfree_skb")
    assert (Path(f"{raw}.formats") / "net" / "net_dev_queue" / "format").is_file()


@needs_lab
def test_saved_kernel_symbols_name_kernel_addresses(ping_trace: perfnet.Trace, raw_dir: Path) -> None:
    saved = Path(f"{raw_dir / 'ping.txt'}.kallsyms.gz")
    with gzip.open(saved, "rt") as fh:
        first = fh.readline().split()
    assert first[1] in ("t", "T")
    symbols = load_kallsyms(saved)
    addresses, names = symbols  # unpacks as a pair
    assert len(addresses) == len(names) > 1000
    assert (addresses[1:] >= addresses[:-1]).all()
    start = int(addresses[names.index("netif_receive_skb")])
    aliases = {name for addr, name in zip(addresses, names, strict=True) if addr == start}
    assert symbols.symbolize(start) in {f"{name}+0x0" for name in aliases}
    assert symbols.symbolize(start + 0x2A) in {f"{name}+0x2a" for name in aliases}
    assert symbols.symbolize(int(addresses[0]) - 1) is None


@needs_lab
def test_topology_is_saved_beside_the_raw_output(ping_trace: perfnet.Trace, raw_dir: Path, lab: Lab) -> None:
    topology = pytest.importorskip("perfnet.topology")
    assert isinstance(ping_trace.topology, topology.Topology)
    saved = topology.Topology.load(f"{raw_dir / 'ping.txt'}.topology.json")
    assert lab.bridge in set(saved.interfaces["name"])


# --- streaming ---------------------------------------------------------------------------------


@needs_lab
def test_stream_hands_out_records_while_the_command_runs(lab: Lab) -> None:
    argv = lab.ping_argv(lab.ctr2_addr, 5, interval=0.5)
    started = time.monotonic()
    first_at = None
    pings_alive_then: list[psutil.Process] = []
    records: list[perfnet.Record] = []
    with stream(argv) as live:
        for record in live:
            if first_at is None:
                first_at = time.monotonic()
                pings_alive_then = [p for p in descendants() if p.name() == "ping"]
            records.append(record)
        ended = time.monotonic()
        assert live.partial is None and live.returncode == 0
        assert live.capture_stats is not None and live.capture_stats.wall_s > 2
    assert first_at is not None
    assert pings_alive_then, "the first record came after ping had exited"
    assert ended - first_at > 1.5  # ping sends for 2 s: the first record came 4 intervals early
    assert first_at - started < 1.5
    assert all(isinstance(r, perfnet.Record) for r in records)
    echo = [r for r in records if r.event == "net:net_dev_queue" and r.dev == lab.bridge and r.len == 98]
    assert len(echo) == 5


@needs_lab
def test_leaving_a_stream_early_stops_perf_and_the_command() -> None:
    with stream(["sleep", "30"], system_wide=True) as live:
        procs = wait_for_descendant("sleep")
        assert "perf" in names(procs)
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert live.partial == "stopped by the caller"
    assert gone(procs) == []


# --- perf record -------------------------------------------------------------------------------


@needs_lab
def test_record_mode_gives_the_same_lab_events(lab: Lab) -> None:
    trace = capture(lab.ping_argv(lab.ctr2_addr, PINGS), mode="record")
    assert trace.format == "script"
    assert trace.partial is None and trace.errors.empty
    assert lab_events(trace, lab) == expected_lab_events(lab, PINGS)
    assert trace.capture_stats.argv[1] == "record"
    counters = trace.capture_stats.counters
    assert counters[counters.dev == lab.bridge].complete.all()


@needs_lab
@pytest.mark.parametrize("events", [("net:*", "skb:*"), None], ids=["net+skb", "default"])
def test_a_tcp_download_gives_one_packet_per_frame_the_counters_saw(lab: Lab, events: tuple[str, ...] | None) -> None:
    """200 KB over HTTP from ctr2, captured system-wide: TCP frees nothing skb:* shows and its
    addresses come back within microseconds, yet every frame is one packet with the exact path,
    its namespaces from the live snapshot (perf record: perf trace misses events).  perfnet's
    default events add the skb free marker, which ends most of those packets."""
    with lab.http_server(lab.ctr2) as server:
        Path(server.directory, "big.bin").write_bytes(os.urandom(200_000))
        before = lab.link_counters()
        get = f"import urllib.request; urllib.request.urlopen('http://{server.addr}:{server.port}/big.bin').read()"
        trace = capture([sys.executable, "-c", get], system_wide=True, mode="record", events=events)
        after = lab.link_counters()
    tx, rx = (after[None, lab.host_veth][i] - before[None, lab.host_veth][i] for i in (0, 1))
    c1, c2 = lab.ctr1, lab.ctr2
    paths = Counter(trace.packets["netns_path"].astype(str))
    forward = f"{lab.bridge}>{lab.host_veth}>eth0@{c1}>eth1@{c1}>eth0@{c2}"
    backward = f"eth0@{c2}>eth1@{c1}>eth0@{c1}>{lab.host_veth}>{lab.bridge}"
    assert tx >= 5 and rx >= 4  # the request and ACKs one way, the data (GSO: up to 64 KB a frame) the other
    assert (paths[forward], paths[backward]) == (tx, rx)
    assert sum(n for path, n in paths.items() if lab.host_veth in path) == tx + rx
    assert not trace.topology.inferred
    if events is None:  # the marker was traced, read at the skb's address, and ends packets
        lab_packets = trace.packets[trace.packets["path"].astype(str).str.contains(lab.host_veth)]
        frees = trace.events[trace.events["event"] == "kmem:kmem_cache_free"]
        assert len(frees) > 0 and frees["skbaddr"].notna().all()
        assert (lab_packets["ended_by"] == "free").any()  # how many varies run to run (35-50% seen)


@needs_lab
def test_perf_data_files_are_read_through_perf_script(lab: Lab, tmp_path: Path) -> None:
    data = tmp_path / "perf.data"
    argv = ["perf", "record", "-q", "-a", "-e", "net:net_dev_queue", "-o", str(data), "--"]
    subprocess.run([*argv, *lab.ping_argv(lab.ctr2_addr, PINGS)], check=True, capture_output=True)
    assert is_perf_data(data)
    assert not is_perf_data(ROOT / "tests" / "fixtures" / "lab-script.txt")
    trace = perfnet.read(read_perf_data(data))
    assert trace.format == "script"
    assert echo_requests_on_bridge(trace, lab.bridge) == PINGS
    direct = perfnet.read(data)  # a recording is recognised by its magic bytes
    assert direct.format == "script" and direct.event_counts() == trace.event_counts()
    assert direct.events["skbaddr"].tolist() == trace.events["skbaddr"].tolist()
    piped = subprocess.run(  # also on standard input, spooled for perf script
        [sys.executable, "-m", "perfnet", "parse", "-", "--json"], stdin=data.open("rb"), capture_output=True, text=True
    )
    assert piped.returncode == 0 and json.loads(piped.stdout)["events"] == len(trace.events)


# --- duration, filters, callchains -------------------------------------------------------------


@needs_lab
def test_duration_ends_a_system_wide_capture_complete() -> None:
    before = time.time()
    trace = capture(system_wide=True, duration=1.0)
    assert trace.partial is None
    assert 1.0 <= trace.capture_stats.wall_s < 5
    assert before <= trace.capture_stats.started_at <= before + 5
    assert trace.capture_stats.boot_time == psutil.boot_time()
    assert trace.capture_stats.returncode is None


@needs_lab
def test_duration_cuts_a_longer_command_short() -> None:
    started = time.monotonic()
    trace = capture(["sleep", "30"], duration=1.0)
    assert time.monotonic() - started < 6
    assert trace.partial == "duration reached"
    assert trace.capture_stats.returncode == -signal.SIGINT


@needs_lab
def test_a_filter_reaches_the_kernel(lab: Lab) -> None:
    trace = capture(
        lab.ping_argv(lab.ctr2_addr, PINGS),
        events=("net:net_dev_queue",),
        system_wide=True,
        filter=f'len == 98 && name == "{lab.bridge}"',
    )
    assert trace.event_counts() == {"net:net_dev_queue": PINGS}
    assert set(trace.events["dev"]) == {lab.bridge}


@needs_lab
def test_callchains_come_with_their_events(lab: Lab) -> None:
    trace = capture(lab.ping_argv(lab.ctr2_addr, 1), events=("net:net_dev_queue",), callgraph="fp")
    chains = trace.events["callchain"]
    assert len(chains) >= 3 and all(len(chain) > 3 for chain in chains)
    assert any("dev_queue_xmit" in frame for chain in chains for frame in chain)


# --- errors ------------------------------------------------------------------------------------


@needs_lab
def test_unknown_tracepoint_names_the_closest_real_one() -> None:
    with pytest.raises(UnknownEventError) as info:
        capture(["true"], events=("net:net_dev_queuee",))
    assert info.value.event == "net:net_dev_queuee"
    assert info.value.suggestions[0] == "net:net_dev_queue"
    assert "'net:net_dev_queuee'" in str(info.value)
    assert "hint: did you mean net:net_dev_queue" in str(info.value)


@needs_lab
def test_unknown_subsystem_pattern_suggests_a_real_subsystem() -> None:
    with pytest.raises(UnknownEventError) as info:
        capture(["true"], events=("netx:*",))
    assert info.value.suggestions[0] == "net:*"


def test_perf_missing_from_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PerfNotFoundError, match="apt install linux-perf") as info:
        capture(["true"])
    assert "dnf install perf" in str(info.value) and "linux-tools-$(uname -r)" in str(info.value)
    with pytest.raises(PerfNotFoundError):
        list(read_perf_data(tmp_path / "perf.data"))


def _nobody_can_trace() -> bool:
    """Whether uid 65534 may read tracepoints here: perf_event_paranoid -1 and tracefs open to all."""
    paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
    others = stat.S_IROTH | stat.S_IXOTH
    return paranoid <= -1 and os.stat("/sys/kernel/tracing").st_mode & others == others


def _capture_as_user() -> str:
    try:
        capture(["true"], events=("net:net_dev_queue",))
    except PerfError as exc:
        return f"{type(exc).__name__}\n{exc}"
    return "captured"


@needs_lab
def test_an_unprivileged_user_gets_the_permission_error_first() -> None:
    # Here perf_event_paranoid is 2 and /sys/kernel/tracing is root-only (0700): perf refuses
    # uid 65534 ("No permissions to read .../events/net/net_dev_queue").  Were both open, the
    # user could trace and there would be no error to see.
    if _nobody_can_trace():
        pytest.skip("unprivileged users may trace here (perf_event_paranoid -1, tracefs open to all)")
    status, output = run_as_nobody(_capture_as_user)
    assert status == 0, output
    kind, _, message = output.partition("\n")
    assert kind == "PerfPermissionError", output
    assert "No permission" in message or "Permission denied" in message
    assert "perf_event_paranoid" in message and "CAP_PERFMON" in message and "remount,mode=755" in message


@needs_lab
def test_a_failing_command_raises_with_the_trace_so_far(lab: Lab) -> None:
    script = "import subprocess, sys; subprocess.run(sys.argv[1:]); sys.exit(3)"
    argv = [sys.executable, "-c", script, *lab.ping_argv(lab.ctr2_addr, PINGS)]
    with pytest.raises(TracedCommandError) as info:
        capture(argv, system_wide=True)
    assert info.value.returncode == 3
    trace = info.value.trace
    assert trace is not None and trace.partial == "command failed with exit code 3"
    assert echo_requests_on_bridge(trace, lab.bridge) == PINGS
    assert "hint:" in str(info.value)


@needs_lab
def test_false_raises_traced_command_error() -> None:
    with pytest.raises(TracedCommandError) as info:
        capture(["false"])
    assert info.value.returncode == 1
    assert info.value.trace is not None and info.value.trace.partial == "command failed with exit code 1"


def test_a_missing_command_is_refused_before_perf_runs() -> None:
    before = {p.pid for p in descendants()}
    for argv in (["/nonexistent/perfnet-cmd"], ["perfnet-no-such-command"]):
        with pytest.raises(TracedCommandError, match="command not found") as info:
            capture(argv)
        assert info.value.returncode == 127 and info.value.trace is None
    assert {p.pid for p in descendants()} == before


def test_a_command_string_is_refused() -> None:
    with pytest.raises(TypeError, match="argv list"):
        capture("ping -c 1 127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(perfnet.PerfnetError, match="nothing to trace"):
        capture()


# --- Ctrl-C ------------------------------------------------------------------------------------

CTRL_C_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from perfnet.live import capture
    trace = capture(["sleep", "30"], system_wide=True, duration=None)
    ev = trace.events
    requests = ((ev["event"] == "net:net_dev_queue") & (ev["dev"] == sys.argv[1]) & (ev["len"] == 98)).sum()
    print(json.dumps({"partial": trace.partial, "returncode": trace.capture_stats.returncode,
                      "requests": int(requests)}))
    """
)


@needs_lab
def test_ctrl_c_returns_the_trace_so_far_and_leaves_no_process(lab: Lab) -> None:
    # Its own process group, like a shell job: the SIGINT goes to the whole group as a terminal's
    # Ctrl-C would, and must reach only perfnet (perf runs in a group of its own).
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_SCRIPT, lab.bridge], stdout=subprocess.PIPE, text=True, process_group=0
    )
    try:
        procs = wait_for_descendant("sleep", proc.pid)  # the command runs: the capture is live
        running = names(procs)
        assert lab.ping(lab.ctr2_addr, PINGS).returncode == 0
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    result = json.loads(out)
    assert result == {"partial": "interrupted (Ctrl-C)", "returncode": -signal.SIGINT, "requests": PINGS}
    assert {"perf", "sleep"} <= running
    assert gone(procs) == []


# --- pure helpers ------------------------------------------------------------------------------


def test_one_capture_config_serves_capture_stream_and_the_cli() -> None:
    config = perfnet.configure(["ping", "-c", "1", "127.0.0.1"], events=["net:*"], duration=2.5, mode="record")
    assert config.command == ("ping", "-c", "1", "127.0.0.1") and config.events == ("net:*",)
    assert (config.duration, config.mode, config.system_wide, config.pid, config.markers) == (
        2.5,
        "record",
        False,
        None,
        (),
    )
    assert perfnet.configure(config) is config
    assert config.perf_args("perf", "out.data") == ["perf", "record", "-e", "net:*", "-o", "out.data"]
    with pytest.raises(perfnet.UsageError, match=r"not both: \['duration'\]"):
        perfnet.capture(config, duration=1)
    with pytest.raises(perfnet.UsageError, match=r"not both"), perfnet.stream(config, pid=1):
        pass
    with pytest.raises(TypeError, match=r"unknown capture options: \['durations'\]"):
        perfnet.configure(["true"], durations=1)  # type: ignore[call-arg]
    with pytest.raises(perfnet.UsageError, match="duration must be positive"):
        perfnet.configure(["true"], duration=0)


def test_filters_are_checked_against_the_event_fields() -> None:
    fields = {"skbaddr": False, "len": False, "name": True}
    for good in ('len > 100 && name == "eth0"', "(len >= 64 || len & 0x1) && !(common_pid == 1)", 'name ~ "pn*"'):
        validate_filter(good, "net:net_dev_queue", fields, {"dev": "name"})
    cases = {
        "lenn > 1": "did you mean 'len'",
        'dev == "eth0"': "in filters it is called 'name'",
        "len >> 1": "expected a value",
        'len == "x"': "len is a number",
        "name > 3": "name is a string",
        "len ~ 3": "glob match",
        "(len == 1": "expected ')'",
        "len == 1 len == 2": "expected && or ||",
        "": "empty filter",
    }
    for bad, message in cases.items():
        with pytest.raises(FilterError, match=re.escape(message)):
            validate_filter(bad, "net:net_dev_queue", fields, {"dev": "name"})


def test_a_filter_is_checked_for_every_event_a_pattern_matches() -> None:
    # net:netif_rx_exit and others have no len: the kernel would refuse the filter on them.
    with pytest.raises(FilterError, match="no field 'len'"):
        capture(["true"], events=("net:*",), filter="len > 0")


def test_kallsyms_files_load_and_symbolize(tmp_path: Path) -> None:
    path = tmp_path / "kallsyms.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("ffffffff81000200 T second\nffffffff81000100 t first\nffffffff81000180 D data\n")
        fh.write("ffffffffc0001000 t mod_func\t[mod]\n")
    symbols = load_kallsyms(path)
    assert symbols.names == ("first", "second", "mod_func")
    assert symbols.symbolize(0xFFFFFFFF81000100) == "first+0x0"
    assert symbols.symbolize(0xFFFFFFFF8100026B) == "second+0x6b"
    assert symbols.symbolize(0xFFFFFFFFC0001010) == "mod_func+0x10"
    assert symbols.symbolize(0xFFFFFFFF810000FF) is None
    with pytest.raises(perfnet.PerfnetError):
        load_kallsyms(tmp_path / "missing.gz")


# --- packets from a live capture -------------------------------------------------------------------


@needs_lab
def test_live_capture_packets_paths_and_netns_paths(ping_trace: perfnet.Trace, lab: Lab) -> None:
    """ping -c N through the lab: exactly N requests and N replies, each with its exact path."""
    packets = ping_trace.packets
    icmp = packets[packets["len"] == 98]
    forward = f"{lab.bridge}>{lab.host_veth}>eth0>eth1>eth0"
    backward = f"eth0>eth1>eth0>{lab.host_veth}>{lab.bridge}"
    assert icmp["path"].astype(str).value_counts().to_dict() == {forward: PINGS, backward: PINGS}
    assert set(icmp["netns_path"].astype(str)) == {
        f"{lab.bridge}>{lab.host_veth}>eth0@{lab.ctr1}>eth1@{lab.ctr1}>eth0@{lab.ctr2}",
        f"eth0@{lab.ctr2}>eth1@{lab.ctr1}>eth0@{lab.ctr1}>{lab.host_veth}>{lab.bridge}",
    }
    replies = icmp[icmp["path"].astype(str) == backward]
    assert replies["end"].astype(str).tolist() == ["dropped:NO_SOCKET"] * PINGS


@needs_lab
def test_live_capture_names_drop_reasons_and_locations(ping_trace: perfnet.Trace, raw_dir: Path) -> None:
    """Enrichment on the capturing host: reasons from tracefs, locations from /proc/kallsyms;
    the raw output read back elsewhere gets the same names from the files saved beside it."""
    for trace in (ping_trace, perfnet.read(raw_dir / "ping.txt")):
        drops = trace.df("skb:kfree_skb")
        # each echo reply's original, dropped by ping_rcv once the raw socket took its clone (the
        # softirq may run in another task's context, so match the drop, not the comm)
        ours = drops[drops["location"].str.startswith("ping_rcv+0x")]
        assert ours["reason"].tolist() == ["NO_SOCKET"] * PINGS
