#!/usr/bin/env python3
"""Capture real ``net:*``/``skb:*`` tracepoint fixtures from a throwaway lab.

Builds a :class:`perfnet.lab.Lab` (bridge "docker0" + veth + two namespaces
chained through a router namespace), starts several real tracers system-wide
*concurrently* (perf trace in four flavours, two perf records, two raw ftrace
instances), waits until every tracer is actually recording, runs ONE workload
(``ping`` root -> ctr2 through the router chain plus a few HTTP GETs from the
root netns to a server in ctr2), stops the tracers and writes:

* ``lab-trace.txt``                  perf trace, default format
* ``lab-trace-libtraceevent.txt``    perf trace --libtraceevent_print
* ``lab-trace-T.txt``                perf trace -T (absolute timestamps)
* ``lab-trace-callgraph.txt``        perf trace --call-graph=fp (2 events)
* ``lab-script.txt``/``lab-script-ns.txt``  perf record + perf script [--ns]
* ``lab-script-g.txt``               perf record -g (2 events) + perf script
* ``lab-ftrace.txt``/``lab-ftrace-tgid.txt``  tracefs instance ``trace`` files
* ``lab-trace-old-converted.txt``    CONVERTED (not captured): the libtraceevent
  capture rewritten into the old perf trace format ``sub:ev:BODY``
* ``lab.formats/<subsys>/<event>/format``  tracefs format files
* ``ping-bridge.txt``                a separate small non-system-wide capture
  ``perf trace --no-syscalls -e net:* ping -c 3 <ctr1>`` (bridge + veth only)
* ``lab.json`` (machine-readable manifest) and ``README.md``

Outputs are kept exactly as the tools wrote them (other host traffic included).

``--big SECONDS`` instead floods the lab (``ping -f`` plus HTTP GETs) for that
long under a system-wide perf trace and perf record, writing ``big-trace.txt``,
``big.data``, ``big-script.txt`` and ``big.json`` into ``--outdir`` (default
``/tmp/perfnet-big-<tag>``); meant for benchmarks, not to be committed.

Must run as root.  Traffic only ever goes to addresses inside the lab.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from perfnet.lab import Lab, cleanup_stale, require_root_and_tools  # noqa: E402

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ["-e", "net:*", "-e", "skb:consume_skb", "-e", "skb:kfree_skb"]
G_EVENTS = ["-e", "net:net_dev_queue", "-e", "net:netif_receive_skb"]
FTRACE_EVENTS = ["net", "skb/consume_skb", "skb/kfree_skb"]
RC_NOTE = "tracers are stopped with SIGINT; perf record re-raises it, so -2 is its normal exit"
MARGIN = 1.0  # seconds between "all tracers ready" and the workload, and after it


def log(msg: str) -> None:
    print(f"[capture] {msg}", file=sys.stderr, flush=True)


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt("SIGTERM")


def count_events(spec: Sequence[str]) -> int:
    """How many tracepoints an ``-e`` list expands to (for readiness checks)."""
    n = 0
    for ev in spec:
        if ev == "-e":
            continue
        sub, _, name = ev.partition(":")
        if name == "*":
            n += sum(1 for p in (TRACEFS / "events" / sub).iterdir() if p.is_dir())
        else:
            n += 1
    return n


def perf_fds(pid: int) -> int:
    n = 0
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]":
                    n += 1
    return n


# ----------------------------------------------------------------------------
# tracers


@dataclass
class PerfTracer:
    """One perf process running system-wide until stopped with SIGINT."""

    name: str
    argv: list[str]
    workdir: Path
    nevents: int
    control: bool = False  # perf record: start disabled, enable via --control fifo
    proc: subprocess.Popen[bytes] | None = None
    run_argv: list[str] = field(default_factory=list)  # argv as actually executed
    ready_how: str = ""
    started_at: float = 0.0
    _ctl: int = -1
    _ack: int = -1
    _err: Any = None

    @property
    def display_argv(self) -> list[str]:
        return self.argv

    def start(self) -> None:
        argv = list(self.argv)
        if self.control:
            ctl, ack = self.workdir / f"{self.name}.ctl", self.workdir / f"{self.name}.ack"
            for fifo in (ctl, ack):
                with contextlib.suppress(FileNotFoundError):
                    fifo.unlink()
                os.mkfifo(fifo)
            # reader end of ack first, so perf's blocking O_WRONLY open succeeds
            self._ack = os.open(ack, os.O_RDONLY | os.O_NONBLOCK)
            argv[2:2] = ["-D", "-1", "--control", f"fifo:{ctl.name},{ack.name}"]
        self.run_argv = argv
        self._err = open(self.workdir / f"{self.name}.stderr", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=self._err,
            stderr=self._err,
            start_new_session=True,  # our Ctrl-C must not hit perf before we SIGINT it
        )
        self.started_at = time.time()
        if self.control:
            ctl = self.workdir / f"{self.name}.ctl"
            # O_RDWR never blocks on a fifo; perf reads "enable" whenever it opens it
            self._ctl = os.open(ctl, os.O_RDWR)

    def wait_ready(self, timeout: float = 30.0) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        ncpu = os.cpu_count() or 1
        want = self.nevents * ncpu
        last, stable_since = -1, time.monotonic()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name}: perf exited early:\n{self.stderr_text()}")
            n = perf_fds(self.proc.pid)
            if n != last:
                last, stable_since = n, time.monotonic()
            if n >= want and time.monotonic() - stable_since > 0.5:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: only {n}/{want} perf events open")
            time.sleep(0.05)
        if not self.control:
            self.ready_how = f"{n} perf_event fds open and stable (>= {want})"
            return
        os.write(self._ctl, b"enable\n")
        buf = b""
        while b"ack" not in buf:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name}: no ack for 'enable'")
            r, _, _ = select.select([self._ack], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self._ack, 64)
                except BlockingIOError:
                    chunk = b""
                if not chunk:
                    time.sleep(0.05)  # writer not connected yet (EOF)
                buf += chunk
        self.ready_how = f"{n} perf_event fds open; 'enable' acked on --control fifo"

    def stop(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log(f"{self.name}: perf did not exit after SIGINT, killing pid {self.proc.pid}")
                self.proc.kill()
                self.proc.wait(10)
        for fd in (self._ctl, self._ack):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._ctl = self._ack = -1
        if self._err is not None:
            self._err.close()
            self._err = None
        return self.proc.returncode

    def stderr_text(self) -> str:
        with contextlib.suppress(OSError):
            return (self.workdir / f"{self.name}.stderr").read_text(errors="replace")
        return ""


@dataclass
class FtraceInstance:
    """A tracefs instance with real (unhashed) pointers and the net/skb events."""

    name: str
    record_tgid: bool
    writes: list[list[str]] = field(default_factory=list)  # [tracefs file, value] in order

    @property
    def path(self) -> Path:
        return TRACEFS / "instances" / self.name

    def _w(self, rel: str, value: str) -> None:
        (self.path / rel).write_text(value)
        self.writes.append([rel, value])

    def start(self) -> None:
        self.path.mkdir()
        self._w("tracing_on", "0")
        self._w("buffer_size_kb", "4096")
        self._w("options/hash-ptr", "0")
        self._w("options/record-tgid", "1" if self.record_tgid else "0")
        for ev in FTRACE_EVENTS:
            self._w(f"events/{ev}/enable", "1")
        self._w("trace", "")  # clear
        self._w("tracing_on", "1")  # synchronous: recording once this returns

    def trace_clock(self) -> str:
        m = re.search(r"\[(\w+)\]", (self.path / "trace_clock").read_text())
        return m.group(1) if m else "?"

    def stop(self) -> None:
        if self.path.is_dir():
            (self.path / "tracing_on").write_text("0")

    def save(self, dest: Path) -> None:
        shutil.copyfile(self.path / "trace", dest)

    def remove(self) -> None:
        if not self.path.is_dir():
            return
        with contextlib.suppress(OSError):
            (self.path / "tracing_on").write_text("0")
        with contextlib.suppress(OSError):
            (self.path / "events" / "enable").write_text("0")
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                time.sleep(0.1)
        log(f"could not remove tracefs instance {self.path}")


@contextlib.contextmanager
def tracefs_mounted() -> Iterator[None]:
    mounted_here = False
    if not (TRACEFS / "instances").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
        mounted_here = True
    try:
        yield
    finally:
        if mounted_here:
            subprocess.run(["umount", str(TRACEFS)], check=False)


# ----------------------------------------------------------------------------
# helpers


def tool_facts() -> dict[str, Any]:
    perf = subprocess.run(["perf", "--version"], capture_output=True, text=True, check=True)
    return {
        "perf_version": perf.stdout.strip(),
        "kernel": os.uname().release,
        "machine": os.uname().machine,
        "ncpu": os.cpu_count() or 0,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def counters_json(raw: dict[tuple[str | None, str], tuple[int, int]]) -> dict[str, Any]:
    return {
        f"{ns or 'root'}/{ifn}": {"tx_packets": tx, "rx_packets": rx}
        for (ns, ifn), (tx, rx) in sorted(raw.items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
    }


def counter_deltas(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: {f: after[k][f] - before[k][f] for f in ("tx_packets", "rx_packets")} for k in after if k in before}


def file_facts(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "bytes": len(data),
        "lines": data.count(b"\n"),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def run_checked(argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def perf_script(data: Path, out: Path, extra: Sequence[str] = ()) -> list[str]:
    argv = ["perf", "script", "-i", data.name, *extra]
    with open(out, "wb") as fh:
        proc = subprocess.run(argv, cwd=data.parent, stdout=fh, stderr=subprocess.PIPE, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{proc.stderr.decode(errors='replace')}")
    return argv


OLD_RE = re.compile(r"^(?P<head>\s*\S+ \S+ )(?P<ev>[A-Za-z0-9_]+:[A-Za-z0-9_]+)\((?P<body>.*)\)\s*$")


def convert_to_old_format(src: Path, dest: Path) -> dict[str, int]:
    """``   T comm/tid sub:ev(BODY)`` -> ``   T comm/tid sub:ev:BODY``; others verbatim."""
    converted = unchanged = 0
    out = []
    for line in src.read_text(errors="replace").splitlines(keepends=True):
        m = OLD_RE.match(line.rstrip("\n"))
        if m:
            out.append(f"{m['head']}{m['ev']}:{m['body']}\n")
            converted += 1
        else:
            out.append(line)
            unchanged += 1
    dest.write_text("".join(out))
    return {"converted_lines": converted, "unchanged_lines": unchanged}


LEN98 = re.compile(r"\blen(?:=|: )98\b")  # ICMP echo: 14 eth + 20 ip + 8 icmp + 56 payload
TS_SCRIPT = re.compile(r"\s(\d+\.\d{6,9}):\s")  # perf script / ftrace timestamp column


def echo_request_lines(path: Path, bridge: str) -> list[str]:
    """``net_dev_queue`` lines of 98-byte frames on the lab bridge (= pings sent by root)."""
    text = path.read_text(errors="replace")
    return [ln for ln in text.splitlines() if "net_dev_queue" in ln and bridge in ln and LEN98.search(ln)]


def _ts(line: str, ms_first_column: bool = False) -> float:
    if ms_first_column:
        return float(line.split()[0]) / 1000.0
    m = TS_SCRIPT.search(line)
    if not m:
        raise ValueError(f"no timestamp in {line!r}")
    return float(m.group(1))


def clock_offset(a: list[str], b: list[str], *, a_ms: bool = False) -> float | None:
    """Median timestamp difference a - b over paired echo-request lines (seconds)."""
    if not a or len(a) != len(b):
        return None
    diffs = sorted(_ts(x, a_ms) - _ts(y) for x, y in zip(a, b, strict=True))
    return round(diffs[len(diffs) // 2], 6)


def copy_formats(dest: Path) -> list[str]:
    copied = []
    events = [p for p in sorted((TRACEFS / "events" / "net").iterdir()) if p.is_dir()]
    events += [TRACEFS / "events" / "skb" / "consume_skb", TRACEFS / "events" / "skb" / "kfree_skb"]
    for ev in events:
        rel = Path(ev.parent.name, ev.name, "format")
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((ev / "format").read_text())
        copied.append(str(rel))
    return copied


def wait_ready_all(tracers: Sequence[PerfTracer]) -> None:
    for t in tracers:
        t.wait_ready()
        log(f"ready: {t.name} ({t.ready_how})")


def stop_all(tracers: Sequence[PerfTracer]) -> dict[str, int]:
    return {t.name: t.stop() for t in tracers}


# ----------------------------------------------------------------------------
# the main capture


def capture_lab(outdir: Path, pings: int, gets: int, tag: str | None) -> dict[str, Any]:
    """The system-wide multi-tracer capture; perf.data files live in a temp dir."""
    work = Path(tempfile.mkdtemp(prefix="perfnet-capture-"))
    try:
        return _capture_lab(outdir, pings, gets, tag, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _capture_lab(outdir: Path, pings: int, gets: int, tag: str | None, work: Path) -> dict[str, Any]:
    facts = tool_facts()
    fixtures: dict[str, dict[str, Any]] = {}
    tracers: list[PerfTracer] = []
    instances: list[FtraceInstance] = []
    try:
        with tracefs_mounted(), Lab(tag) as lab, lab.http_server(lab.ctr2) as srv:
            log(f"lab {lab.tag} up: {lab.describe()['routes']}")
            nev, ng = count_events(EVENTS), count_events(G_EVENTS)
            nsys = ["--no-syscalls"]
            specs: list[tuple[str, list[str], int, bool]] = [
                ("lab-trace.txt", ["perf", "trace", "-a", *nsys, *EVENTS, "-o", "lab-trace.txt"], nev, False),
                (
                    "lab-trace-libtraceevent.txt",
                    [
                        "perf",
                        "trace",
                        "-a",
                        *nsys,
                        "--libtraceevent_print",
                        *EVENTS,
                        "-o",
                        "lab-trace-libtraceevent.txt",
                    ],
                    nev,
                    False,
                ),
                (
                    "lab-trace-T.txt",
                    ["perf", "trace", "-a", "-T", *nsys, *EVENTS, "-o", "lab-trace-T.txt"],
                    nev,
                    False,
                ),
                (
                    "lab-trace-callgraph.txt",
                    [
                        "perf",
                        "trace",
                        "-a",
                        *nsys,
                        "--call-graph=fp",
                        *G_EVENTS,
                        "-o",
                        "lab-trace-callgraph.txt",
                    ],
                    ng,
                    False,
                ),
                ("lab.data", ["perf", "record", "-a", *EVENTS, "-o", "lab.data"], nev, True),
                ("lab-g.data", ["perf", "record", "-a", "-g", *G_EVENTS, "-o", "lab-g.data"], ng, True),
            ]
            for name, argv, n, ctl in specs:
                tracers.append(PerfTracer(name, argv, work, n, control=ctl))
            instances = [
                FtraceInstance(f"perfnet-{lab.tag}", record_tgid=False),
                FtraceInstance(f"perfnet-{lab.tag}-tgid", record_tgid=True),
            ]
            for t in tracers:
                t.start()
            for inst in instances:
                inst.start()
            wait_ready_all(tracers)
            time.sleep(MARGIN)

            before = counters_json(lab.link_counters())
            t0 = time.time()
            ping = lab.ping(lab.ctr2_addr, pings)
            log(ping.stdout.strip().splitlines()[-2] if ping.stdout.strip() else "ping: no output")
            if ping.returncode != 0:
                raise RuntimeError(f"workload ping failed:\n{ping.stdout}{ping.stderr}")
            lab.http_get(lab.ctr2_addr, gets)
            t1 = time.time()
            time.sleep(0.3)  # let last FIN/ACKs settle before the "after" counters
            after = counters_json(lab.link_counters())
            time.sleep(MARGIN)
            for inst in instances:
                inst.stop()
            rcs = stop_all(tracers)
            log(f"tracers stopped: {rcs}")

            for inst, fname in zip(instances, ["lab-ftrace.txt", "lab-ftrace-tgid.txt"], strict=True):
                inst.save(work / fname)

            lab_desc = lab.describe()
            workload = {
                "ping": {
                    "from": "root",
                    "to": lab.ctr2_addr,
                    "to_netns": lab.ctr2,
                    "count": pings,
                    "interval": 0.2,
                    "argv": lab.ping_argv(lab.ctr2_addr, pings),
                    "returncode": ping.returncode,
                    "summary": [ln for ln in ping.stdout.splitlines() if "transmitted" in ln],
                },
                "http": {
                    "from": "root",
                    "server_netns": lab.ctr2,
                    "url": srv.url,
                    "gets": gets,
                    "client": "python urllib, one TCP connection per GET, proxies disabled",
                },
                "started": t0,
                "finished": t1,
            }
            counters = {"before": before, "after": after, "delta": counter_deltas(before, after)}
            tracer_facts = {
                t.name: {
                    "command": t.run_argv,
                    "ready": t.ready_how,
                    "returncode": rcs[t.name],
                    "returncode_note": RC_NOTE,
                    "stderr_tail": t.stderr_text().strip().splitlines()[-5:],
                }
                for t in tracers
            }
            ftrace_facts = {
                i.name: {"tracefs_writes": list(i.writes), "trace_clock": i.trace_clock()} for i in instances
            }
            lab_tag = lab.tag
    finally:
        for t in tracers:
            with contextlib.suppress(Exception):
                t.stop(timeout=20)
        for inst in instances:
            inst.remove()

    # --- post-processing (lab is gone; perf.data files stay in work/) -----
    outdir.mkdir(parents=True, exist_ok=True)
    cmd_of = {t.name: t.argv for t in tracers}
    rec_cmd = {t.name: t.run_argv for t in tracers}
    for name in (
        "lab-trace.txt",
        "lab-trace-libtraceevent.txt",
        "lab-trace-T.txt",
        "lab-trace-callgraph.txt",
    ):
        shutil.copyfile(work / name, outdir / name)
        fixtures[name] = {"kind": "perf-trace", "command": cmd_of[name]}
    fixtures["lab-trace-T.txt"]["notes"] = "-T: absolute (perf clock) timestamps in ms"
    fixtures["lab-trace-callgraph.txt"]["notes"] = "each event followed by its kernel callchain lines"

    script_cmds = [
        ("lab-script.txt", "lab.data", []),
        ("lab-script-ns.txt", "lab.data", ["--ns"]),
        ("lab-script-g.txt", "lab-g.data", []),
    ]
    for out_name, data, extra in script_cmds:
        argv = perf_script(work / data, outdir / out_name, extra)
        fixtures[out_name] = {
            "kind": "perf-script",
            "command": argv,
            "record_command": rec_cmd[data],
            "notes": "record started with events disabled (-D -1) and enabled via --control fifo "
            "once ready; shown record command includes that",
        }
    for fname in ("lab-ftrace.txt", "lab-ftrace-tgid.txt"):
        shutil.copyfile(work / fname, outdir / fname)
    for inst, fname in zip(instances, ["lab-ftrace.txt", "lab-ftrace-tgid.txt"], strict=True):
        fixtures[fname] = {
            "kind": "ftrace",
            "command": ["cat", f"{TRACEFS}/instances/{inst.name}/trace"],
            "tracefs_writes": ftrace_facts[inst.name]["tracefs_writes"],
            "trace_clock": ftrace_facts[inst.name]["trace_clock"],
            "notes": "raw tracefs instance; options/hash-ptr=0 so pointers are real and comparable with perf's skbaddr",
        }
    conv = convert_to_old_format(outdir / "lab-trace-libtraceevent.txt", outdir / "lab-trace-old-converted.txt")
    fixtures["lab-trace-old-converted.txt"] = {
        "kind": "converted",
        "converted_from": "lab-trace-libtraceevent.txt",
        "command": ["scripts/capture_fixtures.py:convert_to_old_format"],
        "notes": "CONVERTED, NOT CAPTURED: each 'T comm/tid sub:ev(BODY)' line of "
        "lab-trace-libtraceevent.txt rewritten to the old perf trace format "
        "'T comm/tid sub:ev:BODY'; other lines copied verbatim",
        **conv,
    }
    formats = copy_formats(outdir / "lab.formats")

    for name, entry in fixtures.items():
        entry["capture"] = "lab"
        entry["command_str"] = shlex.join(entry["command"])
        entry.update(file_facts(outdir / name))
        text = (outdir / name).read_text(errors="replace")
        entry["lab_device_lines"] = sum(1 for ln in text.splitlines() if lab_desc["bridge"] in ln)
        entry["lab_echo_requests"] = len(echo_request_lines(outdir / name, lab_desc["bridge"]))
        if entry["bytes"] == 0 or entry["lab_device_lines"] == 0:
            raise RuntimeError(f"{name}: empty or no events on {lab_desc['bridge']}")
        if entry["lab_echo_requests"] != pings:
            # a tracer that was not fully recording would miss the first echo request
            raise RuntimeError(f"{name}: {entry['lab_echo_requests']} echo requests on the bridge, want {pings}")

    def reqs(name: str) -> list[str]:
        return echo_request_lines(outdir / name, lab_desc["bridge"])

    clock_offsets = {
        "lab-ftrace.txt - lab-script-ns.txt": clock_offset(reqs("lab-ftrace.txt"), reqs("lab-script-ns.txt")),
        "lab-trace-T.txt - lab-script-ns.txt": clock_offset(
            reqs("lab-trace-T.txt"), reqs("lab-script-ns.txt"), a_ms=True
        ),
    }

    capture = {
        "id": "lab",
        "tag": lab_tag,
        "system_wide": True,
        "lab": lab_desc,
        "workload": workload,
        "counters": counters,
        "tracers": tracer_facts,
        "ftrace_instances": ftrace_facts,
        "margins_s": MARGIN,
        "clock_offsets_s": clock_offsets,
        "clock_offsets_note": "median timestamp difference of the same echo-request net_dev_queue events; "
        "ftrace's trace_clock and perf's clock are different clocks, correlate by skbaddr",
        "tools": facts,
        "formats_dir": "lab.formats",
        "formats": formats,
    }
    return {"capture": capture, "fixtures": fixtures}


def capture_ping_bridge(outdir: Path, count: int, tag: str | None) -> dict[str, Any]:
    """``perf trace --no-syscalls -e net:* ping -c N <ctr1>`` on a bridge+veth lab."""
    facts = tool_facts()
    name = "ping-bridge.txt"
    with Lab(tag, router=False) as lab:
        ping = lab.ping_argv(lab.ctr1_addr, count)
        argv = ["perf", "trace", "--no-syscalls", "-e", "net:*", "-o", name, *ping]
        before = counters_json(lab.link_counters())
        with tempfile.TemporaryDirectory(prefix="perfnet-capture-") as tmp:
            proc = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"{shlex.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
            time.sleep(0.3)
            after = counters_json(lab.link_counters())
            outdir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(tmp, name), outdir / name)
        desc = lab.describe()
    entry = {
        "kind": "perf-trace",
        "capture": "ping-bridge",
        "command": argv,
        "command_str": shlex.join(argv),
        "notes": "not system-wide: perf trace runs ping itself, so only events in ping's "
        "task context (incl. softirq work done on its behalf) appear; bridge + veth only",
        **file_facts(outdir / name),
    }
    entry["lab_device_lines"] = sum(1 for ln in (outdir / name).read_text().splitlines() if desc["bridge"] in ln)
    entry["lab_echo_requests"] = len(echo_request_lines(outdir / name, desc["bridge"]))
    if entry["lab_device_lines"] == 0 or entry["lab_echo_requests"] != count:
        raise RuntimeError(f"{name}: no/incomplete events on {desc['bridge']}")
    capture = {
        "id": "ping-bridge",
        "tag": desc["tag"],
        "system_wide": False,
        "lab": desc,
        "workload": {
            "ping": {
                "from": "root",
                "to": desc["ctr1_addr"],
                "to_netns": desc["ctr1"],
                "count": count,
                "interval": 0.2,
                "argv": ping,
                "returncode": proc.returncode,
                "summary": [ln for ln in proc.stdout.splitlines() if "transmitted" in ln],
            },
            "http": None,
        },
        "counters": {"before": before, "after": after, "delta": counter_deltas(before, after)},
        "tools": facts,
    }
    return {"capture": capture, "fixtures": {name: entry}}


# ----------------------------------------------------------------------------
# big mode


def capture_big(outdir: Path, seconds: float, tag: str | None) -> dict[str, Any]:
    facts = tool_facts()
    work = outdir
    work.mkdir(parents=True, exist_ok=True)
    tracers = [
        PerfTracer(
            "big-trace.txt",
            ["perf", "trace", "-a", "--no-syscalls", *EVENTS, "-o", "big-trace.txt"],
            work,
            count_events(EVENTS),
        ),
        PerfTracer(
            "big.data",
            ["perf", "record", "-a", *EVENTS, "-o", "big.data"],
            work,
            count_events(EVENTS),
            control=True,
        ),
    ]
    stop_gets = threading.Event()
    n_gets = 0
    try:
        with Lab(tag) as lab, lab.http_server(lab.ctr2):
            for t in tracers:
                t.start()
            wait_ready_all(tracers)
            time.sleep(MARGIN)
            before = counters_json(lab.link_counters())

            def getter() -> None:
                nonlocal n_gets
                while not stop_gets.is_set():
                    lab.http_get(lab.ctr2_addr, 20)
                    n_gets += 20

            th = threading.Thread(target=getter, daemon=True)
            th.start()
            lab.check_dest(lab.ctr2_addr)
            flood = ["ping", "-n", "-q", "-f", "-w", f"{seconds:g}", lab.ctr2_addr]
            res = lab.run(None, flood, check=False, timeout=seconds + 60)
            stop_gets.set()
            th.join(120)
            after = counters_json(lab.link_counters())
            time.sleep(MARGIN)
            rcs = stop_all(tracers)
            desc = lab.describe()
    finally:
        stop_gets.set()
        for t in tracers:
            with contextlib.suppress(Exception):
                t.stop(timeout=120)
    argv = perf_script(work / "big.data", work / "big-script.txt")
    manifest = {
        "tools": facts,
        "lab": desc,
        "workload": {
            "ping_flood": flood,
            "ping_summary": res.stdout.strip().splitlines()[-2:],
            "http_gets": n_gets,
            "seconds": seconds,
        },
        "counters": {"before": before, "after": after, "delta": counter_deltas(before, after)},
        "tracers": {
            t.name: {
                "command": t.run_argv,
                "returncode": rcs[t.name],
                "ready": t.ready_how,
                "stderr_tail": t.stderr_text().strip().splitlines()[-5:],
            }
            for t in tracers
        },
        "files": {
            "big-trace.txt": file_facts(work / "big-trace.txt"),
            "big-script.txt": {"command": argv, **file_facts(work / "big-script.txt")},
            "big.data": {"bytes": (work / "big.data").stat().st_size},
        },
    }
    (work / "big.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for junk in [*work.glob("big.data.*"), *work.glob("*.stderr")]:
        with contextlib.suppress(OSError):
            junk.unlink()
    return manifest


# ----------------------------------------------------------------------------
# README


def write_readme(outdir: Path, manifest: dict[str, Any]) -> None:
    caps = manifest["captures"]
    lab = caps["lab"]
    L = lab["lab"]
    lines = [
        "# perfnet test fixtures",
        "",
        "Real captures made by `scripts/capture_fixtures.py` (run as root) on a throwaway",
        "namespace lab built by `perfnet.lab`. **Do not edit by hand** -- rerun the script.",
        "Machine-readable facts (commands, names, addresses, workload, link counter",
        "deltas, line counts, sha256) are in [`lab.json`](lab.json); tests assert against it.",
        "",
        f"* perf: `{lab['tools']['perf_version']}`",
        f"* kernel: `{lab['tools']['kernel']}` ({lab['tools']['machine']}, {lab['tools']['ncpu']} CPUs)",
        f"* captured: {lab['tools']['date']}",
        "",
        "## Lab topology (capture `lab`)",
        "",
        "```",
        f"root netns   {L['bridge']} {L['bridge_addr']}/24  (stands in for docker0)",
        f"               `-- {L['host_veth']} <== veth ==> {L['ctr1']}:{L['ctr1_if']} {L['ctr1_addr']}/24",
        f"{L['ctr1']} (ip_forward=1): {L['ctr1_router_if']} {L['ctr1_router_addr']}/24"
        f" <== veth ==> {L['ctr2']}:{L['ctr2_if']} {L['ctr2_addr']}/24",
        "```",
        "",
        "Routes: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in L["routes"].items()) + ".",
        "IPv6 is disabled on every lab link and all neighbours are static (no ARP), so",
        "lab interfaces carry only the workload. MACs: " + ", ".join(f"`{k}`={v}" for k, v in L["macs"].items()) + ".",
        "",
        f"Workload (one run, all tracers concurrently, system-wide, {lab['margins_s']} s margins):",
        f"`{shlex.join(lab['workload']['ping']['argv'])}` from the root netns"
        f" ({lab['workload']['ping']['count']} echo requests through the router chain), then",
        f"{lab['workload']['http']['gets']} HTTP GETs of `{lab['workload']['http']['url']}`"
        " (server in ctr2, one TCP connection each).",
        "",
        "Link counter deltas (packets, from `ip -s -j link`, before/after the workload):",
        "",
        "| interface | tx | rx |",
        "|---|---|---|",
    ]
    for k, v in lab["counters"]["delta"].items():
        lines.append(f"| `{k}` | {v['tx_packets']} | {v['rx_packets']} |")
    lines += [
        "",
        "Output is unedited: system-wide captures also contain unrelated host activity",
        "(e.g. `consume_skb` from vsock kworkers and from the netlink sockets of `ip`, and",
        "any host `eth0`/`lo` traffic). Lab devices are the bridge, the veth and the",
        "`eth0`/`eth1` devices inside the namespaces -- `eth0` exists in ctr1, ctr2 *and*",
        "possibly the host, so device names alone are ambiguous.",
        "",
        "## Files",
        "",
        "| file | lines | lab-bridge lines | echo requests on bridge | how it was made |",
        "|---|---|---|---|---|",
    ]
    for name, f in manifest["fixtures"].items():
        how = f"`{f['command_str']}`"
        if "record_command" in f:
            how = f"`{shlex.join(f['record_command'])}` then {how}"
        if f.get("notes"):
            how += f" -- {f['notes']}"
        lines.append(f"| `{name}` | {f['lines']} | {f['lab_device_lines']} | {f['lab_echo_requests']} | {how} |")
    lines += [
        "| `lab.formats/` | | | | tracefs `format` files of every captured event "
        "(`events/net/*`, `events/skb/{consume,kfree}_skb`), e.g. to name kfree_skb reasons |",
        "| `lab.json` | | | | manifest (see below) |",
        "",
        "Timestamps: ftrace (trace_clock "
        + ", ".join(sorted({v["trace_clock"] for v in lab["ftrace_instances"].values()}))
        + ") and perf use different clocks; measured offsets (s): "
        + ", ".join(f"{k}: {v}" for k, v in lab["clock_offsets_s"].items())
        + ". Correlate by skbaddr, not by time.",
        "",
        "`lab-trace-old-converted.txt` is **converted, not captured**: it is",
        "`lab-trace-libtraceevent.txt` rewritten from `T comm/tid sub:ev(BODY)` into the",
        "format of older perf versions, `T comm/tid sub:ev:BODY`.",
        "",
    ]
    pb = caps["ping-bridge"]
    P = pb["lab"]
    lines += [
        "## `ping-bridge.txt` (capture `ping-bridge`, the bundled demo)",
        "",
        f"Separate lab without router: `{P['bridge']}` {P['bridge_addr']}/24 --"
        f" `{P['host_veth']}` <== veth ==> `{P['ctr1']}`:{P['ctr1_if']} {P['ctr1_addr']}/24.",
        f"Command: `{manifest['fixtures']['ping-bridge.txt']['command_str']}` (not system-wide).",
        "Counter deltas: "
        + ", ".join(f"`{k}` tx {v['tx_packets']} rx {v['rx_packets']}" for k, v in pb["counters"]["delta"].items())
        + ".",
        "",
        "## `lab.json` schema",
        "",
        "```",
        "{ schema: 1,",
        "  captures: { <capture id: 'lab' | 'ping-bridge'>: {",
        "      id, tag, system_wide: bool,",
        "      tools: {perf_version, kernel, machine, ncpu, date},",
        "      lab: Lab.describe() -- bridge, host_veth, ctr1, ctr2, *_addr, *_if, macs, routes, subnet",
        "      workload: {ping: {from, to, to_netns, count, interval, argv, returncode, summary},",
        "                 http: {from, server_netns, url, gets, client} | null, ...},",
        "      counters: {before|after|delta: {'<netns|root>/<ifname>': {tx_packets, rx_packets}}},",
        "      tracers, ftrace_instances, formats_dir, formats  (capture 'lab' only) } },",
        "  fixtures: { <file name>: {capture, kind: perf-trace|perf-script|ftrace|converted,",
        "      command: argv, command_str, [record_command], [notes], bytes, lines, sha256,",
        "      lab_device_lines} } }",
        "```",
        "",
    ]
    (outdir / "README.md").write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--outdir", type=Path, default=None, help="default: tests/fixtures (big: /tmp/perfnet-big-TAG)")
    ap.add_argument("--pings", type=int, default=5, help="echo requests root -> ctr2 (default 5)")
    ap.add_argument("--gets", type=int, default=3, help="HTTP GETs root -> ctr2 (default 3)")
    ap.add_argument("--bridge-pings", type=int, default=3, help="pings for ping-bridge.txt (default 3)")
    ap.add_argument("--big", type=float, metavar="SECONDS", help="benchmark mode: flood the lab for SECONDS")
    ap.add_argument("--tag", help="lab tag (default: random)")
    args = ap.parse_args(argv)

    reason = require_root_and_tools()
    if reason:
        print(f"capture_fixtures: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    try:
        return _run(args)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({str(exc) or 'SIGINT'}); lab, tracers and tracefs instances were torn down")
        return 130


def _run(args: argparse.Namespace) -> int:
    stale = cleanup_stale()
    if stale:
        log(f"removed stale lab objects: {stale}")

    if args.big:
        bigdir: Path = args.outdir or Path(f"/tmp/perfnet-big-{os.getpid()}")
        m = capture_big(bigdir, args.big, args.tag)
        log(f"big capture in {bigdir}: {json.dumps(m['files'])}")
        return 0

    outdir: Path = args.outdir or REPO / "tests" / "fixtures"
    # everything is staged first, so an interrupted/failed run never leaves a mixed fixture set
    stage = Path(tempfile.mkdtemp(prefix="perfnet-fixtures-"))
    try:
        lab = capture_lab(stage, args.pings, args.gets, args.tag)
        pb = capture_ping_bridge(stage, args.bridge_pings, None)
        manifest: dict[str, Any] = {
            "schema": 1,
            "captures": {"lab": lab["capture"], "ping-bridge": pb["capture"]},
            "fixtures": {**lab["fixtures"], **pb["fixtures"]},
        }
        (stage / "lab.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_readme(stage, manifest)
        outdir.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(outdir / "lab.formats", ignore_errors=True)
        for item in sorted(stage.iterdir()):
            if item.is_dir():
                shutil.copytree(item, outdir / item.name)
            else:
                shutil.copyfile(item, outdir / item.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    for name, f in manifest["fixtures"].items():
        log(f"{name}: {f['lines']} lines, {f['bytes']} bytes, {f['lab_device_lines']} lines on the lab bridge")
    log(f"fixtures written to {outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
