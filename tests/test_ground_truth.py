"""Packet paths on real captures, checked against truths the kernel gives independently: the
ping count, and the link counters of an interface every lab packet crosses once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perfnet
from perfnet import paths
from perfnet.infer import infer_topology
from perfnet.topology import Link, Netns, Topology

FIXTURES = Path(__file__).parent / "fixtures"
MANIFEST = json.loads((FIXTURES / "lab.json").read_text())
CAPTURE = MANIFEST["captures"]["lab"]
LAB = CAPTURE["lab"]
PINGS = CAPTURE["workload"]["ping"]["count"]
BRIDGE, VETH = LAB["bridge"], LAB["host_veth"]
VETH_COUNTERS = CAPTURE["counters"]["delta"][f"root/{VETH}"]
FORWARD = f"{BRIDGE}>{VETH}>eth0>eth1>eth0"  # root -> ctr1 (routes) -> ctr2
BACKWARD = f"eth0>eth1>eth0>{VETH}>{BRIDGE}"

ALL_VARIANTS = [
    "lab-trace.txt",
    "lab-trace-T.txt",
    "lab-trace-libtraceevent.txt",
    "lab-trace-old-converted.txt",
    "lab-trace-callgraph.txt",
    "lab-script.txt",
    "lab-script-ns.txt",
    "lab-script-g.txt",
    "lab-ftrace.txt",
    "lab-ftrace-tgid.txt",
]


def events_of(name: str, with_skb: bool) -> pd.DataFrame:
    events = perfnet.read(FIXTURES / name, formats=FIXTURES / "lab.formats").events
    return events if with_skb else events[~events["event"].str.startswith("skb:")].reset_index(drop=True)


def check_ground_truth(packets: pd.DataFrame) -> None:
    path = packets["path"].astype(str)
    # every packet the bridge sent or received, each with the exact route through the lab
    assert (path == FORWARD).sum() == VETH_COUNTERS["tx_packets"] == 26
    assert (path == BACKWARD).sum() == VETH_COUNTERS["rx_packets"] == 22
    # the veth's name is unique in the lab: packets crossing it == its frame count, each once
    crossing = path.str.split(">").map(lambda devs: devs.count(VETH))
    assert (crossing > 0).sum() == VETH_COUNTERS["tx_packets"] + VETH_COUNTERS["rx_packets"]
    assert crossing.max() == 1
    # ping -c N: N echo requests and N echo replies (IPv4, 98 bytes with the Ethernet header)
    icmp = packets[(packets["len"] == 98) & (packets["protocol"].fillna(2048) == 2048)]
    assert (icmp["path"].astype(str) == FORWARD).sum() == PINGS == 5
    assert (icmp["path"].astype(str) == BACKWARD).sum() == PINGS


@pytest.mark.parametrize("devices", ["names", "inferred", "snapshot"])
@pytest.mark.parametrize("with_skb", [True, False], ids=["net+skb", "net-only"])
@pytest.mark.parametrize("name", ALL_VARIANTS)
def test_paths_match_ping_count_and_link_counters(name: str, with_skb: bool, devices: str) -> None:
    events = events_of(name, with_skb)
    topology = {"names": None, "inferred": infer_topology(events), "snapshot": lab_topology()}[devices]
    check_ground_truth(paths.reconstruct(events, topology=topology).packets)


def test_trace_frames_are_the_path_frames() -> None:
    trace = perfnet.read(FIXTURES / "lab-trace.txt", formats=FIXTURES / "lab.formats")
    check_ground_truth(trace.packets)
    assert len(trace.hops) == 4 * 48 and set(trace.hops["hop"]) == {0, 1, 2, 3}
    assert trace.drops[["reason", "dev", "count"]].astype(str).values.tolist() == [
        ["NO_SOCKET", BRIDGE, "5"],
        ["QUEUE_PURGE", BRIDGE, "3"],
    ]
    replies = trace.packets[(trace.packets["path"].astype(str) == BACKWARD) & (trace.packets["len"] == 98)]
    assert replies["end"].astype(str).tolist() == ["dropped:NO_SOCKET"] * PINGS


def test_out_of_order_input_gives_the_same_packets() -> None:
    """perf trace -a prints events out of time order; perfnet must not depend on input order."""
    events = events_of("lab-trace.txt", with_skb=True)
    shuffled = events.sample(frac=1.0, random_state=np.random.RandomState(7)).reset_index(drop=True)
    ordered, mixed = paths.reconstruct(events).packets, paths.reconstruct(shuffled).packets
    key = ["skbaddr", "start_ns", "path", "len", "end"]
    assert (
        ordered[key].astype(str).sort_values(key).values.tolist()
        == mixed[key].astype(str).sort_values(key).values.tolist()
    )


def test_seed_capture_paths() -> None:
    """The seed's own capture (older perf, docker0 -> veth -> container eth0)."""
    trace = perfnet.read(FIXTURES / "seed-old-perf-2.txt")
    assert trace.packets["path"].astype(str).tolist() == ["docker0>veth1127065>eth0", "eth0>veth1127065>docker0"]
    assert trace.hops["latency_ns"].tolist() == [12_000, 4_000, 2_000, 7_000]


