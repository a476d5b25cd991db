"""Network namespaces of this host: found, entered, listed.  The code here runs ``ip`` and
``nsenter`` and reads ``/proc`` and ``/run/netns``; what it reads is turned into a topology by
:mod:`perfnet.topology.snapshot`."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

NETNS_RUN_DIR: Final = Path("/run/netns")
"""Where ``ip netns`` keeps the bind mounts that name namespaces."""
_TIMEOUT: Final = 10.0


@dataclass(frozen=True)
class Namespace:
    """A network namespace of this host: its label (the ``ip netns`` name, or ``netns:<inode>``),
    the inode of its nsfs file, and whether ``ip netns`` names it."""

    name: str
    inode: int
    named: bool


@dataclass(frozen=True)
class Found:
    """A namespace found on the host and the files that lead into it (tried in order)."""

    netns: Namespace
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class Reading:
    """What ``ip`` printed in one namespace: its links, and the names of its nsids."""

    links: list[dict[str, Any]]
    nsid_names: dict[int, str]
    forwarding: bool | None


def discover(home_inode: int) -> tuple[list[Found], dict[str, str]]:
    """Every namespace visible from here: the named ones, the home one, those of processes.

    Args:
        home_inode: nsfs inode of the caller's own namespace.

    Returns:
        The namespaces, one entry per inode, and the label of each ``ip netns`` name (two
        names may be bound to one namespace; it is labelled by the first).
    """
    places: dict[int, list[Path]] = {}
    labels: dict[int, Namespace] = {}
    labels_by_name: dict[str, str] = {}
    for name in netns_names():
        path = NETNS_RUN_DIR / name
        try:
            inode = path.stat().st_ino
        except OSError:
            continue  # removed since it was listed
        labels.setdefault(inode, Namespace(name, inode, named=True))
        labels_by_name[name] = labels[inode].name
        places.setdefault(inode, []).append(path)
    labels.setdefault(home_inode, Namespace(f"netns:{home_inode}", home_inode, named=False))
    places.setdefault(home_inode, [])
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        path = proc / "ns" / "net"
        try:
            inode = path.stat().st_ino
        except OSError:
            continue  # exited, a kernel thread, or not ours to inspect
        labels.setdefault(inode, Namespace(f"netns:{inode}", inode, named=False))
        places.setdefault(inode, []).append(path)
    return [Found(labels[inode], tuple(paths)) for inode, paths in places.items()], labels_by_name


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


def read(place: Found, home_inode: int) -> Reading | None:
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


def _read_in(netns_fd: int | None) -> Reading | None:
    """Run the ``ip`` listings in the namespace of ``netns_fd`` (None: our own)."""
    links = _ip_json(["-d", "link", "show"], netns_fd)
    if links is None:
        return None
    ids = _ip_json(["netns", "list-id"], netns_fd) or []
    return Reading(
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
