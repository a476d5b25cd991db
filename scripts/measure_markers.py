#!/usr/bin/env python3
"""Measure which cheap extra tracepoints ("markers") end a packet's time in the stack, and their cost.

perfnet captures ``net:*`` by default.  The kernel reuses a freed ``struct sk_buff`` address
within microseconds, so a packet's lifetime must be delimited: when the next ``net:*`` event
on an address belongs to a different packet, only the device graph and idle gaps tell
(``perfnet.paths.segment``).  An event fired *between* a packet's last ``net:*`` event and
the next use of its address would make the split exact.  This script measures, for each
candidate marker set added to the baseline ``perf trace -a --no-syscalls -e 'net:*'``:

* its cost on the flood benchmark of ``scripts/capture_fixtures.py --big`` (``ping -f``
  root -> ctr2 plus HTTP GETs, workload pinned to CPU 0, this script and perf on CPU 1 as
  ``scripts/capture_paths.py`` does): perf's CPU time (user+sys from ``os.wait4``'s rusage,
  total and after perf was ready) and its ratio to the baseline run of the same repetition,
  events, output bytes, ``LOST`` events, perf's stderr and the lab's packet rate (a marker's
  kernel-side cost slows the flood);
* its use on a TCP bulk transfer (``lab_traffic.py`` tcp-client -> tcp-server, root ->
  ctr2, 2 MB in 4 KiB writes, as ``capture_paths.py``'s ``tcp-up``): of the packets crossing
  the lab's host veth (rebuilt by perfnet from the ``net:*`` events alone, with the lab's
  topology snapshot, and checked against the veth's counters), how many have a marker event
  on their skb address after their last ``net:*`` event and before the next ``net:*`` event
  on that address.  ``kmem:kmem_cache_free`` names the freed object by ``ptr``: a free from
  the skb head cache marks ``ptr``, one from the fclone cache marks both halves, ``ptr`` (the
  original) and ``ptr + sizeof(struct sk_buff)`` (the clone TCP transmits).
  ``napi:napi_poll`` carries no skb: for it the count is of packet ends followed, on the same
  thread, by a ``napi_poll`` before any ``net:*`` event of another skb.

Candidates: ``napi:napi_poll``; ``skb:consume_skb`` + ``skb:kfree_skb``;
``kmem:kmem_cache_free`` filtered in the kernel to the skb caches (``--filter`` right after its
``-e``; with slab merging the fclone cache frees under the name of the cache it was merged
into, so the filter names every alias of it); the same plus ``skbuff_small_head`` (the heads
of small skbs, whose ``ptr`` is data, never an skb); ``tcp:*``; ``tcp:*`` without
``tcp_probe``; ``skb:skb_copy_datagram_iovec``; and combinations given with ``--combo``
(default ``skb-free+kmem`` and ``kfree+kmem``: ``kmem`` to delimit, ``kfree_skb`` for drop reasons).
The flood is a closed loop: ``ping -f`` sends when a reply comes back, and perf trace asks the
kernel for a wakeup per event (it never buffers), so every traced event slows the workload
and perf's CPU time over a fixed flood hardly moves.  Per-packet figures (events and perf CPU
per lab packet) and the lab's packet rate are therefore reported beside the raw CPU ratio;
the flood's packets are delimited the same way as the TCP transfer's.

Each configuration runs ``--reps`` times, the configurations of one repetition back to back
with the baseline first, so each ratio compares runs a few seconds apart.

Results (raw per run, and a summary per configuration) go to ``--out`` as JSON; a markdown
table is printed.  Must run as root.  Traffic only ever goes to addresses inside the lab,
which has a random tag and is torn down on exit.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import re
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

SCRIPTS = Path(__file__).resolve().parent
REPO = SCRIPTS.parent
for _path in (REPO, SCRIPTS):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from capture_fixtures import (  # noqa: E402
    TRACEFS,
    PerfTracer,
    _sigterm,
    count_events,
    counter_deltas,
    counters_json,
    log,
    tool_facts,
    tracefs_mounted,
)
from capture_paths import MB, Macvlan, run_workload, tcp  # noqa: E402

import perfnet  # noqa: E402
from perfnet import paths  # noqa: E402
from perfnet.lab import Lab, cleanup_stale, require_root_and_tools  # noqa: E402
from perfnet.topology import Topology, snapshot  # noqa: E402

SLAB = Path("/sys/kernel/slab")
BASELINE = "baseline"
MARGIN = 0.5  # seconds of quiet before and after each workload
WORKLOAD_CPU = 0
PERF_CPU = 1
GETS_PER_CALL = 20

NAPI_KIND = "napi_poll next on the thread of a packet end [not per skb]"

Event = tuple[str, str | None]  # (tracepoint or glob, perf --filter expression or None)


@dataclass(frozen=True)
class Config:
    """One measured configuration: the baseline's ``net:*`` plus marker events."""

    name: str
    markers: tuple[Event, ...]

    @property
    def events(self) -> tuple[Event, ...]:
        return (("net:*", None), *self.markers)

    def perf_args(self) -> list[str]:
        """``-e`` options; a ``--filter`` must follow the ``-e`` of the event it filters."""
        args: list[str] = []
        for event, expr in self.events:
            args += ["-e", event]
            if expr is not None:
                args += ["--filter", expr]
        return args

    def nevents(self) -> int:
        return count_events([part for event, _ in self.events for part in ("-e", event)])


