"""Interfaces per network namespace, and netns-qualified labels for the devices of packet paths.

A capture names a device only by its name, and names repeat across network namespaces: every
container has its ``lo`` and ``eth0``, and the host may have an ``eth0`` too.  This module
records which namespace holds which interface (:func:`snapshot`, a :class:`Topology` that
round-trips through JSON so it can be stored beside a capture) and uses it to tell the
namespaces of the devices on a packet's path (:func:`label_path`, :func:`label_paths`): a
device outside the namespace perfnet runs in (the *home* namespace) is written
``name@netns``.

Namespaces are labelled by their ``ip netns`` name, and unnamed ones (those of containers,
found through ``/proc/*/ns/net``) ``netns:<inode>`` after the inode of their nsfs file, which
identifies a namespace for as long as it exists.  Apart from :func:`snapshot`, which runs
``ip`` (and ``nsenter`` for the namespaces other than its own), everything here is a pure
function of a :class:`Topology`: no perf, no text formats.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final, Self

import numpy as np
import pandas as pd

from perfnet.errors import PerfnetError

__all__ = [
    "COLUMNS",
    "PAIR_KINDS",
    "SCHEMA_VERSION",
    "UNKNOWN_DEVICE",
    "UNKNOWN_NETNS",
    "Link",
    "Netns",
    "Topology",
    "label_path",
    "label_paths",
    "snapshot",
]

SCHEMA_VERSION: Final = 2
"""Version of the JSON written by :meth:`Topology.to_json`.  Version 1 (without forwarding,
lower devices and the ``inferred`` flag) still loads; other versions are refused."""

UNKNOWN_DEVICE: Final = "?"
"""The device a path names where the event that opened a visit carried none."""

UNKNOWN_NETNS: Final = "?"
"""Written after ``@`` for a device whose namespace cannot be told: ``eth0@?``."""

COLUMNS: Final = (
    "netns", "name", "ifindex", "kind", "master", "peer_netns", "peer_name", "mac", "lower", "lower_netns"
)  # fmt: skip
"""Columns of :attr:`Topology.interfaces`, in order (the fields of :class:`Link`)."""

NETNS_RUN_DIR: Final = Path("/run/netns")
"""Where ``ip netns`` keeps the bind mounts that name namespaces."""

PAIR_KINDS: Final = frozenset({"veth", "netkit"})
"""Link kinds that come in pairs: what one end transmits, the other end receives."""
_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class Netns:
    """One network namespace found on the host.

    Attributes:
        name: its label: the ``ip netns`` name, or ``netns:<inode>`` for an unnamed one.
        inode: inode of its nsfs file, the same for every handle on the namespace.
        named: whether it has an ``ip netns`` name.
        forwarding: whether it forwards IP packets between its devices (``ip_forward`` or IPv6
            ``forwarding`` on); None if unknown (snapshots of version 1), which counts as yes.
    """

    name: str
    inode: int
    named: bool
    forwarding: bool | None = None


@dataclass(frozen=True)
class Link:
    """One network interface, as ``ip -d link`` shows it in its namespace.

    Attributes:
        netns: label of the namespace holding it (see :class:`Netns`).
        name: interface name, unique within ``netns``.
        ifindex: interface index, unique within ``netns``.
        kind: ``linkinfo.info_kind`` (``veth``, ``bridge``, ...), ``loopback`` for ``lo``;
            None for devices without one (physical NICs).
        master: name of the device it is enslaved to (a bridge port's bridge), in ``netns``.
        peer_netns: for a veth (or netkit) end, the namespace of the other end; None if
            unknown.
        peer_name: the other end's name; None if unknown (also when its namespace is known
            but could not be read).
        mac: link-layer address; None for devices without one.
        lower: for a stacked device (VLAN, macvlan, ipvlan ...), the device it sends through;
            None otherwise.
        lower_netns: the namespace of ``lower`` when it is not ``netns``; None otherwise.
    """

    netns: str
    name: str
    ifindex: int
    kind: str | None
    master: str | None
    peer_netns: str | None
    peer_name: str | None
    mac: str | None
    lower: str | None = None
    lower_netns: str | None = None


@dataclass(frozen=True)
class Topology:
    """The interfaces of every network namespace of a host at one moment.

    Attributes:
        home: label of the namespace the snapshot was taken from (perfnet's own); its devices
            are written without ``@netns``.
        namespaces: every namespace found, sorted by name, including unreadable ones.
        links: the interfaces of the readable namespaces, sorted by (netns, ifindex).
        unreadable: names of namespaces that were found but whose interfaces could not be
            listed (not root, or the namespace went away meanwhile), sorted.
        inferred: True for a topology :mod:`perfnet.infer` derived from a capture's events
            (namespaces labelled ``inferred-N``), False for a snapshot of the host.
    """

    home: str
    namespaces: tuple[Netns, ...]
    links: tuple[Link, ...]
    unreadable: tuple[str, ...] = ()
    inferred: bool = False

    @property
    def interfaces(self) -> pd.DataFrame:
        """One row per interface, columns :data:`COLUMNS` in :attr:`links` order.

        ``ifindex`` is int64; the other columns are object, with None where a value is unknown
        or does not apply (as in :class:`Link`).
        """
        return pd.DataFrame(
            {
                column: pd.Series(
                    [getattr(link, column) for link in self.links], dtype="int64" if column == "ifindex" else object
                )
                for column in COLUMNS
            }
        )

    def to_json(self) -> str:
        """The topology as JSON (schema in :meth:`from_json`)."""
        return json.dumps(
            {
                "version": SCHEMA_VERSION,
                "home": self.home,
                "namespaces": [asdict(ns) for ns in self.namespaces],
                "unreadable": list(self.unreadable),
                "inferred": self.inferred,
                "links": [asdict(link) for link in self.links],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> Self:
        """Read what :meth:`to_json` wrote.

        The schema (version 2)::

            {"version": 2,
             "home": str,
             "namespaces": [{"name": str, "inode": int, "named": bool,
                             "forwarding": bool|null}, ...],
             "unreadable": [str, ...],
             "inferred": bool,
             "links": [{"netns": str, "name": str, "ifindex": int, "kind": str|null,
                        "master": str|null, "peer_netns": str|null, "peer_name": str|null,
                        "mac": str|null, "lower": str|null, "lower_netns": str|null}, ...]}

        Version 1 lacks ``forwarding``, ``inferred``, ``lower`` and ``lower_netns``: they read
        as None (unknown) and False.

        Args:
            text: the JSON document.

        Returns:
            The topology, equal to the one that was written.

        Raises:
            PerfnetError: not JSON, another schema version, or a field missing or mistyped.
        """
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise PerfnetError(f"topology is not JSON: {exc}") from None
        version = doc.get("version") if isinstance(doc, dict) else None
        if isinstance(version, bool) or version not in (1, SCHEMA_VERSION):
            raise PerfnetError(f"topology schema version {version!r} is not 1 or {SCHEMA_VERSION}")
        v2 = version == SCHEMA_VERSION
        return cls(
            home=_typed(doc, "home", str),
            namespaces=tuple(
                Netns(
                    _typed(ns, "name", str),
                    _typed(ns, "inode", int),
                    _typed(ns, "named", bool),
                    _typed(ns, "forwarding", bool, optional=True) if v2 else None,
                )
                for ns in _records(doc, "namespaces")
            ),
            links=tuple(
                Link(
                    netns=_typed(link, "netns", str),
                    name=_typed(link, "name", str),
                    ifindex=_typed(link, "ifindex", int),
                    kind=_typed(link, "kind", str, optional=True),
                    master=_typed(link, "master", str, optional=True),
                    peer_netns=_typed(link, "peer_netns", str, optional=True),
                    peer_name=_typed(link, "peer_name", str, optional=True),
                    mac=_typed(link, "mac", str, optional=True),
                    lower=_typed(link, "lower", str, optional=True) if v2 else None,
                    lower_netns=_typed(link, "lower_netns", str, optional=True) if v2 else None,
                )
                for link in _records(doc, "links")
            ),
            unreadable=tuple(_strings(doc, "unreadable")),
            inferred=_typed(doc, "inferred", bool) if v2 else False,
        )

    def save(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read a topology that :meth:`save` wrote.

        Raises:
            PerfnetError: ``path`` cannot be read, or its content is not a topology (see
                :meth:`from_json`).
        """
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise PerfnetError(f"cannot read topology {path}: {exc.strerror or exc}") from exc
        return cls.from_json(text)


def _typed(obj: Mapping[str, Any], key: str, kind: type, *, optional: bool = False) -> Any:
    """``obj[key]``, checked to be a ``kind`` (or None if ``optional``).

    Raises:
        PerfnetError: the key is missing or its value has another type.
    """
    if key not in obj:
        raise PerfnetError(f"topology: missing {key!r} in {dict(obj)!r}")
    value = obj[key]
    if (value is None and optional) or (isinstance(value, kind) and not (kind is int and isinstance(value, bool))):
        return value
    raise PerfnetError(f"topology: {key!r} should be {kind.__name__}, got {value!r}")


def _strings(doc: Mapping[str, Any], key: str) -> list[str]:
    """``doc[key]`` checked to be a list of strings."""
    values: list[Any] = _typed(doc, key, list)
    if not all(isinstance(value, str) for value in values):
        raise PerfnetError(f"topology: {key!r} should hold strings")
    return values


def _records(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    """``doc[key]`` checked to be a list of JSON objects."""
    records: list[Any] = _typed(doc, key, list)
    if not all(isinstance(record, dict) for record in records):
        raise PerfnetError(f"topology: {key!r} should hold objects")
    return records


# ----------------------------------------------------------------------------
# snapshot


@dataclass(frozen=True)
class _Found:
    """A namespace found on the host and the files that lead into it (tried in order)."""

    netns: Netns
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class _Reading:
    """What ``ip`` printed in one namespace: its links, and the names of its nsids."""

    links: list[dict[str, Any]]
    nsid_names: dict[int, str]
    forwarding: bool | None


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
    found, labels_by_name = _discover(home_inode)
    readings: dict[str, _Reading] = {}
    for place in found:
        reading = _read(place, home_inode)
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
                    replace(place.netns, forwarding=readings[place.netns.name].forwarding)
                    if place.netns.name in readings
                    else place.netns
                    for place in found
                ),
                key=lambda ns: ns.name,
            )
        ),
        links=tuple(sorted(_Resolver(readings, labels_by_name).links(), key=lambda link: (link.netns, link.ifindex))),
        unreadable=tuple(sorted(place.netns.name for place in found if place.netns.name not in readings)),
    )


