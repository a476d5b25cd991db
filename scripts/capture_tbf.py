#!/usr/bin/env python3
"""Capture the tbf fixtures: one burst workload through the lab, without and then with a rate limit.

Builds one :class:`perfnet.lab.Lab` and runs the same workload (bursts of 1000-byte pings from
the root netns through the bridge, the host veth and the router namespace to ctr2) twice, each
under its own system-wide ``perf trace`` (the command of ``lab-trace.txt``):

* ``tbf-base.txt``     the lab as built: every lab link has the ``noqueue`` qdisc;
* ``tbf-limited.txt``  with ``tc qdisc add dev <host veth> root tbf rate R burst B latency L`` in
  the root netns.  A burst outruns the bucket, so echo requests wait in the veth's qdisc and
  leave it when the qdisc watchdog (an hrtimer) has let enough tokens in: from a softirq, not
  from ping's context, hence ``-a``.  The qdisc is removed again afterwards, also on failure.

ping runs pinned to one CPU (``--cpu``, default 0), in both captures.  The watchdog timer fires
on the CPU that armed it, i.e. ping's, so the queued packets leave from there.  On the machine
these fixtures were made on, perf (trace and record alike) silently misses the tracepoint hits
of softirqs that run in CPU 1's idle task, or while a thread of the VM's init agent is current,
where a tracefs instance sees them all.  Unpinned, most queued packets vanished from the
capture; pinned, now and then one does.  So each capture is checked on its text for every
echo request and reply, and repeated (``--attempts``) until complete; the manifest lists the
rejected attempts.

Also writes ``tbf.json`` (commands, perf version, kernel, lab names, tbf parameters and qdisc
statistics, workload, link counter deltas, file facts) and ``tbf.md`` (the same for people).
Everything is staged in a temporary directory and copied into ``--outdir`` only when both
captures succeeded and are complete.

Must run as root.  Traffic only ever goes to addresses inside the lab.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
for _path in (REPO, SCRIPTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from capture_fixtures import (  # noqa: E402
    EVENTS,
    MARGIN,
    PerfTracer,
    count_events,
    counter_deltas,
    counters_json,
    file_facts,
    log,
    run_checked,
    tool_facts,
    tracefs_mounted,
)

from perfnet.lab import Lab, cleanup_stale, require_root_and_tools  # noqa: E402

BASE, LIMITED = "tbf-base.txt", "tbf-limited.txt"
MAX_BYTES = 1_500_000  # keep fixtures small enough for the repository
ETH_IP_ICMP = 14 + 20 + 8  # headers around the ping payload in a transmitted frame
QDISC_COUNTERS = ("bytes", "packets", "drops", "overlimits", "requeues")


@dataclass(frozen=True)
class Tbf:
    """The token bucket filter for the host veth: ``tc ... tbf rate RATE burst BURST latency LATENCY``."""

    rate: str
    burst: str
    latency: str

    def add_argv(self, dev: str) -> list[str]:
        """The ``tc`` command that installs this qdisc as the root qdisc of ``dev``."""
        options = ["rate", self.rate, "burst", self.burst, "latency", self.latency]
        return ["tc", "qdisc", "add", "dev", dev, "root", "tbf", *options]

    @staticmethod
    def del_argv(dev: str) -> list[str]:
        """The ``tc`` command that removes the root qdisc of ``dev`` (back to ``noqueue``)."""
        return ["tc", "qdisc", "del", "dev", dev, "root"]


@dataclass(frozen=True)
class Workload:
    """``bursts`` runs of ``ping -c pings -i interval -s size`` root -> ctr2, ``pause`` s apart, on ``cpu``."""

    bursts: int
    pings: int
    interval: float
    size: int
    pause: float
    cpu: int

    @property
    def frame_len(self) -> int:
        """Length of an echo request frame as the transmit tracepoints print it."""
        return self.size + ETH_IP_ICMP

    def ping_argv(self, lab: Lab) -> list[str]:
        """One burst: a numeric, quiet ping to ctr2 through the whole lab (destination checked)."""
        dest = lab.ctr2_addr
        lab.check_dest(dest)
        count = ["-c", str(self.pings), "-i", f"{self.interval:g}", "-s", str(self.size)]
        return ["ping", "-n", "-q", *count, "-W", "2", dest]

    def run(self, lab: Lab) -> dict[str, Any]:
        """Run the bursts with this process pinned to ``cpu`` (ping inherits it), then unpin.

        Raises:
            RuntimeError: a burst lost an echo request or reply (the qdisc dropped).
        """
        argv = self.ping_argv(lab)
        summaries = []
        allowed = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})
        try:
            for i in range(self.bursts):
                if i:
                    time.sleep(self.pause)
                proc = lab.run(None, argv, check=False, timeout=60)
                summary = [ln for ln in proc.stdout.splitlines() if "transmitted" in ln]
                if proc.returncode != 0 or not summary or " 0% packet loss" not in summary[0]:
                    raise RuntimeError(f"burst {i}: {shlex.join(argv)} failed:\n{proc.stdout}{proc.stderr}")
                summaries.append(summary[0])
        finally:
            os.sched_setaffinity(0, allowed)
        return {"argv": argv, "summaries": summaries}


@contextmanager
def tbf_on(dev: str, tbf: Tbf) -> Iterator[list[str]]:
    """Install ``tbf`` on ``dev`` (root netns) for the duration; yields the argv that added it."""
    argv = tbf.add_argv(dev)
    run_checked(argv)
    try:
        yield argv
    finally:
        proc = subprocess.run(Tbf.del_argv(dev), capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            log(f"could not remove the tbf qdisc from {dev}: {proc.stderr.strip()}")


def qdisc_stats(dev: str) -> dict[str, Any]:
    """The root qdisc of ``dev`` and its counters (``tc -s -j qdisc show``): kind, packets, overlimits ..."""
    out = run_checked(["tc", "-s", "-j", "qdisc", "show", "dev", dev]).stdout
    root = next(q for q in json.loads(out) if q.get("root"))
    keys = ("kind", "options", "bytes", "packets", "drops", "overlimits", "requeues", "backlog", "qlen")
    return {k: root[k] for k in keys if k in root}


def event_lines(path: Path, event: str, dev: str, length: int) -> int:
    """How many ``event`` lines of the perf trace output at ``path`` are on ``dev`` with ``len: length``.

    A check on the text, independent of perfnet's parsing and packet reconstruction.
    """
    name, size = f'name: "{dev}"', re.compile(rf"\blen: {length}\b")
    with open(path, errors="replace") as lines:
        return sum(1 for ln in lines if f" {event}(" in ln and name in ln and size.search(ln))


class Incomplete(RuntimeError):
    """A capture lacks events of the workload (perf missed them), or is too large."""


def capture(name: str, lab: Lab, workload: Workload, work: Path) -> dict[str, Any]:
    """One system-wide ``perf trace`` of ``workload`` into ``work/name``; its facts for the manifest.

    Raises:
        RuntimeError: perf failed.
        Incomplete: the file is too large, or an echo request or reply is missing from it (on
            the bridge, or transmitted or received by the host veth).
    """
    argv = ["perf", "trace", "-a", "--no-syscalls", *EVENTS, "-o", name]
    tracer = PerfTracer(name, argv, work, count_events(EVENTS))
    try:
        tracer.start()
        tracer.wait_ready()
        log(f"ready: {name} ({tracer.ready_how})")
        time.sleep(MARGIN)
        before = counters_json(lab.link_counters())
        qdisc_before = qdisc_stats(lab.host_veth)
        started = time.time()
        ran = workload.run(lab)
        finished = time.time()
        time.sleep(0.3)  # replies of the last burst
        after = counters_json(lab.link_counters())
        qdisc_after = qdisc_stats(lab.host_veth)
        time.sleep(MARGIN)
    finally:
        returncode = tracer.stop()
    out = work / name
    seen = {
        "bridge net_dev_queue": event_lines(out, "net:net_dev_queue", lab.bridge, workload.frame_len),
        "veth net_dev_start_xmit": event_lines(out, "net:net_dev_start_xmit", lab.host_veth, workload.frame_len),
        "veth netif_receive_skb": event_lines(out, "net:netif_receive_skb", lab.host_veth, workload.frame_len - 14),
    }
    want = workload.bursts * workload.pings
    if returncode != 0:
        raise RuntimeError(f"{name}: perf exited with {returncode}:\n{tracer.stderr_text()}")
    if any(n != want for n in seen.values()) or out.stat().st_size > MAX_BYTES:
        raise Incomplete(f"{out.stat().st_size} bytes (max {MAX_BYTES}), echo events {seen} (want {want} each)")
    log(f"{name}: {out.stat().st_size} bytes, all {want} echo requests and replies seen")
    return {
        "command": argv,
        "command_str": shlex.join(argv),
        "returncode": returncode,
        "stderr_tail": tracer.stderr_text().strip().splitlines()[-5:],
        "echo_events": seen,
        "workload": {**ran, "started": started, "finished": finished},
        "counters": {"before": before, "after": after, "delta": counter_deltas(before, after)},
        "qdisc": {
            "dev": lab.host_veth,
            "before": qdisc_before,
            "after": qdisc_after,
            "delta": {k: qdisc_after[k] - qdisc_before[k] for k in QDISC_COUNTERS if k in qdisc_after},
        },
    }


def capture_complete(name: str, lab: Lab, workload: Workload, work: Path, attempts: int) -> dict[str, Any]:
    """:func:`capture` until a capture is complete, at most ``attempts`` times; notes the rejected ones.

    Raises:
        Incomplete: the last attempt was still incomplete.
        ValueError: ``attempts`` is less than 1.
    """
    rejected: list[str] = []
    for attempt in range(1, attempts + 1):
        try:
            return {**capture(name, lab, workload, work), "attempt": attempt, "rejected_attempts": rejected}
        except Incomplete as exc:
            log(f"{name}: attempt {attempt} rejected: {exc}")
            if attempt == attempts:
                raise
            rejected.append(str(exc))
            time.sleep(workload.pause)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def write_note(outdir: Path, manifest: dict[str, Any]) -> None:
    """``tbf.md``: how the tbf fixtures were made, for people (``tbf.json`` has it all)."""
    lab, tbf, wl, tools = manifest["lab"], manifest["tbf"], manifest["workload"], manifest["tools"]
    base, limited = manifest["fixtures"][BASE], manifest["fixtures"][LIMITED]
    files = "\n".join(f"| `{n}` | {f['bytes']} | {f['lines']} |" for n, f in manifest["fixtures"].items())
    counters = "\n".join(
        f"| `{k}` | {v['tx_packets']} / {v['rx_packets']} | "
        f"{limited['counters']['delta'][k]['tx_packets']} / {limited['counters']['delta'][k]['rx_packets']} |"
        for k, v in base["counters"]["delta"].items()
    )
    q = limited["qdisc"]["delta"]
    n = wl["bursts"] * wl["pings"]
    attempts = "\n".join(
        f"* `{name}`: attempt {f['attempt']}" + "".join(f"\n  * rejected: {r}" for r in f["rejected_attempts"])
        for name, f in manifest["fixtures"].items()
    )
    text = f"""# tbf fixtures