@dataclass(frozen=True)
class SkbCaches:
    """The slab caches skbs live in, and the names their frees carry in ``kmem_cache_free``."""

    head: str  # struct sk_buff
    fclone: tuple[str, ...]  # struct sk_buff_fclones: the cache and every cache merged with it
    small: str  # small skb heads (data, not skbs)
    skb_size: int  # sizeof(struct sk_buff): offset of the clone in an fclone pair

    def filter(self, small: bool = False) -> str:
        names = [self.head, *self.fclone, *([self.small] if small else [])]
        return " || ".join(f'name == "{name}"' for name in names)

    def describe(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "fclone_names": list(self.fclone),
            "small": self.small,
            "sizeof_sk_buff": self.skb_size,
            "note": "with slab merging, kmem_cache_free reports the name of the cache the fclone "
            "cache was merged into (the first created of the aliases), so the filter names all",
        }


def skb_caches() -> SkbCaches:
    """Read ``/sys/kernel/slab``: the skb caches and the aliases the fclone cache was merged with."""
    fclone = SLAB / "skbuff_fclone_cache"
    names = ["skbuff_fclone_cache"]
    if fclone.is_symlink():
        target = fclone.resolve()
        names += sorted(
            p.name for p in SLAB.iterdir() if p.is_symlink() and p.resolve() == target and p.name not in names
        )
    head = "skbuff_head_cache"
    size = int((SLAB / head / "object_size").read_text())
    return SkbCaches(head, tuple(names), "skbuff_small_head", size)


def tracepoints(subsystem: str) -> list[str]:
    return sorted(f"{subsystem}:{p.name}" for p in (TRACEFS / "events" / subsystem).iterdir() if p.is_dir())


def candidate_configs(caches: SkbCaches) -> dict[str, Config]:
    tcp_events = tracepoints("tcp")
    configs = [
        Config(BASELINE, ()),
        Config("napi", (("napi:napi_poll", None),)),
        Config("skb-free", (("skb:consume_skb", None), ("skb:kfree_skb", None))),
        Config("kfree", (("skb:kfree_skb", None),)),  # for combinations: drop reasons only
        Config("kmem", (("kmem:kmem_cache_free", caches.filter()),)),
        Config("kmem+small", (("kmem:kmem_cache_free", caches.filter(small=True)),)),
        Config("tcp", (("tcp:*", None),)),
        Config("tcp-noprobe", tuple((ev, None) for ev in tcp_events if ev != "tcp:tcp_probe")),
        Config("copy", (("skb:skb_copy_datagram_iovec", None),)),
    ]
    return {c.name: c for c in configs}


def combine(name: str, configs: dict[str, Config]) -> Config:
    """``a+b`` -> the markers of candidates ``a`` and ``b`` (each event once)."""
    markers: dict[str, str | None] = {}
    for part in name.split("+"):
        if part not in configs or part == BASELINE:
            raise ValueError(f"unknown candidate {part!r} in combination {name!r}")
        markers.update(configs[part].markers)
    return Config(name, tuple(markers.items()))


