"""Path reconstruction: packet lifetimes, exit attribution, visits and the path frames."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pytest

import perfnet
from perfnet import paths
from perfnet.topology import Link, Netns, Topology

# A real `perf trace -e 'net:*' -e skb:consume_skb -e skb:kfree_skb ping ...` capture on this
# machine: bridge brx -> veth vethx0 -> eth0 in a netns, one ARP exchange and one echo (some
# trailing fields cut; kfree_skb's reason 3 named as with the kernel's table).
REAL = [
    '0.000 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959d00, len: 42, name: "brx")',
    '0.027 ping/2000 net:net_dev_start_xmit(name: "brx", skbaddr: 0xffff888105959d00, protocol: 2054, len: 42)',
    '0.045 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959d00, len: 42, name: "vethx0")',
    '0.056 ping/2000 net:net_dev_start_xmit(name: "vethx0", skbaddr: 0xffff888105959d00, protocol: 2054, len: 42)',
    '0.068 ping/2000 net:netif_rx_entry(name: "eth0", skbaddr: 0xffff888105959d00, protocol: 2054, len: 28)',
    '0.079 ping/2000 net:netif_rx(skbaddr: 0xffff888105959d00, len: 28, name: "eth0")',
    "0.090 ping/2000 net:netif_rx_exit()",
    '0.101 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959d00, len: 42, name: "vethx0")',
    '0.111 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959d00, len: 42, name: "brx")',
    "0.122 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959100, location: 0xffffffff81e77e96)",
    '0.137 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959d00, len: 28, name: "eth0")',
    "0.156 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959100, location: 0xffffffff81efff6f)",
    '0.168 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959100, len: 42, name: "eth0")',
    '0.179 ping/2000 net:net_dev_start_xmit(name: "eth0", skbaddr: 0xffff888105959100, protocol: 2054, len: 42)',
    '0.191 ping/2000 net:netif_rx_entry(name: "vethx0", skbaddr: 0xffff888105959100, protocol: 2054, len: 28)',
    '0.201 ping/2000 net:netif_rx(skbaddr: 0xffff888105959100, len: 28, name: "vethx0")',
    "0.212 ping/2000 net:netif_rx_exit()",
    '0.222 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959100, len: 42, name: "eth0")',
    "0.233 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959d00, location: 0xffffffff8204dc68)",
    '0.245 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959100, len: 28, name: "vethx0")',
    '0.266 ping/2000 net:netif_receive_skb_entry(name: "brx", skbaddr: 0xffff888105959100, protocol: 2054, len: 28)',
    '0.277 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959100, len: 28, name: "brx")',
    '0.289 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959400, len: 98, name: "brx")',
    '0.300 ping/2000 net:net_dev_start_xmit(name: "brx", skbaddr: 0xffff888105959400, protocol: 2048, len: 98)',
    '0.311 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959400, len: 98, name: "vethx0")',
    '0.323 ping/2000 net:net_dev_start_xmit(name: "vethx0", skbaddr: 0xffff888105959400, protocol: 2048, len: 98)',
    '0.334 ping/2000 net:netif_rx_entry(name: "eth0", skbaddr: 0xffff888105959400, protocol: 2048, len: 84)',
    '0.344 ping/2000 net:netif_rx(skbaddr: 0xffff888105959400, len: 84, name: "eth0")',
    "0.355 ping/2000 net:netif_rx_exit()",
    '0.366 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959400, len: 98, name: "vethx0")',
    '0.376 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959400, len: 98, name: "brx")',
    "0.387 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959d00, location: 0xffffffff81efff6f)",
    "0.398 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959100, location: 0xffffffff8204dc68)",
    "0.409 ping/2000 net:netif_receive_skb_exit()",
    '0.420 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959400, len: 84, name: "eth0")',
    '0.533 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959100, len: 98, name: "eth0")',
    '0.544 ping/2000 net:net_dev_start_xmit(name: "eth0", skbaddr: 0xffff888105959100, protocol: 2048, len: 98)',
    '0.555 ping/2000 net:netif_rx_entry(name: "vethx0", skbaddr: 0xffff888105959100, protocol: 2048, len: 84)',
    '0.566 ping/2000 net:netif_rx(skbaddr: 0xffff888105959100, len: 84, name: "vethx0")',
    "0.576 ping/2000 net:netif_rx_exit()",
    '0.587 ping/2000 net:net_dev_xmit(skbaddr: 0xffff888105959100, len: 98, name: "eth0")',
    "0.597 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959400, location: 0xffffffff82051989)",
    '0.608 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959100, len: 84, name: "vethx0")',
    '0.620 ping/2000 net:netif_receive_skb_entry(name: "brx", skbaddr: 0xffff888105959100, protocol: 2048, len: 84)',
    '0.631 ping/2000 net:netif_receive_skb(skbaddr: 0xffff888105959100, len: 84, name: "brx")',
    "0.653 ping/2000 skb:kfree_skb(skbaddr: 0xffff888105959100, location: 0xffffffff8207026b, "
    "protocol: 2048, reason: NO_SOCKET)",
    "0.664 ping/2000 net:netif_receive_skb_exit()",
    "0.682 ping/2000 skb:skb_copy_datagram_iovec(skbaddr: 0xffff888105959400, len: 84)",
    "0.694 ping/2000 skb:consume_skb(skbaddr: 0xffff888105959400, location: 0xffffffff8204050c)",
]
D00, A100, A400 = 0xFFFF888105959D00, 0xFFFF888105959100, 0xFFFF888105959400

_LINE = re.compile(r"(?P<ms>[\d.]+) (?P<comm>[^/]+)/(?P<tid>\d+) (?P<event>[\w:]+)\((?P<fields>.*)\)$")
_FIELD = re.compile(r'(\w+): ("[^"]*"|[^,]+)')
_TYPES: dict[str, Any] = {
    "time_ns": "int64",
    "comm": object,
    "tid": "Int64",
    "cpu": "Int64",
    "event": object,
    "dev": object,
    "skbaddr": "UInt64",
    "len": "Int64",
    "protocol": "Int64",
    "reason": object,
    "location": object,
    "lineno": "int64",
}


def frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """An events frame with the reader's columns and dtypes; missing keys are missing values."""
    rows = list(rows)
    return pd.DataFrame({c: pd.array([r.get(c) for r in rows], dtype=t) for c, t in _TYPES.items()})