Real captures made by `scripts/capture_tbf.py` (run as root). **Do not edit by hand**: rerun
the script.  Machine-readable facts are in [`tbf.json`](tbf.json).

* perf: `{tools["perf_version"]}`
* kernel: `{tools["kernel"]}` ({tools["machine"]}, {tools["ncpu"]} CPUs)
* captured: {tools["date"]}

Lab (see `README.md`): bridge `{lab["bridge"]}` {lab["bridge_addr"]}, host veth `{lab["host_veth"]}`
into `{lab["ctr1"]}` (`eth0` {lab["ctr1_addr"]}, forwarding), whose `eth1` leads to `{lab["ctr2"]}`
(`eth0` {lab["ctr2_addr"]}).  Both files come from this one lab.

Workload, the same in both files: {wl["bursts"]} bursts of `{shlex.join(base["workload"]["argv"])}`
from the root netns, {wl["pause"]} s apart, pinned to CPU {wl["cpu"]}: {n} echo requests of
{wl["frame_len"]} bytes on the wire and their replies, none lost.  Each file holds every one of
them (checked on the text: bridge queue, veth transmit, veth receive).

On the capturing VM perf (trace and record alike) misses the tracepoint hits of softirqs that
run in CPU 1's idle task or while a thread of the VM's init agent (PID 1, a tokio runtime) is
current, where a tracefs instance records them all.  Pinning ping pins the qdisc
watchdog, and so the dequeues, to its CPU; captures that still missed an echo event were
rejected and repeated:

{attempts}

| file | bytes | lines |
|---|---|---|
{files}

Both were captured with `{base["command_str"]}` (`-o` named after the file).  `{LIMITED}`
was captured with `{shlex.join(tbf["add_argv"])}` in the root netns, removed afterwards with
`{shlex.join(tbf["del_argv"])}`.  The qdisc shapes what leaves the root netns through the veth,
i.e. the echo requests; the replies arrive through it and are not shaped.  A burst offers a
frame every {wl["interval"] * 1000:g} ms, far more than {tbf["rate"]}: after the first
{tbf["burst"]} of tokens each echo request waits in the qdisc (ping can have only about one
request queued: its socket send buffer is small) and leaves from the watchdog's softirq.
Qdisc counters over the workload: {q.get("packets")} packets sent, {q.get("overlimits")}
overlimits (dequeues that had to wait for tokens), {q.get("drops")} drops.

The added delay is therefore expected on the veth only: in the stage `{lab["host_veth"]}`
`net:net_dev_queue` → `net:net_dev_start_xmit` and in the hop `{lab["host_veth"]} > eth0` of
the echo requests.  One stage gets shorter instead: the bridge's `net:net_dev_start_xmit` →
`net:net_dev_xmit`, as the bridge's transmit now returns once the qdisc took the packet, where
without a qdisc the veth's whole transmit ran nested in it.  `tests/test_compare.py` checks that
`perfnet.analysis.compare` finds these changes and no other.

