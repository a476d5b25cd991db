"""Tests for perfnet.lab (real namespaces; need root, ip, perf, ping)."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from perfnet.lab import STATE_DIR, Lab, LabError, LabNames, cleanup_stale, require_root_and_tools

REASON = require_root_and_tools()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "-j", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {e["name"] for e in json.loads(out)} if out.strip() else set()


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {e["ifname"] for e in json.loads(out)}


def assert_gone(names: LabNames) -> None:
    assert not ({names.ctr1, names.ctr2} & netns_list())
    assert not ({names.bridge, names.host_veth} & root_links())
    assert not (STATE_DIR / f"{names.tag}.json").exists()


def deltas(
    lab: Lab, before: dict[tuple[str | None, str], tuple[int, int]]
) -> dict[tuple[str | None, str], tuple[int, int]]:
    after = lab.link_counters()
    return {k: (after[k][0] - before[k][0], after[k][1] - before[k][1]) for k in after}


def lab_ifaces(lab: Lab) -> list[tuple[str | None, str]]:
    keys: list[tuple[str | None, str]] = [(None, lab.bridge), (None, lab.host_veth), (lab.ctr1, "eth0")]
    if lab.router:
        keys += [(lab.ctr1, "eth1"), (lab.ctr2, "eth0")]
    return keys


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


def test_names_and_addresses(lab: Lab) -> None:
    n = lab.names
    assert lab.bridge == f"pnbr{n.tag}" and lab.host_veth == f"pnv{n.tag}"
    assert lab.ctr1 == f"pnc1-{n.tag}" and lab.ctr2 == f"pnc2-{n.tag}"
    assert all(len(x) <= 15 for x in (lab.bridge, lab.host_veth))
    assert 200 <= lab.octet <= 250
    for addr in lab.lab_addresses():
        ip = ipaddress.ip_address(addr)
        assert ip.is_private and ip in ipaddress.ip_network(f"10.{lab.octet}.0.0/16")
    assert lab.bridge_addr == f"10.{lab.octet}.0.1" and lab.ctr1_addr == f"10.{lab.octet}.0.2"
    assert lab.ctr1_router_addr == f"10.{lab.octet}.1.1" and lab.ctr2_addr == f"10.{lab.octet}.1.2"
    assert lab.exec_argv(None, ["true"]) == ["true"]
    assert lab.exec_argv(lab.ctr1, ["true"]) == ["ip", "netns", "exec", lab.ctr1, "true"]
    with pytest.raises(ValueError):
        lab.exec_argv("some-other-ns", ["true"])
    desc = lab.describe()
    assert desc["bridge"] == lab.bridge and desc["ctr2_addr"] == lab.ctr2_addr
    json.dumps(desc)


def test_lab_up_and_ping_through_router(lab: Lab) -> None:
    assert {lab.ctr1, lab.ctr2} <= netns_list()
    assert {lab.bridge, lab.host_veth} <= root_links()
    res = lab.ping(lab.ctr2_addr, 2)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 received" in res.stdout
    # ctr2 -> root (back through the router) and ctr2 -> ctr1
    assert lab.ping(lab.bridge_addr, 1, netns=lab.ctr2).returncode == 0
    assert lab.ping(lab.ctr1_addr, 1, netns=lab.ctr2).returncode == 0
    fwd = lab.run(lab.ctr1, ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip()
    assert fwd == "1"
    route = lab.run(None, ["ip", "route", "show", f"10.{lab.octet}.1.0/24"]).stdout
    assert f"via {lab.ctr1_addr} dev {lab.bridge}" in route
    assert f"default via {lab.ctr1_router_addr}" in lab.run(lab.ctr2, ["ip", "route"]).stdout
    assert f"default via {lab.bridge_addr}" in lab.run(lab.ctr1, ["ip", "route"]).stdout
    master = json.loads(lab.run(None, ["ip", "-j", "link", "show", "dev", lab.host_veth]).stdout)[0]
    assert master.get("master") == lab.bridge


def test_ipv6_disabled_and_static_neighbours(lab: Lab) -> None:
    for dev in (lab.bridge, lab.host_veth):
        assert Path(f"/proc/sys/net/ipv6/conf/{dev}/disable_ipv6").read_text().strip() == "1"
    for ns, devs in ((lab.ctr1, ["all", "default", "lo", "eth0", "eth1"]), (lab.ctr2, ["all", "default", "eth0"])):
        for dev in devs:
            val = lab.run(ns, ["sysctl", "-n", f"net.ipv6.conf.{dev}.disable_ipv6"]).stdout.strip()
            assert val == "1", (ns, dev)
        assert "inet6" not in lab.run(ns, ["ip", "addr"]).stdout
    assert "inet6" not in lab.run(None, ["ip", "addr", "show", "dev", lab.bridge]).stdout
    neigh = lab.run(None, ["ip", "neigh", "show", "dev", lab.bridge]).stdout
    assert lab.ctr1_addr in neigh and "PERMANENT" in neigh
    assert "PERMANENT" in lab.run(lab.ctr2, ["ip", "neigh"]).stdout


def test_link_counters_exact_for_ping(lab: Lab) -> None:
    before = lab.link_counters()
    keys = lab_ifaces(lab)
    assert set(keys) <= set(before)
    assert (lab.ctr1, "lo") in before and (lab.ctr2, "lo") in before
    assert all(ns is not None or ifn in (lab.bridge, lab.host_veth) for ns, ifn in before)
    res = lab.ping(lab.ctr2_addr, 3)
    assert res.returncode == 0
    time.sleep(0.2)
    d = deltas(lab, before)
    for key in keys:
        assert d[key] == (3, 3), (key, d[key])  # neighbours are static: no ARP at all
    assert d[(lab.ctr1, "lo")] == (0, 0)
    assert d[(lab.ctr2, "lo")] == (0, 0)


def test_lab_is_quiet_when_idle(lab: Lab) -> None:
    before = lab.link_counters()
    time.sleep(2.5)
    assert all(v == (0, 0) for v in deltas(lab, before).values())


def test_two_labs_at_once_are_distinct() -> None:
    with Lab() as a, Lab() as b:
        assert a.tag != b.tag and a.octet != b.octet
        names_a = {a.bridge, a.host_veth, a.ctr1, a.ctr2}
        names_b = {b.bridge, b.host_veth, b.ctr1, b.ctr2}
        assert len(names_a) == 4 and not (names_a & names_b)
        assert a.ping(a.ctr2_addr, 1).returncode == 0
        assert b.ping(b.ctr2_addr, 1).returncode == 0
        before = b.link_counters()
        assert a.ping(a.ctr2_addr, 2).returncode == 0
        assert all(v == (0, 0) for v in deltas(b, before).values())  # b sees none of a's traffic
    assert_gone(a.names)
    assert_gone(b.names)


def test_same_tag_twice_is_refused() -> None:
    with Lab() as a:
        with pytest.raises(LabError):
            Lab(a.tag).up()
        # the failed second lab must not have torn down the first one
        assert a.ping(a.ctr2_addr, 1).returncode == 0


def test_down_removes_everything_and_is_idempotent() -> None:
    lab = Lab().up()
    names = lab.names
    assert {names.ctr1, names.ctr2} <= netns_list()
    assert (STATE_DIR / f"{names.tag}.json").exists()
    lab.down()
    assert_gone(names)
    assert lab.leftovers() == []
    lab.down()  # idempotent
    lab.down()
    Lab().down()  # never brought up: fine too


def test_down_when_objects_already_gone() -> None:
    lab = Lab().up()
    subprocess.run(["ip", "netns", "del", lab.ctr2], check=True)
    subprocess.run(["ip", "link", "del", "dev", lab.host_veth], check=True)
    lab.down()
    assert_gone(lab.names)


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_teardown_even_if_body_raises(exc: type[BaseException]) -> None:
    names = None
    with pytest.raises(exc), Lab() as lab:
        names = lab.names
        with lab.http_server(lab.ctr2):
            raise exc("boom")
    assert names is not None
    assert_gone(names)


def test_http_server_and_get(lab: Lab) -> None:
    with lab.http_server(lab.ctr2) as srv:
        assert srv.addr == lab.ctr2_addr and srv.url.startswith(f"http://{lab.ctr2_addr}:")
        before = lab.link_counters()
        lab.http_get(lab.ctr2_addr, 2)
        lab.http_get(lab.ctr2_addr, 1, netns=lab.ctr1)
        d = deltas(lab, before)
        assert d[(lab.ctr2, "eth0")][1] > 0
        pid = srv.pid
    assert subprocess.run(["ip", "netns", "pids", lab.ctr2], capture_output=True, text=True).stdout.split() == []
    assert not Path(f"/proc/{pid}").exists() or "http.server" not in Path(f"/proc/{pid}/cmdline").read_text()


def test_router_false_builds_only_bridge_and_ctr1() -> None:
    with Lab(router=False) as lab:
        assert lab.namespaces == (lab.ctr1,)
        assert lab.ctr1 in netns_list() and lab.ctr2 not in netns_list()
        before = lab.link_counters()
        assert lab.ping(lab.ctr1_addr, 3).returncode == 0
        time.sleep(0.2)
        d = deltas(lab, before)
        for key in lab_ifaces(lab):
            assert d[key] == (3, 3), key
        with pytest.raises(ValueError):
            lab.ping(lab.ctr2_addr, 1)
    assert_gone(lab.names)


def test_traffic_only_to_lab_or_loopback() -> None:
    lab = Lab()  # not up: the check needs no network
    for bad in ("192.0.2.1", "8.8.8.8", "10.0.0.1", "example.com", f"10.{lab.octet}.9.9"):
        with pytest.raises(ValueError):
            lab.ping(bad, 1)
        with pytest.raises(ValueError):
            lab.http_get(bad, 1)
    lab.check_dest("127.0.0.1")
    lab.check_dest(lab.ctr2_addr)


def test_cleanup_stale_removes_only_dead_labs(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, os, sys
        from perfnet.lab import Lab
        lab = Lab().up()
        print(json.dumps([lab.tag, lab.bridge, lab.host_veth, lab.ctr1, lab.ctr2]), flush=True)
        os._exit(0)  # "crash": no down()
        """
    )
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, timeout=60
    ).stdout
    tag, bridge, _veth, ctr1, ctr2 = json.loads(out)
    assert {ctr1, ctr2} <= netns_list() and bridge in root_links()
    with Lab() as live:
        removed = cleanup_stale()
        assert f"netns:{ctr1}" in removed and f"link:{bridge}" in removed
        assert not any(live.tag in r for r in removed)
        assert live.ping(live.ctr2_addr, 1).returncode == 0  # live lab untouched
    assert_gone(LabNames.for_tag(tag))
    assert cleanup_stale() == []


