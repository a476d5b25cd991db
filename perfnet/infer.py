"""Infer the device topology of the host from a capture's own events, when no snapshot was saved.

Path reconstruction follows packets through a :class:`~perfnet.graph.DeviceGraph`; a live
capture saves a snapshot of the host beside its output, but a capture made by hand has none.
The events themselves show much of the graph, because the kernel nests the work of one skb:
consecutive events of one skb address tell

* **veth peers** (strong): ``net_dev_start_xmit`` on ``A`` followed at once by a receive entry
  (``netif_rx_entry``, ``netif_rx``) on ``B``: the veth transmit runs the peer's receive inside
  it.  A name seen with two peers is two devices (``eth0`` in two containers): a device is a
  name *and its peer*.
* **ports and stacked devices** (strong): ``net_dev_start_xmit`` on ``A`` followed at once by
  ``net_dev_queue`` on ``B`` (a bridge transmitting through its port, a macvlan or VLAN
  through its lower device), and ``netif_receive_skb`` on ``B`` followed at once by
  ``netif_receive_skb_entry`` on ``A`` (a bridge port passing a frame up to its bridge).
  Both put ``A`` and ``B`` in one namespace.
* **forwarding** (weak): ``netif_receive_skb`` on ``X`` followed on the same address by
  ``net_dev_queue`` on ``Y``.  It is usually the namespace routing the packet, but an address
  freed without a trace and reused for a packet sent from another device shows the same
  picture.  What tells them apart is nesting: forwarding runs inside the receive, so on the
  same thread (or CPU) no other skb's event comes between; a reuse needs the old skb freed
  and a new one built (a traced free or socket copy of the address between the two ends
  the nesting), and other events come between in most cases.  A forwarding relation is
  *accepted* when it was seen nested at least :data:`MIN_FORWARDS` times, nested in at least
  half of its sightings, and the median time from the receive to the transmit over its
  sightings is at most :data:`MAX_FORWARD_MEDIAN_NS`; one such sighting proves nothing, but
  does not disprove either: the two devices share a namespace whose forwarding is unknown.
  Nesting alone is not enough where the format has no CPU column (perf trace): a request
  delivered in the client's softirq and the client's next request reusing the address are
  adjacent on the client's thread.  Time separates them in aggregate, not one by one: in the
  path fixtures (perf trace and perf script, TCP, HTTP, UDP, mixed), real forwarding steps had
  median gaps of 18-29 µs (p99 37-75 µs, max 928 µs), the reuse pictures 394 µs-30 ms
  (minimum 153 µs).

Devices joined by the strong relations and by forwarding share a namespace; a namespace
forwards if an accepted relation starts in it, does not if only reuse pictures do, and is
unknown (``forwarding=None``, never a reason to split) otherwise.  Namespaces are labelled
``inferred-1``, ``inferred-2``, ... (by their first device name); the *home* namespace (whose
devices are written without ``@netns``) is the one holding the most masters (bridges), then
the most devices whose name no other namespace has (containers repeat ``eth0``).  The result
is a :class:`~perfnet.topology.Topology` with ``inferred=True``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfnet.topology import Link, Netns, Topology

__all__ = [
    "MAX_FORWARD_MEDIAN_NS",
    "MIN_FORWARDS",
    "Evidence",
    "evidence",
    "infer_topology",
    "next_on_thread",
    "topology_of",
]

MIN_FORWARDS: Final = 2
"""Nested sightings a forwarding relation needs before two devices are put in one namespace."""

MAX_FORWARD_MEDIAN_NS: Final = 100_000
"""Largest median receive-to-transmit time (100 µs) of an accepted forwarding relation."""

_OTHER, _START, _RX_ENTRY, _QUEUE, _RX_CORE, _RX_UP = range(6)
_KINDS: Final[dict[str, int]] = {
    "net:net_dev_start_xmit": _START,
    "net:netif_rx_entry": _RX_ENTRY,
    "net:netif_rx_ni_entry": _RX_ENTRY,
    "net:netif_rx": _RX_ENTRY,
    "net:net_dev_queue": _QUEUE,
    "net:netif_receive_skb": _RX_CORE,
    "net:netif_receive_skb_entry": _RX_UP,
    "net:netif_receive_skb_list_entry": _RX_UP,
}
# How far back on its address a receive row looks for the entry of its visit (entry,
# netif_rx, the sender's net_dev_xmit and exit, then netif_receive_skb in the backlog).
_LOOKBACK: Final = 4
CONTEXT_ROWS: Final = _LOOKBACK + 1
"""Rows of an address before a stretch that :func:`evidence` needs to read it as it reads the
whole (the entries a receive row takes its peer from, and what gave them theirs)."""
LOOKAHEAD_ROWS: Final = 3
"""Rows of an address after a stretch that :func:`evidence` needs (a sighting counted at its
last row sees the next row's peer: a queue row takes the peer of the transmit after it,
which takes it from the receive after that)."""
# Verdicts on a forwarding relation (see the module docstring).
_FORWARDS, _MAY_FORWARD, _REUSE = "forwards", "may forward", "reuse"

Device = tuple[str, str | None]  # (name, name of its veth peer or None)


class _Sets:
    """Union-find over devices."""

    def __init__(self) -> None:
        self.parent: dict[Device, Device] = {}

    def find(self, x: Device) -> Device:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: Device, b: Device) -> None:
        self.parent[self.find(a)] = self.find(b)


def _codes(events: pd.DataFrame, column: str, order: npt.NDArray[np.int64]) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = pd.factorize(events[column])
    return codes[order].astype(np.int64), np.array([*uniques, None], dtype=object)


# The relations that join devices (see the module docstring), in the order _topology reads them.
_PAIR, _BELOW, _UP = "pair", "below", "up"
_DEVICES: Final = ("a", "pa", "b", "pb")


@dataclass(frozen=True)
class Evidence:
    """What the events of some whole addresses show of the topology (see :func:`evidence`).

    Attributes:
        kinds: the kinds of event (codes) present.
        steps: one row per distinct step of a relation (``pair``: veth peers; ``below``: a
            transmit through a lower device; ``up``: a port passing a frame up), its devices
            ``a``/``pa``/``b``/``pb`` (name and peer name), ``count``, and where it was first
            seen (``addr``, ``time_ns``, ``lineno``).
        sightings: one row per forwarding sighting: its devices, ``gap`` (ns) and ``nested``.
    """

    kinds: frozenset[int]
    steps: pd.DataFrame
    sightings: pd.DataFrame


def infer_topology(events: pd.DataFrame) -> Topology:
    """Infer devices, veth peers, ports and namespaces from an events frame (see the module doc).

    Args:
        events: the events frame (``time_ns``, ``tid``, ``cpu``, ``event``, ``dev``, ``skbaddr``).

    Returns:
        A topology marked ``inferred``; empty (every device unknown) for a capture without
        ``net_dev_start_xmit`` and receive entries, which cannot show veth peers.
    """
    return topology_of([evidence(events)])


def next_on_thread(events: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Per row with an address, the ``lineno`` of the next event with an address of the same
    thread (-1: none), in the order :func:`evidence` walks them.  A capture split by address
    (:mod:`perfnet.convert`) finds these on whole threads and gives them to :func:`evidence`."""
    lineno = events["lineno"].to_numpy(dtype=np.int64)
    after = _next_on_thread(events)
    return np.where(after >= 0, lineno[np.maximum(after, 0)], -1)


