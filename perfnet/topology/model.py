"""The topology model: namespaces, their interfaces, and their JSON form (schema versions 1 and 2)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Self

import pandas as pd

from perfnet.errors import PerfnetError

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

PAIR_KINDS: Final = frozenset({"veth", "netkit"})
"""Link kinds that come in pairs: what one end transmits, the other end receives."""


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