def real(lines: Iterable[str] = REAL) -> pd.DataFrame:
    """Transcribe perf trace lines (as above) into an events frame."""
    rows = []
    for lineno, line in enumerate(lines, 1):
        m = _LINE.match(line)
        assert m, line
        f = dict(_FIELD.findall(m["fields"]))
        rows.append(
            {
                "time_ns": round(float(m["ms"]) * 1_000_000),
                "comm": m["comm"],
                "tid": int(m["tid"]),
                "event": m["event"],
                "dev": f["name"].strip('"') if "name" in f else None,
                "skbaddr": int(f["skbaddr"], 16) if "skbaddr" in f else None,
                "len": int(f["len"]) if "len" in f else None,
                "protocol": int(f["protocol"]) if "protocol" in f else None,
                "reason": f.get("reason"),
                "location": f.get("location"),
                "lineno": lineno,
            }
        )
    return frame(rows)


def synthetic(*rows: tuple[Any, ...], **common: Any) -> pd.DataFrame:
    """Events from ``(µs, event, dev, skbaddr, len[, {more columns}])`` tuples."""
    out = []
    for i, (us, event, dev, addr, length, *more) in enumerate(rows):
        row = {"time_ns": us * 1000, "event": event, "dev": dev, "skbaddr": addr, "len": length, "lineno": i + 1}
        out.append(row | {"comm": "t", "tid": 1} | common | (more[0] if more else {}))
    return frame(out)


Q, SX, X = "net:net_dev_queue", "net:net_dev_start_xmit", "net:net_dev_xmit"
RXE, RX, RXX = "net:netif_rx_entry", "net:netif_rx", "net:netif_rx_exit"
RS, RSE, RSX = "net:netif_receive_skb", "net:netif_receive_skb_entry", "net:netif_receive_skb_exit"
LE, LX = "net:netif_receive_skb_list_entry", "net:netif_receive_skb_list_exit"
CONSUME, KFREE, COPY = "skb:consume_skb", "skb:kfree_skb", "skb:skb_copy_datagram_iovec"


def path_list(events: pd.DataFrame, **kwargs: Any) -> list[str]:
    """The packets' paths, in packet order."""
    return [str(p) for p in paths.reconstruct(events, **kwargs).packets["path"]]


# --- the real capture --------------------------------------------------------------------


def test_real_capture_packets() -> None:
    packets = paths.reconstruct(real()).packets
    assert packets.to_dict("list") == {
        "packet_id": [0, 1, 2, 3],
        "skbaddr": [D00, A100, A400, A100],
        "start_ns": [0, 168_000, 289_000, 533_000],
        "end_ns": [233_000, 409_000, 597_000, 664_000],
        "duration_ns": [233_000, 241_000, 308_000, 131_000],
        # to the last net:* event: the request's free (0.233) and copy to ping (0.682) excluded
        "transit_ns": [137_000, 241_000, 131_000, 131_000],
        "path": ["brx>vethx0>eth0", "eth0>vethx0>brx", "brx>vethx0>eth0", "eth0>vethx0>brx"],
        "n_events": [11, 11, 11, 11],
        "len": [42, 42, 98, 98],
        "protocol": [2054, 2054, 2048, 2048],
        "kind": ["local"] * 4,
        "end": ["consumed", "consumed", "consumed", "dropped:NO_SOCKET"],
        # the next lifetime of each address starts after a free (0x...d00: the consume at 0.387;
        # 0x...100: the queue at 0.533; 0x...400: the copy at 0.682); the echo reply is the last
        # packet on 0x...100
        "ended_by": ["free", "free", "free", "capture end"],
    }
    assert packets.dtypes["skbaddr"] == "UInt64" and packets.dtypes["len"] == "Int64"
    assert list(packets.columns)[-1] == "ended_by"
    assert packets.dtypes["ended_by"] == pd.CategoricalDtype(list(paths.ENDED_BY))