def _discover(home_inode: int) -> tuple[list[_Found], dict[str, str]]:
    """Every namespace visible from here: the named ones, the home one, those of processes.

    Args:
        home_inode: nsfs inode of the caller's own namespace.

    Returns:
        The namespaces, one entry per inode, and the label of each ``ip netns`` name (two
        names may be bound to one namespace; it is labelled by the first).
    """
    places: dict[int, list[Path]] = {}
    labels: dict[int, Netns] = {}
    labels_by_name: dict[str, str] = {}
    for name in netns_names():
        path = NETNS_RUN_DIR / name
        try:
            inode = path.stat().st_ino
        except OSError:
            continue  # removed since it was listed
        labels.setdefault(inode, Netns(name, inode, named=True))
        labels_by_name[name] = labels[inode].name
        places.setdefault(inode, []).append(path)
    labels.setdefault(home_inode, Netns(f"netns:{home_inode}", home_inode, named=False))
    places.setdefault(home_inode, [])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        path = proc / "ns" / "net"
        try:
            inode = path.stat().st_ino
        except OSError:
            continue  # exited, a kernel thread, or not ours to inspect
        labels.setdefault(inode, Netns(f"netns:{inode}", inode, named=False))
        places.setdefault(inode, []).append(path)
    return [_Found(labels[inode], tuple(paths)) for inode, paths in places.items()], labels_by_name


