"""Building a lab: namespaces, the bridge, veth pairs, addresses, routes, static neighbours."""

from __future__ import annotations

import time

from perfnet.host.commands import CommandError, ns_argv, run
from perfnet.host.commands import sysctl as set_sysctl
from perfnet.host.netns import ip_links
from perfnet.lab.plan import ALIAS_PREFIX, LabError, mac
from perfnet.lab.workloads import Workloads


def build(lab: Workloads) -> None:
    """Create every object of ``lab`` (reserved already) and check it with one ping."""
    n = lab.names
    x = lab.octet
    alias = f"{ALIAS_PREFIX} {n.tag}"

    def checked(argv: list[str]) -> None:
        try:
            run(argv)
        except CommandError as exc:
            raise LabError(f"lab {n.tag}: {exc}") from None

    def ip(netns: str | None, args: str) -> None:
        # ``args`` is split on whitespace into an argv list (no shell involved);
        # every interpolated value is a validated name/address without spaces.
        checked(ns_argv(netns, ["ip", *args.split()]))

    def set_alias(netns: str | None, dev: str) -> None:
        checked(ns_argv(netns, ["ip", "link", "set", "dev", dev, "alias", alias]))

    def sysctl(netns: str | None, key: str, value: str) -> None:
        try:
            set_sysctl(netns, key, value)
        except CommandError as exc:
            raise LabError(f"lab {n.tag}: {exc}") from None

    # 1. namespaces, quiet by default (IPv6 off before any link exists)
    for ns in lab.namespaces:
        ip(None, f"netns add {ns}")
        for key in ("all", "default"):
            sysctl(ns, f"net.ipv6.conf.{key}.disable_ipv6", "1")
            sysctl(ns, f"net.ipv4.conf.{key}.send_redirects", "0")
    if lab.router:
        sysctl(n.ctr1, "net.ipv4.ip_forward", "1")

    # 2. bridge ("docker0") + host veth <-> ctr1 eth0; IPv6 off before up
    ip(
        None,
        f"link add name {n.bridge} address {mac(x, 0, 1)} type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
    )
    sysctl(None, f"net.ipv6.conf.{n.bridge}.disable_ipv6", "1")
    set_alias(None, n.bridge)
    ip(
        None,
        f"link add name {n.host_veth} address {mac(x, 1, 1)} type veth"
        f" peer name {n.ctr1_if} address {mac(x, 1, 2)} netns {n.ctr1}",
    )
    sysctl(None, f"net.ipv6.conf.{n.host_veth}.disable_ipv6", "1")
    set_alias(None, n.host_veth)
    set_alias(n.ctr1, n.ctr1_if)
    ip(None, f"link set dev {n.host_veth} master {n.bridge}")
    ip(None, f"addr add {lab.bridge_addr}/24 dev {n.bridge}")
    ip(n.ctr1, f"addr add {lab.ctr1_addr}/24 dev {n.ctr1_if}")

    # 3. router chain ctr1 eth1 <-> ctr2 eth0
    if lab.router:
        ip(
            n.ctr1,
            f"link add name {n.ctr1_router_if} address {mac(x, 2, 1)} type veth"
            f" peer name {n.ctr2_if} address {mac(x, 2, 2)} netns {n.ctr2}",
        )
        set_alias(n.ctr1, n.ctr1_router_if)
        set_alias(n.ctr2, n.ctr2_if)
        ip(n.ctr1, f"addr add {lab.ctr1_router_addr}/24 dev {n.ctr1_router_if}")
        ip(n.ctr2, f"addr add {lab.ctr2_addr}/24 dev {n.ctr2_if}")

    # belt and braces: per-interface IPv6 off inside the namespaces too
    for ns in lab.namespaces:
        for link in ip_links(ns):
            sysctl(ns, f"net.ipv6.conf.{link['ifname']}.disable_ipv6", "1")

    # 4. static permanent neighbours (no ARP ever) -- before anything goes up
    neigh = "neigh replace {} lladdr {} dev {} nud permanent"
    ip(None, neigh.format(lab.ctr1_addr, mac(x, 1, 2), n.bridge))
    ip(n.ctr1, neigh.format(lab.bridge_addr, mac(x, 0, 1), n.ctr1_if))
    if lab.router:
        ip(n.ctr1, neigh.format(lab.ctr2_addr, mac(x, 2, 2), n.ctr1_router_if))
        ip(n.ctr2, neigh.format(lab.ctr1_router_addr, mac(x, 2, 1), n.ctr2_if))

    # 5. links up
    for ns in lab.namespaces:
        ip(ns, "link set dev lo up")
    ip(None, f"link set dev {n.host_veth} up")
    ip(None, f"link set dev {n.bridge} up")
    ip(n.ctr1, f"link set dev {n.ctr1_if} up")
    if lab.router:
        ip(n.ctr1, f"link set dev {n.ctr1_router_if} up")
        ip(n.ctr2, f"link set dev {n.ctr2_if} up")

    # 6. routes
    ip(n.ctr1, f"route add default via {lab.bridge_addr} dev {n.ctr1_if}")
    if lab.router:
        ip(None, f"route add 10.{x}.1.0/24 via {lab.ctr1_addr} dev {n.bridge}")
        ip(n.ctr2, f"route add default via {lab.ctr1_router_addr} dev {n.ctr2_if}")

    # 7. wait for carrier everywhere, then one verification ping
    _wait_oper_up(lab)
    target = lab.ctr2_addr if lab.router else lab.ctr1_addr
    res = lab.ping(target, 1, interval=0.2)
    if res.returncode != 0:
        raise LabError(f"lab {lab.tag}: verification ping to {target} failed:\n{res.stdout}{res.stderr}")


def _wait_oper_up(lab: Workloads, timeout: float = 10.0) -> None:
    want: dict[str | None, set[str]] = {
        None: set(lab.names.root_links),
        lab.ctr1: {lab.names.ctr1_if},
    }
    if lab.router:
        want[lab.ctr1].add(lab.names.ctr1_router_if)
        want[lab.ctr2] = {lab.names.ctr2_if}
    deadline = time.monotonic() + timeout
    while True:
        missing = []
        for ns, ifs in want.items():
            state = {str(link["ifname"]): link.get("operstate") for link in ip_links(ns)}
            missing += [f"{ns or 'root'}/{i}" for i in ifs if state.get(i) != "UP"]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise LabError(f"lab {lab.tag}: links not up after {timeout}s: {missing}")
        time.sleep(0.05)