def test_cleanup_stale_ignores_foreign_names() -> None:
    # a netns matching the pattern but without our owner record or alias is not ours
    name = f"pnc1-z{secrets.token_hex(3)}"  # unique per run
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        assert f"netns:{name}" not in cleanup_stale()
        assert name in netns_list()
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_bad_tags_rejected() -> None:
    for tag in ("", "UPPER", "has space", "a" * 11, "x/y"):
        with pytest.raises(ValueError):
            Lab(tag)


def test_kept_lab_outlives_its_process_and_cleanup_until_attached_and_downed() -> None:
    """`perfnet lab up` keeps a lab after it exits; `perfnet lab down TAG` removes it."""
    code = "from perfnet.lab import Lab; lab = Lab().up(); lab.keep(); print(lab.tag)"
    tag = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    names = LabNames.for_tag(tag)
    try:
        assert {names.ctr1, names.ctr2} <= netns_list() and set(names.root_links) <= root_links()
        removed = cleanup_stale()
        assert not any(tag in obj for obj in removed)
        assert {names.ctr1, names.ctr2} <= netns_list()
        kept = Lab.attach(tag)
        assert kept.ping(kept.ctr2_addr, 1).returncode == 0
    finally:
        Lab.attach(tag).down()
    assert_gone(names)
    with pytest.raises(LabError, match="no lab"):
        Lab.attach(tag)


def test_a_lab_of_a_live_owner_is_spared_whatever_form_its_record_has() -> None:
    from perfnet.lab.registry import owner_alive, proc_start_time

    me = os.getpid()
    assert owner_alive({"pid": me, "pid_start": proc_start_time(me)})
    assert owner_alive({"pid": me, "pid_start": 123456})  # clock ticks, as older versions wrote
    assert not owner_alive({"pid": me, "pid_start": (proc_start_time(me) or 0) - 60})  # a reused pid
    assert owner_alive({"kept": True}) and not owner_alive({"pid": "x"})
