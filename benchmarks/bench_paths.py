"""Benchmark path reconstruction: events per second of ``perfnet.paths`` on ~2M events.

The events frame is synthesized from two exchanges as the lab captures them, replicated with
overlapping timestamps, one thread per exchange, and skb addresses drawn from a small pool so
that every address is reused many times (with the frees that end each use):

* ARP request and reply plus ICMP echo over bridge ``brx`` -> veth ``vethx0`` -> ``eth0``
  in a namespace (the real ``perf trace`` lines quoted in ``tests/test_paths.py``);
* an ICMP echo routed through a container: ``pnbr1>pnv1>eth0>eth1>eth0`` and back.

Run ``python benchmarks/bench_paths.py [--events N] [--net-only]``; ``--net-only`` drops the
``skb:*`` events, so lifetimes come from the structural rules alone.  ``--capture FILE`` times
the same steps on a real capture instead (e.g. the flood of ``scripts/capture_fixtures.py
--big``), read once with ``perfnet.read``; its last line is what ``trace.packets`` costs there:
topology inference, the walk through the inferred graph and the namespace labels.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

import perfnet
from perfnet import analysis, paths
from perfnet.infer import infer_topology
from perfnet.topology import label_paths

# (microseconds, event, device, address slot, len, protocol, reason); slot -1: no skbaddr.
Template = list[tuple[int, str, str | None, int, int | None, int | None, str | None]]

Q, SX, X = "net:net_dev_queue", "net:net_dev_start_xmit", "net:net_dev_xmit"
RXE, RX, RXX = "net:netif_rx_entry", "net:netif_rx", "net:netif_rx_exit"
RS, RSE, RSX = "net:netif_receive_skb", "net:netif_receive_skb_entry", "net:netif_receive_skb_exit"
CONSUME, KFREE, COPY = "skb:consume_skb", "skb:kfree_skb", "skb:skb_copy_datagram_iovec"

PING_BRIDGE: Template = [
    (0, Q, "brx", 0, 42, None, None),
    (27, SX, "brx", 0, 42, 2054, None),
    (45, Q, "vethx0", 0, 42, None, None),
    (56, SX, "vethx0", 0, 42, 2054, None),
    (68, RXE, "eth0", 0, 28, 2054, None),
    (79, RX, "eth0", 0, 28, None, None),
    (90, RXX, None, -1, None, None, None),
    (101, X, "vethx0", 0, 42, None, None),
    (111, X, "brx", 0, 42, None, None),
    (122, CONSUME, None, 1, None, None, None),
    (137, RS, "eth0", 0, 28, None, None),
    (156, CONSUME, None, 1, None, None, None),
    (168, Q, "eth0", 1, 42, None, None),
    (179, SX, "eth0", 1, 42, 2054, None),
    (191, RXE, "vethx0", 1, 28, 2054, None),
    (201, RX, "vethx0", 1, 28, None, None),
    (212, RXX, None, -1, None, None, None),
    (222, X, "eth0", 1, 42, None, None),
    (233, CONSUME, None, 0, None, None, None),
    (245, RS, "vethx0", 1, 28, None, None),
    (266, RSE, "brx", 1, 28, 2054, None),
    (277, RS, "brx", 1, 28, None, None),
    (289, Q, "brx", 2, 98, None, None),
    (300, SX, "brx", 2, 98, 2048, None),
    (311, Q, "vethx0", 2, 98, None, None),
    (323, SX, "vethx0", 2, 98, 2048, None),
    (334, RXE, "eth0", 2, 84, 2048, None),
    (344, RX, "eth0", 2, 84, None, None),
    (355, RXX, None, -1, None, None, None),
    (366, X, "vethx0", 2, 98, None, None),
    (376, X, "brx", 2, 98, None, None),
    (387, CONSUME, None, 0, None, None, None),
    (398, CONSUME, None, 1, None, None, None),
    (409, RSX, None, -1, None, None, None),
    (420, RS, "eth0", 2, 84, None, None),
    (533, Q, "eth0", 1, 98, None, None),
    (544, SX, "eth0", 1, 98, 2048, None),
    (555, RXE, "vethx0", 1, 84, 2048, None),
    (566, RX, "vethx0", 1, 84, None, None),
    (576, RXX, None, -1, None, None, None),
    (587, X, "eth0", 1, 98, None, None),
    (597, CONSUME, None, 2, None, None, None),
    (608, RS, "vethx0", 1, 84, None, None),
    (620, RSE, "brx", 1, 84, 2048, None),
    (631, RS, "brx", 1, 84, None, None),
    (653, KFREE, None, 1, None, 2048, "NO_SOCKET"),
    (664, RSX, None, -1, None, None, None),
    (682, COPY, None, 2, 84, None, None),
    (694, CONSUME, None, 2, None, None, None),
]

ROUTED: Template = [
    (0, Q, "pnbr1", 0, 98, None, None),
    (9, SX, "pnbr1", 0, 98, 2048, None),
    (18, Q, "pnv1", 0, 98, None, None),
    (27, SX, "pnv1", 0, 98, 2048, None),
    (36, RXE, "eth0", 0, 84, 2048, None),
    (45, RX, "eth0", 0, 84, None, None),
    (54, RXX, None, -1, None, None, None),
    (63, X, "pnv1", 0, 98, None, None),
    (72, X, "pnbr1", 0, 98, None, None),
    (90, RS, "eth0", 0, 84, None, None),
    (99, Q, "eth1", 0, 98, None, None),
    (108, SX, "eth1", 0, 98, 2048, None),
    (117, RXE, "eth0", 0, 84, 2048, None),
    (126, RX, "eth0", 0, 84, None, None),
    (135, RXX, None, -1, None, None, None),
    (144, X, "eth1", 0, 98, None, None),
    (162, RS, "eth0", 0, 84, None, None),
    (171, Q, "eth0", 1, 98, None, None),
    (180, SX, "eth0", 1, 98, 2048, None),
    (189, RXE, "eth1", 1, 84, 2048, None),
    (198, RX, "eth1", 1, 84, None, None),
    (207, RXX, None, -1, None, None, None),
    (216, X, "eth0", 1, 98, None, None),
    (225, CONSUME, None, 0, None, None, None),
    (243, RS, "eth1", 1, 84, None, None),
    (252, Q, "eth0", 1, 98, None, None),
    (261, SX, "eth0", 1, 98, 2048, None),
    (270, RXE, "pnv1", 1, 84, 2048, None),
    (279, RX, "pnv1", 1, 84, None, None),
    (288, RXX, None, -1, None, None, None),
    (297, X, "eth0", 1, 98, None, None),
    (315, RS, "pnv1", 1, 84, None, None),
    (324, RSE, "pnbr1", 1, 84, 2048, None),
    (333, RS, "pnbr1", 1, 84, None, None),
    (342, KFREE, None, 1, None, 2048, "NO_SOCKET"),
    (351, RSX, None, -1, None, None, None),
]


def synthesize(n_events: int, *, slots: int = 4096, spacing_us: int = 150, seed: int = 0) -> pd.DataFrame:
    """Replicate the templates into a time-sorted events frame of about ``n_events`` rows.

    Exchange ``i`` starts ``i * spacing_us`` (plus jitter) after the first, so several are in
    flight at once, runs on thread ``1000 + i % 97`` and CPU ``i % 2``, and takes its
    addresses from pool slots ``i * 3 % slots ...``: each address is reused every
    ``slots / 3`` exchanges.
    """
    rng = np.random.default_rng(seed)
    templates = [PING_BRIDGE, ROUTED]
    per_pair = len(PING_BRIDGE) + len(ROUTED)
    blocks = max(2, 2 * round(n_events / per_pair))
    which = np.arange(blocks) % 2
    start = np.arange(blocks) * spacing_us * 1000 + rng.integers(0, spacing_us * 500, blocks)
    parts = []
    for k, template in enumerate(templates):
        ids = np.flatnonzero(which == k)
        t, ev, dev, slot, length, proto, reason = (np.array(col, dtype=object) for col in zip(*template, strict=True))
        block = np.repeat(ids, len(template))
        slots_used = np.tile(slot.astype(np.int64), ids.size)
        addr = np.uint64(0xFFFF888100000000) + ((block * 3 + slots_used) % slots).astype(np.uint64) * np.uint64(0x100)
        skbaddr = pd.array(addr, dtype="UInt64")
        skbaddr[slots_used < 0] = pd.NA
        parts.append(
            pd.DataFrame(
                {
                    "time_ns": np.repeat(start[ids], len(template)) + np.tile(t.astype(np.int64) * 1000, ids.size),
                    "comm": "ping",
                    "tid": pd.array(1000 + block % 97, dtype="Int64"),
                    "cpu": pd.array(block % 2, dtype="Int64"),
                    "event": np.tile(ev, ids.size),
                    "dev": np.tile(dev, ids.size),
                    "skbaddr": skbaddr,
                    "len": pd.array(np.tile(length, ids.size), dtype="Int64"),
                    "protocol": pd.array(np.tile(proto, ids.size), dtype="Int64"),
                    "reason": np.tile(reason, ids.size),
                    "location": None,
                }
            )
        )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values("time_ns", kind="stable", ignore_index=True)
    frame["lineno"] = np.arange(1, len(frame) + 1, dtype=np.int64)
    for column in ("comm", "event", "dev"):  # as in Trace.events
        frame[column] = frame[column].astype("category")
    return frame


def packets_of(events: pd.DataFrame) -> pd.Series:
    """What ``Trace.packets`` computes for a capture without a saved topology."""
    topology = infer_topology(events)
    return label_paths(paths.reconstruct(events, topology=topology).packets["path"], topology)


def best_of(runs: int, func: Callable[[], object]) -> float:
    """The fastest of ``runs`` timed calls, in seconds."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    """Synthesize the frame, time each step and print events per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000, help="approximate number of events")
    parser.add_argument("--net-only", action="store_true", help="drop the skb:* events")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per step (best is kept)")
    parser.add_argument("--capture", help="time a real capture (read once) instead of synthetic events")
    args = parser.parse_args()

    events = perfnet.read(args.capture).events if args.capture else synthesize(args.events)
    if args.net_only:
        events = events[~events["event"].str.startswith("skb:")].reset_index(drop=True)
    n = len(events)
    labels = paths.segment(events)
    inferred = infer_topology(events)
    print(f"{n:,} events; packets by path (6 per pair of exchanges):")
    print(analysis.path_table(paths.packets(events, labels)).to_string(index=False))
    steps: dict[str, Callable[[], object]] = {
        "segment": lambda: paths.segment(events),
        "packets": lambda: paths.packets(events, labels),
        "hops": lambda: paths.hops(events, labels),
        "stages": lambda: paths.stages(events, labels),
        "drops": lambda: paths.drops(events, labels),
        "reconstruct": lambda: paths.reconstruct(events),
        "infer": lambda: infer_topology(events),
        "reconstruct on the inferred graph": lambda: paths.reconstruct(events, topology=inferred),
        "trace.packets (infer, walk, labels)": lambda: packets_of(events),
    }
    for name, func in steps.items():
        seconds = best_of(args.runs, func)
        print(f"{name:36} {seconds:7.3f} s  {n / seconds / 1e6:6.2f} M events/s")


if __name__ == "__main__":
    main()
