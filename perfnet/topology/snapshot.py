"""A snapshot of every network namespace's interfaces on this host, with veth peers resolved."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from perfnet.errors import PerfnetError
from perfnet.host.netns import Reading, discover, read
from perfnet.topology.model import PAIR_KINDS, Link, Netns, Topology


def snapshot() -> Topology:
    """Record the interfaces of every network namespace of this host.

    Namespaces come from ``ip netns list`` (named) and from ``/proc/*/ns/net`` (unnamed ones,
    such as containers'), told apart by the inode of their nsfs file.  Each one other than
    perfnet's own is entered with ``nsenter`` through an open descriptor (so a pid that exits
    or is reused meanwhile cannot redirect the read) and listed with ``ip -j -d link``.

    A veth end's peer is ``link_index`` in the namespace its ``link_netnsid`` designates.
    Which namespace that is comes from ``ip -j netns list-id`` run in the same namespace
    (which names only namespaces with an ``ip netns`` name); for the others, from the only
    namespace holding an interface with that index that is a veth pointing back at this end
    through an nsid that designates this namespace there, consistently for all ends sharing
    that nsid (so small ifindexes repeating across containers cannot mislead).

    Without privileges only the own namespace can be read; the others found are listed in
    :attr:`Topology.unreadable`, as is any namespace that vanished during the snapshot.

    Returns:
        The topology; ``home`` is the namespace of the calling process.

    Raises:
        PerfnetError: not even the own namespace could be listed (no ``ip`` command).
    """
    home_inode = os.stat("/proc/self/ns/net").st_ino
    found, labels_by_name = discover(home_inode)
    readings: dict[str, Reading] = {}
    for place in found:
        reading = read(place, home_inode)
        if reading is not None:
            readings[place.netns.name] = reading
    home = next(place.netns.name for place in found if place.netns.inode == home_inode)
    if home not in readings:
        raise PerfnetError("cannot list the network interfaces: `ip -j -d link` failed")
    return Topology(
        home=home,
        namespaces=tuple(
            sorted(
                (
                    Netns(
                        place.netns.name,
                        place.netns.inode,
                        place.netns.named,
                        readings[place.netns.name].forwarding if place.netns.name in readings else None,
                    )
                    for place in found
                ),
                key=lambda ns: ns.name,
            )
        ),
        links=tuple(sorted(_Resolver(readings, labels_by_name).links(), key=lambda link: (link.netns, link.ifindex))),
        unreadable=tuple(sorted(place.netns.name for place in found if place.netns.name not in readings)),
    )


def _kind(raw: Mapping[str, Any]) -> str | None:
    """The kind of a link as ``ip -j -d link`` prints it (``loopback`` for ``lo``)."""
    info = raw.get("linkinfo")
    kind = info.get("info_kind") if isinstance(info, dict) else None
    if isinstance(kind, str):
        return kind
    return "loopback" if raw.get("link_type") == "loopback" else None


def _optional_str(value: Any) -> str | None:
    """``value`` if it is a string, else None."""
    return value if isinstance(value, str) else None


class _Resolver:
    """Turns the raw listings of all namespaces into links, resolving pair ends' peers."""

    def __init__(self, readings: Mapping[str, Reading], labels_by_name: Mapping[str, str]) -> None:
        self.readings = readings
        self.labels_by_name = labels_by_name
        self.named = set(labels_by_name.values())
        self.by_index = {ns: {int(raw["ifindex"]): raw for raw in reading.links} for ns, reading in readings.items()}

    def links(self) -> list[Link]:
        """Every link of every readable namespace."""
        links = []
        for ns, reading in self.readings.items():
            targets = self._nsid_targets(ns)
            for raw in reading.links:
                kind = _kind(raw)
                peer_netns, peer_name = self._peer(ns, raw, targets) if kind in PAIR_KINDS else (None, None)
                lower_netns, lower = self._peer(ns, raw, targets) if kind not in PAIR_KINDS else (None, None)
                links.append(
                    Link(
                        netns=ns,
                        name=raw["ifname"],
                        ifindex=raw["ifindex"],
                        kind=kind,
                        master=_optional_str(raw.get("master")),
                        peer_netns=peer_netns,
                        peer_name=peer_name,
                        mac=_optional_str(raw.get("address")),
                        lower=lower,
                        lower_netns=lower_netns if lower_netns != ns else None,
                    )
                )
        return links

    def _nsid_label(self, ns: str, nsid: int) -> str | None:
        """The label of the named namespace that ``nsid`` designates in ``ns``; None if unnamed."""
        return self.labels_by_name.get(self.readings[ns].nsid_names.get(nsid, ""))

    def _nsid_targets(self, ns: str) -> dict[int, str]:
        """Which namespace each nsid of ``ns`` designates, where that can be told.

        Named namespaces come from ``ip netns list-id``.  For an unnamed one, the candidates of
        a pair end ``(ifindex i, link_index j, nsid n)`` are the other readable namespaces whose
        interface ``j`` is a pair end pointing back at ``i`` through an nsid that designates
        ``ns`` there (by name if ``ns`` has one, else an unnamed nsid); an nsid is resolved
        when the candidates of all its pair ends have exactly one namespace in common.
        """
        reading = self.readings[ns]
        targets = {nsid: label for nsid in reading.nsid_names if (label := self._nsid_label(ns, nsid)) is not None}
        candidates: dict[int, set[str]] = {}
        for raw in reading.links:
            nsid = raw.get("link_netnsid")
            if not isinstance(nsid, int) or nsid in targets or _kind(raw) not in PAIR_KINDS:
                continue
            fits = {other for other in self.readings if other != ns and self._points_back(ns, raw, other)}
            candidates[nsid] = candidates[nsid] & fits if nsid in candidates else fits
        targets.update({nsid: fits.pop() for nsid, fits in candidates.items() if len(fits) == 1})
        return targets

    def _points_back(self, ns: str, raw: Mapping[str, Any], other_ns: str) -> bool:
        """Whether ``other_ns`` holds, at ``raw``'s ``link_index``, the pair end whose peer is ``raw``."""
        other = self.by_index[other_ns].get(raw.get("link_index", -1))
        if other is None or _kind(other) not in PAIR_KINDS or other.get("link_index") != raw["ifindex"]:
            return False
        back = other.get("link_netnsid")
        return isinstance(back, int) and self._nsid_label(other_ns, back) == (ns if ns in self.named else None)

    def _peer(self, ns: str, raw: Mapping[str, Any], targets: Mapping[int, str]) -> tuple[str | None, str | None]:
        """``(netns, name)`` of the device ``raw`` in ``ns`` links to (None where unknown or none):
        a pair end's peer, or a stacked device's lower device.

        ``ip`` prints a link in the same namespace as ``link`` (its name), one in another
        namespace as ``link_index`` and ``link_netnsid``.
        """
        nsid = raw.get("link_netnsid")
        if nsid is None:
            name = raw.get("link")
            same = any(other["ifname"] == name for other in self.by_index[ns].values())
            return (ns, name) if same else (None, None)
        target = targets.get(nsid) if isinstance(nsid, int) else None
        if target is None:
            return None, None
        other = self.by_index.get(target, {}).get(raw.get("link_index", -1))
        return target, (other["ifname"] if other is not None else None)
