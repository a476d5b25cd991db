"""Trace.filter: whole packets that match, with their events, ids, topology and labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import perfnet

PATHS = Path(__file__).parent / "fixtures" / "paths"
FORWARD = "pnbrpgt1>pnvpgt1>eth0@pnc1-pgt1>eth1@pnc1-pgt1>eth0@pnc2-pgt1"
BACK = "eth0@pnc2-pgt1>eth1@pnc1-pgt1>eth0@pnc1-pgt1>pnvpgt1>pnbrpgt1"


@pytest.fixture(scope="module")
def mixed() -> perfnet.Trace:
    # TCP both ways, HTTP and UDP at once, through two namespaces that both have an eth0
    return perfnet.read(PATHS / "mixed-script.txt.gz", topology=PATHS / "paths.topology.json")


def test_a_namespace_keeps_whole_packets_with_their_events_and_ids(mixed: perfnet.Trace) -> None:
    only = mixed.filter(netns="pnc2-pgt1")
    assert only.packets["netns_path"].value_counts().to_dict() == {
        FORWARD: 405,
        BACK: 374,
        "eth1@pnc1-pgt1>eth0@pnc2-pgt1": 60,
        "mv0@pnc2-pgt1>eth0@pnc2-pgt1>eth1@pnc1-pgt1": 60,
    }
    ids = only.packets["packet_id"]
    original = mixed.packets.set_index("packet_id").loc[ids]
    assert (original["netns_path"].to_numpy() == only.packets["netns_path"].to_numpy()).all()
    # every event of those packets, and nothing else; the labels stay aligned with the events
    in_packets = mixed.labels["packet_id"].isin(ids)
    assert len(only.events) == int(in_packets.sum()) == int(only.packets["n_events"].sum()) == 15736
    assert only.labels["packet_id"].isin(ids).all()
    assert only.events["lineno"].tolist() == mixed.events[in_packets.to_numpy()]["lineno"].tolist()
    assert only.hops.equals(mixed.hops[mixed.hops["packet_id"].isin(ids)].reset_index(drop=True))
    assert only.topology is mixed.topology
    assert len(only.messages) == len(mixed.messages)


def test_devices_by_plain_or_labelled_name(mixed: perfnet.Trace) -> None:
    plain = mixed.filter(dev="eth0")
    assert len(plain.packets) == len(mixed.packets) == 1039  # every path passes an eth0
    labelled = mixed.filter(dev="eth0@pnc2-pgt1")
    assert len(labelled.packets) == 405 + 374 + 60 + 60
    assert len(mixed.filter(dev=["mv0", "nosuchdev"]).packets) == 60
    assert mixed.filter(dev="nosuchdev").packets.empty
    # conditions combine: in pnc2 and on the macvlan
    assert len(mixed.filter(netns="pnc2-pgt1", dev="mv0").packets) == 60
    # perfnet's own namespace is the topology's home
    assert len(mixed.filter(netns=mixed.topology.home).packets) == 405 + 374 + 70 + 70


def test_protocol_by_name_or_number(mixed: perfnet.Trace) -> None:
    assert len(mixed.filter(protocol="ipv4").packets) == 1039
    assert len(mixed.filter(protocol=0x0800).packets) == 1039
    assert len(mixed.filter(protocol="0x0800").packets) == 1039
    assert mixed.filter(protocol=["ipv6", "arp"]).packets.empty
    with pytest.raises(perfnet.UsageError, match=r"unknown protocol 'ipx'.*ipv4"):
        mixed.filter(protocol="ipx")


def test_a_time_window_in_seconds_from_the_first_event(mixed: perfnet.Trace) -> None:
    t0 = int(mixed.events["time_ns"].min())
    start = (mixed.packets["start_ns"] - t0) / 1e9
    middle = float(np.median(start))
    early = mixed.filter(until=middle)
    late = mixed.filter(since=middle)
    assert len(early.packets) == int((start < middle).sum()) > 0
    assert len(late.packets) + len(early.packets) == 1039
    assert (late.packets["start_ns"] >= t0 + middle * 1e9).all()
    window = mixed.filter(since=0.1, until=0.2)
    assert len(window.packets) == int(((start >= 0.1) & (start < 0.2)).sum())
    with pytest.raises(perfnet.UsageError, match="before since"):
        mixed.filter(since=2, until=1)
    # times count from the capture's first event, also in a filtered trace
    assert late.start_ns == mixed.start_ns == t0
    assert late.filter(since=middle).packets.equals(late.packets)
    assert len(window.filter(until=0.15).packets) == int(((start >= 0.1) & (start < 0.15)).sum())


def test_a_filtered_trace_summarises_like_any_other(mixed: perfnet.Trace) -> None:
    only = mixed.filter(dev="mv0")
    assert only.events["event"].value_counts().sum() == len(only.events)
    assert isinstance(only.drops, pd.DataFrame)
    assert set(only.stages["packet_id"]) <= set(only.packets["packet_id"])
    assert only.filter(dev="mv0").packets.equals(only.packets)  # filtering again changes nothing


def test_netns_columns_are_always_there() -> None:
    # a hand-made capture: no topology saved, nothing to infer namespaces from
    from perfnet.grammar import Variant
    from perfnet.records import Record

    records = [
        Record(1, 1000, "net:net_dev_queue", "ping", 7, 0, {"skbaddr": 0xFFFF0001, "len": 98, "dev": "br0"}),
        Record(2, 2000, "net:net_dev_queue", "ping", 7, 0, {"skbaddr": 0xFFFF0001, "len": 98, "dev": "veth1"}),
    ]
    trace = perfnet.Trace.from_items(records, Variant.TRACE)
    # devices of no known namespace are written name@?
    assert trace.packets[["path", "netns_path", "end"]].values.tolist() == [["br0>veth1", "br0@?>veth1@?", "unknown"]]
    assert trace.hops[["from_netns_dev", "to_netns_dev"]].values.tolist() == [["br0@?", "veth1@?"]]
    assert "netns_dev" in trace.stages and "netns_dev" in trace.drops
    empty = perfnet.Trace.from_items([], Variant.TRACE)
    for name, columns in {
        "packets": ["netns_path"],
        "hops": ["from_netns_dev", "to_netns_dev"],
        "stages": ["netns_dev"],
        "drops": ["netns_dev"],
    }.items():
        assert set(columns) <= set(getattr(empty, name).columns), name
