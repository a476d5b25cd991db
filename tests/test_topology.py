"""perfnet.topology: namespace snapshots of a real lab, JSON round trips, and path labelling."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from conftest import run_as_nobody

from perfnet.errors import PerfnetError
from perfnet.lab import Lab, require_root_and_tools
from perfnet.topology import COLUMNS, Link, Netns, Topology, label_path, label_paths, snapshot

REASON = require_root_and_tools()
needs_lab = pytest.mark.skipif(REASON is not None, reason=REASON or "")

HOME = "netns:1"


def link(
    netns: str,
    name: str,
    ifindex: int,
    kind: str | None = "veth",
    master: str | None = None,
    peer: tuple[str, str] | None = None,
) -> Link:
    """A hand-made link; ``peer`` is ``(netns, name)``."""
    peer_netns, peer_name = peer or (None, None)
    return Link(netns, name, ifindex, kind, master, peer_netns, peer_name, mac=None)


def topology(*links: Link) -> Topology:
    """A hand-made topology of ``links`` whose home namespace is :data:`HOME`."""
    names = sorted({HOME} | {ln.netns for ln in links})
    return Topology(HOME, tuple(Netns(ns, i + 1, ns != HOME) for i, ns in enumerate(names)), links)


def lab_links(tag: str) -> list[Link]:
    """A lab like perfnet.lab builds (bridge, host veth, ctr1 routing to ctr2), tagged ``tag``."""
    br, veth, c1, c2 = f"pnbr{tag}", f"pnv{tag}", f"pnc1-{tag}", f"pnc2-{tag}"
    return [
        link(HOME, br, 10, kind="bridge"),
        link(HOME, veth, 11, master=br, peer=(c1, "eth0")),
        link(c1, "lo", 1, kind="loopback"),
        link(c1, "eth0", 2, peer=(HOME, veth)),
        link(c1, "eth1", 3, peer=(c2, "eth0")),
        link(c2, "lo", 1, kind="loopback"),
        link(c2, "eth0", 2, peer=(c1, "eth1")),
    ]


# Two labs and a physical eth0 in the home namespace: eth0 exists five times, eth1 twice.
TWO_LABS = topology(
    link(HOME, "lo", 1, kind="loopback"),
    link(HOME, "eth0", 2, kind=None),
    *lab_links("1"),
    *lab_links("2"),
)


# --- labelling, on hand-made topologies -----------------------------------------------------


def test_forward_path_follows_veth_peers() -> None:
    path = ["pnbr1", "pnv1", "eth0", "eth1", "eth0"]
    assert label_path(path, TWO_LABS) == ["pnbr1", "pnv1", "eth0@pnc1-1", "eth1@pnc1-1", "eth0@pnc2-1"]


def test_reverse_path_resolves_the_first_device_by_looking_ahead() -> None:
    path = ["eth0", "eth1", "eth0", "pnv2", "pnbr2"]
    assert label_path(path, TWO_LABS) == ["eth0@pnc2-2", "eth1@pnc1-2", "eth0@pnc1-2", "pnv2", "pnbr2"]


def test_routed_out_of_the_bridge_to_another_lab() -> None:
    # root routes: received on pnbr1 from lab 1, sent out pnbr2 into lab 2's ctr2
    path = ["eth0", "pnv1", "pnbr1", "pnbr2", "pnv2", "eth0", "eth1", "eth0"]
    assert label_path(path, TWO_LABS) == [
        "eth0@pnc1-1",
        "pnv1",
        "pnbr1",
        "pnbr2",
        "pnv2",
        "eth0@pnc1-2",
        "eth1@pnc1-2",
        "eth0@pnc2-2",
    ]


def test_home_namespace_wins_ties_and_stays_bare() -> None:
    assert label_path(["eth0"], TWO_LABS) == ["eth0"]
    assert label_path(["lo"], TWO_LABS) == ["lo"]
    assert label_path(["eth0", "pnbr1"], TWO_LABS) == ["eth0", "pnbr1"]


def test_ambiguous_devices_are_written_with_a_question_mark() -> None:
    only_labs = topology(*lab_links("1"), *lab_links("2"))
    assert label_path(["eth0"], only_labs) == ["eth0@?"]
    assert label_path(["lo"], only_labs) == ["lo@?"]
    assert label_path(["eth1", "eth0"], only_labs) == ["eth1@?", "eth0@?"]
    # one lab: a path cut at both ends reads both ways (ctr1 -> ctr2 or ctr2 -> ctr1)
    one_lab = topology(*lab_links("1"))
    assert label_path(["eth0", "eth1", "eth0"], one_lab) == ["eth0@?", "eth1@pnc1-1", "eth0@?"]
    assert label_path(["eth1", "eth0"], one_lab) == ["eth1@pnc1-1", "eth0@pnc2-1"]


def test_unknown_devices() -> None:
    assert label_path(["?", "nosuch", "pnbr1", "pnv1", "eth0"], TWO_LABS) == [
        "?",
        "nosuch@?",
        "pnbr1",
        "pnv1",
        "eth0@pnc1-1",
    ]
    assert label_path([], TWO_LABS) == []
    assert label_path(["eth0"], topology()) == ["eth0@?"]


def test_bridge_ports_and_masters_share_a_namespace() -> None:
    topo = topology(
        link(HOME, "eth0", 1, kind=None),
        link(HOME, "docker0", 2, kind="bridge"),
        link(HOME, "vetha", 3, master="docker0", peer=("ctra", "eth0")),
        link(HOME, "vethb", 4, master="docker0", peer=("ctrb", "eth0")),
        link("ctra", "eth0", 2, peer=(HOME, "vetha")),
        link("ctrb", "eth0", 2, peer=(HOME, "vethb")),
        # the same names in two more namespaces; only in n1 is x a port of br0
        link("n1", "br0", 1, kind="bridge"),
        link("n1", "x", 2, kind="dummy", master="br0"),
        link("n2", "br0", 1, kind="bridge"),
        link("n2", "x", 2, kind="dummy"),
    )
    # container to container: bridged from port to port, the bridge itself not visited
    assert label_path(["eth0", "vetha", "vethb", "eth0"], topo) == ["eth0@ctra", "vetha", "vethb", "eth0@ctrb"]
    # from the wire to a container
    assert label_path(["eth0", "docker0", "vethb", "eth0"], topo) == ["eth0", "docker0", "vethb", "eth0@ctrb"]
    assert label_path(["br0", "x"], topo) == ["br0@n1", "x@n1"]


def test_label_paths_labels_each_distinct_path_once() -> None:
    forward = "pnbr1>pnv1>eth0>eth1>eth0"
    reverse = "eth0>eth1>eth0>pnv1>pnbr1"
    paths = pd.Series([forward, reverse, forward, None, forward, "?"], index=[5, 6, 7, 8, 9, 10], name="path")
    want = [
        "pnbr1>pnv1>eth0@pnc1-1>eth1@pnc1-1>eth0@pnc2-1",
        "eth0@pnc2-1>eth1@pnc1-1>eth0@pnc1-1>pnv1>pnbr1",
    ]
    got = label_paths(paths.astype(object), TWO_LABS)
    assert got.dtype == object
    assert got.name == "path"
    assert got.index.tolist() == [5, 6, 7, 8, 9, 10]
    assert got.tolist() == [want[0], want[1], want[0], None, want[0], "?"]

    categorical = label_paths(paths.astype("category"), TWO_LABS)
    assert isinstance(categorical.dtype, pd.CategoricalDtype)
    assert sorted(categorical.cat.categories) == sorted([*want, "?"])
    assert categorical.astype(object).where(categorical.notna(), None).tolist() == got.tolist()

    spaced = label_paths(pd.Series(["pnbr1 / pnv1 / eth0"]), TWO_LABS, sep=" / ")
    assert spaced.tolist() == ["pnbr1 / pnv1 / eth0@pnc1-1"]
    assert label_paths(pd.Series([], dtype=object), TWO_LABS).tolist() == []


# --- the Topology object --------------------------------------------------------------------


def test_interfaces_frame() -> None:
    frame = TWO_LABS.interfaces
    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == len(TWO_LABS.links)
    assert frame["ifindex"].dtype == "int64"
    assert all(frame[column].dtype == object for column in COLUMNS if column != "ifindex")
    row = frame[(frame["netns"] == HOME) & (frame["name"] == "pnv1")].iloc[0]
    assert (row["kind"], row["master"], row["peer_netns"], row["peer_name"]) == ("veth", "pnbr1", "pnc1-1", "eth0")
    assert row["mac"] is None
    empty = topology().interfaces
    assert tuple(empty.columns) == COLUMNS
    assert empty.empty


def test_json_round_trip(tmp_path: Path) -> None:
    topo = Topology(TWO_LABS.home, TWO_LABS.namespaces, TWO_LABS.links, unreadable=("pnc9-9",))
    assert Topology.from_json(topo.to_json()) == topo
    topo.save(tmp_path / "topology.json")
    assert Topology.load(tmp_path / "topology.json") == topo
    doc = json.loads(topo.to_json())
    assert sorted(doc) == ["home", "inferred", "links", "namespaces", "unreadable", "version"]
    assert doc["version"] == 2
    assert doc["inferred"] is False
    assert doc["namespaces"][0] == {"name": HOME, "inode": 1, "named": False, "forwarding": None}
    assert sorted(doc["links"][0]) == sorted(COLUMNS)
    assert (doc["links"][0]["lower"], doc["links"][0]["lower_netns"]) == (None, None)


def test_json_round_trip_of_the_version_2_fields() -> None:
    topo = Topology(
        "inferred-1",
        (Netns("inferred-1", 0, False, forwarding=False), Netns("inferred-2", 0, False, forwarding=True)),
        (
            Link("inferred-1", "eth0", 1, None, None, None, None, None),
            Link("inferred-2", "mv0", 1, "macvlan", None, None, None, "02:00:00:00:00:01", "eth0", "inferred-1"),
            Link("inferred-2", "eth0.5", 2, "vlan", None, None, None, None, lower="mv0"),
        ),
        inferred=True,
    )
    assert Topology.from_json(topo.to_json()) == topo
    doc = json.loads(topo.to_json())
    assert doc["inferred"] is True
    assert [ns["forwarding"] for ns in doc["namespaces"]] == [False, True]
    assert [(ln["lower"], ln["lower_netns"]) for ln in doc["links"]] == [
        (None, None),
        ("eth0", "inferred-1"),
        ("mv0", None),
    ]
    assert topo.interfaces[["lower", "lower_netns"]].values.tolist() == [
        [None, None],
        ["eth0", "inferred-1"],
        ["mv0", None],
    ]


def test_version_1_documents_still_load() -> None:
    v1 = {
        "version": 1,
        "home": HOME,
        "namespaces": [{"name": HOME, "inode": 1, "named": False}, {"name": "c1", "inode": 2, "named": True}],
        "unreadable": ["c9"],
        "links": [
            {
                "netns": "c1",
                "name": "eth0",
                "ifindex": 2,
                "kind": "veth",
                "master": None,
                "peer_netns": HOME,
                "peer_name": "veth1",
                "mac": "02:00:00:00:00:02",
            }
        ],
    }
    topo = Topology.from_json(json.dumps(v1))
    assert topo == Topology(
        HOME,
        (Netns(HOME, 1, False, forwarding=None), Netns("c1", 2, True, forwarding=None)),
        (Link("c1", "eth0", 2, "veth", None, HOME, "veth1", "02:00:00:00:00:02", lower=None, lower_netns=None),),
        unreadable=("c9",),
        inferred=False,
    )
    # written back, it is a version 2 document that reads the same
    assert json.loads(topo.to_json())["version"] == 2
    assert Topology.from_json(topo.to_json()) == topo


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not JSON"),
        ("[]", "version"),
        ('{"version": 3}', "version 3"),
        ('{"version": 0}', "version 0"),
        ('{"home": "h"}', "version None"),
        ('{"version": 2}', "missing 'home'"),
        ('{"version": 1, "namespaces": [], "links": [], "unreadable": []}', "missing 'home'"),
        ('{"version": 1, "home": 5, "namespaces": [], "links": [], "unreadable": []}', "'home' should be str"),
        ('{"version": 1, "home": "h", "namespaces": [1], "links": [], "unreadable": []}', "should hold objects"),
        ('{"version": 1, "home": "h", "namespaces": [], "links": [], "unreadable": [1]}', "should hold strings"),
        (
            '{"version": 1, "home": "h", "namespaces": [{"name": "h", "inode": true, "named": false}],'
            ' "links": [], "unreadable": []}',
            "'inode' should be int",
        ),
        ('{"version": 2, "home": "h", "namespaces": [], "links": [], "unreadable": []}', "missing 'inferred'"),
        (
            '{"version": 2, "home": "h", "namespaces": [], "links": [], "unreadable": [], "inferred": 1}',
            "'inferred' should be bool",
        ),
        (
            '{"version": 2, "home": "h", "namespaces": [{"name": "h", "inode": 1, "named": false}],'
            ' "links": [], "unreadable": [], "inferred": false}',
            "missing 'forwarding'",
        ),
        (
            '{"version": 2, "home": "h", "namespaces": [{"name": "h", "inode": 1, "named": false,'
            ' "forwarding": "yes"}], "links": [], "unreadable": [], "inferred": false}',
            "'forwarding' should be bool",
        ),
        (
            '{"version": 2, "home": "h", "namespaces": [], "unreadable": [], "inferred": false, "links":'
            ' [{"netns": "h", "name": "x", "ifindex": 1, "kind": null, "master": null, "peer_netns": null,'
            ' "peer_name": null, "mac": null, "lower": 7, "lower_netns": null}]}',
            "'lower' should be str",
        ),
    ],
)
def test_from_json_rejects_malformed_documents(text: str, message: str) -> None:
    with pytest.raises(PerfnetError, match=message):
        Topology.from_json(text)


# --- snapshots of a real lab ------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    if REASON is not None:
        pytest.skip(REASON)
    with Lab() as built:
        yield built
    assert built.leftovers() == []


@pytest.fixture(scope="module")
def lab_topology(lab: Lab) -> Topology:
    return snapshot()


def find(topo: Topology, netns: str, name: str) -> Link:
    (found,) = [ln for ln in topo.links if (ln.netns, ln.name) == (netns, name)]
    return found


@needs_lab
def test_snapshot_of_the_lab(lab: Lab, lab_topology: Topology) -> None:
    topo = lab_topology
    home_inode = os.stat("/proc/self/ns/net").st_ino
    (home,) = [ns for ns in topo.namespaces if ns.name == topo.home]
    assert home.inode == home_inode
    assert isinstance(home.forwarding, bool)  # the host's own setting
    assert topo.inferred is False
    for name in lab.namespaces:
        (ns,) = [ns for ns in topo.namespaces if ns.name == name]
        # ctr1 routes between the bridge and ctr2 (ip_forward=1); ctr2 is an end host
        forwarding = name == lab.ctr1
        assert ns == Netns(name, os.stat(f"/run/netns/{name}").st_ino, named=True, forwarding=forwarding)
        assert name not in topo.unreadable
    macs = lab.macs

    bridge = find(topo, topo.home, lab.bridge)
    assert (bridge.kind, bridge.master, bridge.peer_netns, bridge.peer_name) == ("bridge", None, None, None)
    assert bridge.mac == macs[f"root/{lab.bridge}"]
    veth = find(topo, topo.home, lab.host_veth)
    assert (veth.kind, veth.master, veth.peer_netns, veth.peer_name) == ("veth", lab.bridge, lab.ctr1, "eth0")
    assert veth.mac == macs[f"root/{lab.host_veth}"]

    ctr1 = {ln.name: ln for ln in topo.links if ln.netns == lab.ctr1}
    ctr2 = {ln.name: ln for ln in topo.links if ln.netns == lab.ctr2}
    assert sorted(ctr1) == ["eth0", "eth1", "lo"]
    assert sorted(ctr2) == ["eth0", "lo"]
    assert ctr1["eth0"] == Link(lab.ctr1, "eth0", 2, "veth", None, topo.home, lab.host_veth, macs[f"{lab.ctr1}/eth0"])
    assert ctr1["eth1"] == Link(lab.ctr1, "eth1", 3, "veth", None, lab.ctr2, "eth0", macs[f"{lab.ctr1}/eth1"])
    assert ctr2["eth0"] == Link(lab.ctr2, "eth0", 2, "veth", None, lab.ctr1, "eth1", macs[f"{lab.ctr2}/eth0"])
    for lo in (ctr1["lo"], ctr2["lo"]):
        assert (lo.ifindex, lo.kind, lo.master, lo.peer_netns, lo.peer_name) == (1, "loopback", None, None, None)
    assert find(topo, topo.home, "lo").kind == "loopback"
    # bridges, veths and loopbacks are not stacked on another device
    for ln in [bridge, veth, *ctr1.values(), *ctr2.values()]:
        assert (ln.lower, ln.lower_netns) == (None, None)


@needs_lab
def test_label_lab_paths(lab: Lab, lab_topology: Topology) -> None:
    forward = [lab.bridge, lab.host_veth, "eth0", "eth1", "eth0"]
    labels = [lab.bridge, lab.host_veth, f"eth0@{lab.ctr1}", f"eth1@{lab.ctr1}", f"eth0@{lab.ctr2}"]
    assert label_path(forward, lab_topology) == labels
    assert label_path(forward[::-1], lab_topology) == labels[::-1]

    fwd, rev = ">".join(forward), ">".join(forward[::-1])
    paths = pd.Series([fwd, rev, rev, fwd, fwd], dtype="category")
    assert label_paths(paths, lab_topology).astype(object).tolist() == [
        ">".join(labels),
        ">".join(labels[::-1]),
        ">".join(labels[::-1]),
        ">".join(labels),
        ">".join(labels),
    ]


@needs_lab
def test_lab_snapshot_round_trip(lab_topology: Topology, tmp_path: Path) -> None:
    lab_topology.save(tmp_path / "topology.json")
    assert Topology.load(tmp_path / "topology.json") == lab_topology
    assert Topology.from_json(lab_topology.to_json()).interfaces.equals(lab_topology.interfaces)


@needs_lab
def test_unnamed_namespace_and_same_namespace_pair() -> None:
    # a process in a namespace without an `ip netns` name stands for a container
    with Lab() as lab:
        holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
        try:
            inode = _wait_for_new_netns(holder.pid)
            lab.run(
                lab.ctr2, ["ip", "link", "add", "pnx", "type", "veth", "peer", "name", "pny", "netns", str(holder.pid)]
            )
            lab.run(lab.ctr2, ["ip", "link", "add", "pna", "type", "veth", "peer", "name", "pnb"])
            # stacked devices: a macvlan over eth0 in ctr2, and one whose lower stays in ctr2
            # while the macvlan itself moves to the unnamed namespace
            lab.run(lab.ctr2, ["ip", "link", "add", "pnm", "link", "eth0", "type", "macvlan"])
            lab.run(lab.ctr2, ["ip", "link", "add", "pnn", "link", "eth0", "type", "macvlan"])
            lab.run(lab.ctr2, ["ip", "link", "set", "pnn", "netns", str(holder.pid)])
            topo = snapshot()
        finally:
            holder.kill()
            holder.wait()
    unnamed = f"netns:{inode}"
    # a fresh namespace does not forward
    assert Netns(unnamed, inode, named=False, forwarding=False) in topo.namespaces
    assert find(topo, unnamed, "pny") == Link(
        unnamed, "pny", 2, "veth", None, lab.ctr2, "pnx", find(topo, unnamed, "pny").mac
    )
    pnx = find(topo, lab.ctr2, "pnx")
    assert (pnx.peer_netns, pnx.peer_name) == (unnamed, "pny")
    assert (find(topo, lab.ctr2, "pna").peer_netns, find(topo, lab.ctr2, "pna").peer_name) == (lab.ctr2, "pnb")
    assert (find(topo, lab.ctr2, "pnb").peer_netns, find(topo, lab.ctr2, "pnb").peer_name) == (lab.ctr2, "pna")
    assert find(topo, unnamed, "lo").kind == "loopback"
    pnm, pnn = find(topo, lab.ctr2, "pnm"), find(topo, unnamed, "pnn")
    assert (pnm.kind, pnm.lower, pnm.lower_netns) == ("macvlan", "eth0", None)
    assert (pnn.kind, pnn.lower, pnn.lower_netns) == ("macvlan", "eth0", lab.ctr2)
    assert (pnm.peer_netns, pnm.peer_name, pnn.peer_netns, pnn.peer_name) == (None, None, None, None)
    for ln in (find(topo, lab.ctr2, "pnx"), find(topo, lab.ctr2, "pna"), find(topo, unnamed, "pny")):
        assert (ln.lower, ln.lower_netns) == (None, None)
    assert label_path(["eth1", "eth0", "pnx", "pny"], topo) == [
        f"eth1@{lab.ctr1}",
        f"eth0@{lab.ctr2}",
        f"pnx@{lab.ctr2}",
        f"pny@{unnamed}",
    ]


def _wait_for_new_netns(pid: int, timeout: float = 10.0) -> int:
    """The netns inode of ``pid`` once it differs from ours (after ``unshare`` exec'd)."""
    ours = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
        if inode != ours:
            return inode
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not enter a new network namespace")


@needs_lab
def test_snapshot_without_privileges(lab: Lab) -> None:
    status, output = run_as_nobody(lambda: snapshot().to_json())
    assert status == 0, output
    topo = Topology.from_json(output)
    (home,) = [ns for ns in topo.namespaces if ns.name == topo.home]
    assert home.inode == os.stat("/proc/self/ns/net").st_ino
    assert {ln.netns for ln in topo.links} == {topo.home}
    assert {lab.ctr1, lab.ctr2} <= set(topo.unreadable)
    veth = find(topo, topo.home, lab.host_veth)
    # the peer's namespace is named (ip netns list-id needs no privileges), its interfaces are not readable
    assert (veth.master, veth.peer_netns, veth.peer_name) == (lab.bridge, lab.ctr1, None)