def test_real_capture_labels() -> None:
    labels = paths.segment(real())
    # ARP request (0), ARP reply (1), echo request (2), echo reply (3); -1: frees and the
    # raw socket's clone (copy + consume at 0x...400) that never passed a device.
    assert labels["packet_id"].tolist() == (
        [0] * 9
        + [-1, 0, -1]
        + [1] * 6
        + [0, 1, 1, 1]
        + [2] * 9
        + [-1, 1, 1, 2]
        + [3] * 6
        + [2, 3, 3, 3, 3, 3]
        + [-1, -1]
    )
    visits = [
        [0, 0, 1, 1, 2, 2, 2, 1, 0, -1, 2, -1],
        [0, 0, 1, 1, 1, 0, 2, 1, 2, 2],
        [0, 0, 1, 1, 2, 2, 2, 1, 0, -1, 2],
    ]
    visits += [[2, 2, 0, 0, 1, 1, 1, 0, 2, 1, 2, 2, 2, 2, -1, -1]]
    assert labels["visit"].tolist() == [v for part in visits for v in part]
    # each event carries the reason its packet ended (see test_real_capture_packets); none
    # for events of no packet
    ended = {-1: None, 0: "free", 1: "free", 2: "free", 3: "capture end"}
    got = labels["ended_by"].astype(object).where(labels["ended_by"].notna(), None).tolist()
    assert got == [ended[p] for p in labels["packet_id"]]
    assert labels.index.equals(real().index) and list(labels.columns) == ["packet_id", "visit", "ended_by"]
    assert labels.dtypes.iloc[:2].tolist() == [np.int64, np.int64]
    assert labels.dtypes["ended_by"] == pd.CategoricalDtype(list(paths.ENDED_BY))


def test_exits_close_the_latest_open_entry_of_their_thread() -> None:
    events = real()
    labels = paths.segment(events)
    exits = events["event"].str.endswith("_exit")
    # netif_rx_exit at 0.090/0.212/0.355/0.576; netif_receive_skb_exit at 0.409 (closes the
    # ARP reply's entry at 0.266 on brx, after the reply was consumed) and 0.664.
    assert events.loc[exits, "time_ns"].tolist() == [90_000, 212_000, 355_000, 409_000, 576_000, 664_000]
    assert labels.loc[exits, "packet_id"].tolist() == [0, 1, 2, 1, 3, 3]
    assert labels.loc[exits, "visit"].tolist() == [2, 1, 2, 2, 1, 2]


def test_without_skb_events_the_paths_are_the_same() -> None:
    events = real()
    net = events[~events["event"].str.startswith("skb:")].reset_index(drop=True)
    packets = paths.reconstruct(net).packets
    assert packets["path"].tolist() == ["brx>vethx0>eth0", "eth0>vethx0>brx", "brx>vethx0>eth0", "eth0>vethx0>brx"]
    assert packets["end"].tolist() == ["unknown"] * 4
    assert packets["n_events"].tolist() == [10, 10, 10, 10]
    # 0x...100 carries the ARP reply, then the echo reply: no free separates them here, the
    # queue on eth0 with len 98 after one with len 42 does.
    assert packets["skbaddr"].tolist() == [D00, A100, A400, A100]
    assert packets["end_ns"].tolist() == [137_000, 409_000, 420_000, 664_000]
    assert packets["ended_by"].tolist() == ["capture end", "length", "capture end", "capture end"]


def test_unsorted_input_gives_the_same_labels_and_frames() -> None:
    events = real()
    shuffled = events.sample(frac=1.0, random_state=7)
    assert paths.segment(shuffled).sort_index().equals(paths.segment(events))
    for name in ("packets", "hops", "stages", "drops"):
        got, want = getattr(paths.reconstruct(shuffled), name), getattr(paths.reconstruct(events), name)
        pd.testing.assert_frame_equal(got, want)


def test_hop_latencies() -> None:
    hops = paths.reconstruct(real()).hops
    assert hops.astype({c: str for c in ("from_dev", "to_dev", "from_event", "to_event")}).to_dict("list") == {
        "packet_id": [0, 0, 1, 1, 2, 2, 3, 3],
        "hop": [0, 1, 0, 1, 0, 1, 0, 1],
        "start_ns": [0, 45_000, 168_000, 191_000, 289_000, 311_000, 533_000, 555_000],
        "from_dev": ["brx", "vethx0", "eth0", "vethx0", "brx", "vethx0", "eth0", "vethx0"],
        "to_dev": ["vethx0", "eth0", "vethx0", "brx", "vethx0", "eth0", "vethx0", "brx"],
        "from_event": [Q, Q, Q, RXE, Q, Q, Q, RXE],
        "to_event": [Q, RXE, RXE, RSE, Q, RXE, RXE, RSE],
        "latency_ns": [45_000, 23_000, 23_000, 75_000, 22_000, 23_000, 22_000, 65_000],
    }