def netns_names() -> list[str]:
    """The names ``ip netns list`` knows (none if it fails)."""
    listed = _ip_json(["netns", "list"], None)
    return [str(entry["name"]) for entry in listed or [] if isinstance(entry.get("name"), str)]


def ip_links(netns: str | None = None) -> list[dict[str, Any]]:
    """``ip -s -j link show`` in a named namespace (None: perfnet's own), parsed; [] if unreadable."""
    return _ip_json([*(["-n", netns] if netns else []), "-s", "link", "show"], None) or []


def packet_counters(netns: str | None = None) -> dict[str, tuple[int, int]]:
    """``ifname -> (tx_packets, rx_packets)`` of every interface in a named namespace (None:
    perfnet's own); interfaces without statistics are left out."""
    counters = {}
    for link in ip_links(netns):
        stats = link.get("stats64") or link.get("stats")
        if isinstance(stats, dict) and isinstance(link.get("ifname"), str):
            counters[link["ifname"]] = (int(stats["tx"]["packets"]), int(stats["rx"]["packets"]))
    return counters


def _read(place: _Found, home_inode: int) -> _Reading | None:
    """List the links and the nsid names of one namespace; None if it cannot be entered."""
    if place.netns.inode == home_inode:
        return _read_in(None)
    for path in place.paths:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            if os.fstat(fd).st_ino == place.netns.inode:  # else the pid was reused meanwhile
                return _read_in(fd)
        finally:
            os.close(fd)
    return None


