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


def test_a_filtered_trace_summarises_like_any_other(mixed: perfnet.Trace) -> None:
    only = mixed.filter(dev="mv0")
    assert only.events["event"].value_counts().sum() == len(only.events)
    assert isinstance(only.drops, pd.DataFrame)
    assert set(only.stages["packet_id"]) <= set(only.packets["packet_id"])
    assert only.filter(dev="mv0").packets.equals(only.packets)  # filtering again changes nothing