def expand(config: Config) -> list[str]:
    """Every tracepoint name the configuration enables."""
    names: list[str] = []
    for event, _ in config.events:
        sub, _, name = event.partition(":")
        names += tracepoints(sub) if name == "*" else [event]
    return names


# ----------------------------------------------------------------------------
# perf runs


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def stop_with_rusage(tracer: PerfTracer, timeout: float = 120.0) -> tuple[int, float]:
    """SIGINT perf, reap it with ``os.wait4``: (exit code, user+sys CPU seconds it used)."""
    proc = tracer.proc
    assert proc is not None
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            break
        if time.monotonic() > deadline:
            log(f"{tracer.name}: perf did not exit after SIGINT, killing pid {proc.pid}")
            proc.kill()
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    tracer.stop()  # reaped already: only closes its files
    return proc.returncode, usage.ru_utime + usage.ru_stime


@contextlib.contextmanager
def perf_trace(config: Config, out: Path) -> Iterator[dict[str, Any]]:
    """``perf trace -a --no-syscalls <events> -o out`` around the body; yields its facts, filled on exit."""
    argv = ["perf", "trace", "-a", "--no-syscalls", *config.perf_args(), "-o", out.name]
    tracer = PerfTracer(out.name, argv, out.parent, config.nevents())
    facts: dict[str, Any] = {"command": shlex.join(argv)}
    try:
        tracer.start()
        assert tracer.proc is not None
        tracer.wait_ready()
        facts["cpu_at_ready_s"] = cpu_seconds(tracer.proc.pid)
        time.sleep(MARGIN)
        yield facts
        time.sleep(MARGIN)
    finally:
        if tracer.proc is not None and tracer.proc.returncode is None:
            facts["returncode"], facts["cpu_s"] = stop_with_rusage(tracer)
            facts["cpu_after_ready_s"] = facts["cpu_s"] - facts.get("cpu_at_ready_s", 0.0)
        facts["stderr"] = tracer.stderr_text().strip()[-1000:]


_LOST = re.compile(rb"LOST (\d+) events")


def scan_output(path: Path, names: Sequence[str]) -> dict[str, Any]:
    """Lines, events per tracepoint and LOST records of a perf trace text, read in blocks."""
    counts: Counter[str] = Counter()
    lines = lost_lines = lost_events = 0
    needles = {name: f" {name}(".encode() for name in names}
    tail = b""
    with open(path, "rb") as fh:
        while block := fh.read(1 << 24):
            block = tail + block
            cut = block.rfind(b"\n") + 1
            block, tail = block[:cut], block[cut:]
            lines += block.count(b"\n")
            for name, needle in needles.items():
                counts[name] += block.count(needle)
            for m in _LOST.finditer(block):
                lost_lines += 1
                lost_events += int(m.group(1))
    events = {name: n for name, n in counts.most_common() if n}
    return {
        "bytes": path.stat().st_size,
        "lines": lines + (1 if tail else 0),
        "events": sum(events.values()),
        "net_events": sum(n for name, n in events.items() if name.startswith("net:")),
        "marker_events": sum(n for name, n in events.items() if not name.startswith("net:")),
        "by_event": events,
        "lost_lines": lost_lines,
        "lost_events": lost_events,
    }


# ----------------------------------------------------------------------------
# workloads


def pin_tree(pid: int, cpu: int) -> None:
    """Pin a process and its descendants (e.g. the lab's HTTP server) to ``cpu``."""
    proc = psutil.Process(pid)
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            p.cpu_affinity([cpu])