def test_stages_of_the_echo_reply() -> None:
    stages = paths.reconstruct(real()).stages
    reply = stages[stages["packet_id"] == 3].astype({"dev": str, "from_event": str, "to_event": str})
    assert reply.drop(columns="packet_id").values.tolist() == [
        [0, "eth0", Q, SX, 11_000],
        [0, "eth0", SX, X, 43_000],
        [1, "vethx0", RXE, RX, 11_000],
        [1, "vethx0", RX, RXX, 10_000],
        [1, "vethx0", RXX, RS, 32_000],
        [2, "brx", RSE, RS, 11_000],
        [2, "brx", RS, KFREE, 22_000],
        [2, "brx", KFREE, RSX, 11_000],
    ]
    assert len(stages) == 32


def test_drops_by_reason_location_and_device() -> None:
    events = real()
    extra = synthetic((1000, KFREE, None, 0xABC, None, {"reason": "NO_SOCKET", "location": "0xffffffff8207026b"}))
    both = pd.concat([events, extra], ignore_index=True)
    drops = paths.reconstruct(both).drops
    assert drops["reason"].tolist() == ["NO_SOCKET", "NO_SOCKET"]
    assert drops["location"].tolist() == ["0xffffffff8207026b", "0xffffffff8207026b"]
    assert drops["dev"].iloc[0] == "brx" and pd.isna(drops["dev"].iloc[1])  # never reached a device
    assert drops["count"].tolist() == [1, 1]


# --- lifetime rules ----------------------------------------------------------------------


def test_free_ends_a_packet_but_not_a_late_transmit_completion() -> None:
    events = synthetic(
        (0, Q, "veth0", 1, 98),
        (1, SX, "veth0", 1, 98),
        (2, KFREE, None, 1, None, {"reason": "DEV_READY"}),
        (3, X, "veth0", 1, 98),  # printed when the driver call returns, after the drop
        (4, Q, "veth0", 1, 98),
    )
    labels = paths.segment(events)
    assert labels["packet_id"].tolist() == [0, 0, 0, 0, 1]
    packets = paths.packets(events, labels)
    assert packets["end"].tolist() == ["dropped:DEV_READY", "unknown"]
    assert packets["ended_by"].tolist() == ["free", "capture end"]


def test_lifetimes_without_a_device_are_not_packets() -> None:
    events = synthetic((0, CONSUME, None, 1, None), (5, COPY, None, 2, 84), (6, CONSUME, None, 2, None))
    labels = paths.segment(events)
    assert labels["packet_id"].tolist() == [-1, -1, -1]
    assert labels["ended_by"].isna().all()
    assert paths.reconstruct(events).packets.empty


def test_same_address_queued_twice_on_a_device_is_two_packets() -> None:
    events = synthetic((0, Q, "eth0", 1, 98), (10, SX, "eth0", 1, 98), (20, X, "eth0", 1, 98), (30, Q, "eth0", 1, 98))
    assert path_list(events) == ["eth0", "eth0"]
    assert paths.reconstruct(events).packets["ended_by"].tolist() == ["repeat", "capture end"]


def test_queue_right_after_start_xmit_on_the_same_name_is_a_stacked_device() -> None:
    # macvlan eth0 in a container over the host's eth0: one packet, two visits.
    events = synthetic(
        (0, Q, "eth0", 1, 98),
        (1, SX, "eth0", 1, 98),
        (2, Q, "eth0", 1, 98),
        (3, SX, "eth0", 1, 98),
        (4, X, "eth0", 1, 98),
    )
    labels = paths.segment(events)
    assert labels["packet_id"].tolist() == [0] * 5
    assert labels["visit"].tolist() == [0, 0, 1, 1, 1]
    assert path_list(events) == ["eth0>eth0"]


def test_packet_held_in_a_port_qdisc_stays_one_packet() -> None:
    # tbf on a bridge port: the bridge's transmit returns (net_dev_xmit) once the qdisc took the
    # packet; the port's start_xmit comes 7 ms later, from the qdisc's timer (real tbf capture).
    events = synthetic(
        (0, Q, "br0", 1, 1042),
        (5, SX, "br0", 1, 1042),
        (9, Q, "veth0", 1, 1042),
        (40, X, "br0", 1, 1042),
        (7300, SX, "veth0", 1, 1042),
        (7310, RXE, "eth0", 1, 1028),
        (7320, X, "veth0", 1, 1042),
    )
    assert paths.segment(events)["packet_id"].tolist() == [0] * 7
    assert path_list(events) == ["br0>veth0>eth0"]
    stages = paths.reconstruct(events).stages
    held = stages[(stages["dev"] == "veth0") & (stages["from_event"] == Q)]
    assert held[["to_event", "latency_ns"]].values.tolist() == [[SX, 7_291_000]]


