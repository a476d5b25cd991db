"""A lab's plan: its names (unique per tag), addresses and MAC addresses, before anything exists."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perfnet.errors import PerfnetError, UsageError

PREFIX = "pn"
STATE_DIR = Path("/run/perfnet-lab")
ALIAS_PREFIX = "perfnet-lab"
OCTET_MIN = 200
OCTET_MAX = 250
HTTP_PORT = 8080
HTTP_FILE = "hello.txt"
TAG_RE = re.compile(r"^[0-9a-z]{1,10}$")
_IFNAMSIZ = 15


class LabError(PerfnetError, RuntimeError):
    """A lab could not be built, or could not be fully torn down."""


@dataclass(frozen=True)
class LabNames:
    """All object names of one lab (derived from ``prefix`` and ``tag``)."""

    tag: str
    prefix: str
    bridge: str  # root netns, stands in for docker0
    host_veth: str  # root netns, bridge port; peer is ctr1_if in ctr1
    ctr1: str  # netns name
    ctr2: str  # netns name (only created when router=True)
    ctr1_if: str = "eth0"  # ctr1's bridge-facing interface
    ctr1_router_if: str = "eth1"  # ctr1's interface towards ctr2
    ctr2_if: str = "eth0"  # ctr2's only interface

    @classmethod
    def for_tag(cls, tag: str, prefix: str = PREFIX) -> LabNames:
        if not TAG_RE.match(tag):
            raise UsageError(f"lab tag must match {TAG_RE.pattern}: {tag!r}")
        names = cls(
            tag=tag,
            prefix=prefix,
            bridge=f"{prefix}br{tag}",
            host_veth=f"{prefix}v{tag}",
            ctr1=f"{prefix}c1-{tag}",
            ctr2=f"{prefix}c2-{tag}",
        )
        for ifname in (names.bridge, names.host_veth):
            if len(ifname) > _IFNAMSIZ:
                raise UsageError(f"interface name too long (max {_IFNAMSIZ}): {ifname!r}")
        return names

    @property
    def root_links(self) -> tuple[str, str]:
        return (self.bridge, self.host_veth)


@dataclass(frozen=True)
class HttpServer:
    """A running lab HTTP server (see :meth:`Lab.http_server`)."""

    netns: str | None
    addr: str
    port: int
    path: str
    directory: str
    pid: int

    @property
    def url(self) -> str:
        return f"http://{self.addr}:{self.port}{self.path}"


def preferred_octet(tag: str) -> int:
    return OCTET_MIN + zlib.crc32(tag.encode()) % (OCTET_MAX - OCTET_MIN + 1)


def mac(octet: int, link: int, side: int) -> str:
    return f"02:70:6e:{octet:02x}:{link:02x}:{side:02x}"


def _named(field: str) -> property:
    """A read-only attribute of a :class:`Plan` that is one of its ``names``."""
    return property(lambda plan: getattr(plan.names, field), doc=f"The lab's {field.replace('_', ' ')} (see LabNames).")


def _address(host: str) -> property:
    """A read-only IPv4 address of a :class:`Plan`: ``10.<octet>.<host>``."""
    return property(lambda plan: f"10.{plan.octet}.{host}", doc=f"The address 10.<octet>.{host}.")


class Plan:
    """The names and addresses of a lab (mixed into :class:`~perfnet.lab.Lab`): set ``names``,
    ``router`` and ``octet`` (the second octet of its 10.X.0.0/16)."""

    names: LabNames
    router: bool
    octet: int

    # --- names / addresses -------------------------------------------------
    tag = _named("tag")
    bridge = _named("bridge")
    host_veth = _named("host_veth")
    ctr1 = _named("ctr1")
    ctr2 = _named("ctr2")

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces this lab creates (ctr2 only with ``router=True``)."""
        return (self.ctr1, self.ctr2) if self.router else (self.ctr1,)

    @property
    def subnet(self) -> str:
        return f"10.{self.octet}.0.0/16"

    bridge_addr = _address("0.1")
    ctr1_addr = _address("0.2")
    ctr1_router_addr = _address("1.1")  # ctr1's side of the routed link to ctr2
    ctr2_addr = _address("1.2")

    @property
    def macs(self) -> dict[str, str]:
        """Fixed MAC addresses, keyed ``"<netns or root>/<ifname>"``."""
        x = self.octet
        macs = {
            f"root/{self.bridge}": mac(x, 0, 1),
            f"root/{self.host_veth}": mac(x, 1, 1),
            f"{self.ctr1}/{self.names.ctr1_if}": mac(x, 1, 2),
        }
        if self.router:
            macs[f"{self.ctr1}/{self.names.ctr1_router_if}"] = mac(x, 2, 1)
            macs[f"{self.ctr2}/{self.names.ctr2_if}"] = mac(x, 2, 2)
        return macs

    def lab_addresses(self) -> tuple[str, ...]:
        addrs = [self.bridge_addr, self.ctr1_addr]
        if self.router:
            addrs += [self.ctr1_router_addr, self.ctr2_addr]
        return tuple(addrs)

    def addr_of(self, netns: str | None) -> str:
        """The main address of ``netns`` (``None`` = root, i.e. the bridge)."""
        if netns is None:
            return self.bridge_addr
        if netns == self.ctr1:
            return self.ctr1_addr
        if netns == self.ctr2 and self.router:
            return self.ctr2_addr
        raise UsageError(f"not a namespace of this lab: {netns!r}")

    def describe(self) -> dict[str, Any]:
        """JSON-able description of names, addresses, MACs and routes."""
        n = self.names
        d: dict[str, Any] = {
            "tag": n.tag,
            "router": self.router,
            "subnet": self.subnet,
            "bridge": n.bridge,
            "host_veth": n.host_veth,
            "ctr1": n.ctr1,
            "ctr2": n.ctr2 if self.router else None,
            "bridge_addr": self.bridge_addr,
            "ctr1_addr": self.ctr1_addr,
            "ctr1_if": n.ctr1_if,
            "macs": self.macs,
            "routes": {
                "root": [f"10.{self.octet}.1.0/24 via {self.ctr1_addr} dev {n.bridge}"] if self.router else [],
                n.ctr1: [f"default via {self.bridge_addr} dev {n.ctr1_if}"],
            },
            "neighbours": "static permanent ARP entries on every hop (no ARP traffic)",
            "ipv6": "disabled on all lab links",
        }
        if self.router:
            d.update(
                ctr1_router_addr=self.ctr1_router_addr,
                ctr1_router_if=n.ctr1_router_if,
                ctr2_addr=self.ctr2_addr,
                ctr2_if=n.ctr2_if,
            )
            d["routes"][n.ctr2] = [f"default via {self.ctr1_router_addr} dev {n.ctr2_if}"]
        return d