def flood(lab: Lab, seconds: float) -> dict[str, Any]:
    """capture_big's workload: ``ping -f`` root -> ctr2 and HTTP GETs alongside, on CPU 0."""
    stop = threading.Event()
    gets = 0

    def getter() -> None:
        nonlocal gets
        os.sched_setaffinity(0, {WORKLOAD_CPU})  # this thread only: the clients it spawns inherit it
        while not stop.is_set():
            lab.http_get(lab.ctr2_addr, GETS_PER_CALL)
            gets += GETS_PER_CALL

    lab.check_dest(lab.ctr2_addr)
    argv = ["taskset", "-c", str(WORKLOAD_CPU), "ping", "-n", "-q", "-f", "-w", f"{seconds:g}", lab.ctr2_addr]
    before = counters_json(lab.link_counters())
    thread = threading.Thread(target=getter, daemon=True)
    started = time.monotonic()
    thread.start()
    try:
        res = lab.run(None, argv, check=False, timeout=seconds + 60)
    finally:
        stop.set()
        thread.join(120)
    elapsed = time.monotonic() - started
    delta = counter_deltas(before, counters_json(lab.link_counters()))
    veth = delta[f"root/{lab.host_veth}"]
    return {
        "ping_flood": argv,
        "ping_summary": res.stdout.strip().splitlines()[-2:],
        "http_gets": gets,
        "seconds": round(elapsed, 3),
        "host_veth_packets": veth["tx_packets"] + veth["rx_packets"],
        "lab_packets_per_s": round((veth["tx_packets"] + veth["rx_packets"]) / elapsed),
    }


def tcp_bulk(lab: Lab) -> dict[str, Any]:
    """capture_paths' ``tcp-up``: 2 MB in 4 KiB writes, root -> ctr2, pinned to CPU 0."""
    before = counters_json(lab.link_counters())
    run_workload(lab, Macvlan(lab), [tcp("root", "ctr2", "sink", 2 * MB, 4096)])
    time.sleep(0.3)  # the last ACKs
    delta = counter_deltas(before, counters_json(lab.link_counters()))
    return {"host_veth": delta[f"root/{lab.host_veth}"]}


# ----------------------------------------------------------------------------
# which packets a marker delimits

_ADDR = re.compile(r"\b(?:skbaddr|skb_addr|ptr): (0x[0-9a-f]+)")
_NAME = re.compile(r'\bname: "([^"]*)"')


