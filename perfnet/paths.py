"""Rebuild each packet's path through the network devices from the tracepoint events frame.

This module knows nothing about text formats: it takes the events frame (one row per
tracepoint hit, columns ``time_ns``, ``comm``, ``tid``, ``cpu``, ``event``, ``dev``,
``skbaddr``, ``len``, ``protocol``, ``reason``, ``location``) and returns DataFrames.

The kernel names a packet only by the address of its ``struct sk_buff``, and the slab
allocator hands a freed address out again within microseconds, so one address carries many
packets over a capture.  :func:`segment` splits each address's events into packet lifetimes,
attributes the address-less ``*_exit`` events to the call they close, and numbers the device
visits of each packet; :func:`packets`, :func:`hops`, :func:`stages` and :func:`drops` turn
those labels into frames, and :func:`reconstruct` does all of it.  Everything is vectorized
(sorts, boundary flags, cumulative sums), but for the walk through the device graph, one
dict lookup per device visit.

Vocabulary used throughout:

* An *arrival* is an event that puts the packet at a device: ``net:net_dev_queue`` on
  transmit, and on receive ``net:netif_rx_entry``, ``net:netif_rx_ni_entry``,
  ``net:netif_receive_skb_entry``, ``net:netif_receive_skb_list_entry``,
  ``net:napi_gro_receive_entry``, ``net:napi_gro_frags_entry`` (entries),
  ``net:netif_rx`` (queued to the backlog) and ``net:netif_receive_skb`` (processed).
  ``net:net_dev_start_xmit`` is an arrival only when the packet was not just queued on that
  device: GSO segments, netpoll, ``AF_PACKET`` qdisc bypass and XDP transmit start there.
* A *completion* is ``net:net_dev_xmit`` or a ``net:net_dev_start_xmit`` that follows the
  queue.  Completions are printed when the call returns, after whatever the call nested (a
  veth transmit prints ``net_dev_xmit`` after the peer's ``netif_rx``), so they never
  define the order of the path; they only time stages.
* A *free* is ``skb:consume_skb`` or ``skb:kfree_skb``; both fire only when the last
  reference is dropped, so a free really ends the skb.  So does ``kmem:kmem_cache_free`` of
  the skb's object (its address is the skb's), which also marks the skbs TCP frees silently.
* A *visit* is one stay of a packet at a device: a run of arrivals on one device, in one
  direction, in the order entry, ``netif_rx``, ``netif_receive_skb`` (receive) or queue,
  start (transmit).  The packet's *path* is its visits in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from perfnet.errors import UsageError
from perfnet.graph import DeviceGraph
from perfnet.topology import UNKNOWN_DEVICE, Topology

__all__ = [
    "DEFAULT_GAP_NS",
    "ENDED_BY",
    "EXITS",
    "NO_PACKET",
    "RULES",
    "PathFrames",
    "count_drops",
    "drop_events",
    "drops",
    "frames",
    "hops",
    "match_calls",
    "packets",
    "reconstruct",
    "restarts",
    "segment",
    "stages",
]

DEFAULT_GAP_NS: Final = 1_000_000
"""Default idle time (1 ms) after which an arrival at a new device is a new packet."""

NO_PACKET: Final = -1
"""``packet_id`` (and ``visit``) of events that belong to no packet."""

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

# Roles of the events; the receive roles are consecutive so that role - _RX_ENTRY is the rank
# of the event within a receive visit, and likewise role - _QUEUE within a transmit visit.
_OTHER, _QUEUE, _START, _XMIT, _RX_ENTRY, _RX_ENQUEUE, _RX_CORE, _CONSUME, _KFREE, _EXIT = range(10)

# Entry/exit tracepoint pairs: each *_exit closes the most recent open *_entry of its pair.
_CALLS: Final = (
    ("net:netif_rx_entry", "net:netif_rx_exit"),
    ("net:netif_rx_ni_entry", "net:netif_rx_ni_exit"),
    ("net:netif_receive_skb_entry", "net:netif_receive_skb_exit"),
    ("net:netif_receive_skb_list_entry", "net:netif_receive_skb_list_exit"),
    ("net:napi_gro_receive_entry", "net:napi_gro_receive_exit"),
    ("net:napi_gro_frags_entry", "net:napi_gro_frags_exit"),
)
EXITS: Final = frozenset(exit_ for _, exit_ in _CALLS)
"""The ``*_exit`` events: they carry no address and close the latest open entry of their call."""
# netif_receive_skb_list() traces an entry per skb of the list, then one exit for the list.
_BATCH_ENTRY: Final = "net:netif_receive_skb_list_entry"

_ROLES: Final[Mapping[str, int]] = {
    "net:net_dev_queue": _QUEUE,
    "net:net_dev_start_xmit": _START,
    "net:net_dev_xmit": _XMIT,
    "net:netif_rx": _RX_ENQUEUE,
    "net:netif_receive_skb": _RX_CORE,
    "skb:consume_skb": _CONSUME,
    "skb:kfree_skb": _KFREE,
    "kmem:kmem_cache_free": _CONSUME,  # the skb's slab object freed (perfnet's default marker)
    **{entry: _RX_ENTRY for entry, _ in _CALLS},
    **{exit_: _EXIT for _, exit_ in _CALLS},
}

# The net:* events: a packet in the network stack, as opposed to its free or its copy to a socket.
_IN_STACK: Final[Mapping[str, int]] = {name: 1 for name, role in _ROLES.items() if role not in (_CONSUME, _KFREE)}


@dataclass(frozen=True)
class PathFrames:
    """Everything :func:`reconstruct` derives from one events frame.

    Attributes:
        labels: per event row, ``packet_id`` and ``visit`` (see :func:`segment`).
        packets: one row per packet (see :func:`packets`).
        hops: one row per device-to-device step (see :func:`hops`).
        stages: one row per pair of consecutive events within a visit (see :func:`stages`).
        drops: ``skb:kfree_skb`` counts by reason, location and device (see :func:`drops`).
    """

    labels: pd.DataFrame
    packets: pd.DataFrame
    hops: pd.DataFrame
    stages: pd.DataFrame
    drops: pd.DataFrame


@dataclass(frozen=True)
class _Timeline:
    """The columns path reconstruction needs, as numpy arrays in time order.

    ``order[i]`` is the position in the events frame of the i-th event in time order (ties
    keep frame order).  Events and devices are factorized: ``event``/``dev`` are codes into
    ``event_names``/``dev_names``, whose last entry is None for the code -1 (missing).
    """

    order: IntArray
    time: IntArray
    event: IntArray
    event_names: ObjectArray
    role: IntArray
    dev: IntArray
    dev_names: ObjectArray


def _time_order(events: pd.DataFrame) -> IntArray:
    """Positions of the events in time order, stable (the identity for a sorted frame)."""
    if events["time_ns"].is_monotonic_increasing:
        return np.arange(len(events), dtype=np.int64)
    return np.argsort(events["time_ns"].to_numpy(dtype=np.int64), kind="stable").astype(np.int64)


def _factorize(column: pd.Series) -> tuple[IntArray, ObjectArray]:
    """Codes of a column's values (-1 for missing), and the values by code, None last."""
    codes, uniques = pd.factorize(column)
    return codes.astype(np.int64), np.array([*uniques, None], dtype=object)