Link counter deltas (tx / rx packets):

| interface | `{BASE}` | `{LIMITED}` |
|---|---|---|
{counters}

Output is unedited: system-wide captures also contain unrelated host activity, including the
traffic of other labs that happened to run at the time.
"""
    (outdir / "tbf.md").write_text(text)


def run(outdir: Path, workload: Workload, tbf: Tbf, tag: str | None, attempts: int) -> dict[str, Any]:
    """Both captures in one lab, staged in a temp dir, then the manifest and note; returns the manifest."""
    stage = Path(tempfile.mkdtemp(prefix="perfnet-tbf-"))
    try:
        fixtures: dict[str, dict[str, Any]] = {}
        with tracefs_mounted(), Lab(tag) as lab:
            log(f"lab {lab.tag} up; the tbf goes on {lab.host_veth}")
            fixtures[BASE] = capture_complete(BASE, lab, workload, stage, attempts)
            with tbf_on(lab.host_veth, tbf) as add_argv:
                fixtures[LIMITED] = capture_complete(LIMITED, lab, workload, stage, attempts)
            desc = lab.describe()
        for name, entry in fixtures.items():
            entry.update(file_facts(stage / name))
        manifest: dict[str, Any] = {
            "schema": 1,
            "tools": tool_facts(),
            "lab": desc,
            "tbf": {
                **asdict(tbf),
                "dev": desc["host_veth"],
                "netns": "root",
                "add_argv": add_argv,
                "del_argv": Tbf.del_argv(desc["host_veth"]),
                "shapes": "egress of the root-side veth: what the bridge sends into ctr1 (echo requests)",
            },
            "workload": {
                **asdict(workload),
                "from": "root",
                "to": desc["ctr2_addr"],
                "to_netns": desc["ctr2"],
                "frame_len": workload.frame_len,
                "pinned": "the capture script pins itself to cpu around the bursts; ping inherits it",
            },
            "margins_s": MARGIN,
            "fixtures": fixtures,
        }
        (stage / "tbf.json").write_text(json.dumps(manifest, indent=2) + "\n")
        write_note(stage, manifest)
        outdir.mkdir(parents=True, exist_ok=True)
        for item in (BASE, LIMITED, "tbf.json", "tbf.md"):
            shutil.copyfile(stage / item, outdir / item)
        return manifest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _sigterm(_signum: int, _frame: FrameType | None) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so the qdisc, the tracer and the lab are torn down."""
    raise KeyboardInterrupt("SIGTERM")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the options, check for root and tools, capture.

    Returns:
        0 on success, 2 without root or tools, 130 when interrupted.
    """
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--outdir", type=Path, default=REPO / "tests" / "fixtures", help="default: tests/fixtures")
    ap.add_argument("--bursts", type=int, default=8, help="ping bursts (default 8)")
    ap.add_argument("--pings", type=int, default=20, help="echo requests per burst (default 20)")
    ap.add_argument("--interval", type=float, default=0.002, help="seconds between pings of a burst (default 0.002)")
    ap.add_argument("--size", type=int, default=1000, help="ping payload bytes (default 1000)")
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between bursts (default 0.3)")
    ap.add_argument("--cpu", type=int, default=0, help="CPU to run ping on (default 0)")
    ap.add_argument("--rate", default="1mbit", help="tbf rate (default 1mbit)")
    ap.add_argument("--burst", default="4kb", help="tbf bucket size (default 4kb)")
    ap.add_argument("--latency", default="200ms", help="tbf queue limit, as the longest wait (default 200ms)")
    ap.add_argument("--attempts", type=int, default=10, help="captures to try until one is complete (default 10)")
    ap.add_argument("--tag", help="lab tag (default: random)")
    args = ap.parse_args(argv)

    reason = require_root_and_tools() or (None if shutil.which("tc") else "needs tc (iproute2) on PATH")
    if reason:
        print(f"capture_tbf: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    stale = cleanup_stale()
    if stale:
        log(f"removed stale lab objects: {stale}")
    workload = Workload(args.bursts, args.pings, args.interval, args.size, args.pause, args.cpu)
    try:
        manifest = run(args.outdir, workload, Tbf(args.rate, args.burst, args.latency), args.tag, args.attempts)
    except KeyboardInterrupt as exc:
        log(f"interrupted ({str(exc) or 'SIGINT'}); qdisc, tracer and lab were torn down")
        return 130
    for name, entry in manifest["fixtures"].items():
        log(f"{name}: {entry['lines']} lines, {entry['bytes']} bytes")
    log(f"tbf fixtures written to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
