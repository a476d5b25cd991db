"""Topology inference (perfnet.infer) on hand-made event sequences: what the events prove, and
what they leave unknown (which must never split a packet)."""

from __future__ import annotations

from typing import Any

from test_paths import CONSUME, RS, RSE, RX, RXE, RXX, SX, Q, X, synthetic

from perfnet import paths
from perfnet.infer import infer_topology

GRO = "net:napi_gro_receive_entry"


def veth_tx(t: int, dev: str, peer: str, addr: int, n: int = 98) -> list[tuple[Any, ...]]:
    """A veth transmit: the peer's receive runs nested in it."""
    return [
        (t, Q, dev, addr, n),
        (t + 1, SX, dev, addr, n),
        (t + 2, RXE, peer, addr, n - 14),
        (t + 3, RX, peer, addr, n - 14),
        (t + 4, RXX, None, None, None),
        (t + 5, X, dev, addr, n),
    ]


def stacked_tx(t: int, upper: str, lower: str, addr: int, n: int = 98) -> list[tuple[Any, ...]]:
    """A macvlan (or VLAN) transmit through its lower device, a NIC."""
    return [
        (t, Q, upper, addr, n),
        (t + 1, SX, upper, addr, n),
        (t + 2, Q, lower, addr, n),
        (t + 3, SX, lower, addr, n),
    ]


def packets(events: Any) -> list[tuple[str, str]]:
    found = paths.reconstruct(events, topology=infer_topology(events)).packets
    return list(zip(found["path"].astype(str), found["ended_by"].astype(str), strict=True))


def test_a_docker_host_nic_is_not_its_containers_eth0() -> None:
    """Inbound to a published port: NIC eth0 -> docker0 -> vethX -> the container's eth0."""

    def inbound(t: int, addr: int) -> list[tuple[Any, ...]]:
        return [
            (t, GRO, "eth0", addr, 1500),
            (t + 1, RS, "eth0", addr, 1500),
            (t + 2, Q, "docker0", addr, 1514),
            (t + 3, SX, "docker0", addr, 1514),
            *veth_tx(t + 4, "vethX", "eth0", addr, 1514),
            (t + 11, RS, "eth0", addr, 1500),
        ]

    events = synthetic(*inbound(0, 1), *inbound(1000, 2), *inbound(2000, 3))
    topology = infer_topology(events)
    eth0 = sorted((link.peer_name or "", link.netns) for link in topology.links if link.name == "eth0")
    assert [peer for peer, _ in eth0] == ["", "vethX"] and eth0[0][1] != eth0[1][1]
    assert packets(events) == [("eth0>docker0>vethX>eth0", "capture end")] * 3


def test_one_routed_ping_is_not_enough_to_deny_forwarding() -> None:
    """Seen once, forwarding is unknown, not absent: the packet stays whole."""
    request = [*veth_tx(0, "eth0", "va", 1), (10, RS, "va", 1, 84), *veth_tx(11, "vb", "eth0", 1)]
    reply = [*veth_tx(100, "eth0", "vb", 2), (110, RS, "vb", 2, 84), *veth_tx(111, "va", "eth0", 2)]
    topology = infer_topology(synthetic(*request, (20, RS, "eth0", 1, 84), *reply, (120, RS, "eth0", 2, 84)))
    router = {link.netns for link in topology.links if link.name in ("va", "vb")}
    assert len(router) == 1 and {ns.name: ns.forwarding for ns in topology.namespaces}[router.pop()] is None
    events = synthetic(*request, (20, RS, "eth0", 1, 84), *reply, (120, RS, "eth0", 2, 84))
    assert packets(events) == [("eth0>va>vb>eth0", "capture end"), ("eth0>vb>va>eth0", "capture end")]


def test_two_macvlans_over_one_device_both_reach_it() -> None:
    events = synthetic(
        *veth_tx(0, "va", "vb", 1),
        *stacked_tx(100, "mv1", "eth0", 2),
        *stacked_tx(200, "mv2", "eth0", 3),
        *stacked_tx(300, "mv1", "eth0", 4),
        *stacked_tx(400, "mv2", "eth0", 5),
    )
    lowers = {link.name: link.lower for link in infer_topology(events).links if link.name.startswith("mv")}
    assert lowers == {"mv1": "eth0", "mv2": "eth0"}
    assert [path for path, _ in packets(events)] == ["va>vb", "mv1>eth0", "mv2>eth0", "mv1>eth0", "mv2>eth0"]


def test_a_free_between_receive_and_transmit_is_not_forwarding() -> None:
    """A proxy: the request is delivered on p1 and freed, its address reused on p2."""
    rows = []
    for i in range(3):
        t, addr = 1000 * i, 1 + i
        rows += [*veth_tx(t, "c1", "p1", addr), (t + 6, RS, "p1", addr, 84), (t + 7, CONSUME, None, addr, None)]
        rows += veth_tx(t + 8, "p2", "c2", addr)
    topology = infer_topology(synthetic(*rows))
    netns = {link.name: link.netns for link in topology.links}
    assert netns["p1"] != netns["p2"]
    assert all(ns.forwarding is not True for ns in topology.namespaces)


def test_a_receive_takes_its_peer_only_from_its_own_address() -> None:
    """Address 2 starts mid-visit (no entry): its eth0 is unknown, not address 1's peer's."""
    events = synthetic(
        (0, Q, "va", 1, 98),
        (1, SX, "va", 1, 98),
        (2, RXE, "eth0", 1, 84),
        (3, RX, "eth0", 1, 84),
        (4, RS, "eth0", 2, 84),
        (5, RSE, "br0", 2, 84),
        (6, RS, "br0", 2, 84),
    )
    links = {(link.name, link.peer_name): link for link in infer_topology(events).links}
    assert links["eth0", None].master == "br0" and links["eth0", "va"].master is None


def test_a_capture_that_cannot_show_peers_infers_nothing() -> None:
    events = synthetic((0, Q, "br0", 1, 98), (1, RS, "eth0", 1, 84))
    topology = infer_topology(events)
    assert topology.links == () and topology.inferred