def _lookup(names: ObjectArray, table: Mapping[str, int], default: int) -> IntArray:
    """Map factorized names through ``table``, as an array indexed by code."""
    return np.array([table.get(name, default) if isinstance(name, str) else default for name in names])


def _timeline(events: pd.DataFrame) -> _Timeline:
    """Factorize the event and device columns and put them in time order."""
    order = _time_order(events)
    event, event_names = _factorize(events["event"])
    dev, dev_names = _factorize(events["dev"])
    return _Timeline(
        order=order,
        time=events["time_ns"].to_numpy(dtype=np.int64)[order],
        event=event[order],
        event_names=event_names,
        role=_lookup(event_names, _ROLES, _OTHER)[event[order]],
        dev=dev[order],
        dev_names=dev_names,
    )


def _nullable(events: pd.DataFrame, column: str, order: IntArray) -> IntArray:
    """A nullable non-negative integer column in time order, with -1 for missing values."""
    return events[column].to_numpy(dtype=np.int64, na_value=-1)[order]


def _starts(keys: npt.NDArray[np.generic]) -> BoolArray:
    """Flags the first row of each run of equal keys."""
    flags = np.ones(keys.size, dtype=np.bool_)
    flags[1:] = keys[1:] != keys[:-1]
    return flags


def _run_start(starts: BoolArray) -> IntArray:
    """For each row, the index of the first row of its run (runs flagged by ``starts``)."""
    return np.maximum.accumulate(np.where(starts, np.arange(starts.size), 0))


def _last_before(mask: BoolArray, run_start: IntArray) -> IntArray:
    """For each row, the last earlier row of the same run where ``mask`` holds, else -1."""
    upto = np.maximum.accumulate(np.where(mask, np.arange(mask.size), -1))
    before = np.concatenate(([-1], upto[:-1]))
    return np.where(before >= run_start, before, -1)


def _length_changes(candidates: BoolArray, previous: IntArray, boundary: BoolArray, first: BoolArray) -> BoolArray:
    """Which length/protocol changes start a new packet, given the other rules' boundaries.

    Candidate row ``c`` conflicts with the earlier row ``previous[c]``; the conflict proves a
    new packet only if both rows are in the same packet, i.e. no accepted boundary lies
    strictly between them.  Deciding that in time order ("accept ``c`` if the last accepted
    boundary is at or before ``previous[c]``") is a greedy chain: from an accepted row ``x``
    the next accepted row is the first row ``y`` after it with ``bound[y] >= x``, where
    ``bound`` is ``previous`` for candidates and ``y - 1`` for rows that are boundaries anyway.
    That first row is a ``searchsorted`` in the running maximum of ``bound``; the chains from
    each address's first row are then marked by pointer doubling: at most log2(n) rounds of
    vector operations, and no Python loop over rows.

    Args:
        candidates: rows whose arrival conflicts with ``previous`` and that are not boundaries.
        previous: for candidates, the conflicting earlier row.
        boundary: rows that start a packet by the other rules (including ``first``).
        first: the first row of each address.

    Returns:
        The candidates that start a new packet.
    """
    items = np.flatnonzero(boundary | candidates)
    n = items.size
    bound = np.where(boundary[items], items - 1, previous[items])
    nxt = np.searchsorted(np.maximum.accumulate(bound), items, side="left")
    address = np.cumsum(first)
    nxt_address = address[items[np.minimum(nxt, n - 1)]]
    step = np.append(np.where((nxt < n) & (nxt_address == address[items]), nxt, n), n)
    reached = np.append(first[items], False)
    while True:
        reached[step[np.flatnonzero(reached)]] = True
        reached[n] = False
        if (step[:n] == n).all():
            break
        step = step[step]
    accepted = np.zeros(candidates.size, dtype=np.bool_)
    accepted[items[reached[:n]]] = True
    return accepted & candidates


# Why a packet ended: the rule that started the next lifetime of its address.
# "lost" is not a rule: it marks a split next to a LOST line, whichever rule made it.
ENDED_BY: Final = ("capture end", "free", "infeasible step", "repeat", "length", "idle", "lost")
RULES: Final = frozenset(ENDED_BY[1:6])
"""The lifetime rules of :func:`segment`, by the names ``ended_by`` gives them."""
_END, _BY_FREE, _BY_INFEASIBLE, _BY_REPEAT, _BY_LENGTH, _BY_IDLE, _BY_LOSS = range(len(ENDED_BY))


@dataclass(frozen=True)
class _Lifetimes:
    """Per event in time order: packet id, and for arrivals their direction and rank; per
    packet, the code in :data:`ENDED_BY` of the rule that ended it."""

    packet: IntArray
    arrival: BoolArray
    transmit: BoolArray
    rank: IntArray
    ended_by: IntArray