def marker_rows(path: Path, events: pd.DataFrame, caches: SkbCaches) -> pd.DataFrame:
    """One row per (marker event, skb address it marks): ``order`` (row in ``events``), ``addr``, ``kind``.

    Addresses come from the text itself (perfnet types fields of events it has no schema
    for as printed, and a column with missing values would turn 64-bit addresses into
    floats).  ``kind`` is the event name; for ``kmem_cache_free`` it is ``kmem:head``,
    ``kmem:fclone``, ``kmem:small`` or ``kmem:other`` by cache.
    """
    is_marker = ~events["event"].str.startswith("net:").to_numpy(dtype=bool, na_value=False)
    wanted = dict(zip(events["lineno"].to_numpy()[is_marker], np.flatnonzero(is_marker), strict=True))
    rows: list[tuple[int, int, str]] = []
    with open(path, errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            order = wanted.get(lineno)
            if order is None:
                continue
            event = str(events.at[order, "event"])
            m = _ADDR.search(line)
            if m is None:
                rows.append((order, 0, event))  # no address: napi_poll, most tcp events
                continue
            addr = int(m.group(1), 16)
            if event != "kmem:kmem_cache_free":
                rows.append((order, addr, event))
                continue
            name_m = _NAME.search(line)
            name = name_m.group(1) if name_m else ""
            if name == caches.head:
                rows.append((order, addr, "kmem:head"))
            elif name in caches.fclone:
                rows += [(order, addr, "kmem:fclone"), (order, addr + caches.skb_size, "kmem:fclone")]
            else:
                rows.append((order, addr, "kmem:small" if name == caches.small else "kmem:other"))
    return pd.DataFrame(rows, columns=["order", "addr", "kind"])


@dataclass(frozen=True)
class PacketEnds:
    """The TCP packets crossing the host veth: where each ends and where its address is next used."""

    addr: np.ndarray  # skb address
    first: np.ndarray  # row in the events frame of its first net:* event
    last: np.ndarray  # row in the events frame of its last net:* event
    next: np.ndarray  # row of the next net:* event on its address (len(events): none)
    reused: np.ndarray  # whether there is such a next event in the capture
    found: int  # packets crossing the host veth that perfnet rebuilt
    paths: dict[str, int]


def packet_ends(events: pd.DataFrame, topology: Topology, host_veth: str) -> PacketEnds:
    """Rebuild the packets from the ``net:*`` events alone (markers must not shape them)."""
    net_rows = np.flatnonzero(events["event"].str.startswith("net:").to_numpy(dtype=bool, na_value=False))
    net = events.iloc[net_rows].reset_index(drop=True)
    frames = paths.reconstruct(net, topology=topology)
    crossing = frames.packets[frames.packets["path"].map(lambda p: host_veth in str(p).split(">"))]
    pid = frames.labels["packet_id"].to_numpy()
    has_addr = net["skbaddr"].notna().to_numpy()
    rows = np.flatnonzero(np.isin(pid, crossing["packet_id"].to_numpy()) & has_addr)
    grouped = pd.Series(rows).groupby(pid[rows])
    first, last = grouped.min(), grouped.max()  # net rows of each packet's first and last event
    # the next net:* event on the same address, whatever packet it belongs to
    addr_rows = np.flatnonzero(has_addr)
    addrs = net["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)
    by_addr = np.lexsort((addr_rows, addrs[addr_rows]))
    sorted_rows = addr_rows[by_addr]
    following = np.full(len(net), -1)
    same = addrs[sorted_rows[1:]] == addrs[sorted_rows[:-1]]
    following[sorted_rows[:-1][same]] = sorted_rows[1:][same]
    last_net = last.to_numpy()
    next_net = following[last_net]
    next_global = np.where(next_net >= 0, net_rows[np.maximum(next_net, 0)], len(events))
    counts = crossing["path"].astype(str).value_counts()
    return PacketEnds(
        addr=addrs[last_net],
        first=net_rows[first.to_numpy()],
        last=net_rows[last_net],
        next=next_global,
        reused=next_net >= 0,
        found=len(crossing),
        paths={str(k): int(v) for k, v in counts.items()},
    )


def delimited(ends: PacketEnds, markers: pd.DataFrame) -> dict[str, Any]:
    """Per marker kind (and all together): packets with a marker on their address between
    their last net:* event and the next net:* event on that address (``delimited``), and
    packets with one between their first and last event (``inside``: for a free, proof that
    the ``net:*`` events alone merged two lifetimes; for others, a marker that is no end)."""
    reused = ends.reused
    result: dict[str, Any] = {}
    markers = markers[markers["addr"] != 0]  # napi_poll and most tcp events name no skb
    kinds = sorted(set(markers["kind"]))
    for kind in [*kinds, "any"]:
        chosen = markers if kind == "any" else markers[markers["kind"] == kind]
        orders: dict[int, list[int]] = defaultdict(list)
        for order, addr in zip(chosen["order"].to_numpy(), chosen["addr"].to_numpy(), strict=True):
            if addr:
                orders[int(addr)].append(int(order))
        for lst in orders.values():
            lst.sort()
        hit = np.zeros(len(ends.addr), dtype=bool)
        inside = np.zeros(len(ends.addr), dtype=bool)
        for i, (addr, first, last, nxt) in enumerate(zip(ends.addr, ends.first, ends.last, ends.next, strict=True)):
            lst = orders.get(int(addr), [])
            j = bisect.bisect_right(lst, int(last))
            hit[i] = j < len(lst) and lst[j] < nxt
            k = bisect.bisect_right(lst, int(first))
            inside[i] = k < len(lst) and lst[k] < last
        result[kind] = {
            "delimited": int(hit.sum()),
            "delimited_reused": int((hit & reused).sum()),
            "inside": int(inside.sum()),
        }
    return result


def napi_follows(events: pd.DataFrame, ends: PacketEnds) -> dict[str, int]:
    """Packet ends followed on the same thread by a napi_poll before a net:* event of another skb."""
    event = events["event"].to_numpy(dtype=object)
    tid = events["tid"].to_numpy(dtype=np.int64, na_value=-1)
    addr = events["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)
    by_tid: dict[int, np.ndarray] = {int(t): np.flatnonzero(tid == t) for t in np.unique(tid[ends.last]) if t >= 0}
    followed = other_first = nothing = 0
    for last, a in zip(ends.last, ends.addr, strict=True):
        rows = by_tid.get(int(tid[last]))
        verdict = "nothing"
        if rows is not None:
            for row in rows[np.searchsorted(rows, last, side="right") :]:
                if event[row] == "napi:napi_poll":
                    verdict = "napi"
                    break
                if str(event[row]).startswith("net:") and addr[row] and addr[row] != a:
                    verdict = "other"
                    break
        followed += verdict == "napi"
        other_first += verdict == "other"
        nothing += verdict == "nothing"
    return {"napi_first": followed, "other_skb_first": other_first, "neither": nothing}


def analyse(path: Path, topology: Topology, host_veth: str, caches: SkbCaches) -> dict[str, Any]:
    """Which of the packets crossing the host veth in a capture each marker kind delimits."""
    trace = perfnet.read(path, topology=topology, formats=perfnet.HOST_TRACEFS)  # names drop reasons
    events = trace.events
    ends = packet_ends(events, topology, host_veth)
    markers = marker_rows(path, events, caches)
    reused = int(ends.reused.sum())
    out: dict[str, Any] = {
        "packets_found": ends.found,
        "packets_reused_address": reused,
        "paths": ends.paths,
        "lost": trace.lost,
        "marker_events_by_kind": {
            str(k): int(v) for k, v in markers.drop_duplicates("order")["kind"].value_counts().items()
        },
        "delimited": delimited(ends, markers),
    }
    if (markers["kind"] == "napi:napi_poll").any():
        out["napi"] = napi_follows(events, ends)
    drops = trace.df("skb:kfree_skb")
    if len(drops) and "reason" in drops:
        out["kfree_skb_reasons"] = {str(k): int(v) for k, v in drops["reason"].value_counts().items()}
    return out


# ----------------------------------------------------------------------------
# the measurement


def filter_placement(caches: SkbCaches, work: Path) -> list[dict[str, Any]]:
    """Where ``--filter`` may go relative to ``-e`` with perf trace (runs ``sleep 0.2`` traced)."""
    expr = f'name == "{caches.head}"'
    cases = {
        "after its -e": ["-e", "kmem:kmem_cache_free", "--filter", expr, "-e", "net:*"],
        "before any -e": ["--filter", expr, "-e", "kmem:kmem_cache_free", "-e", "net:*"],
        "after a later -e net:*": ["-e", "kmem:kmem_cache_free", "-e", "net:*", "--filter", expr],
    }
    results = []
    for where, args in cases.items():
        out = work / "filter-check.txt"
        argv = ["perf", "trace", "-a", "--no-syscalls", *args, "-o", out.name, "--", "sleep", "0.2"]
        proc = subprocess.run(argv, cwd=work, capture_output=True, text=True, timeout=60, check=False)
        text = out.read_text(errors="replace") if out.exists() else ""
        message = (proc.stderr.strip().splitlines() or [""])[0] or (
            text.strip().splitlines()[0] if "Failed" in text else ""
        )
        results.append({"where": where, "command": shlex.join(argv), "returncode": proc.returncode, "error": message})
        out.unlink(missing_ok=True)
    return results


def one_run(
    lab: Lab, config: Config, seconds: float, topology: Topology, caches: SkbCaches, work: Path
) -> dict[str, Any]:
    """The flood and the TCP bulk transfer, each under its own perf trace of ``config``."""
    names = expand(config)
    result: dict[str, Any] = {}
    for kind in ("flood", "tcp"):
        out = work / f"{kind}-{config.name}.txt"
        with perf_trace(config, out) as perf:
            workload = flood(lab, seconds) if kind == "flood" else tcp_bulk(lab)
        facts = {**perf, **workload, **scan_output(out, names)}
        facts.update(analyse(out, topology, lab.host_veth, caches))
        out.unlink()
        result[kind] = facts
    f = result["flood"]
    f["marker_events_per_s"] = round(f["marker_events"] / f["seconds"])
    f["events_per_s"] = round(f["events"] / f["seconds"])
    f["events_per_packet"] = f["events"] / f["host_veth_packets"]
    f["marker_events_per_packet"] = f["marker_events"] / f["host_veth_packets"]
    f["cpu_after_ready_per_kpacket_s"] = 1000 * f["cpu_after_ready_s"] / f["host_veth_packets"]
    t = result["tcp"]
    t["host_veth_packets"] = t["host_veth"]["tx_packets"] + t["host_veth"]["rx_packets"]
    return result


def _mm(values: Sequence[float], digits: int = 3) -> dict[str, float] | None:
    """min and median of values (None if there are none)."""
    values = [v for v in values if v == v]  # drop NaN
    if not values:
        return None
    return {"min": round(min(values), digits), "median": round(statistics.median(values), digits)}


def _shares(runs: Sequence[dict[str, Any]], denominator: str) -> dict[str, dict[str, float] | None]:
    """Per marker kind, min/median over runs of the share of packets it delimits."""
    shares: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        n, reused = r[denominator], r["packets_reused_address"]
        for kind, d in r["delimited"].items():
            shares[kind].append(d["delimited"] / n if n else float("nan"))
            shares[f"{kind} (of reused addresses)"].append(d["delimited_reused"] / reused if reused else float("nan"))
            shares[f"{kind} (inside a packet)"].append(d["inside"] / n if n else float("nan"))
        if "napi" in r:
            shares[NAPI_KIND].append(r["napi"]["napi_first"] / n if n else float("nan"))
    return {kind: _mm(v) for kind, v in shares.items()}


def summarize(runs: list[dict[str, Any]], configs: Sequence[Config]) -> dict[str, Any]:
    """Per configuration, min/median over repetitions; ratios against the same repetition's baseline."""
    base = {r["rep"]: r["flood"] for r in runs if r["config"] == BASELINE}
    summary: dict[str, Any] = {}
    for config in configs:
        mine = [r for r in runs if r["config"] == config.name]
        if not mine:
            continue
        floods = [r["flood"] for r in mine]
        paired = [(r["flood"], base[r["rep"]]) for r in mine if r["rep"] in base]

        def ratio(key: str, pairs: list[tuple[dict[str, Any], dict[str, Any]]] = paired) -> dict[str, float] | None:
            return _mm([f[key] / b[key] for f, b in pairs if b[key]])

        tcps = [r["tcp"] for r in mine]
        summary[config.name] = {
            "perf_args": shlex.join(config.perf_args()),
            "flood": {
                "marker_events_per_s": _mm([f["marker_events_per_s"] for f in floods], 0),
                "marker_events_per_packet": _mm([f["marker_events_per_packet"] for f in floods]),
                "events_per_s": _mm([f["events_per_s"] for f in floods], 0),
                "perf_cpu_s": _mm([f["cpu_s"] for f in floods]),
                "perf_cpu_ratio": ratio("cpu_s"),
                "perf_cpu_after_ready_ratio": ratio("cpu_after_ready_s"),
                "perf_cpu_per_packet_ratio": ratio("cpu_after_ready_per_kpacket_s"),
                "events_per_packet_ratio": ratio("events_per_packet"),
                "lab_packet_rate_ratio": ratio("lab_packets_per_s"),
                "lab_packets_per_s": _mm([f["lab_packets_per_s"] for f in floods], 0),
                "bytes": _mm([f["bytes"] for f in floods], 0),
                "lost_events": [f["lost_events"] for f in floods],
                "stderr": sorted({f["stderr"] for f in floods if f["stderr"]}),
                "packets_counter": [f["host_veth_packets"] for f in floods],
                "packets_found": [f["packets_found"] for f in floods],
                "delimited_share": _shares(floods, "packets_found"),
            },
            "tcp": {
                "packets_counter": [t["host_veth_packets"] for t in tcps],
                "packets_found": [t["packets_found"] for t in tcps],
                "marker_events_per_packet": _mm([t["marker_events"] / t["host_veth_packets"] for t in tcps]),
                "lost_events": [t["lost_events"] for t in tcps],
                "delimited_share": _shares(tcps, "host_veth_packets"),
            },
        }
    return summary


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a markdown table (min / median over repetitions)."""

    def fmt(d: dict[str, float] | None, pct: bool = False) -> str:
        if d is None:
            return "-"
        return f"{d['min']:.0%} / {d['median']:.0%}" if pct else f"{d['min']:.2f} / {d['median']:.2f}"

    def shares(d: dict[str, Any]) -> str:
        return "; ".join(f"{k}: {fmt(v, True)}" for k, v in d.items() if v is not None and "(" not in k) or "-"

    lines = [
        "| config | marker ev/s | marker ev/pkt | perf CPU ratio | CPU/pkt ratio | ev/pkt ratio | "
        "pkt rate ratio | LOST | flood delimited | TCP delimited |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        f, t = s["flood"], s["tcp"]
        lines.append(
            f"| {name} | {f['marker_events_per_s']['median']:.0f} | {f['marker_events_per_packet']['median']:.2f} | "
            f"{fmt(f['perf_cpu_ratio'])} | {fmt(f['perf_cpu_per_packet_ratio'])} | "
            f"{fmt(f['events_per_packet_ratio'])} | {fmt(f['lab_packet_rate_ratio'])} | {f['lost_events']} | "
            f"{shares(f['delimited_share'])} | {shares(t['delimited_share'])} |"
        )
    return "\n".join(lines)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    caches = skb_caches()
    candidates = candidate_configs(caches)
    chosen = [candidates[BASELINE], *(candidates[n] for n in args.candidates)]
    chosen += [combine(name, candidates) for name in args.combo]
    result: dict[str, Any] = {
        "schema": 1,
        "tools": tool_facts(),
        "seconds": args.seconds,
        "reps": args.reps,
        "pinning": {"script_and_perf_cpu": PERF_CPU, "workload_cpu": WORKLOAD_CPU},
        "skb_caches": caches.describe(),
        "configs": {c.name: {"perf_args": c.perf_args(), "tracepoints": expand(c)} for c in chosen},
        "runs": [],
    }
    work = Path(tempfile.mkdtemp(prefix="perfnet-markers-"))
    try:
        with tracefs_mounted(), Lab(args.tag) as lab, lab.http_server(lab.ctr2) as server:
            pin_tree(server.pid, WORKLOAD_CPU)
            topology = snapshot()
            result["lab"] = lab.describe()
            log(f"lab {lab.tag} up; {len(chosen)} configurations x {args.reps} repetitions")
            result["filter_placement"] = filter_placement(caches, work)
            for rep in range(1, args.reps + 1):
                others = chosen[1:]
                shift = (rep - 1) % max(len(others), 1)
                for config in [chosen[0], *others[shift:], *others[:shift]]:
                    t0 = time.monotonic()
                    run = one_run(lab, config, args.seconds, topology, caches, work)
                    result["runs"].append({"config": config.name, "rep": rep, **run})
                    f, t = run["flood"], run["tcp"]
                    log(
                        f"rep {rep} {config.name}: perf {f['cpu_s']:.2f} s CPU, {f['events']} events "
                        f"({f['marker_events_per_s']}/s markers), LOST {f['lost_events']}, "
                        f"{f['lab_packets_per_s']} pkt/s, delimited {f['delimited']['any']['delimited']} of "
                        f"{f['packets_found']}; TCP delimited {t['delimited']['any']['delimited']} of "
                        f"{t['host_veth_packets']} ({time.monotonic() - t0:.0f} s)"
                    )
                    result["summary"] = summarize(result["runs"], chosen)
                    args.out.write_text(json.dumps(result, indent=1) + "\n")
    finally:
        for leftover in work.iterdir():
            leftover.unlink()
        work.rmdir()
    result["summary"] = summarize(result["runs"], chosen)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/markers.json"))
    parser.add_argument("--seconds", type=float, default=5.0, help="flood duration (default 5)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tag", default=None, help="lab tag (default: random)")
    parser.add_argument(
        "--candidates",
        nargs="*",
        default=["napi", "skb-free", "kmem", "kmem+small", "tcp", "tcp-noprobe", "copy"],
        help="candidate marker sets measured against the baseline",
    )
    parser.add_argument("--combo", action="append", default=None, help="a combination a+b of candidates (repeatable)")
    args = parser.parse_args(argv)
    if args.combo is None:
        args.combo = ["skb-free+kmem", "kfree+kmem"]
    problem = require_root_and_tools()
    if problem:
        print(f"measure_markers: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _sigterm)
    cleanup_stale()
    # this script and perf on CPU 1, every workload process on CPU 0 (see capture_paths.py)
    os.sched_setaffinity(0, {PERF_CPU})
    result = measure(args)
    print(markdown(result["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
