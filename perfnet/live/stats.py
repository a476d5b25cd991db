"""What a live capture cost, and whether it saw every packet the interfaces counted."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import pandas as pd
import psutil

from perfnet.host.netns import netns_names, packet_counters
from perfnet.host.perf import perf_version
from perfnet.live.perf_process import PerfProcess
from perfnet.records import Item, Message, Record

_XMIT: Final = "net:net_dev_xmit"
_QUEUE: Final = "net:net_dev_queue"
_RECEIVE: Final = "net:netif_receive_skb"


@dataclass(frozen=True, eq=False)
class CaptureStats:
    """What a live capture cost, and whether it saw every packet the interfaces counted.

    Attributes:
        argv: perf's command line as run (the traced command after ``--``; perfnet's supervisor,
            which starts it, is left out).
        command: the traced command, empty for none.
        returncode: the traced command's exit status; None when there was no command or it
            never started.
        perf_version: as ``perf --version`` prints it, e.g. ``6.1.187``.
        kernel: the kernel release (``uname -r``).
        wall_s: seconds from starting perf until it exited.
        started_at: when perf was started, wall-clock seconds since the epoch.
        boot_time: when the capturing host booted, seconds since the epoch: ``perf script``
            times are seconds since boot, so ``boot_time + time_ns / 1e9`` puts events of
            captures from many hosts on one clock (to the hosts' clock accuracy).
        cpu_user_s, cpu_system_s: perf's own CPU time (not its workload's), in clock ticks'
            resolution; for ``mode="record"`` that of ``perf record``, not ``perf script``.
        peak_rss_bytes: perf's peak resident set size (its ``VmHWM``, sampled while it ran).
        lost: events perf reported lost (``LOST`` lines, ``PERF_RECORD_LOST`` records).
        counters: one row per interface of every named network namespace (``ip netns``) and
            the current one: ``netns`` (missing, NaN, for perfnet's own), ``dev``, ``tx_packets`` and
            ``rx_packets`` (counter deltas between the moment tracing was live and the command's
            end), ``tx_events`` (``net_dev_xmit`` with rc 0 on a device of that name, or
            ``net_dev_queue`` if xmit was not captured) and ``rx_events``
            (``netif_receive_skb``), ``namesakes`` (how many namespaces have a device of that
            name: events carry only the name, so events are compared with the deltas summed
            over namesakes) and ``complete`` (the compared counts agree; False when neither
            direction was captured).  Empty when the counters could not be read.
        perf_stderr: what perf printed on its stderr (warnings, ``perf record``'s summary).
    """

    argv: tuple[str, ...]
    command: tuple[str, ...]
    returncode: int | None
    perf_version: str
    kernel: str
    wall_s: float
    started_at: float
    boot_time: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int
    lost: int
    counters: pd.DataFrame = field(repr=False)
    perf_stderr: str = field(default="", repr=False)

    @property
    def cpu_s(self) -> float:
        """perf's CPU time, user plus system, in seconds."""
        return self.cpu_user_s + self.cpu_system_s


Counters = dict[tuple[str | None, str], tuple[int, int]]


def link_counters() -> Counters:
    """``(netns or None, dev) -> (tx_packets, rx_packets)`` for perfnet's namespace and every named one."""
    return {
        (netns, dev): packets for netns in [None, *netns_names()] for dev, packets in packet_counters(netns).items()
    }


def counter_frame(before: Counters, after: Counters, tally: Tally) -> pd.DataFrame:
    """Counter deltas per interface next to the events seen on devices of that name."""
    keys = [key for key in after if key in before]
    names = Counter(dev for _, dev in keys)
    frame = pd.DataFrame(
        {
            "netns": pd.array([netns for netns, _ in keys], dtype="object"),
            "dev": pd.array([dev for _, dev in keys], dtype="object"),
            "tx_packets": pd.array([after[key][0] - before[key][0] for key in keys], dtype="int64"),
            "rx_packets": pd.array([after[key][1] - before[key][1] for key in keys], dtype="int64"),
            "tx_events": pd.array([tally.tx_events(dev) for _, dev in keys], dtype="Int64"),
            "rx_events": pd.array([tally.rx_events(dev) for _, dev in keys], dtype="Int64"),
            "namesakes": pd.array([names[dev] for _, dev in keys], dtype="int64"),
        }
    )
    sums = frame.groupby("dev")[["tx_packets", "rx_packets"]].transform("sum")
    tx_ok = frame["tx_events"].isna() | (frame["tx_events"] == sums["tx_packets"])
    rx_ok = frame["rx_events"].isna() | (frame["rx_events"] == sums["rx_packets"])
    compared = frame["tx_events"].notna() | frame["rx_events"].notna()
    frame["complete"] = (tx_ok & rx_ok & compared).astype(bool)
    return frame.sort_values(["netns", "dev"], na_position="first", ignore_index=True)


class Tally:
    """Counts the transmit and receive events per device name, as records pass by."""

    def __init__(self, captured: set[str]) -> None:
        self.tx_event = _XMIT if _XMIT in captured else _QUEUE if _QUEUE in captured else None
        self.rx_captured = _RECEIVE in captured
        self.tx: Counter[str] = Counter()
        self.rx: Counter[str] = Counter()

    def add(self, record: Record) -> None:
        dev = record.dev
        if dev is None:
            return
        if record.event == self.tx_event and (record.event != _XMIT or not record.fields.get("rc")):
            self.tx[dev] += 1
        elif record.event == _RECEIVE:
            self.rx[dev] += 1

    def tx_events(self, dev: str) -> int | None:
        return self.tx[dev] if self.tx_event else None

    def rx_events(self, dev: str) -> int | None:
        return self.rx[dev] if self.rx_captured else None


class Accounting:
    """Counter-versus-event accounting of one capture: the interface counters when tracing went
    live and when the command ended, the events counted as they are parsed, perf's losses."""

    def __init__(self) -> None:
        self.tally = Tally(set())
        self.lost = 0
        self._before: Counters = {}
        self._after: Counters = {}

    def begin(self, captured: set[str]) -> None:
        """Tracing is live with these events: read the counters."""
        self.tally = Tally(captured)
        self._before = link_counters()

    def end(self) -> None:
        """The command has ended, perf still traces: read the counters again."""
        if self._before:
            self._after = link_counters()

    def count(self, items: Iterator[Item]) -> Iterator[Item]:
        """Pass ``items`` on, counting their events and losses."""
        for item in items:
            if isinstance(item, Record):
                self.tally.add(item)
            elif isinstance(item, Message):
                self.lost += item.lost
            yield item

    def frame(self) -> pd.DataFrame:
        """:attr:`CaptureStats.counters`."""
        return counter_frame(self._before, self._after, self.tally)


def capture_stats(
    perf: PerfProcess, accounting: Accounting, argv: Sequence[str], command: tuple[str, ...], returncode: int | None
) -> CaptureStats:
    """The :class:`CaptureStats` of a capture whose perf has been reaped."""
    return CaptureStats(
        argv=tuple(argv),
        command=command,
        returncode=returncode,
        perf_version=perf_version(argv[0]),
        kernel=os.uname().release,
        wall_s=perf.ended - perf.started,
        started_at=perf.started_at,
        boot_time=psutil.boot_time(),
        cpu_user_s=perf.cpu[0],
        cpu_system_s=perf.cpu[1],
        peak_rss_bytes=perf.peak_rss,
        lost=accounting.lost,
        counters=accounting.frame(),
        perf_stderr=perf.stderr,
    )