def _read_in(netns_fd: int | None) -> _Reading | None:
    """Run the ``ip`` listings in the namespace of ``netns_fd`` (None: our own)."""
    links = _ip_json(["-d", "link", "show"], netns_fd)
    if links is None:
        return None
    ids = _ip_json(["netns", "list-id"], netns_fd) or []
    return _Reading(
        links=[raw for raw in links if isinstance(raw.get("ifindex"), int) and isinstance(raw.get("ifname"), str)],
        nsid_names={
            entry["nsid"]: entry["name"]
            for entry in ids
            if isinstance(entry.get("nsid"), int) and isinstance(entry.get("name"), str)
        },
        forwarding=_forwarding(netns_fd),
    )


_FORWARDING_FILES: Final = ("/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding")


def _forwarding(netns_fd: int | None) -> bool | None:
    """Whether the namespace forwards IPv4 or IPv6; None if that cannot be read.

    ``/proc/sys/net`` shows the namespace of the process that opens it, hence ``cat`` run
    in the namespace.
    """
    proc = _run_in(["cat", *_FORWARDING_FILES], netns_fd)
    values = proc.stdout.split() if proc is not None else []
    if not values or not all(value.isdigit() for value in values):
        return None
    return any(int(value) for value in values)


def _run_in(argv: Sequence[str], netns_fd: int | None) -> subprocess.CompletedProcess[str] | None:
    """``argv`` run in the namespace of ``netns_fd`` (through ``nsenter``; None: our own);
    None if it could not run."""
    fds: tuple[int, ...] = ()
    if netns_fd is not None:
        argv = ["nsenter", f"--net=/proc/self/fd/{netns_fd}", *argv]
        fds = (netns_fd,)
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=_TIMEOUT, check=False, pass_fds=fds)
    except (OSError, subprocess.SubprocessError):
        return None


def _ip_json(args: Sequence[str], netns_fd: int | None) -> list[dict[str, Any]] | None:
    """``ip -j ARGS`` (run through ``nsenter`` into ``netns_fd`` if given), parsed.

    Returns:
        The list of JSON objects printed (empty for no output), or None if the command could
        not run, failed, or printed something else.
    """
    proc = _run_in(["ip", "-j", *args], netns_fd)
    if proc is None or proc.returncode != 0:
        return None
    if not proc.stdout.strip():
        return []
    try:
        parsed = json.loads(proc.stdout)
    except ValueError:
        return None
    if not isinstance(parsed, list) or not all(isinstance(entry, dict) for entry in parsed):
        return None
    return parsed


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

    def __init__(self, readings: Mapping[str, _Reading], labels_by_name: Mapping[str, str]) -> None:
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


# ----------------------------------------------------------------------------
# labelling

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