def lab_topology() -> Topology:
    """The fixture lab's topology, from lab.json."""
    ctr1, ctr2 = LAB["ctr1"], LAB["ctr2"]
    links = (
        Link("root", BRIDGE, 10, "bridge", None, None, None, None),
        Link("root", VETH, 11, "veth", BRIDGE, ctr1, "eth0", None),
        Link(ctr1, "eth0", 2, "veth", None, "root", VETH, None),
        Link(ctr1, "eth1", 3, "veth", None, ctr2, "eth0", None),
        Link(ctr2, "eth0", 2, "veth", None, ctr1, "eth1", None),
    )
    namespaces = (Netns("root", 1, False, False), Netns(ctr1, 2, True, True), Netns(ctr2, 3, True, False))
    return Topology("root", namespaces, links)


def test_netns_path_resolves_repeated_names_through_veth_peers() -> None:
    """The fixture lab's topology labels eth0 in two namespaces apart."""
    ctr1, ctr2 = LAB["ctr1"], LAB["ctr2"]
    trace = perfnet.read(FIXTURES / "lab-trace.txt", topology=lab_topology())
    assert not trace.topology.inferred
    labelled = trace.packets.groupby("netns_path", observed=True).size().to_dict()
    assert labelled == {
        f"{BRIDGE}>{VETH}>eth0@{ctr1}>eth1@{ctr1}>eth0@{ctr2}": 26,
        f"eth0@{ctr2}>eth1@{ctr1}>eth0@{ctr1}>{VETH}>{BRIDGE}": 22,
    }
    hop_counts = trace.hops.groupby(["from_netns_dev", "to_netns_dev"]).size().to_dict()
    assert hop_counts == {
        (BRIDGE, VETH): 26,
        (VETH, f"eth0@{ctr1}"): 26,
        (f"eth0@{ctr1}", f"eth1@{ctr1}"): 26,
        (f"eth1@{ctr1}", f"eth0@{ctr2}"): 26,
        (f"eth0@{ctr2}", f"eth1@{ctr1}"): 22,
        (f"eth1@{ctr1}", f"eth0@{ctr1}"): 22,
        (f"eth0@{ctr1}", VETH): 22,
        (VETH, BRIDGE): 22,
    }


def test_every_view_of_a_trace_names_namespaces() -> None:
    """The CLI report, the HTML report and Jupyter all show namespace-qualified paths and hops."""
    from perfnet import analysis, html_report

    ctr1, ctr2 = LAB["ctr1"], LAB["ctr2"]
    trace = perfnet.read(FIXTURES / "lab-trace.txt", topology=lab_topology())
    packets, hops, _, _ = analysis.with_namespaces(trace)
    assert analysis.path_table(packets)["count"].tolist() == [26, 22]
    assert len(analysis.hop_latency(hops)) == 8  # eth0 of ctr1 and ctr2 apart: 8 hops, not 6
    qualified = f"eth0@{ctr2}&gt;eth1@{ctr1}"
    assert qualified in trace._repr_html_() and qualified in html_report.render(trace)


def test_a_capture_without_packets_still_has_every_frame_and_view() -> None:
    from perfnet import analysis, html_report

    trace = perfnet.read(
        ["     0.090 ping/2000 net:netif_rx_exit()"], topology=Topology("root", (Netns("root", 1, False),), ())
    )
    packets, hops, _, _ = analysis.with_namespaces(trace)
    assert packets.empty and hops.empty and "from_netns_dev" in hops
    assert analysis.hop_latency(hops).empty and analysis.path_table(packets).empty
    assert "No packets" in html_report.render(trace) and "0 packets" in trace._repr_html_()