def _by_address(events: pd.DataFrame) -> npt.NDArray[np.int64]:
    """The rows with an address, grouped by address, in time order within (ties: frame order)."""
    rows = np.flatnonzero(events["skbaddr"].notna().to_numpy())
    addr = events["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)[rows]
    time = events["time_ns"].to_numpy(dtype=np.int64)[rows]
    return rows[np.lexsort((time, addr))]


def _next_on_thread(events: pd.DataFrame) -> npt.NDArray[np.int64]:
    """Per frame row, the frame row of the next event with an address of its thread, in time
    order (ties: in :func:`_by_address`'s order); -1 for none or a row without an address."""
    order = _by_address(events)
    thread = _thread_keys(events, order)
    by_thread = np.lexsort((events["time_ns"].to_numpy(dtype=np.int64)[order], thread))
    after = np.full(len(events), -1, dtype=np.int64)
    same_thread = thread[by_thread][1:] == thread[by_thread][:-1]
    after[order[by_thread[:-1][same_thread]]] = order[by_thread[1:][same_thread]]
    return after


def evidence(
    events: pd.DataFrame,
    next_lineno: npt.NDArray[np.int64] | None = None,
    counted: npt.NDArray[np.bool_] | None = None,
) -> Evidence:
    """The topology's evidence in the events of whole addresses, or of a stretch of them.

    Args:
        events: the events frame, or the rows of some addresses of one.
        next_lineno: per row, what :func:`next_on_thread` gives on the whole capture (the
            frame must then have ``lineno``); None: found on these rows (a whole capture).
        counted: the rows whose sightings count (a sighting is counted at its earlier row);
            None: all.  A stretch of an address's events is read whole with the
            :data:`CONTEXT_ROWS` rows before it and the :data:`LOOKAHEAD_ROWS` after, which
            give its first and last rows their peers, and counts its own rows only.
    """
    event_codes, event_names = pd.factorize(events["event"])
    kind_of = np.array([_KINDS.get(name, _OTHER) if isinstance(name, str) else _OTHER for name in event_names])
    # every event of an address, frees and copies included: one between two events means the
    # skb was freed or delivered there, so they are not nested
    order = _by_address(events)
    addr = events["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)[order]
    time = events["time_ns"].to_numpy(dtype=np.int64)[order]
    group = np.cumsum(np.append(True, addr[1:] != addr[:-1]))  # address number per row
    kind = np.append(kind_of, _OTHER)[np.asarray(event_codes, dtype=np.int64)[order]]
    dev, dev_names = _codes(events, "dev", order)
    # row keys: whether the next event of the same thread is the next event of this address
    # (nothing of another skb came between)
    if next_lineno is None:
        key, after = np.arange(len(events), dtype=np.int64), _next_on_thread(events)
    else:
        key, after = events["lineno"].to_numpy(dtype=np.int64), np.asarray(next_lineno, dtype=np.int64)
    key, after = key[order], after[order]

    nxt = np.flatnonzero(group[1:] == group[:-1])  # pairs (i, i + 1) on one address
    a_kind, b_kind = kind[nxt], kind[nxt + 1]
    pair_at = nxt[(a_kind == _START) & (b_kind == _RX_ENTRY)]
    peer = np.full(order.size, -1, dtype=np.int64)  # device code of the peer, for tx and rx rows
    peer[pair_at] = dev[pair_at + 1]
    peer[pair_at + 1] = dev[pair_at]
    _carry_peers(peer, dev, kind, group)
    lineno = (
        key if next_lineno is not None else events["lineno"].to_numpy(np.int64)[order] if "lineno" in events else key
    )
    names = np.array([None if name is None else str(name) for name in dev_names], dtype=object)

    def devices(at: npt.NDArray[np.int64], offset: int) -> dict[str, npt.NDArray[np.object_]]:
        return {
            "a": names[dev[at]],
            "pa": names[peer[at]],
            "b": names[dev[at + offset]],
            "pb": names[peer[at + offset]],
        }

    def tallied(relation: str, at: npt.NDArray[np.int64], offset: int = 1) -> pd.DataFrame:
        """The distinct steps ``at`` -> ``at + offset`` with their counts and first sighting
        (Python runs per distinct step only)."""
        base = len(dev_names) + 1  # codes -1 .. len - 1, one digit each of one int64
        step_key = np.zeros(at.size, dtype=np.int64)
        for codes in (dev[at], peer[at], dev[at + offset], peer[at + offset]):
            step_key = step_key * base + codes + 1
        seen, distinct = pd.factorize(step_key)
        first = np.zeros(len(distinct), dtype=np.int64)
        first[seen[::-1]] = np.arange(at.size)[::-1]
        where = at[first] + min(offset, 0)  # the sighting's earlier row
        return pd.DataFrame(
            {
                "relation": relation,
                **devices(at[first], offset),
                "count": np.bincount(seen, minlength=len(distinct)),
                "addr": addr[where],
                "time_ns": time[where],
                "lineno": lineno[where],
            }
        )

    if counted is not None:  # sightings at the rows that count (the peers above used them all)
        nxt = nxt[np.asarray(counted, dtype=np.bool_)[order[nxt]]]
        a_kind, b_kind = kind[nxt], kind[nxt + 1]
        pair_at = nxt[(a_kind == _START) & (b_kind == _RX_ENTRY)]
    up_at = nxt[(a_kind == _RX_CORE) & (b_kind == _RX_UP)] + 1  # (bridge, port): the port's row is before
    steps = pd.concat(
        [
            tallied(_PAIR, pair_at),
            tallied(_BELOW, nxt[(a_kind == _START) & (b_kind == _QUEUE)]),  # (upper, lower)
            tallied(_UP, up_at, offset=-1),
        ],
        ignore_index=True,
    )
    forward_at = nxt[(a_kind == _RX_CORE) & ((b_kind == _QUEUE) | (b_kind == _START)) & (dev[nxt] != dev[nxt + 1])]
    sightings = pd.DataFrame(
        {
            **devices(forward_at, 1),
            "gap": time[forward_at + 1] - time[forward_at],
            "nested": after[forward_at] == key[forward_at + 1],
        }
    )
    return Evidence(frozenset(kind_of.tolist()), steps, sightings)


def _step(key: Any) -> tuple[Device, Device]:
    """A step's two devices from a group key (a missing peer comes back from groupby as NaN)."""
    a, pa, b, pb = (value if isinstance(value, str) else None for value in key)
    return (str(a), pa), (str(b), pb)


def topology_of(parts: Iterable[Evidence]) -> Topology:
    """The topology the evidence of a whole capture shows: :func:`infer_topology` of the capture,
    whether its evidence was gathered at once or address by address.  The parts are taken one
    at a time (a conversion gives them as it reads): what is kept of each sighting is its gap."""
    kinds: set[int] = set()
    steps: list[pd.DataFrame] = []
    seen: Counter[tuple[Device, Device]] = Counter()
    nested: Counter[tuple[Device, Device]] = Counter()
    gaps: dict[tuple[Device, Device], list[npt.NDArray[np.int64]]] = {}  # in order of first sighting
    for part in parts:
        kinds |= part.kinds
        steps.append(part.steps)
        if not len(part.sightings):
            continue
        for key, rows in part.sightings.groupby(list(_DEVICES), dropna=False, sort=False):
            step = _step(key)
            seen[step] += len(rows)
            nested[step] += int(rows["nested"].sum())
            gaps.setdefault(step, []).append(rows["gap"].to_numpy(np.int64))
    if not {_START, _RX_ENTRY} <= kinds:
        # without the events that show veth peers, a device's peer is unknown, not absent
        return Topology(home="", namespaces=(), links=(), inferred=True)
    found = pd.concat(steps, ignore_index=True).sort_values(["addr", "time_ns", "lineno"], kind="stable")

    def relation(name: str) -> Counter[tuple[Device, Device]]:
        rows = found[found["relation"] == name]  # in order of first sighting
        counts = rows.groupby(list(_DEVICES), dropna=False, sort=False)["count"].sum()
        return Counter({_step(key): int(n) for key, n in counts.items()})

    below = relation(_BELOW)
    below.update(relation(_UP))
    verdicts = {}
    for step, parts_gaps in gaps.items():
        alike = nested[step] >= 1 and 2 * nested[step] >= seen[step]
        alike &= float(np.median(np.concatenate(parts_gaps))) <= MAX_FORWARD_MEDIAN_NS
        verdicts[step] = _FORWARDS if alike and nested[step] >= MIN_FORWARDS else _MAY_FORWARD if alike else _REUSE
    return _topology(pairs=relation(_PAIR), below=below, forwards=verdicts)


def _thread_keys(events: pd.DataFrame, order: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A code per (cpu, tid, comm) of each row: idle tasks share tid 0 and differ by CPU."""
    cpu, tid = (pd.factorize(events[name].to_numpy(dtype=np.int64, na_value=-1)[order])[0] for name in ("cpu", "tid"))
    task = pd.factorize(cpu * (tid.max(initial=0) + 1) + tid)[0]
    comm = pd.factorize(events["comm"])[0][order]
    return np.asarray(task * (comm.max(initial=0) + 2) + comm + 1, dtype=np.int64)


def _carry_peers(peer: np.ndarray, dev: np.ndarray, kind: np.ndarray, group: np.ndarray) -> None:
    """Give queue rows the peer of the transmit they open (the ``net_dev_start_xmit`` right
    after them), and the later receive rows of a visit the peer of its entry (up to
    :data:`_LOOKBACK` rows before them), all on the same address."""
    cores = np.flatnonzero(kind == _RX_CORE)
    for shift in range(1, _LOOKBACK + 1):
        later = cores[cores >= shift]
        earlier = later - shift
        take = (group[later] == group[earlier]) & (peer[later] < 0) & (peer[earlier] >= 0)
        take &= (dev[earlier] == dev[later]) & (kind[earlier] == _RX_ENTRY)
        peer[later[take]] = peer[earlier[take]]
    queued = np.flatnonzero(kind[:-1] == _QUEUE)
    opens = queued + 1
    back = (group[opens] == group[queued]) & (peer[queued] < 0) & (kind[opens] == _START) & (peer[opens] >= 0)
    back &= dev[queued] == dev[opens]
    peer[queued[back]] = peer[opens[back]]


def _topology(
    pairs: Counter[tuple[Device, Device]],
    below: Counter[tuple[Device, Device]],
    forwards: dict[tuple[Device, Device], str],
) -> Topology:
    """Assemble devices, peers, ports and namespaces from the evidence.

    Only devices some evidence speaks of are listed: a name the events carry but no relation
    explains (a capture of ``net_dev_queue`` alone, a NIC's own traffic) stays unknown, and
    unknown devices never split a packet.  A device seen without its peer (``(name, None)``)
    is a device of its own: the NIC ``eth0`` of a host is not its container's ``eth0``.

    A device below exactly one other is recorded as its port (``master``); several devices
    above one (two macvlans over ``eth0``) each record it as their ``lower``.  Uppers seen
    less than a tenth as often as the most frequent one above the same device are dropped: an
    address reused right after lost events can fake one sighting.

    Forwarding verdicts join namespaces: ``forwards`` (accepted) and ``may forward``
    (nested and fast, but seen fewer than :data:`MIN_FORWARDS` times) both do; a namespace
    forwards if an accepted relation starts in it, does not if only reuse pictures start in
    it, and is unknown otherwise (never a reason to split).
    """
    devices = {dev for step in pairs for dev in step}
    sets = _Sets()
    uppers: dict[Device, list[tuple[Device, int]]] = {}
    for (upper, lower), n in below.items():
        if upper != lower:
            uppers.setdefault(lower, []).append((upper, n))
    masters: dict[Device, str] = {}
    lowers: dict[Device, str] = {}
    for lower, seen in uppers.items():
        most = max(n for _, n in seen)
        kept = [upper for upper, n in seen if 10 * n >= most]
        if len(kept) == 1:
            masters[lower] = kept[0][0]
        else:
            lowers.update((upper, lower[0]) for upper in kept)
        for upper in kept:
            devices |= {upper, lower}
            sets.union(upper, lower)
    starts: dict[str, set[Device]] = {_FORWARDS: set(), _MAY_FORWARD: set(), _REUSE: set()}
    for (x, y), verdict in forwards.items():
        starts[verdict].add(x)
        if verdict != _REUSE:
            devices |= {x, y}
            sets.union(x, y)
    groups: dict[Device, list[Device]] = {}
    for dev in devices:
        groups.setdefault(sets.find(dev), []).append(dev)
    ordered = sorted(groups.values(), key=lambda members: min((d[0], d[1] or "") for d in members))
    label = {dev: f"inferred-{i}" for i, members in enumerate(ordered, 1) for dev in members}
    links = [
        Link(
            netns=label[dev],
            name=dev[0],
            ifindex=i,
            kind="veth" if dev[1] is not None else None,
            master=masters.get(dev),
            peer_netns=label.get((dev[1], dev[0])) if dev[1] is not None else None,
            peer_name=dev[1] if (dev[1], dev[0]) in label else None,
            mac=None,
            lower=lowers.get(dev),
        )
        for i, dev in enumerate(sorted(devices, key=lambda d: (label[d], d[0], d[1] or "")), 1)
    ]

    def forwarding(ns: str) -> bool | None:
        if any(label.get(dev) == ns for dev in starts[_FORWARDS]):
            return True
        only_reuse = any(label.get(dev) == ns for dev in starts[_REUSE])
        return False if only_reuse and not any(label.get(dev) == ns for dev in starts[_MAY_FORWARD]) else None

    bridges = Counter(link.netns for link in links if link.name in set(masters.values()) and link.kind is None)
    names = Counter(link.name for link in links)
    unique = Counter(link.netns for link in links if names[link.name] == 1)
    home = max(sorted({link.netns for link in links}), key=lambda ns: (bridges[ns], unique[ns]), default="")
    namespaces = tuple(
        Netns(name, inode=0, named=False, forwarding=forwarding(name)) for name in sorted({*label.values()})
    )
    return Topology(home=home, namespaces=namespaces, links=tuple(links), inferred=True)