def test_receive_repeated_on_a_device_is_a_new_packet() -> None:
    events = synthetic((0, RXE, "eth0", 1, 84), (1, RX, "eth0", 1, 84), (2, RS, "eth0", 1, 84), (30, RS, "eth0", 1, 84))
    labels = paths.segment(events)
    assert labels["packet_id"].tolist() == [0, 0, 0, 1]
    assert labels["ended_by"].tolist() == ["repeat"] * 3 + ["capture end"]


def test_transmit_out_of_the_receiving_device_is_a_new_packet() -> None:
    # Received and delivered on eth0, then a reply is queued on eth0 in the freed skb.
    events = synthetic((0, RXE, "eth0", 1, 52), (1, RS, "eth0", 1, 52), (300, Q, "eth0", 1, 66))
    assert path_list(events) == ["eth0", "eth0"]
    assert paths.reconstruct(events).packets["kind"].tolist() == ["received", "transmitted"]
    assert paths.reconstruct(events).packets["ended_by"].tolist() == ["repeat", "capture end"]


def test_transmit_then_receive_on_one_name_is_one_packet() -> None:
    # Loopback: queued on lo, received on lo.
    events = synthetic(
        (0, Q, "lo", 1, 74), (1, SX, "lo", 1, 74), (2, RX, "lo", 1, 60), (3, X, "lo", 1, 74), (4, RS, "lo", 1, 60)
    )
    assert path_list(events) == ["lo>lo"]
    assert paths.reconstruct(events).packets["kind"].tolist() == ["local"]


def test_names_repeated_across_namespaces_stay_one_packet() -> None:
    # The lab: root bridge -> veth -> eth0 (ctr1) -> routed -> eth1 -> veth -> eth0 (ctr2).
    events = synthetic(
        (0, Q, "pnbr1", 1, 98),
        (1, SX, "pnbr1", 1, 98),
        (2, Q, "pnv1", 1, 98),
        (3, SX, "pnv1", 1, 98),
        (4, RXE, "eth0", 1, 84),
        (5, RX, "eth0", 1, 84),
        (6, RXX, None, None, None),
        (7, X, "pnv1", 1, 98),
        (8, X, "pnbr1", 1, 98),
        (9, RS, "eth0", 1, 84),
        (10, Q, "eth1", 1, 98),
        (11, SX, "eth1", 1, 98),
        (12, RXE, "eth0", 1, 84),
        (13, RX, "eth0", 1, 84),
        (14, RXX, None, None, None),
        (15, X, "eth1", 1, 98),
        (16, RS, "eth0", 1, 84),
    )
    frames = paths.reconstruct(events)
    assert frames.packets["path"].tolist() == ["pnbr1>pnv1>eth0>eth1>eth0"]
    assert frames.labels["visit"].tolist() == [0, 0, 1, 1, 2, 2, 2, 1, 0, 2, 3, 3, 4, 4, 4, 3, 4]
    assert frames.hops["latency_ns"].tolist() == [2000, 2000, 6000, 2000]


def test_a_step_the_topology_cannot_take_is_a_new_packet() -> None:
    # Two containers behind veths va and vb: a packet received on eth0 of c1 cannot next be
    # queued on vb in the root namespace, so the reused address carries a second packet.  By
    # names alone (no topology, or one without these devices) it is one packet.
    topo = Topology(
        "root",
        (Netns("root", 1, False), Netns("c1", 2, True), Netns("c2", 3, True)),
        (
            Link("root", "va", 2, "veth", None, "c1", "eth0", None),
            Link("root", "vb", 3, "veth", None, "c2", "eth0", None),
            Link("c1", "eth0", 2, "veth", None, "root", "va", None),
            Link("c2", "eth0", 2, "veth", None, "root", "vb", None),
        ),
    )
    events = synthetic(
        (0, Q, "va", 1, 98),
        (1, SX, "va", 1, 98),
        (2, RXE, "eth0", 1, 84),
        (3, X, "va", 1, 98),
        (4, RS, "eth0", 1, 84),
        (10, Q, "vb", 1, 98),
        (11, SX, "vb", 1, 98),
        (12, RXE, "eth0", 1, 84),
        (13, X, "vb", 1, 98),
    )
    frames = paths.reconstruct(events, topology=topo)
    assert frames.packets["path"].tolist() == ["va>eth0", "vb>eth0"]
    assert frames.packets["ended_by"].tolist() == ["infeasible step", "capture end"]
    assert frames.labels["packet_id"].tolist() == [0] * 5 + [1] * 4
    assert frames.labels["visit"].tolist() == [0, 0, 1, 0, 1, 0, 0, 1, 0]
    assert frames.labels["ended_by"].tolist() == ["infeasible step"] * 5 + ["capture end"] * 4
    for names_only in (None, Topology("root", (Netns("root", 1, False),), ())):
        packets = paths.reconstruct(events, topology=names_only).packets
        assert packets["path"].tolist() == ["va>eth0>vb>eth0"]
        assert packets["ended_by"].tolist() == ["capture end"]
    assert paths.segment(events).equals(paths.segment(events, topology=None))


