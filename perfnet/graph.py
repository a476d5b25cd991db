"""The device graph: where a packet at one device can be seen next.

A path step goes from one *device* to another, and a name is not a device: ``eth0`` exists in
every container.  :class:`DeviceGraph` turns a :class:`~perfnet.topology.Topology` (a snapshot
of the host, or one inferred from the capture by :mod:`perfnet.infer`) into devices numbered
from 0 and answers one question for path reconstruction: can a packet that was last seen
transmitted on (or received by) device ``a`` next be seen transmitted on (received by) device
``b``?  The answer follows from how the kernel moves an skb between devices:

* transmit ``a`` -> receive ``b``: ``b`` is ``a``'s veth (or netkit) peer; loopback receives what
  it sends; macvlans (and ipvlans) on one lower device pass packets to each other.
* transmit ``a`` -> transmit ``b``: ``b`` is a port of ``a`` (a bridge or bond transmits through
  its ports), or the lower device of ``a`` (VLAN, macvlan, ipvlan), or ``a`` is a tunnel (the
  encapsulated packet is routed again).
* receive ``a`` -> receive ``b``: the reverse: ``b`` is ``a``'s master or upper device, or a
  tunnel that decapsulates.
* receive ``a`` -> transmit ``b``: forwarding: ``b`` is another port of ``a``'s bridge, or ``a``'s
  namespace forwards IP (``net.ipv4.ip_forward``) and holds ``b``.

Every other step the topology describes is *infeasible*: the packet cannot be there, so the
event belongs to another skb that reuses the address.  Redirects the topology cannot show (tc
``mirred``, BPF ``redirect``) are the known false splits.  IP forwarding is the one step that
the topology allows without proving it (a namespace that forwards can as well deliver a packet
and send a new one out of another device): such steps are *weak*, which lets the path
rebuilder move a split back over them when the next step shows it was wrong; so are the steps
only unknowns allow (below).  Devices the topology lacks (names it does not know) are never
the reason for a split: any step from or to them is allowed, weakly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from perfnet.topology import PAIR_KINDS, Link, Topology

__all__ = ["STACKED_KINDS", "SWITCHED_KINDS", "TUNNEL_KINDS", "DeviceGraph", "Step"]

STACKED_KINDS: Final = frozenset({"vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "macsec", "vrf"})
"""Kinds of devices that send through a lower device (``Link.lower``)."""

SWITCHED_KINDS: Final = frozenset({"macvlan", "macvtap", "ipvlan", "ipvtap"})
"""Stacked kinds whose devices on one lower device pass packets to each other directly."""

TUNNEL_KINDS: Final = frozenset(
    {"vxlan", "geneve", "gre", "gretap", "ip6gre", "ip6gretap", "ipip", "sit", "ip6tnl", "wireguard", "vti",
     "vti6", "bareudp", "gtp", "xfrm", "erspan", "ip6erspan"}
)  # fmt: skip
"""Kinds of devices that encapsulate: their packets leave (or arrive) again through whatever
device routes the outer header, in any namespace."""


@dataclass(frozen=True)
class Step:
    """Whether a step between two device visits is possible, and whether only weakly."""

    feasible: bool
    weak: bool = False


_NO: Final = Step(False)
_YES: Final = Step(True)
_WEAK: Final = Step(True, weak=True)


class DeviceGraph:
    """The devices of a topology, numbered, and the steps a packet can take between them.

    What the topology does not say is unknown, not false: a veth end whose peer could not be
    read, a stacked device whose lower device is not listed, and in an inferred topology any
    device seen without its peer, may lead anywhere (weakly); so may a namespace whose
    forwarding is unknown.

    Attributes:
        topology: what the graph was built from.
        devices: the topology's links, in order; a device's number is its position.
    """

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.devices: tuple[Link, ...] = topology.links
        self._index = {(link.netns, link.name): i for i, link in enumerate(self.devices)}
        self._by_name: dict[str, tuple[int, ...]] = {}
        for i, link in enumerate(self.devices):
            self._by_name[link.name] = (*self._by_name.get(link.name, ()), i)
        self._forwarding = {ns.name: ns.forwarding is not False for ns in topology.namespaces}

    def candidates(self, name: str) -> tuple[int, ...]:
        """The devices called ``name``, in any namespace (empty if the topology has none)."""
        return self._by_name.get(name, ())

    def _peer(self, link: Link) -> int | None:
        if link.peer_netns is None or link.peer_name is None:
            return None
        return self._index.get((link.peer_netns, link.peer_name))

    def _lower(self, link: Link) -> int | None:
        if link.lower is None:
            return None
        return self._index.get((link.lower_netns or link.netns, link.lower))

    def _peer_unknown(self, link: Link) -> bool:
        """Whether the device may have a peer the topology does not name."""
        if self._peer(link) is not None:
            return False
        return link.kind in PAIR_KINDS or (self.topology.inferred and link.kind is None)

    def _lower_unknown(self, link: Link) -> bool:
        """Whether the device is stacked on a device the topology does not list."""
        return link.kind in STACKED_KINDS and self._lower(link) is None

    def _below(self, upper: Link, lower: Link) -> bool:
        """Whether ``lower`` is a port of ``upper`` (its master) or the device ``upper`` is stacked on."""
        if lower.master == upper.name and lower.netns == upper.netns:
            return True
        return self._lower(upper) == self._index[(lower.netns, lower.name)]

    def step(self, a: int, a_transmits: bool, b: int, b_transmits: bool) -> Step:
        """Can a packet last seen at device ``a`` (transmitted if ``a_transmits``, else received)
        be seen next at device ``b`` (in the direction ``b_transmits``)?  See the module docstring."""
        x, y = self.devices[a], self.devices[b]
        if a_transmits and not b_transmits:
            if self._peer(x) == b or (a == b and x.kind == "loopback"):
                return _YES
            lower = self._lower(x)
            if a != b and x.kind in SWITCHED_KINDS and lower is not None and lower == self._lower(y):
                return _YES  # macvlans in bridge mode deliver to each other
            return _WEAK if self._peer_unknown(x) else _NO
        if a_transmits:
            if a != b and self._below(x, y):
                return _YES
            return _WEAK if x.kind in TUNNEL_KINDS or self._lower_unknown(x) else _NO
        if not b_transmits:
            if a != b and self._below(y, x):
                return _YES
            return _WEAK if y.kind in TUNNEL_KINDS or self._lower_unknown(y) else _NO
        if a == b or x.netns != y.netns:
            return _WEAK if y.kind in TUNNEL_KINDS and a != b else _NO
        if x.master is not None and x.master == y.master:
            return _YES  # bridged from one port to another
        return _WEAK if self._forwarding.get(x.netns, True) or y.kind in TUNNEL_KINDS else _NO
