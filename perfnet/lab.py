"""Throwaway network-namespace labs for capturing real ``net:*``/``skb:*`` traffic.

perfnet parses ``perf trace``/``perf script``/ftrace output of the kernel's
``net:*`` and ``skb:*`` tracepoints.  To get *real* captures (fixtures, tests,
benchmarks) without touching the host's networking, this module builds a small
docker-like topology out of a Linux bridge, veth pairs and network namespaces,
runs a workload inside it, and tears it all down again::

    root netns                        netns ctr1                 netns ctr2
    bridge  10.X.0.1/24  ("docker0")
      '-- host_veth  <== veth ==>  eth0 10.X.0.2/24
                                   eth1 10.X.1.1/24  <== veth ==>  eth0 10.X.1.2/24
                                   (ip_forward=1)

* root routes ``10.X.1.0/24 via 10.X.0.2``; ctr1's default route is
  ``10.X.0.1``; ctr2's default route is ``10.X.1.1``.  The root netns' own
  ``ip_forward`` setting is never changed, so nothing from the lab can leak
  beyond the root netns.
* ``X`` (second octet) is taken from 200..250: preferred value derived from the
  tag, and allocated under a lock file so concurrently running labs (and any
  10.X.0.0/16 address/route already present in the root netns) never collide.
* Every object name embeds the per-lab tag (default: 4 random hex digits):
  bridge ``pnbr<tag>``, root-side veth ``pnv<tag>``, namespaces ``pnc1-<tag>``
  and ``pnc2-<tag>``.  Root-side links carry the alias ``perfnet-lab <tag>``
  and an owner record is kept in ``/run/perfnet-lab/<tag>.json`` so
  :func:`cleanup_stale` only ever removes objects this module created and
  whose owning process is gone.

Quietness (tests count frames exactly):

* IPv6 is disabled on every lab link *before* it goes up (``all``/``default``
  inside the namespaces, per-interface for the root-side bridge and veth), so
  no router/neighbour solicitations or MLD reports appear.
* MAC addresses are fixed (``02:70:6e:XX:LL:SS``) and **permanent static
  neighbour entries** are installed on every hop, so no ARP is ever sent -- not
  at start-up and not later when entries would go stale (a warm-up ping would
  only defer the ARP probes).  The bridge runs without STP, with zero forward
  delay and without multicast snooping (no IGMP queries).
* ``up()`` finishes with one verification ping root -> farthest namespace;
  take counter baselines (:meth:`Lab.link_counters`) after ``up()``.

Safety: :meth:`Lab.ping` and :meth:`Lab.http_get` refuse destinations that
are not lab addresses or loopback, ``ping`` always runs with ``-n`` (no reverse
DNS) and HTTP clients ignore ``*_proxy`` environment variables.  ``down()`` is
idempotent, runs on context-manager exit even when the body raised or on
Ctrl-C, and blocks SIGINT/SIGTERM while it runs so a second Ctrl-C cannot leave
half a lab behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from perfnet.errors import PerfnetError, UsageError
from perfnet.host.netns import ip_links, netns_names, packet_counters

__all__ = [
    "HttpServer",
    "Lab",
    "LabError",
    "LabNames",
    "cleanup_stale",
    "require_root_and_tools",
]

PREFIX = "pn"
STATE_DIR = Path("/run/perfnet-lab")
ALIAS_PREFIX = "perfnet-lab"
OCTET_MIN = 200
OCTET_MAX = 250
HTTP_PORT = 8080
HTTP_FILE = "hello.txt"
_TAG_RE = re.compile(r"^[0-9a-z]{1,10}$")
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
        if not _TAG_RE.match(tag):
            raise UsageError(f"lab tag must match {_TAG_RE.pattern}: {tag!r}")
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


# ----------------------------------------------------------------------------
# small helpers


def _run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise LabError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


def _ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def _link_exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()


def _proc_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch): with the pid, it names one
    process, whatever reuses the pid later."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _owner_alive(state: dict[str, Any]) -> bool:
    if state.get("kept"):
        return True  # left up on purpose (Lab.keep); only Lab.attach(tag).down() removes it
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    started, recorded = _proc_start_time(pid), state.get("pid_start")
    return started is not None and isinstance(recorded, float) and abs(started - recorded) < 0.01


def _read_state(tag: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((STATE_DIR / f"{tag}.json").read_text())
    except (OSError, ValueError):
        return None
    return data


@contextlib.contextmanager
def _state_lock() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM (delivered afterwards) while cleaning up."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _octets_in_use() -> set[int]:
    """Second octets X of 10.X.0.0/16 used in the root netns or by live labs."""
    used: set[int] = set()
    nets: list[str] = []
    proc = _run(["ip", "-j", "-4", "addr", "show"], check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        for link in json.loads(proc.stdout):
            for ai in link.get("addr_info", []):
                nets.append(f"{ai['local']}/{ai.get('prefixlen', 32)}")
    proc = _run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        for route in json.loads(proc.stdout):
            dst = route.get("dst", "")
            if dst and dst != "default":
                nets.append(dst if "/" in dst else f"{dst}/32")
    for net in nets:
        try:
            n = ipaddress.ip_network(net, strict=False)
        except ValueError:
            continue
        for x in range(OCTET_MIN, OCTET_MAX + 1):
            if n.overlaps(ipaddress.ip_network(f"10.{x}.0.0/16")):
                used.add(x)
    if STATE_DIR.is_dir():
        for path in STATE_DIR.glob("*.json"):
            state = _read_state(path.stem)
            if state and _owner_alive(state) and isinstance(state.get("octet"), int):
                used.add(state["octet"])
    return used


def _preferred_octet(tag: str) -> int:
    return OCTET_MIN + zlib.crc32(tag.encode()) % (OCTET_MAX - OCTET_MIN + 1)


def _mac(octet: int, link: int, side: int) -> str:
    return f"02:70:6e:{octet:02x}:{link:02x}:{side:02x}"


def _tag_in_use(names: LabNames) -> bool:
    state = _read_state(names.tag)
    return (
        (state is not None and _owner_alive(state))
        or any(_link_exists(n) for n in names.root_links)
        or bool({names.ctr1, names.ctr2} & set(netns_names()))
    )


# ----------------------------------------------------------------------------


class Lab:
    """A bridge + veth + namespace topology; use as a context manager.

    ``Lab(router=False)`` builds only bridge, host veth and ctr1.  Addresses
    are final once :meth:`up` returned (the octet is allocated there).
    """

    def __init__(self, tag: str | None = None, *, router: bool = True) -> None:
        if tag is None:
            for _ in range(64):
                names = LabNames.for_tag(secrets.token_hex(2))
                if not _tag_in_use(names):
                    break
            else:  # pragma: no cover - astronomically unlikely
                raise LabError("could not find a free random lab tag")
        else:
            names = LabNames.for_tag(tag)
        self.names: LabNames = names
        self.router: bool = router
        self.octet: int = _preferred_octet(names.tag)
        self._is_up = False
        self._owns_state = False
        self._servers: list[subprocess.Popen[bytes]] = []
        self._tmpdirs: list[tempfile.TemporaryDirectory[str]] = []

    # --- names / addresses -------------------------------------------------
    @property
    def tag(self) -> str:
        return self.names.tag

    @property
    def bridge(self) -> str:
        return self.names.bridge

    @property
    def host_veth(self) -> str:
        return self.names.host_veth

    @property
    def ctr1(self) -> str:
        return self.names.ctr1

    @property
    def ctr2(self) -> str:
        return self.names.ctr2

    @property
    def namespaces(self) -> tuple[str, ...]:
        """The namespaces this lab creates (ctr2 only with ``router=True``)."""
        return (self.ctr1, self.ctr2) if self.router else (self.ctr1,)

    @property
    def subnet(self) -> str:
        return f"10.{self.octet}.0.0/16"

    @property
    def bridge_addr(self) -> str:
        return f"10.{self.octet}.0.1"

    @property
    def ctr1_addr(self) -> str:
        return f"10.{self.octet}.0.2"

    @property
    def ctr1_router_addr(self) -> str:
        return f"10.{self.octet}.1.1"

    @property
    def ctr2_addr(self) -> str:
        return f"10.{self.octet}.1.2"

    @property
    def macs(self) -> dict[str, str]:
        """Fixed MAC addresses, keyed ``"<netns or root>/<ifname>"``."""
        x = self.octet
        macs = {
            f"root/{self.bridge}": _mac(x, 0, 1),
            f"root/{self.host_veth}": _mac(x, 1, 1),
            f"{self.ctr1}/{self.names.ctr1_if}": _mac(x, 1, 2),
        }
        if self.router:
            macs[f"{self.ctr1}/{self.names.ctr1_router_if}"] = _mac(x, 2, 1)
            macs[f"{self.ctr2}/{self.names.ctr2_if}"] = _mac(x, 2, 2)
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

    # --- command helpers ---------------------------------------------------
    def exec_argv(self, netns: str | None, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped in ``ip netns exec NS`` (unchanged for the root netns)."""
        if netns is not None and netns not in (self.ctr1, self.ctr2):
            raise UsageError(f"not a namespace of this lab: {netns!r}")
        return _ns_argv(netns, argv)

    def run(self, netns: str | None, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in ``netns``.

        Defaults: ``check=True, capture_output=True, text=True, timeout=60``.
        """
        check = bool(kw.pop("check", True))
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(self.exec_argv(netns, argv), check=check, **kw)

    def check_dest(self, dest: str) -> None:
        """Raise ``ValueError`` unless ``dest`` is a lab address or loopback."""
        try:
            ip = ipaddress.ip_address(dest)
        except ValueError:
            msg = f"lab traffic needs a literal IPv4 address, got {dest!r}"
            raise UsageError(msg) from None
        if not (ip.is_loopback or dest in self.lab_addresses()):
            msg = f"{dest} is neither a lab address {self.lab_addresses()} nor loopback"
            raise UsageError(msg)

    def ping_argv(self, dest: str, count: int, *, interval: float = 0.2) -> list[str]:
        """The ``ping`` argv used by :meth:`ping` (numeric, ``-W 1``)."""
        self.check_dest(dest)
        return ["ping", "-n", "-c", str(count), "-i", f"{interval:g}", "-W", "1", dest]

    def ping(
        self, dest: str, count: int, *, netns: str | None = None, interval: float = 0.2
    ) -> subprocess.CompletedProcess[str]:
        """``ping -n -c count -i interval -W 1 dest`` from ``netns`` (not checked)."""
        argv = self.ping_argv(dest, count, interval=interval)
        timeout = 30 + count * max(interval, 0.01) * 2
        return self.run(netns, argv, check=False, timeout=timeout)

    @contextlib.contextmanager
    def http_server(self, netns: str | None, *, port: int = HTTP_PORT) -> Iterator[HttpServer]:
        """Serve a small file over HTTP from ``netns``'s address; killed on exit."""
        addr = self.addr_of(netns)
        tmp = tempfile.TemporaryDirectory(prefix=f"perfnet-lab-{self.tag}-")
        self._tmpdirs.append(tmp)
        Path(tmp.name, HTTP_FILE).write_text("hello from the perfnet lab\n" * 4)
        argv = self.exec_argv(
            netns,
            [
                sys.executable,
                "-u",
                "-m",
                "http.server",
                "--bind",
                addr,
                "--directory",
                tmp.name,
                str(port),
            ],
        )
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self._servers.append(proc)
        try:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 15)
            line = proc.stdout.readline().decode(errors="replace") if ready else ""
            if "Serving HTTP" not in line:
                raise LabError(f"HTTP server in {netns or 'root'} did not start: {line!r}")
            yield HttpServer(netns, addr, port, f"/{HTTP_FILE}", tmp.name, proc.pid)
        finally:
            self._stop_server(proc)
            with contextlib.suppress(OSError):
                tmp.cleanup()
            if tmp in self._tmpdirs:
                self._tmpdirs.remove(tmp)

    def _stop_server(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()
        if proc in self._servers:
            self._servers.remove(proc)

    def http_get(
        self,
        url_host: str,
        n: int = 1,
        *,
        netns: str | None = None,
        port: int = HTTP_PORT,
        path: str = f"/{HTTP_FILE}",
    ) -> None:
        """Issue ``n`` sequential HTTP GETs (one TCP connection each) from ``netns``."""
        self.check_dest(url_host)
        code = (
            "import sys, urllib.request\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))\n"
            "for _ in range(int(sys.argv[2])):\n"
            "    with opener.open(sys.argv[1], timeout=10) as r:\n"
            "        r.read()\n"
        )
        url = f"http://{url_host}:{port}{path}"
        self.run(netns, [sys.executable, "-c", code, url, str(n)], timeout=30 + 5 * n)

    def link_counters(self) -> dict[tuple[str | None, str], tuple[int, int]]:
        """``(netns or None, ifname) -> (tx_packets, rx_packets)``.

        Root netns: only this lab's links (bridge, host veth); lab namespaces:
        every link (including ``lo``).
        """
        places: list[str | None] = [None, *self.namespaces]
        return {
            (ns, dev): packets
            for ns in places
            for dev, packets in packet_counters(ns).items()
            if ns is not None or dev in self.names.root_links
        }

    # --- lifecycle -----------------------------------------------------------
    def __enter__(self) -> Self:
        return self.up()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.down()
        except LabError:
            if exc_type is None:
                raise
            # the body's exception is more important; leftovers are reported by down()
            print(f"perfnet.lab: teardown of lab {self.tag} incomplete", file=sys.stderr)

    def up(self) -> Self:
        if self._is_up:
            return self
        try:
            self._reserve()  # if this raises (tag taken), down() below is a no-op
            self._build()
            self._is_up = True
        except BaseException:
            with contextlib.suppress(LabError):
                self.down()
            raise
        return self

    def keep(self) -> None:
        """Leave the lab up after this process exits (``perfnet lab up``).

        Its owner record is marked kept, so :func:`cleanup_stale` spares it; tear it down
        later with ``Lab.attach(tag).down()`` (``perfnet lab down TAG``).
        """
        if not self._owns_state:
            raise LabError("keep() needs a lab that is up")
        with _state_lock():
            state = _read_state(self.tag) or {}
            (STATE_DIR / f"{self.tag}.json").write_text(json.dumps({**state, "kept": True}))
        self._owns_state = False  # this process no longer tears it down

    @classmethod
    def attach(cls, tag: str) -> Lab:
        """The lab ``tag`` that another (possibly finished) process built, ready for :meth:`down`.

        Raises:
            LabError: there is no owner record for ``tag``.
        """
        state = _read_state(tag)
        if state is None:
            raise LabError(f"no lab {tag!r} (no owner record in {STATE_DIR})")
        lab = cls(tag, router=bool(state.get("router", True)))
        lab.octet = int(state["octet"])
        lab._owns_state = lab._is_up = True
        return lab

    def _reserve(self) -> None:
        with _state_lock():
            if _tag_in_use(self.names):
                raise LabError(f"lab tag {self.tag!r} is already in use")
            used = _octets_in_use()
            span = OCTET_MAX - OCTET_MIN + 1
            start = _preferred_octet(self.tag) - OCTET_MIN
            for i in range(span):
                x = OCTET_MIN + (start + i) % span
                if x not in used:
                    break
            else:
                raise LabError(f"no free 10.X.0.0/16 with X in {OCTET_MIN}..{OCTET_MAX}")
            self.octet = x
            state = {
                "tag": self.tag,
                "prefix": self.names.prefix,
                "octet": x,
                "router": self.router,
                "pid": os.getpid(),
                "pid_start": _proc_start_time(os.getpid()),
                "netns": list(self.namespaces),
                "links": list(self.names.root_links),
                "created": time.time(),
            }
            (STATE_DIR / f"{self.tag}.json").write_text(json.dumps(state))
            self._owns_state = True

    def _build(self) -> None:
        n = self.names
        x = self.octet
        alias = f"{ALIAS_PREFIX} {n.tag}"

        def ip(netns: str | None, args: str) -> None:
            # ``args`` is split on whitespace into an argv list (no shell involved);
            # every interpolated value is a validated name/address without spaces.
            _run(_ns_argv(netns, ["ip", *args.split()]))

        def set_alias(netns: str | None, dev: str) -> None:
            _run(_ns_argv(netns, ["ip", "link", "set", "dev", dev, "alias", alias]))

        def sysctl(netns: str | None, key: str, value: str) -> None:
            if netns is None:
                Path("/proc/sys", *key.split(".")).write_text(value)
            else:
                _run(_ns_argv(netns, ["sysctl", "-q", "-w", f"{key}={value}"]))

        # 1. namespaces, quiet by default (IPv6 off before any link exists)
        for ns in self.namespaces:
            ip(None, f"netns add {ns}")
            for key in ("all", "default"):
                sysctl(ns, f"net.ipv6.conf.{key}.disable_ipv6", "1")
                sysctl(ns, f"net.ipv4.conf.{key}.send_redirects", "0")
        if self.router:
            sysctl(n.ctr1, "net.ipv4.ip_forward", "1")

        # 2. bridge ("docker0") + host veth <-> ctr1 eth0; IPv6 off before up
        ip(
            None,
            f"link add name {n.bridge} address {_mac(x, 0, 1)} type bridge"
            " stp_state 0 forward_delay 0 mcast_snooping 0",
        )
        sysctl(None, f"net.ipv6.conf.{n.bridge}.disable_ipv6", "1")
        set_alias(None, n.bridge)
        ip(
            None,
            f"link add name {n.host_veth} address {_mac(x, 1, 1)} type veth"
            f" peer name {n.ctr1_if} address {_mac(x, 1, 2)} netns {n.ctr1}",
        )
        sysctl(None, f"net.ipv6.conf.{n.host_veth}.disable_ipv6", "1")
        set_alias(None, n.host_veth)
        set_alias(n.ctr1, n.ctr1_if)
        ip(None, f"link set dev {n.host_veth} master {n.bridge}")
        ip(None, f"addr add {self.bridge_addr}/24 dev {n.bridge}")
        ip(n.ctr1, f"addr add {self.ctr1_addr}/24 dev {n.ctr1_if}")

        # 3. router chain ctr1 eth1 <-> ctr2 eth0
        if self.router:
            ip(
                n.ctr1,
                f"link add name {n.ctr1_router_if} address {_mac(x, 2, 1)} type veth"
                f" peer name {n.ctr2_if} address {_mac(x, 2, 2)} netns {n.ctr2}",
            )
            set_alias(n.ctr1, n.ctr1_router_if)
            set_alias(n.ctr2, n.ctr2_if)
            ip(n.ctr1, f"addr add {self.ctr1_router_addr}/24 dev {n.ctr1_router_if}")
            ip(n.ctr2, f"addr add {self.ctr2_addr}/24 dev {n.ctr2_if}")

        # belt and braces: per-interface IPv6 off inside the namespaces too
        for ns in self.namespaces:
            for link in ip_links(ns):
                sysctl(ns, f"net.ipv6.conf.{link['ifname']}.disable_ipv6", "1")

        # 4. static permanent neighbours (no ARP ever) -- before anything goes up
        neigh = "neigh replace {} lladdr {} dev {} nud permanent"
        ip(None, neigh.format(self.ctr1_addr, _mac(x, 1, 2), n.bridge))
        ip(n.ctr1, neigh.format(self.bridge_addr, _mac(x, 0, 1), n.ctr1_if))
        if self.router:
            ip(n.ctr1, neigh.format(self.ctr2_addr, _mac(x, 2, 2), n.ctr1_router_if))
            ip(n.ctr2, neigh.format(self.ctr1_router_addr, _mac(x, 2, 1), n.ctr2_if))

        # 5. links up
        for ns in self.namespaces:
            ip(ns, "link set dev lo up")
        ip(None, f"link set dev {n.host_veth} up")
        ip(None, f"link set dev {n.bridge} up")
        ip(n.ctr1, f"link set dev {n.ctr1_if} up")
        if self.router:
            ip(n.ctr1, f"link set dev {n.ctr1_router_if} up")
            ip(n.ctr2, f"link set dev {n.ctr2_if} up")

        # 6. routes
        ip(n.ctr1, f"route add default via {self.bridge_addr} dev {n.ctr1_if}")
        if self.router:
            ip(None, f"route add 10.{x}.1.0/24 via {self.ctr1_addr} dev {n.bridge}")
            ip(n.ctr2, f"route add default via {self.ctr1_router_addr} dev {n.ctr2_if}")

        # 7. wait for carrier everywhere, then one verification ping
        self._wait_oper_up()
        target = self.ctr2_addr if self.router else self.ctr1_addr
        res = self.ping(target, 1, interval=0.2)
        if res.returncode != 0:
            raise LabError(f"lab {self.tag}: verification ping to {target} failed:\n{res.stdout}{res.stderr}")

    def _wait_oper_up(self, timeout: float = 10.0) -> None:
        want: dict[str | None, set[str]] = {
            None: set(self.names.root_links),
            self.ctr1: {self.names.ctr1_if},
        }
        if self.router:
            want[self.ctr1].add(self.names.ctr1_router_if)
            want[self.ctr2] = {self.names.ctr2_if}
        deadline = time.monotonic() + timeout
        while True:
            missing = []
            for ns, ifs in want.items():
                state = {str(link["ifname"]): link.get("operstate") for link in ip_links(ns)}
                missing += [f"{ns or 'root'}/{i}" for i in ifs if state.get(i) != "UP"]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise LabError(f"lab {self.tag}: links not up after {timeout}s: {missing}")
            time.sleep(0.05)

    def leftovers(self) -> list[str]:
        """Objects of this lab that still exist (``"netns:NAME"``/``"link:NAME"``)."""
        present = set(netns_names())
        left = [f"netns:{ns}" for ns in (self.ctr1, self.ctr2) if ns in present]
        left += [f"link:{ln}" for ln in self.names.root_links if _link_exists(ln)]
        return left

    def down(self) -> None:
        """Tear everything down; idempotent, fine if objects are already gone.

        Raises :class:`LabError` only if lab objects still exist afterwards.
        """
        with _signals_deferred():
            for proc in list(self._servers):
                with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                    self._stop_server(proc)
            for tmp in list(self._tmpdirs):
                with contextlib.suppress(OSError):
                    tmp.cleanup()
            self._tmpdirs.clear()
            if not self._owns_state:
                return  # never reserved (or already torn down): nothing of ours exists
            _destroy(self.names)
            self._is_up = False
            left = self.leftovers()
            if self._owns_state and not left:
                with contextlib.suppress(OSError):
                    (STATE_DIR / f"{self.tag}.json").unlink()
                self._owns_state = False
            if left:
                raise LabError(f"lab {self.tag}: could not remove {left}")


def _destroy(names: LabNames, timeout: float = 10.0) -> None:
    """Remove all objects named by ``names``; missing objects are fine."""
    present = set(netns_names())
    for ns in (names.ctr2, names.ctr1):
        if ns not in present:
            continue
        # processes we started inside the lab namespace keep it alive -- end them by pid
        pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for link in (names.host_veth, names.bridge):
        if _link_exists(link):
            _run(["ip", "link", "del", "dev", link], check=False)
    for ns in (names.ctr2, names.ctr1):
        if ns in present:
            _run(["ip", "netns", "del", ns], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_link_exists(ln) for ln in names.root_links) and not ({names.ctr1, names.ctr2} & set(netns_names())):
            return
        time.sleep(0.05)


def kept_labs() -> list[str]:
    """Tags of the labs left up on purpose (:meth:`Lab.keep`, ``perfnet lab up``)."""
    if not STATE_DIR.is_dir():
        return []
    return sorted(p.stem for p in STATE_DIR.glob("*.json") if (_read_state(p.stem) or {}).get("kept"))


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Remove leftovers of crashed labs; return what was removed.

    Only objects matching this module's naming pattern (``<prefix>br<tag>``,
    ``<prefix>v<tag>``, ``<prefix>c1-<tag>``, ``<prefix>c2-<tag>``) are
    considered, and only if they are provably ours -- an owner record in
    ``/run/perfnet-lab`` or the ``perfnet-lab <tag>`` link alias -- and the
    owning process is no longer alive.  Labs of running processes are kept.
    """
    p = re.escape(prefix)
    tag_pat = r"([0-9a-z]{1,10})"
    ns_re = re.compile(rf"^{p}c[12]-{tag_pat}$")
    link_re = re.compile(rf"^{p}(?:br|v){tag_pat}$")
    candidates: dict[str, list[str]] = {}
    marked: set[str] = set()
    for ns in netns_names():
        m = ns_re.match(ns)
        if m:
            candidates.setdefault(m.group(1), []).append(f"netns:{ns}")
            if any(str(ln.get("ifalias", "")) == f"{ALIAS_PREFIX} {m.group(1)}" for ln in ip_links(ns)):
                marked.add(m.group(1))
    for link in ip_links(None):
        name = str(link.get("ifname", ""))
        m = link_re.match(name)
        if m:
            candidates.setdefault(m.group(1), []).append(f"link:{name}")
            if str(link.get("ifalias", "")) == f"{ALIAS_PREFIX} {m.group(1)}":
                marked.add(m.group(1))
    if STATE_DIR.is_dir():
        for path in STATE_DIR.glob("*.json"):
            candidates.setdefault(path.stem, [])
    removed: list[str] = []
    with _state_lock(), _signals_deferred():
        for tag, objs in sorted(candidates.items()):
            if not _TAG_RE.match(tag):
                continue
            state = _read_state(tag)
            if state is not None and _owner_alive(state):
                continue
            if state is not None and state.get("prefix", PREFIX) != prefix:
                continue
            if state is None and tag not in marked:
                continue  # matches the pattern but is not provably ours
            _destroy(LabNames.for_tag(tag, prefix))
            removed.extend(objs)
            names = LabNames.for_tag(tag, prefix)
            still = [ns for ns in (names.ctr1, names.ctr2) if ns in set(netns_names())]
            still += [ln for ln in names.root_links if _link_exists(ln)]
            if not still:
                with contextlib.suppress(OSError):
                    (STATE_DIR / f"{tag}.json").unlink()
    return removed


def require_root_and_tools() -> str | None:
    """A human-readable reason why labs cannot run here, or ``None`` if they can."""
    if os.geteuid() != 0:
        return "perfnet lab needs root (network namespaces, bridges, tracepoints)"
    missing = [tool for tool in ("ip", "perf", "ping", "sysctl") if shutil.which(tool) is None]
    if missing:
        return f"perfnet lab needs these tools on PATH: {', '.join(missing)}"
    if not Path("/proc/sys/net/ipv6").is_dir():
        return "perfnet lab expects /proc/sys/net/ipv6 (to disable IPv6 on lab links)"
    return None