def test_length_change_on_the_same_event_and_device_is_a_new_packet() -> None:
    # One address reused over two devices with alternating lengths and no frees: each
    # length change at the first device starts a packet, and only there.
    rows = []
    for k, length in enumerate([42, 98, 42, 98]):
        t = k * 100
        rows += [(t, Q, "br0", 7, length), (t + 1, Q, "veth0", 7, length), (t + 2, RXE, "eth0", 7, length - 14)]
    events = synthetic(*rows)
    assert paths.segment(events)["packet_id"].tolist() == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert path_list(events) == ["br0>veth0>eth0"] * 4
    assert paths.reconstruct(events).packets["ended_by"].tolist() == ["length"] * 3 + ["capture end"]


def test_idle_time_before_a_new_visit_starts_a_packet() -> None:
    same = [(0, Q, "br0", 7, 66), (1, Q, "veth0", 7, 66), (2, RXE, "eth0", 7, 52), (3, RS, "eth0", 7, 52)]
    later = [(t + 1500, ev, dev, a, n) for t, ev, dev, a, n in same]
    events = synthetic(*same, *later)
    assert path_list(events) == ["br0>veth0>eth0"] * 2
    assert paths.reconstruct(events).packets["ended_by"].tolist() == ["idle", "capture end"]
    assert path_list(events, gap_ns=2_000_000) == ["br0>veth0>eth0>br0>veth0>eth0"]
    assert paths.reconstruct(events, gap_ns=2_000_000).packets["ended_by"].tolist() == ["capture end"]


def test_waiting_in_the_backlog_is_not_idle() -> None:
    # netif_receive_skb runs when the backlog is processed: it continues the visit, or (when
    # the entry is not traced) follows the veth transmit, however long the queue was.
    events = synthetic((0, Q, "veth0", 7, 66), (1, RX, "eth0", 7, 52), (5000, RS, "eth0", 7, 52))
    assert path_list(events) == ["veth0>eth0"]
    only_core = synthetic((0, Q, "veth0", 7, 66), (5000, RS, "eth0", 7, 52))
    assert path_list(only_core) == ["veth0>eth0"]


def test_start_xmit_without_a_queue_opens_a_visit() -> None:
    # A GSO segment (or AF_PACKET bypass) starts at the driver.
    events = synthetic((0, SX, "eth0", 7, 1514), (1, X, "eth0", 7, 1514))
    labels = paths.segment(events)
    assert labels["visit"].tolist() == [0, 0]
    assert path_list(events) == ["eth0"]


def test_exits_nest_per_thread_and_call() -> None:
    # Thread 1 nests a receive in another (bridge port, then the bridge); thread 2's exit
    # interleaves.  An exit with nothing open is left unattributed.
    events = synthetic(
        (0, RXX, None, None, None, {"tid": 1}),
        (1, RSE, "eth0", 1, 52, {"tid": 1}),
        (2, RSE, "eth1", 2, 52, {"tid": 2}),
        (3, RSE, "br0", 1, 52, {"tid": 1}),
        (4, RSX, None, None, None, {"tid": 2}),
        (5, RSX, None, None, None, {"tid": 1}),
        (6, RSX, None, None, None, {"tid": 1}),
    )
    labels = paths.segment(events)
    assert labels["packet_id"].tolist() == [-1, 0, 1, 0, 1, 0, 0]
    assert labels["visit"].tolist() == [-1, 0, 0, 1, 0, 1, 0]


def test_idle_tasks_are_told_apart_by_cpu() -> None:
    events = synthetic(
        (0, RXE, "eth0", 1, 52, {"cpu": 0}),
        (1, RXE, "eth1", 2, 52, {"cpu": 1}),
        (2, RXX, None, None, None, {"cpu": 0}),
        (3, RXX, None, None, None, {"cpu": 1}),
        tid=0,
        comm="swapper",
    )
    assert paths.segment(events)["packet_id"].tolist() == [0, 1, 0, 1]


def test_a_list_exit_closes_the_list() -> None:
    events = synthetic(
        (0, LE, "eth0", 1, 52), (1, LE, "eth0", 2, 52), (2, RS, "eth0", 1, 52), (3, LX, None, None, None)
    )
    assert paths.segment(events)["packet_id"].tolist() == [0, 1, 0, 1]


def test_labels_must_belong_to_the_events() -> None:
    events = real()
    with pytest.raises(ValueError, match="same events frame"):
        paths.packets(events, paths.segment(events.iloc[:5]))