class _Walk:
    """Follows packets through a :class:`DeviceGraph`, one visit at a time (rule 2 of segment()).

    A position is a direction and the set of devices the packet can be at: a name resolves
    to every device of that name, and each step keeps those reachable from the previous set.
    Positions are interned as small ints and steps memoized on (position, name, direction)
    packed in one int, so the loop over visits does a dict lookup per visit; the graph is
    consulted once per distinct step.
    """

    def __init__(self, graph: DeviceGraph, dev_names: ObjectArray) -> None:
        self.graph = graph
        self.candidates = [graph.candidates(name) if isinstance(name, str) else () for name in dev_names]
        self.positions: list[tuple[bool, frozenset[int]]] = []
        # per position: device * 2 + direction if it has one device, else -2 - position (in no set)
        self.single: list[int] = []
        self.codes: dict[tuple[bool, frozenset[int]], int] = {}
        self.n_inputs = 2 * len(self.candidates)
        self.memo: dict[int, int] = {}  # position * n_inputs + input -> see advance()

    def start(self, dev: int, transmit: bool) -> int:
        """The position of a packet first seen at device name code ``dev``."""
        return self._intern(transmit, frozenset(self.candidates[dev]))

    def _intern(self, transmit: bool, devices: frozenset[int]) -> int:
        key = (transmit, devices)
        code = self.codes.get(key)
        if code is None:
            code = self.codes[key] = len(self.positions)
            self.positions.append(key)
            self.single.append(next(iter(devices)) * 2 + transmit if len(devices) == 1 else -2 - code)
        return code

    def advance(self, position: int, step_input: int) -> int:
        """Where a step to ``step_input`` (name code * 2 + transmits) leads from ``position``:
        the next position * 2 + 1 if the step is only weakly supported, or -1 if it is
        infeasible.  An empty set (a name the topology lacks) goes anywhere, weakly."""
        key = position * self.n_inputs + step_input
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = self._step(position, step_input // 2, bool(step_input % 2))
        return found

    def _step(self, position: int, dev: int, transmit: bool) -> int:
        was_transmit, here = self.positions[position]
        there = self.candidates[dev]
        if not here or not there:
            return self._intern(transmit, frozenset(there)) * 2 + 1
        reached, strong = set(), False
        for a in here:
            for b in there:
                step = self.graph.step(a, was_transmit, b, transmit)
                if step.feasible:
                    reached.add(b)
                    strong |= not step.weak
        return self._intern(transmit, frozenset(reached)) * 2 + (not strong) if reached else -1

    def split(self, dev: IntArray, transmit: BoolArray, arrival: BoolArray, boundary: BoolArray) -> BoolArray:
        """Which visits start a new packet because the packet cannot be there.

        Args:
            dev, transmit, arrival: per visit opener (and per boundary row) of each address,
                in address then time order: its device name code, direction, and whether it
                is an arrival at all (boundary rows need not be).
            boundary: rows that start a lifetime by the other rules.

        Returns:
            The rows that start a new packet by this rule.  When a step is infeasible right
            after a weak one (a forwarding step the graph allows but does not prove) and it is
            feasible from the device of that weak step, the split goes before the weak step.
        """
        split = np.zeros(dev.size, dtype=np.bool_)
        inputs = (np.where(dev >= 0, dev, len(self.candidates) - 1) * 2 + transmit).tolist()
        opens = boundary | ~arrival
        opens[:1] = True
        # The walk starts afresh at each open row, so a segment's splits depend on its inputs
        # alone: addresses repeat the same few paths, and each distinct segment is walked once.
        edges = [*np.flatnonzero(opens).tolist(), dev.size]
        arrivals = arrival.tolist()
        segments: dict[tuple[int, ...], list[int]] = {}
        for a, b in itertools.pairwise(edges):
            key = (arrivals[a], *inputs[a:b])
            found = segments.get(key)
            if found is None:
                found = segments[key] = self._walk(inputs[a:b], arrivals[a])
            for k in found:
                split[a + k] = True
        return split

    def _walk(self, inputs: list[int], arrives: bool) -> list[int]:
        """The rows of one segment (its first row opens it; ``arrives``: it is an arrival)
        that start a new packet by the graph."""
        split = np.zeros(len(inputs), dtype=np.bool_)
        n_inputs, memo, single = self.n_inputs, self.memo, self.single
        starts = self._starts
        position, weak = (starts[inputs[0]] if arrives else -1), False
        visited: set[int] = set()
        if position >= 0 and single[position] >= 0:
            visited.add(single[position])
        for k in range(1, len(inputs)):
            inp = inputs[k]
            if position < 0:
                position, weak = starts[inp], False
                visited.clear()
            else:
                found = memo.get(position * n_inputs + inp)  # advance(), inlined for the common case
                if found is None:
                    found = self.advance(position, inp)
                if found >= 0 and single[found >> 1] not in visited:
                    position, weak = found >> 1, bool(found & 1)
                else:  # infeasible, or the same device twice in the same direction
                    position, weak, before = self._resplit(split, k, inputs, starts, weak)
                    visited.clear()
                    if before >= 0 and single[before] >= 0:
                        visited.add(single[before])
            if position >= 0 and single[position] >= 0:
                visited.add(single[position])
        return np.flatnonzero(split).tolist()

    @cached_property
    def _starts(self) -> list[int]:
        """The position of a packet first seen at each input (name code * 2 + transmits)."""
        return [self.start(i // 2, bool(i % 2)) for i in range(self.n_inputs)]

    def _resplit(
        self,
        split: BoolArray,
        k: int,
        inputs: list[int],
        starts: list[int],
        weak: bool,
    ) -> tuple[int, bool, int]:
        """Place the split for an infeasible step ``k``: before a weak step ``k - 1`` if ``k`` is
        feasible from there, else at ``k``.

        Returns:
            The position after step ``k``, whether step ``k`` was weak, and the position of the
            new packet's first visit before ``k`` (-1 if the packet starts at ``k``).
        """
        if weak and not split[k - 1]:
            earlier = starts[inputs[k - 1]]
            moved = self.advance(earlier, inputs[k])
            if moved >= 0:
                split[k - 1] = True
                return moved >> 1, bool(moved & 1), earlier
        split[k] = True
        return starts[inputs[k]], False, -1


def _near_loss(events: pd.DataFrame, tl: _Timeline, rows: IntArray, lost_linenos: Sequence[int]) -> BoolArray:
    """Rows (grouped by address) with a LOST line between them and the address's previous row,
    by line number: events of the address may be missing right there."""
    near = np.zeros(rows.size, dtype=np.bool_)
    if not len(lost_linenos) or "lineno" not in events or rows.size < 2:
        return near
    lost = np.sort(np.asarray(lost_linenos, dtype=np.int64))
    lineno = events["lineno"].to_numpy(dtype=np.int64)[tl.order][rows]
    low, high = np.minimum(lineno[:-1], lineno[1:]), np.maximum(lineno[:-1], lineno[1:])
    near[1:] = np.searchsorted(lost, high) > np.searchsorted(lost, low, side="right")
    return near


def _lifetimes(
    events: pd.DataFrame,
    tl: _Timeline,
    gap_ns: int,
    graph: DeviceGraph | None,
    rules: frozenset[str],
    lost_linenos: Sequence[int],
) -> _Lifetimes:
    """Split each address's events into packet lifetimes (the rules are in :func:`segment`)."""
    n_events = tl.time.size
    has_addr = events["skbaddr"].notna().to_numpy()[tl.order]
    rows = np.flatnonzero(has_addr)
    addr = events["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)[tl.order][rows]
    by_addr = np.argsort(addr, kind="stable")
    rows = rows[by_addr]  # time-order positions, grouped by address, in time order within
    first = _starts(addr[by_addr])
    run_start = _run_start(first)
    prev = np.arange(rows.size) - 1  # previous row of the same address where ~first

    role, dev, time = tl.role[rows], tl.dev[rows], tl.time[rows]
    # A start_xmit completes the queue on its device even when net_dev_xmit lines come between:
    # those are the enclosing device's completions (a bridge's transmit returns once the port's
    # qdisc took the packet), printed while the packet still waits in that qdisc.
    queued = _last_before(role != _XMIT, run_start)
    after_queue = (queued >= 0) & (role[queued] == _QUEUE) & (dev[queued] == dev)
    transmit = (role == _QUEUE) | ((role == _START) & ~after_queue)
    receive = (role >= _RX_ENTRY) & (role <= _RX_CORE)
    arrival = transmit | receive
    rank = np.where(transmit, role - _QUEUE, role - _RX_ENTRY)
    completion = (role == _XMIT) | ((role == _START) & ~transmit)
    free = (role == _CONSUME) | (role == _KFREE)

    # Rules 1, 3 and 5 of segment(): free, repeat, idle.
    last_other = _last_before(~completion, run_start)
    after_free = ~completion & (last_other >= 0) & free[last_other] & ("free" in rules)
    pa = _last_before(arrival, run_start)
    same_dev = arrival & (pa >= 0) & (dev == dev[pa]) & (dev >= 0)
    opener = (role == _QUEUE) | (role == _RX_ENTRY) | ((role == _START) & transmit)
    idle = opener & ~first & (time - time[prev] > gap_ns) & ("idle" in rules)
    stacked = (role == _QUEUE) & ~first & (role[prev] == _START) & (dev[prev] == dev)
    repeat = same_dev & (
        (receive & receive[pa] & (rank <= rank[pa])) | (transmit & transmit[pa] & ~stacked) | (transmit & receive[pa])
    )
    repeat &= "repeat" in rules
    boundary = first | after_free | idle | repeat

    # Rule 2, the device graph: walk the visits of each address.
    infeasible = np.zeros(rows.size, dtype=np.bool_)
    if graph is not None and rows.size and "infeasible step" in rules:
        continues = same_dev & (transmit == transmit[pa]) & (rank > rank[pa])
        steps = np.flatnonzero((arrival & ~continues) | boundary)
        walk = _Walk(graph, tl.dev_names)
        infeasible[steps] = walk.split(dev[steps], transmit[steps], arrival[steps], boundary[steps])
        boundary |= infeasible

    # Rule 4, length: the same event on the same device earlier on this address, with another
    # len or protocol, unless a boundary lies between (resolved in _length_changes).
    arr = np.flatnonzero(arrival)
    key = ((np.cumsum(first)[arr] * len(tl.event_names)) + tl.event[rows[arr]]) * len(tl.dev_names) + dev[arr] + 1
    by_key = np.argsort(key, kind="stable")
    same_key = key[by_key][1:] == key[by_key][:-1]
    previous = np.full(rows.size, -1, dtype=np.int64)
    previous[arr[by_key][1:][same_key]] = arr[by_key][:-1][same_key]
    length = _nullable(events, "len", tl.order)[rows]
    proto = _nullable(events, "protocol", tl.order)[rows]
    p = np.maximum(previous, 0)
    changed = ((length >= 0) & (length[p] >= 0) & (length != length[p])) | (
        (proto >= 0) & (proto[p] >= 0) & (proto != proto[p])
    )
    candidates = (previous >= 0) & changed & ~boundary & ("length" in rules)
    by_length = np.zeros(rows.size, dtype=np.bool_)
    if candidates.any():
        by_length = _length_changes(candidates, previous, boundary, first)
        boundary |= by_length

    # Each boundary's rule, by precedence; a lifetime ends by the rule of the next one.
    rule = np.select(
        [first, after_free, _near_loss(events, tl, rows, lost_linenos), infeasible, repeat, by_length, idle],
        [_END, _BY_FREE, _BY_LOSS, _BY_INFEASIBLE, _BY_REPEAT, _BY_LENGTH, _BY_IDLE],
        default=_END,
    )[boundary]
    life = np.cumsum(boundary) - 1
    lives = int(life[-1]) + 1 if life.size else 0
    ended = np.append(rule[1:], _END)  # the next lifetime's rule (_END where that is another address's)
    with_arrival = np.flatnonzero(np.bincount(life, weights=arrival, minlength=lives) > 0)
    packet_of_life = np.full(lives, NO_PACKET, dtype=np.int64)
    life_start = rows[boundary]
    by_start = with_arrival[np.argsort(life_start[with_arrival])]
    packet_of_life[by_start] = np.arange(with_arrival.size)

    packet = np.full(n_events, NO_PACKET, dtype=np.int64)
    packet[rows] = packet_of_life[life]
    out_arrival = np.zeros(n_events, dtype=np.bool_)
    out_arrival[rows] = arrival
    out_transmit = np.zeros(n_events, dtype=np.bool_)
    out_transmit[rows] = transmit
    out_rank = np.zeros(n_events, dtype=np.int64)
    out_rank[rows] = rank
    return _Lifetimes(packet, out_arrival, out_transmit, out_rank, ended[by_start])


def _match_exits(events: pd.DataFrame, tl: _Timeline) -> tuple[IntArray, BoolArray]:
    """For each ``*_exit`` event, the time-order position of the entry it closes, else -1;
    and which entries stay open (no exit closes them).

    Calls nest per thread, so each (thread, call) pair is a stack: the depth after each
    entry/exit is a cumulative sum of +1/-1 in time order, and an exit closes the latest
    entry whose depth equals the exit's depth before it.  Grouping by (thread, call, depth)
    makes entries and exits alternate, so an exit's match is the row before it.  A thread is
    (``tid``, ``cpu``, ``comm``) with missing values kept: idle tasks all have tid 0 and are
    told apart by CPU, or by their ``swapper/N`` comm where the format has no CPU column.
    Missing entries or exits (lost events, a capture that starts mid-call) only misplace the
    matches on the same stack until its depth comes back.
    """
    kinds = _lookup(tl.event_names, {name: k for k, pair in enumerate(_CALLS) for name in pair}, -1)[tl.event]
    signs = _lookup(tl.event_names, {entry: 1 for entry, _ in _CALLS} | {exit_: -1 for _, exit_ in _CALLS}, 0)[tl.event]
    batch = _lookup(tl.event_names, {_BATCH_ENTRY: 1}, 0)[tl.event] == 1
    entry_of = np.full(tl.time.size, -1, dtype=np.int64)
    still_open = np.zeros(tl.time.size, dtype=np.bool_)
    rows = np.flatnonzero(kinds >= 0)
    if rows.size == 0:
        return entry_of, still_open

    threads = events[["tid", "cpu", "comm"]].iloc[tl.order[rows]]
    thread = threads.groupby(["tid", "cpu", "comm"], dropna=False, sort=False).ngroup().to_numpy(dtype=np.int64)
    group = thread * len(_CALLS) + kinds[rows]
    by_group = np.argsort(group, kind="stable")
    rows, group = rows[by_group], group[by_group]
    sign = signs[rows]
    # A list's entries are one call: keep only the last entry before the list's exit.
    superseded = np.zeros(rows.size, dtype=np.bool_)
    superseded[:-1] = batch[rows[:-1]] & (group[1:] == group[:-1]) & (sign[1:] > 0)
    rows, group, sign = rows[~superseded], group[~superseded], sign[~superseded]

    total = np.cumsum(sign)
    depth = total - (total - sign)[_run_start(_starts(group))]
    level = np.where(sign > 0, depth, depth + 1)
    by_level = np.lexsort((np.arange(rows.size), level, group))
    rows, group, level, sign = rows[by_level], group[by_level], level[by_level], sign[by_level]
    closes = (sign[1:] < 0) & (sign[:-1] > 0) & (group[1:] == group[:-1]) & (level[1:] == level[:-1])
    entry_of[rows[1:][closes]] = rows[:-1][closes]
    still_open[rows[sign > 0]] = True
    still_open[rows[:-1][closes]] = False
    return entry_of, still_open


def restarts(events: pd.DataFrame, *, gap_ns: int = DEFAULT_GAP_NS) -> BoolArray:
    """Rows where :func:`segment` (with all its rules) starts a new lifetime of the address,
    and after which nothing earlier on the address matters.

    Such a row is a ``net_dev_queue`` or a receive entry (an arrival by its event alone) that
    comes right after a free of its address (rule 1) or more than ``gap_ns`` after the
    address's previous event (rule 5).  Every later row of the address looks back only as
    far as it: to the previous row, the last arrival, the last row that is not a completion.
    A capture too long to segment at once (:mod:`perfnet.convert`) is segmented in pieces cut
    at these rows: a piece ends with its cut row (which still tells how the piece's last
    packet ended, and is then dropped from it) and the next piece starts with it.  A row
    without an address, or the first of its address in ``events``, is never one.
    """
    tl = _timeline(events)
    has_addr = events["skbaddr"].notna().to_numpy()[tl.order]
    rows = np.flatnonzero(has_addr)
    addr = events["skbaddr"].to_numpy(dtype=np.uint64, na_value=0)[tl.order][rows]
    by_addr = np.argsort(addr, kind="stable")
    rows = rows[by_addr]  # by address, in time order within
    role, time = tl.role[rows], tl.time[rows]
    later = np.flatnonzero(~_starts(addr[by_addr]))
    before = later - 1
    opener = (role[later] == _QUEUE) | (role[later] == _RX_ENTRY)
    freed = (role[before] == _CONSUME) | (role[before] == _KFREE)
    idle = time[later] - time[before] > gap_ns
    out = np.zeros(len(events), dtype=np.bool_)
    out[tl.order[rows[later[opener & (freed | idle)]]]] = True
    return out


def match_calls(events: pd.DataFrame) -> tuple[IntArray, BoolArray]:
    """Match exits to entries by thread, as :func:`segment` does.

    Exits carry no address, so a capture split by address (:mod:`perfnet.convert`) matches
    them first, on its calls in time order, slice by slice: what a slice leaves open goes on
    into the next one.

    Returns:
        Per row of ``events``: the ``lineno`` of the entry its ``*_exit`` closes (-1: none, or
        not an exit), for :func:`segment`'s ``entries``; and whether it is an entry no exit
        closes.  Before the next slice, the open entries of a call (in time order) stand for
        its whole past: later exits match as they would after all of it.
    """
    tl = _timeline(events)
    entry_of, still_open = _match_exits(events, tl)
    lineno = events["lineno"].to_numpy(dtype=np.int64)[tl.order]
    entries = np.empty(entry_of.size, dtype=np.int64)
    entries[tl.order] = np.where(entry_of >= 0, lineno[np.maximum(entry_of, 0)], -1)
    opened = np.empty(entry_of.size, dtype=np.bool_)
    opened[tl.order] = still_open
    return entries, opened


def _entry_positions(events: pd.DataFrame, tl: _Timeline, entries: IntArray) -> IntArray:
    """``entries`` (a lineno per frame row) as time-order positions per time-order row, like
    :func:`_match_exits` gives them; -1 where the entry is not among these rows."""
    lineno = events["lineno"].to_numpy(dtype=np.int64)[tl.order]
    wanted = np.asarray(entries, dtype=np.int64)[tl.order]
    by_line = np.argsort(lineno, kind="stable")
    at = (
        by_line[np.minimum(np.searchsorted(lineno[by_line], wanted), max(lineno.size - 1, 0))]
        if lineno.size
        else wanted
    )
    found = (wanted >= 0) & (lineno[at] == wanted) if lineno.size else wanted >= 0
    return np.where(found, at, -1)


def _ffill_in_runs(values: IntArray, run_start: IntArray) -> IntArray:
    """Carry the last value >= 0 forward within each run; -1 before the run's first one."""
    last = np.maximum.accumulate(np.where(values >= 0, np.arange(values.size), -1))
    return np.where(last >= run_start, values[np.maximum(last, 0)], -1)


def _visits(tl: _Timeline, lt: _Lifetimes, entry_of: IntArray) -> IntArray:
    """Number the device visits of each packet and give every event of the packet its visit.

    Arrivals open a new visit unless they continue the previous one (same device, same
    direction, later rank).  Completions belong to the latest visit of the packet to the
    same device in the transmit direction; exits to the visit of the entry they close;
    frees and other events to the packet's latest visit so far.
    """
    visit = np.full(tl.time.size, NO_PACKET, dtype=np.int64)
    in_packet = np.flatnonzero(lt.packet >= 0)
    rows = in_packet[np.argsort(lt.packet[in_packet], kind="stable")]  # by packet, then time
    arr = rows[lt.arrival[rows]]
    pkt, dev, tx, rank = lt.packet[arr], tl.dev[arr], lt.transmit[arr], lt.rank[arr]
    opens = _starts(pkt)
    opens[1:] |= (dev[1:] != dev[:-1]) | (tx[1:] != tx[:-1]) | (rank[1:] <= rank[:-1])
    count = np.cumsum(opens) - 1
    visit[arr] = count - count[_run_start(_starts(pkt))]

    role = tl.role
    completion = (role == _XMIT) | ((role == _START) & ~lt.arrival)
    sending = rows[completion[rows] | (lt.arrival[rows] & lt.transmit[rows])]
    key = lt.packet[sending] * len(tl.dev_names) + tl.dev[sending] + 1
    sending = sending[np.argsort(key, kind="stable")]
    filled = _ffill_in_runs(visit[sending], _run_start(_starts(np.sort(key, kind="stable"))))
    done = completion[sending]
    visit[sending[done]] = filled[done]

    closed = np.flatnonzero(entry_of >= 0)
    visit[closed] = visit[entry_of[closed]]

    others = ~lt.arrival[rows] & ~completion[rows] & (role[rows] != _EXIT)
    latest = np.maximum.accumulate(np.where(lt.arrival[rows], visit[rows] + lt.packet[rows] * (rows.size + 1), -1))
    latest = latest - lt.packet[rows] * (rows.size + 1)
    visit[rows[others]] = np.where(latest[others] >= 0, latest[others], NO_PACKET)
    return visit


def segment(
    events: pd.DataFrame,
    *,
    topology: Topology | None = None,
    gap_ns: int = DEFAULT_GAP_NS,
    rules: Collection[str] = RULES,
    lost_linenos: Sequence[int] = (),
    entries: IntArray | None = None,
) -> pd.DataFrame:
    """Label every event with its packet and its device visit within the packet.

    A packet is one lifetime of one skb address: the address's events (in time order) from
    one boundary to the next.  An event starts a new lifetime when (``ended_by`` names the
    rule that ended the lifetime before it):

    1. *free*: it is not a completion and the address's last non-completion event before it
       was ``skb:consume_skb`` or ``skb:kfree_skb``.  Both fire only when the last reference
       goes, so the memory was really freed and the next user of the address is another
       skb.  Completions are exempt because ``net_dev_xmit`` is printed when the driver call
       returns, which can be after the driver freed the skb on a failed transmit.  TCP frees
       almost nothing through them (1 of 544 packets of a 2 MB transfer ended by a free).
    2. *infeasible step*: with a ``topology``, it opens a visit to a device the packet cannot
       reach from the device it was last at (see :mod:`perfnet.graph`; a name resolves to every
       device of that name, and the walk keeps those reachable), or a second visit to one
       device in the same direction.  When the step before was allowed only because a
       namespace forwards (weak) and this step would follow from that step's device, the
       split goes before the weak step.  This is the rule that ends most TCP packets (476 of
       544 in the 2 MB transfer).
    3. *repeat*: it is an arrival on the device of the address's previous arrival and
       cannot continue that visit: a receive event of equal or lower rank (each receive
       visit passes entry, ``netif_rx``, ``netif_receive_skb`` once and in that order), a
       second transmit (a packet is not queued twice in a row on one device), or a transmit
       on the device the packet was just received on (a reply or a new skb reusing the
       address; a router or bridge hairpin that forwards a packet back out of the port it
       came in on is the known false split).  A queue right after ``net_dev_start_xmit`` on
       the same name is not a repeat: it is a stacked device of the same name in another
       namespace (macvlan/ipvlan ``eth0`` over the host's ``eth0``).  Transmit then receive
       on one name is not a repeat either: the two ends of a veth pair may share a name in
       different namespaces, and loopback transmits and receives on ``lo``.  The graph finds
       these too; this rule covers devices the topology does not know.
    4. *length*: it is an arrival whose event already occurred on the same device in the
       current lifetime with a different ``len`` or ``protocol``.  One event on one device
       sees the same headers each time, so a different length or ethertype is another
       packet.  Lengths of different events are never compared: a transmit counts the
       14-byte Ethernet header that the receive side has already pulled.  Repeating an
       event on a device with the *same* length is allowed, because device names repeat
       across namespaces (a packet routed from ``eth0`` in one container to ``eth0`` in
       another is received on ``eth0`` twice).
    5. *idle*, the last resort: it is an arrival that can begin an skb's life
       (``net_dev_queue``, an entry event, or a ``net_dev_start_xmit`` that opens a visit)
       more than ``gap_ns`` after the address's previous event.  The stack's real waits (the
       qdisc before ``net_dev_start_xmit``, the backlog and GRO before ``netif_rx``/
       ``netif_receive_skb``) end in events that never begin a life, so they are not counted.
       In the path fixtures (TCP, HTTP, UDP, mixed; perf trace and perf script) such gaps
       inside a packet had a median of 24 µs and a maximum of 975 µs, while an address came
       back for another packet after 28 µs at the least (median 665 µs): the idle time
       separates nothing on its own and only splits what the other rules cannot tell apart.
       Known false splits: a forwarded packet that waits for neighbour resolution or in
       NFQUEUE, and a veth peer with GRO or XDP whose NAPI poll runs late.

    Lifetimes without any arrival are not packets (``NO_PACKET``): frees and socket copies
    of skbs that never passed a traced device (clones for raw sockets, local socket
    buffers), so a capture with or without ``skb:*`` events yields the same packets.
    Packets are numbered from 0 in order of their first event.  Each ``*_exit`` event gets
    the packet of the entry it closes (a stack per thread and call: see ``_match_exits``).

    Caveat: a reused address whose new packet takes a feasible continuation of the old one's
    path with no traced free between, within ``gap_ns``, is merged into it.

    Args:
        events: the events frame; rows are taken in ``time_ns`` order (stable), so an
            unsorted frame gives the same labels as a sorted one.
        topology: the devices packets walk (rule 2); None: names only, rule 2 off.
        gap_ns: the idle time after which an arrival starts a new packet (rule 5).
        rules: the rules to apply (default all of :data:`RULES`), to measure what one is worth.
        lost_linenos: line numbers of the capture's LOST lines: a packet whose end lies next to
            one (a LOST line between its last event and the address's next, by line number)
            ends by ``lost``, whichever rule split it.
        entries: for a frame that holds part of a capture (the addresses of one bucket, as
            :mod:`perfnet.convert` splits it), per row the ``lineno`` of the entry each
            ``*_exit`` closes (-1: none), matched over the whole capture by
            :func:`match_calls`; None: matched here, on these rows.

    Returns:
        A frame with the events' index and int64 columns ``packet_id`` (``NO_PACKET`` for
        events of no packet) and ``visit`` (the position in the packet's path of the device
        visit the event belongs to; ``NO_PACKET`` where there is none, e.g. a completion
        whose visit began before the capture), and the categorical ``ended_by`` of the
        event's packet (:data:`ENDED_BY`; missing for events of no packet).

    Raises:
        UsageError: ``rules`` names a rule that does not exist.
    """
    tl = _timeline(events)
    unknown = set(rules) - RULES
    if unknown:
        raise UsageError(f"unknown rules {sorted(unknown)}: choose from {sorted(RULES)}")
    graph = DeviceGraph(topology) if topology is not None else None
    lt = _lifetimes(events, tl, gap_ns, graph, frozenset(rules), lost_linenos)
    entry_of = _match_exits(events, tl)[0] if entries is None else _entry_positions(events, tl, entries)
    closed = np.flatnonzero(entry_of >= 0)
    lt.packet[closed] = lt.packet[entry_of[closed]]
    visit = _visits(tl, lt, entry_of)
    packet_id = np.empty_like(lt.packet)
    packet_id[tl.order] = lt.packet
    visit_out = np.empty_like(visit)
    visit_out[tl.order] = visit
    ended = np.full(packet_id.size, -1, dtype=np.int64)
    in_packet = packet_id >= 0
    ended[in_packet] = lt.ended_by[packet_id[in_packet]]
    ended_by = pd.Categorical.from_codes(ended, categories=pd.Index(ENDED_BY))
    return pd.DataFrame({"packet_id": packet_id, "visit": visit_out, "ended_by": ended_by}, index=events.index)


@dataclass(frozen=True)
class _View:
    """The events of packets sorted by (packet, visit, time), with what the frames need.

    Rows without a visit come first in their packet (visit -1).  ``first`` flags the first
    row of each (packet, visit) group, which for a visit is the arrival that opened it.
    """

    order: IntArray  # the events frame's positions in time order
    rows: IntArray  # frame position of each row
    tpos: IntArray  # time-order position of each row
    packet: IntArray
    visit: IntArray
    first: BoolArray
    time: IntArray
    event: IntArray
    event_names: ObjectArray
    dev: IntArray
    dev_names: ObjectArray
    n_packets: int
    ended_by: IntArray  # per packet, a code into ENDED_BY (-1 for labels without the column)


def _view(events: pd.DataFrame, labels: pd.DataFrame) -> _View:
    """Sort the events of packets by (packet, visit, time) and gather their columns."""
    if not labels.index.equals(events.index):
        raise UsageError("labels must come from segment() on the same events frame")
    order = _time_order(events)
    packet = labels["packet_id"].to_numpy(dtype=np.int64)[order]
    visit = labels["visit"].to_numpy(dtype=np.int64)[order]
    keep = np.flatnonzero(packet >= 0)
    key = packet[keep] * (int(visit.max(initial=0)) + 2) + visit[keep] + 1
    by_key = np.argsort(key, kind="stable")
    tpos = keep[by_key]
    rows = order[tpos]
    event, event_names = _factorize(events["event"])
    dev, dev_names = _factorize(events["dev"])
    return _View(
        order=order,
        rows=rows,
        tpos=tpos,
        packet=packet[tpos],
        visit=visit[tpos],
        first=_starts(key[by_key]),
        time=events["time_ns"].to_numpy(dtype=np.int64)[rows],
        event=event[rows],
        event_names=event_names,
        dev=dev[rows],
        dev_names=dev_names,
        n_packets=int(packet.max(initial=-1)) + 1,
        ended_by=_ended_by(labels, rows, packet[tpos]),
    )


def _ended_by(labels: pd.DataFrame, rows: IntArray, packet: IntArray) -> IntArray:
    """Per packet, the code of its ``ended_by`` label, from the first of its rows."""
    if "ended_by" not in labels:
        return np.full(int(packet.max(initial=-1)) + 1, -1, dtype=np.int64)
    codes = np.asarray(labels["ended_by"].cat.codes, dtype=np.int64)[rows]
    return codes[np.flatnonzero(_starts(packet))]


def _categorical(codes: IntArray, names: ObjectArray) -> pd.Categorical:
    """A categorical of ``names[codes]`` (-1: missing) over the used names, sorted.

    Label columns (devices, events, paths) repeat a few values over many rows: as
    categoricals they cost no string conversion and group fast.  Sorted categories make the
    result independent of the order of the input rows.
    """
    used = np.flatnonzero(np.bincount(codes + 1, minlength=names.size)[1:])
    categories = np.array([str(name) for name in names[used]], dtype=object)
    by_name = np.argsort(categories, kind="stable")
    code_of = np.full(names.size, -1, dtype=np.int64)
    code_of[used[by_name]] = np.arange(used.size)
    return pd.Categorical.from_codes(code_of[codes], categories=pd.Index(categories[by_name]))


def _visit_dev(view: _View) -> IntArray:
    """For each row, the device code of its visit (the device of the visit's arrival)."""
    return np.where(view.visit >= 0, view.dev[_run_start(view.first)], -1)


def _path_codes(view: _View, opening: IntArray) -> tuple[IntArray, ObjectArray]:
    """Each packet's path, as a code into the distinct paths (devices joined by ``>``).

    Packets are bucketed by path length; within a bucket the device codes form a matrix
    whose distinct rows are the distinct paths, so Python only joins the distinct paths.

    Returns:
        The path code of each packet, and the paths by code (None last, like
        :func:`_factorize`).
    """
    codes = view.dev[opening]
    names = np.array([name if isinstance(name, str) else UNKNOWN_DEVICE for name in view.dev_names], dtype=object)
    counts = np.bincount(view.packet[opening], minlength=view.n_packets)
    offsets = np.concatenate(([0], np.cumsum(counts)[:-1]))
    path = np.full(view.n_packets, -1, dtype=np.int64)
    joined: list[str] = []
    for size in np.unique(counts):
        members = np.flatnonzero(counts == size)
        matrix = codes[offsets[members][:, None] + np.arange(size)]
        row = np.zeros(len(members), dtype=np.int64)
        for column in matrix.T:  # a dense code per distinct row (np.unique(axis=0) is far slower)
            row = pd.factorize(row * (len(names) + 1) + column + 1)[0]
        first = np.zeros(row.max(initial=-1) + 1, dtype=np.int64)
        first[row[::-1]] = np.arange(len(row))[::-1]
        distinct = matrix[first]
        rank = np.empty(len(first), dtype=np.int64)
        rank[np.lexsort(distinct.T[::-1])] = np.arange(len(first))  # in the rows' sorted order
        distinct = distinct[np.argsort(rank)]
        path[members] = len(joined) + rank[row]
        joined.extend(">".join(names[row]) for row in distinct)
    return path, np.array([*joined, None], dtype=object)


def _first_known(
    events: pd.DataFrame, view: _View, starts: IntArray, column: str, dtype: type[np.int64 | np.uint64]
) -> pd.arrays.IntegerArray:
    """Per packet, the value of ``column`` at its first event (in time) that has one."""
    series = events[column]
    known = series.notna().to_numpy()[view.rows]
    never = view.order.size
    earliest = np.minimum.reduceat(np.where(known, view.tpos, never), starts)
    found = earliest < never
    values = series.to_numpy(dtype=dtype, na_value=0)[view.order[np.where(found, earliest, 0)]]
    return pd.arrays.IntegerArray(values, ~found)


# Packet kinds by (first visit transmits, last visit transmits).
_KINDS: Final = np.array(["received", "forwarded", "local", "transmitted", None], dtype=object)


def _packets(events: pd.DataFrame, view: _View) -> pd.DataFrame:
    """The packets frame (see :func:`packets`)."""
    starts = np.flatnonzero(_starts(view.packet))
    opening = np.flatnonzero(view.first & (view.visit >= 0))
    transmit = _lookup(view.event_names, {"net:net_dev_queue": 1, "net:net_dev_start_xmit": 1}, 0)[view.event[opening]]
    first = _starts(view.packet[opening])
    last = np.append(first[1:], True)[: first.size]

    # End codes: 0 unknown, 1 consumed, 2 + k dropped with the k-th distinct reason.
    end = np.zeros(view.n_packets, dtype=np.int64)
    fate = _lookup(view.event_names, {"skb:consume_skb": 1, "skb:kfree_skb": 2}, 0)[view.event]
    end[view.packet[fate == 1]] = 1
    dropped = np.flatnonzero(fate == 2)
    reason, reasons = _factorize(events["reason"].iloc[view.rows[dropped]])
    end[view.packet[dropped]] = 2 + np.where(reason >= 0, reason, reasons.size - 1)
    ends = ["unknown", "consumed", *(f"dropped:{r}" for r in reasons[:-1]), "dropped", None]

    start_ns = np.minimum.reduceat(view.time, starts)
    end_ns = np.maximum.reduceat(view.time, starts)
    # Transit ends at the packet's last event in the stack, not at its free or copy to a socket,
    # which can come much later (a reader slow to read; an untraced free's address reused).
    in_stack = _lookup(view.event_names, _IN_STACK, 0)[view.event] == 1
    in_stack_ns = np.where(in_stack, view.time, np.iinfo(np.int64).min)
    transit_ns = np.maximum.reduceat(in_stack_ns, starts) - start_ns
    return pd.DataFrame(
        {
            "packet_id": np.arange(view.n_packets, dtype=np.int64),
            "skbaddr": _first_known(events, view, starts, "skbaddr", np.uint64),
            "start_ns": start_ns,
            "end_ns": end_ns,
            "duration_ns": end_ns - start_ns,
            "transit_ns": transit_ns,
            "path": _categorical(*_path_codes(view, opening)),
            "n_events": np.diff(np.append(starts, view.rows.size)),
            "len": _first_known(events, view, starts, "len", np.int64),
            "protocol": _first_known(events, view, starts, "protocol", np.int64),
            "kind": _categorical(transmit[first] * 2 + transmit[last], _KINDS),
            "end": _categorical(end, np.array(ends, dtype=object)),
            "ended_by": pd.Categorical.from_codes(view.ended_by, categories=pd.Index(ENDED_BY)),
        }
    )


def _hops(view: _View) -> pd.DataFrame:
    """The hops frame (see :func:`hops`)."""
    opening = np.flatnonzero(view.first & (view.visit >= 0))
    k = np.flatnonzero(view.packet[opening][1:] == view.packet[opening][:-1])
    step, to = opening[k], opening[k + 1]
    return pd.DataFrame(
        {
            "packet_id": view.packet[step],
            "hop": view.visit[step],
            "start_ns": view.time[step],
            "from_dev": _categorical(view.dev[step], view.dev_names),
            "to_dev": _categorical(view.dev[to], view.dev_names),
            "from_event": _categorical(view.event[step], view.event_names),
            "to_event": _categorical(view.event[to], view.event_names),
            "latency_ns": view.time[to] - view.time[step],
        }
    )


def _stages(view: _View) -> pd.DataFrame:
    """The stages frame (see :func:`stages`)."""
    to = np.flatnonzero(~view.first & (view.visit >= 0))
    return pd.DataFrame(
        {
            "packet_id": view.packet[to],
            "visit": view.visit[to],
            "dev": _categorical(_visit_dev(view)[to], view.dev_names),
            "from_event": _categorical(view.event[to - 1], view.event_names),
            "to_event": _categorical(view.event[to], view.event_names),
            "latency_ns": view.time[to] - view.time[to - 1],
        }
    )


def _drop_events(events: pd.DataFrame, view: _View, netns_dev: pd.Categorical | None = None) -> pd.DataFrame:
    """The drop rows (see :func:`drop_events`)."""
    visit_dev = np.full(len(events), -1, dtype=np.int64)
    visit_dev[view.rows] = _visit_dev(view)
    at = view.order[(events["event"] == "skb:kfree_skb").to_numpy(dtype=bool, na_value=False)[view.order]]
    table = pd.DataFrame(
        {  # the drops' rows only are made Python objects
            "reason": events["reason"].iloc[at].to_numpy(dtype=object),
            "location": events["location"].iloc[at].to_numpy(dtype=object),
            "dev": view.dev_names[visit_dev[at]],
        }
    )
    if netns_dev is not None:
        table["netns_dev"] = np.asarray(netns_dev[at], dtype=object)
    table["count"] = np.ones(at.size, dtype=np.int64)
    table["time_ns"] = events["time_ns"].to_numpy(dtype=np.int64)[at]
    table["lineno"] = events["lineno"].to_numpy(dtype=np.int64)[at] if "lineno" in events else at
    return table


def drop_events(events: pd.DataFrame, labels: pd.DataFrame, netns_dev: pd.Categorical | None = None) -> pd.DataFrame:
    """One row per ``skb:kfree_skb`` event, in time order: ``reason``, ``location``, ``dev``
    (and ``netns_dev``) as :func:`drops` counts them, ``count`` (1), ``time_ns`` and ``lineno``.
    :func:`count_drops` counts them; a capture read in parts counts each part's rows, then the
    parts' counts in order of their first events."""
    return _drop_events(events, _view(events, labels), netns_dev)


def count_drops(rows: pd.DataFrame) -> pd.DataFrame:
    """Sum the ``count`` of :func:`drop_events`' rows (or of partial counts, each with its first
    event's ``time_ns`` and ``lineno``) by reason, location and device: the :func:`drops` frame,
    most frequent first, ties in order of first occurrence."""
    rows = rows.sort_values(["time_ns", "lineno"], kind="stable")
    keys = [name for name in rows.columns if name not in ("count", "time_ns", "lineno")]
    counts = rows.groupby(keys, dropna=False, sort=False)["count"].sum()
    return counts.reset_index().sort_values("count", ascending=False, kind="stable", ignore_index=True)


def packets(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per packet: its path, timing, size and fate.

    ``kind`` comes from the directions of the first and the last visit:

    * ``transmitted``: first and last visits transmit.  Sent from this host (or its first
      receive was not traced) and last seen leaving through a device whose peer receive was
      not traced: a physical NIC, a tunnel's underlay, a veth peer outside the capture.
    * ``local``: transmitted, then last seen received.  Both ends on this host: loopback, or
      a veth pair between namespaces (possibly routed or bridged on the way).
    * ``received``: received first and last: came in through a device (a NIC driver's
      receive) and was delivered or dropped on this host.
    * ``forwarded``: received first, transmitted last: routed or bridged out again.

    ``end`` is ``consumed`` (freed by ``consume_skb``: delivered or transmitted),
    ``dropped:<REASON>`` (freed by ``kfree_skb``; the reason's name, or its number when the
    capture had no reason table, or plain ``dropped`` on kernels without reasons) or
    ``unknown`` (no free was traced).

    Args:
        events: the events frame.
        labels: what :func:`segment` returned for ``events``.

    Returns:
        Columns ``packet_id``, ``skbaddr`` (UInt64), ``start_ns``, ``end_ns`` (first and last
        event of the packet, exits included), ``duration_ns``, ``transit_ns`` (from the first
        event to the last ``net:*`` event: the time in the stack, without the wait for its free
        or its copy to a socket), ``path`` (devices in arrival
        order joined by ``>``), ``n_events``, ``len`` and ``protocol`` (Int64, from the first
        event that has one), ``kind``, ``end`` and ``ended_by`` (the rule that ended the
        packet, :data:`ENDED_BY`; missing if ``labels`` lack it); sorted by ``packet_id``.

    Raises:
        UsageError: ``labels`` is not indexed like ``events``.
    """
    return _packets(events, _view(events, labels))


def hops(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per step of a packet from one device visit to the next.

    Args:
        events: the events frame.
        labels: what :func:`segment` returned for ``events``.

    Returns:
        Columns ``packet_id``, ``hop`` (0-based step number), ``start_ns`` (the arrival at
        ``from_dev``), ``from_dev``, ``to_dev``,
        ``from_event``, ``to_event`` (the arrivals that opened the two visits) and
        ``latency_ns`` (arrival at ``to_dev`` minus arrival at ``from_dev``); sorted by
        packet and hop.

    Raises:
        UsageError: ``labels`` is not indexed like ``events``.
    """
    return _hops(_view(events, labels))


def stages(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of consecutive events within one device visit of a packet.

    Like perf's ``netdev-times`` script: queue, start_xmit, xmit on transmit; entry,
    ``netif_rx``, exit, ``netif_receive_skb`` on receive; then the free or socket copy that
    follows in the visit where the packet was at the time.

    Args:
        events: the events frame.
        labels: what :func:`segment` returned for ``events``.

    Returns:
        Columns ``packet_id``, ``visit`` (position of the visit in the path), ``dev``,
        ``from_event``, ``to_event`` and ``latency_ns``; sorted by packet, visit and time.

    Raises:
        UsageError: ``labels`` is not indexed like ``events``.
    """
    return _stages(_view(events, labels))


def drops(events: pd.DataFrame, labels: pd.DataFrame, netns_dev: pd.Categorical | None = None) -> pd.DataFrame:
    """Count the ``skb:kfree_skb`` events by reason, location and device.

    The device is that of the visit where the packet was when it was dropped (its latest
    arrival, not its latest event: the completions of an enclosing transmit print late), and
    is missing for frees of skbs that never reached a traced device.

    Args:
        events: the events frame.
        labels: what :func:`segment` returned for ``events``.
        netns_dev: each event's device as a topology labels it (``eth0@ctr1``), to count
            by as well (devices of one name in two namespaces apart).

    Returns:
        Columns ``reason``, ``location``, ``dev`` (and ``netns_dev``) and ``count``, most
        frequent first (ties in order of first occurrence).

    Raises:
        UsageError: ``labels`` is not indexed like ``events``.
    """
    return count_drops(_drop_events(events, _view(events, labels), netns_dev))


def reconstruct(
    events: pd.DataFrame,
    *,
    topology: Topology | None = None,
    gap_ns: int = DEFAULT_GAP_NS,
    rules: Collection[str] = RULES,
    lost_linenos: Sequence[int] = (),
) -> PathFrames:
    """Label the events and build every path frame from them, sharing the work.

    Args:
        events: the events frame.
        topology: the devices packets walk; None: names only (see :func:`segment`).
        gap_ns: the idle time after which an arrival starts a new packet.
        rules: the rules to apply (see :func:`segment`).
        lost_linenos: line numbers of LOST lines (see :func:`segment`).

    Returns:
        The labels and the ``packets``, ``hops``, ``stages`` and ``drops`` frames.
    """
    return frames(events, segment(events, topology=topology, gap_ns=gap_ns, rules=rules, lost_linenos=lost_linenos))


def frames(events: pd.DataFrame, labels: pd.DataFrame) -> PathFrames:
    """Every path frame of labelled events, sharing one sorted view of them.

    Args:
        events: the events frame.
        labels: what :func:`segment` returned for ``events``.

    Raises:
        UsageError: ``labels`` is not indexed like ``events``.
    """
    view = _view(events, labels)
    return PathFrames(
        labels=labels,
        packets=_packets(events, view),
        hops=_hops(view),
        stages=_stages(view),
        drops=count_drops(_drop_events(events, view)),
    )
