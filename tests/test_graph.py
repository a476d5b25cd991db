"""The device graph (perfnet.graph): the steps a topology allows, and unknowns that never split."""

from __future__ import annotations

from test_paths import RS, RX, RXE, SX, Q, X, synthetic

from perfnet import paths
from perfnet.graph import DeviceGraph, Step
from perfnet.topology import Link, Netns, Topology


def link(netns: str, name: str, kind: str | None = None, **facts: str | None) -> Link:
    return Link(netns, name, 0, kind, facts.get("master"), facts.get("peer_netns"), facts.get("peer_name"), None,
                facts.get("lower"), facts.get("lower_netns"))  # fmt: skip


LAB = Topology(
    "root",
    (Netns("root", 1, False, False), Netns("c1", 2, True, True), Netns("c2", 3, True, False)),
    (
        link("root", "br0", "bridge"),
        link("root", "va", "veth", master="br0", peer_netns="c1", peer_name="eth0"),
        link("root", "lo", "loopback"),
        link("root", "eth0"),
        link("c1", "eth0", "veth", peer_netns="root", peer_name="va"),
        link("c1", "eth1", "veth", peer_netns="c2", peer_name="eth0"),
        link("c2", "eth0", "veth", peer_netns="c1", peer_name="eth1"),
        link("c2", "mv0", "macvlan", lower="eth0"),
    ),
)
BR0, VA, LO, NIC, C1_ETH0, C1_ETH1, C2_ETH0, MV0 = range(8)
YES, WEAK, NO = Step(True), Step(True, weak=True), Step(False)


def test_steps_the_lab_topology_allows() -> None:
    graph = DeviceGraph(LAB)
    assert graph.candidates("eth0") == (NIC, C1_ETH0, C2_ETH0) and graph.candidates("eth9") == ()
    tx, rx = True, False
    assert graph.step(BR0, tx, VA, tx) == YES  # a bridge transmits through its port
    assert graph.step(VA, tx, C1_ETH0, rx) == YES  # a veth end's peer receives
    assert graph.step(VA, tx, C2_ETH0, rx) == NO  # ... and no other eth0
    assert graph.step(C1_ETH0, rx, C1_ETH1, tx) == WEAK  # c1 forwards: allowed, not proven
    assert graph.step(C2_ETH0, rx, BR0, tx) == NO  # another namespace
    assert graph.step(VA, rx, BR0, rx) == YES  # a port passes frames up to its bridge
    assert graph.step(BR0, rx, NIC, tx) == NO  # the root namespace does not forward
    assert graph.step(C1_ETH0, rx, C1_ETH0, tx) == NO  # no hairpin without evidence
    assert graph.step(LO, tx, LO, rx) == YES
    assert graph.step(MV0, tx, C2_ETH0, tx) == YES  # a macvlan sends through its lower device
    assert graph.step(C2_ETH0, rx, MV0, rx) == YES


def test_a_peer_the_snapshot_could_not_read_is_unknown_not_absent() -> None:
    """A snapshot taken without root: the container's namespace is unreadable."""
    topology = Topology(
        "root",
        (Netns("root", 1, False, True), Netns("ctr", 2, True)),
        (link("root", "eth0"), link("root", "vethX", "veth")),
        unreadable=("ctr",),
    )
    events = synthetic(
        (0, Q, "vethX", 1, 98), (1, SX, "vethX", 1, 98), (2, RXE, "eth0", 1, 84), (3, RX, "eth0", 1, 84),
        (4, X, "vethX", 1, 98), (5, RS, "eth0", 1, 84),
    )  # fmt: skip
    packets = paths.reconstruct(events, topology=topology).packets
    assert packets["path"].astype(str).tolist() == ["vethX>eth0"]


def test_a_stacked_device_whose_lower_is_not_listed_may_send_anywhere() -> None:
    namespaces = (Netns("root", 1, False, False), Netns("c", 2, True, False))
    topology = Topology("root", namespaces, (link("root", "eth0"), link("c", "eth0", "macvlan")))
    events = synthetic((0, Q, "eth0", 1, 98), (1, SX, "eth0", 1, 98), (2, Q, "eth0", 1, 98), (3, SX, "eth0", 1, 98))
    assert paths.reconstruct(events, topology=topology).packets["path"].astype(str).tolist() == ["eth0>eth0"]


def test_a_lower_device_outside_the_topology_proves_nothing() -> None:
    topology = Topology(
        "root",
        (Netns("root", 1, False, False), Netns("c", 2, True, False)),
        (link("root", "eth0.100", "vlan", lower="eth0", lower_netns="gone"), *LAB.links[1:2], *LAB.links[4:5]),
    )
    graph = DeviceGraph(topology)
    assert graph.step(0, True, 1, False) == NO  # a VLAN does not deliver to an unrelated veth end