def test_empty_events() -> None:
    frames = paths.reconstruct(real().iloc[:0])
    assert frames.labels.empty and frames.packets.empty and frames.hops.empty
    assert list(frames.labels.columns) == ["packet_id", "visit", "ended_by"]
    assert frames.labels.dtypes["ended_by"] == pd.CategoricalDtype(list(paths.ENDED_BY))
    assert frames.stages.empty and frames.drops.empty
    assert list(frames.packets.columns) == [
        "packet_id",
        "skbaddr",
        "start_ns",
        "end_ns",
        "duration_ns",
        "transit_ns",
        "path",
        "n_events",
        "len",
        "protocol",
        "kind",
        "end",
        "ended_by",
    ]
    assert frames.packets.dtypes["ended_by"] == pd.CategoricalDtype(list(paths.ENDED_BY))


# --- the vectorized rules against a plain per-event implementation ----------------------

_ROLE = {Q: "queue", SX: "start", X: "xmit", RXE: "entry", RSE: "entry", LE: "entry", RX: "rx", RS: "core"}
_ROLE |= {CONSUME: "free", KFREE: "free", RXX: "exit", RSX: "exit", LX: "exit"}
_RANK = {"entry": 0, "rx": 1, "core": 2}
_CALL = {RXE: RXE, RXX: RXE, RSE: RSE, RSX: RSE, LE: LE, LX: LE}


@dataclass
class _Address:
    """What the reference remembers about one skb address."""

    life: int
    prev_role: str
    prev_dev: str | None
    prev_time: int
    after_free: bool
    arrival: tuple[str | None, bool, int] | None = None
    seen: dict[tuple[str, str | None], tuple[Any, Any]] = field(default_factory=dict)


def reference(events: pd.DataFrame, gap_ns: int) -> pd.DataFrame:
    """The documented rules (without a topology, so never an infeasible step), one event at a
    time, to check the vectorized implementation."""
    order = np.argsort(events["time_ns"].to_numpy(), kind="stable")
    rows = events.iloc[order].to_dict("records")
    addresses: dict[int, _Address] = {}
    ended_by: dict[int, str] = {}  # per lifetime: the rule that started the next one on its address
    life_of = [-1] * len(rows)
    arrival_of: list[tuple[str | None, bool, int] | None] = [None] * len(rows)
    lives = 0
    for i, r in enumerate(rows):
        if pd.isna(r["skbaddr"]):
            continue
        role, dev, t = _ROLE.get(r["event"], "other"), r["dev"], r["time_ns"]
        length = None if pd.isna(r["len"]) else r["len"]
        proto = None if pd.isna(r["protocol"]) else r["protocol"]
        a = addresses.get(r["skbaddr"])
        queued = a is not None and a.prev_role == "queue" and a.prev_dev == dev
        transmit = role == "queue" or (role == "start" and not queued)
        arrival = transmit or role in _RANK
        rank = (0 if role == "queue" else 1) if transmit else _RANK.get(role, 0)
        completion = role == "xmit" or (role == "start" and not transmit)
        if a is None:
            boundary = True
        else:
            by_free = not completion and a.after_free
            opener = role in ("queue", "entry") or (role == "start" and transmit)
            by_idle = opener and t - a.prev_time > gap_ns
            by_repeat = False
            if arrival and a.arrival is not None and a.arrival[0] == dev and dev is not None:
                _, was_tx, was_rank = a.arrival
                stacked = role == "queue" and a.prev_role == "start" and a.prev_dev == dev
                by_repeat = (not transmit and not was_tx and rank <= was_rank) or (transmit and not stacked)
            boundary = by_free or by_idle or by_repeat
            by_length = False
            if arrival and not boundary and (r["event"], dev) in a.seen:
                old_len, old_proto = a.seen[(r["event"], dev)]
                by_length = (None not in (length, old_len) and length != old_len) or (
                    None not in (proto, old_proto) and proto != old_proto
                )
                boundary = by_length
            if boundary:  # the rules by precedence
                rule = "free" if by_free else "repeat" if by_repeat else "length" if by_length else "idle"
                ended_by[a.life] = rule
        if boundary:
            lives += 1
            a = addresses[r["skbaddr"]] = _Address(lives - 1, role, dev, t, False, a.arrival if a else None)
        assert a is not None
        life_of[i] = a.life
        a.prev_role, a.prev_dev, a.prev_time = role, dev, t
        if not completion:
            a.after_free = role == "free"
        if arrival:
            a.arrival = arrival_of[i] = (dev, transmit, rank)
            a.seen[(r["event"], dev)] = (length, proto)

    with_arrival = {life_of[i] for i in range(len(rows)) if arrival_of[i] is not None}
    number: dict[int, int] = {}
    for life in life_of:
        if life in with_arrival and life not in number:
            number[life] = len(number)
    packet = [number.get(life, -1) for life in life_of]

    stacks: dict[tuple[Any, ...], list[int]] = {}
    last_in_group: dict[tuple[Any, ...], bool] = {}
    entry_of = [-1] * len(rows)
    for i, r in enumerate(rows):
        if r["event"] not in _CALL:
            continue
        key = (r["tid"], r["cpu"], r["comm"], _CALL[r["event"]])
        stack = stacks.setdefault(key, [])
        if r["event"] in (RXX, RSX, LX):
            if stack:
                entry_of[i] = stack.pop()
            last_in_group[key] = False
        else:
            if r["event"] == LE and last_in_group.get(key):
                stack.pop()
            stack.append(i)
            last_in_group[key] = True
        if entry_of[i] >= 0:
            packet[i] = packet[entry_of[i]]

    visit = [-1] * len(rows)
    state: dict[int, tuple[list[tuple[str | None, bool]], tuple[str | None, bool, int] | None]] = {}
    for i, r in enumerate(rows):
        if packet[i] < 0:
            continue
        opened, last = state.get(packet[i], ([], None))
        arr = arrival_of[i]
        if arr is not None and life_of[i] >= 0 and r["event"] not in (RXX, RSX, LX):
            dev, tx, rank = arr
            if last is None or last[0] != dev or last[1] != tx or rank <= last[2]:
                opened.append((dev, tx))
            visit[i] = len(opened) - 1
            last = arr
        elif entry_of[i] >= 0:
            visit[i] = visit[entry_of[i]]
        elif _ROLE.get(r["event"]) in ("xmit", "start"):
            sent = [k for k, (dev, tx) in enumerate(opened) if dev == r["dev"] and tx]
            visit[i] = sent[-1] if sent else -1
        elif _ROLE.get(r["event"]) != "exit":
            visit[i] = len(opened) - 1
        state[packet[i]] = (opened, last)

    life_of_packet = {p: life for life, p in number.items()}
    ended = [ended_by.get(life_of_packet[p], "capture end") if p >= 0 else None for p in packet]
    out = pd.DataFrame(
        {"packet_id": packet, "visit": visit, "ended_by": pd.Categorical(ended, categories=list(paths.ENDED_BY))},
        index=events.index[order],
    )
    return out.loc[events.index]


