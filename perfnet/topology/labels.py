"""Netns-qualified labels for the devices of packet paths: ``eth0@ctr1``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import pandas as pd

from perfnet.topology.model import UNKNOWN_DEVICE, UNKNOWN_NETNS, Link, Topology

# A path score, compared lexicographically (higher is better): (-inconsistent steps, veth
# crossings, bridge steps, devices in the home namespace).
_Score = tuple[int, ...]
_ZERO: Final[_Score] = (0, 0, 0, 0)
# A walk state: the device chosen for a position (None: a name the topology lacks) and
# whether the packet entered it from its veth peer.
_State = tuple[Link | None, bool]


class _Index:
    """The interfaces of a topology by name, for labelling many paths."""

    def __init__(self, topology: Topology) -> None:
        self.home = topology.home
        self.by_name: dict[str, list[Link]] = {}
        for link in topology.links:
            self.by_name.setdefault(link.name, []).append(link)

    def label(self, devices: Sequence[str]) -> list[str]:
        """The labels of one path (see :func:`label_path`)."""
        if not devices:
            return []
        options: list[list[Link | None]] = [list(self.by_name.get(name, [])) or [None] for name in devices]
        forward = self._forward(options)
        backward = self._backward(options, forward)
        best = max(forward[-1].values())
        labels = []
        for name, reached, ahead in zip(devices, forward, backward, strict=True):
            chosen = {state[0] for state, score in reached.items() if _add(score, ahead[state]) == best}
            link = chosen.pop() if len(chosen) == 1 else None
            if link is None:
                labels.append(name if name == UNKNOWN_DEVICE else f"{name}@{UNKNOWN_NETNS}")
            else:
                labels.append(name if link.netns == self.home else f"{name}@{link.netns}")
        return labels

    def _node(self, link: Link | None) -> _Score:
        """Score of placing a device: a point for the home namespace."""
        return (0, 0, 0, 1) if link is not None and link.netns == self.home else _ZERO

    def _forward(self, options: list[list[Link | None]]) -> list[dict[_State, _Score]]:
        """For each position, the best score of the path up to it, for every reachable state."""
        forward: list[dict[_State, _Score]] = [{(link, False): self._node(link) for link in options[0]}]
        for choices in options[1:]:
            reached: dict[_State, _Score] = {}
            for state, score in forward[-1].items():
                for link in choices:
                    step, crossed = _step(state, link)
                    total = _add(_add(score, step), self._node(link))
                    key = (link, crossed)
                    if key not in reached or total > reached[key]:
                        reached[key] = total
            forward.append(reached)
        return forward

    def _backward(
        self, options: list[list[Link | None]], forward: list[dict[_State, _Score]]
    ) -> list[dict[_State, _Score]]:
        """For each position and reachable state, the best score of the rest of the path."""
        backward: list[dict[_State, _Score]] = [dict.fromkeys(forward[-1], _ZERO)]
        for position in range(len(options) - 2, -1, -1):
            later = backward[0]
            ahead: dict[_State, _Score] = {}
            for state in forward[position]:
                for link in options[position + 1]:
                    step, crossed = _step(state, link)
                    total = _add(_add(step, self._node(link)), later[(link, crossed)])
                    if state not in ahead or total > ahead[state]:
                        ahead[state] = total
            backward.insert(0, ahead)
        return backward


def _add(a: _Score, b: _Score) -> _Score:
    """Component-wise sum of two scores."""
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _is_pair(a: Link, b: Link) -> bool:
    """Whether ``a`` and ``b`` are the two ends of one veth (or netkit) pair."""
    return (a.peer_netns, a.peer_name) == (b.netns, b.name) or (b.peer_netns, b.peer_name) == (a.netns, a.name)


def _step(state: _State, link: Link | None) -> tuple[_Score, bool]:
    """Score of going from ``state`` to the device ``link``, and whether that crosses a pair.

    Crossing to the peer earns a point unless it goes straight back to where the packet just
    came from (a bounce, consistent but not preferred); staying in the namespace is free and
    earns a bridge point between a bridge and its port or two ports of one bridge; anything
    else is inconsistent.  Steps from or to an unknown device cost nothing.
    """
    previous, entered_from_peer = state
    if previous is None or link is None:
        return _ZERO, False
    if _is_pair(previous, link):
        return ((0, 0, 0, 0) if entered_from_peer else (0, 1, 0, 0)), True
    if previous.netns == link.netns:
        bridged = (
            previous.master == link.name
            or link.master == previous.name
            or (previous.master is not None and previous.master == link.master)
        )
        return (0, 0, int(bridged), 0), False
    return (-1, 0, 0, 0), False


def label_path(devices: Sequence[str], topology: Topology) -> list[str]:
    """Qualify the devices of one packet path with their network namespaces.

    ``devices`` are the device names a packet visited, in arrival order.  Each name is placed
    on one of the interfaces of that name in ``topology``; the placement of the whole path is
    chosen at once, so the first device is resolved by what follows it as much as the later
    ones by what precedes them.  Between consecutive devices a packet either

    * crosses a veth pair: a packet leaving one end arrives next at its peer, in the peer's
      namespace;
    * or stays in its namespace: routed, bridged (a bridge and its ports, or two ports of a
      bridge, share a namespace), delivered locally.

    Among the placements, the best is the one with (in this order of priority) the fewest
    steps that do neither, the most veth crossings (not counting a crossing straight back
    through the pair just crossed), the most bridge/port steps, and the most devices in the
    home namespace.  A device is labelled with its namespace when every best placement agrees
    on it, and ``name@?`` when they differ or when no interface has that name; the unknown
    device ``?`` stays ``?``.  Devices in ``topology.home`` are written bare, the others
    ``name@netns``.

    Args:
        devices: device names in arrival order, e.g. ``["pnbr1", "pnv1", "eth0", "eth1", "eth0"]``.
        topology: the interfaces of the host the path was captured on.

    Returns:
        One label per device, e.g. ``["pnbr1", "pnv1", "eth0@pnc1-1", "eth1@pnc1-1", "eth0@pnc2-1"]``.
    """
    return _Index(topology).label(devices)


def label_paths(paths: pd.Series, topology: Topology, sep: str = ">") -> pd.Series:
    """Qualify many paths (devices joined by ``sep``) with namespaces, as :func:`label_path` does.

    Packets share few distinct paths, so each distinct path is labelled once and the result
    spread back over the rows.

    Args:
        paths: paths such as the ``path`` column of :func:`perfnet.paths.packets`; missing
            values stay missing.
        topology: the interfaces of the host the paths were captured on.
        sep: the separator between devices, kept in the output.

    Returns:
        The labelled paths, indexed and named like ``paths``; categorical if ``paths`` is.
    """
    codes, uniques = pd.factorize(paths)
    index = _Index(topology)
    labelled = [sep.join(index.label(str(path).split(sep))) if str(path) else "" for path in uniques]
    if isinstance(paths.dtype, pd.CategoricalDtype):
        categories = sorted(set(labelled))
        where = {label: i for i, label in enumerate(categories)}
        remap = np.array([where[label] for label in labelled] + [-1], dtype=np.int64)
        labels = pd.Categorical.from_codes(remap[codes], categories=pd.Index(categories, dtype=object))
        return pd.Series(labels, index=paths.index, name=paths.name)
    values = np.array([*labelled, None], dtype=object)[codes]
    return pd.Series(values, index=paths.index, name=paths.name, dtype=object)


def device_label(name: str, topology: Topology) -> str:
    """Qualify one device name seen alone (a single event, no path around it).

    Bare if only perfnet's own namespace has that name, ``name@netns`` if exactly one other
    namespace has it, ``name@?`` if several do (``eth0`` in two containers): one event cannot
    tell them apart; :func:`label_path` can, from the packet's whole path.
    """
    places = {link.netns for link in topology.links if link.name == name}
    if len(places) != 1:
        return f"{name}@{UNKNOWN_NETNS}" if places or name != UNKNOWN_DEVICE else name
    place = places.pop()
    return name if place == topology.home else f"{name}@{place}"