def random_events(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Random event soups over few addresses, devices, lengths and threads."""
    names = [Q, Q, SX, X, RXE, RSE, RX, RS, RS, CONSUME, KFREE, COPY, RXX, RSX, LE, LX, "napi:napi_poll"]
    rows = []
    t = 0
    for i in range(n):
        event = names[rng.integers(len(names))]
        t += int(rng.choice([0, 5_000, 300_000, 2_000_000]))
        has_addr = event not in (RXX, RSX, LX, "napi:napi_poll")
        rows.append(
            {
                "time_ns": t,
                "comm": "x",
                "tid": int(rng.integers(2)),
                "cpu": None if rng.random() < 0.5 else 0,
                "event": event,
                "dev": None if event in (CONSUME, KFREE, COPY, RXX, RSX, LX) else ["a", "b", "c"][rng.integers(3)],
                "skbaddr": int(rng.integers(3)) + 0x100 if has_addr else None,
                "len": [42, 98, None][rng.integers(3)] if has_addr else None,
                "protocol": [2048, 2054, None][rng.integers(3)] if event in (SX, RXE, RSE) else None,
                "lineno": i + 1,
            }
        )
    return frame(rows)


@pytest.mark.parametrize("seed", range(40))
def test_vectorized_rules_match_the_reference(seed: int) -> None:
    events = random_events(np.random.default_rng(seed), 80)
    pd.testing.assert_frame_equal(paths.segment(events), reference(events, paths.DEFAULT_GAP_NS))


def test_reference_agrees_on_the_real_capture() -> None:
    events = real()
    pd.testing.assert_frame_equal(reference(events, paths.DEFAULT_GAP_NS), paths.segment(events))


def test_a_packet_that_ends_next_to_a_lost_line_ends_by_lost() -> None:
    """Events may be missing where perf lost some: the report says so instead of naming a rule."""
    lines = [
        '     0.000 ping/1 net:net_dev_queue(skbaddr: 0xffff888100000100, len: 98, name: "br0")',
        '     0.010 ping/1 net:net_dev_queue(skbaddr: 0xffff888100000100, len: 98, name: "veth0")',
        "LOST 3 events!",
        '     5.000 ping/1 net:net_dev_queue(skbaddr: 0xffff888100000100, len: 98, name: "br0")',
        '     9.000 ping/1 net:net_dev_queue(skbaddr: 0xffff888100000100, len: 98, name: "br0")',
    ]
    trace = perfnet.read(lines)
    assert trace.lost == 3
    assert trace.packets["path"].astype(str).tolist() == ["br0>veth0", "br0", "br0"]
    assert trace.packets["ended_by"].astype(str).tolist() == ["lost", "repeat", "capture end"]
