"""The lab registry: owner records in ``/run/perfnet-lab``, under a lock, so that labs of other
processes are never touched and labs left behind by dead ones are cleaned up."""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import psutil

from perfnet.host.commands import ipv6_available, link_exists, run
from perfnet.host.netns import ip_links, netns_names
from perfnet.lab.plan import ALIAS_PREFIX, OCTET_MAX, OCTET_MIN, PREFIX, STATE_DIR, TAG_RE, LabNames


def proc_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch): with the pid, it names one
    process, whatever reuses the pid later."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def owner_alive(state: dict[str, Any]) -> bool:
    """Whether the process that built a lab still runs (or the lab was kept on purpose).

    The owner is its pid and its start time, so a reused pid is not mistaken for it.  A record
    whose start time is in another form (clock ticks, as perfnet wrote before) is judged by
    its pid alone: a lab is never removed unless its owner is provably gone.
    """
    if state.get("kept"):
        return True  # left up on purpose (Lab.keep); only Lab.attach(tag).down() removes it
    pid = state.get("pid")
    if not isinstance(pid, int):
        return False
    started, recorded = proc_start_time(pid), state.get("pid_start")
    if started is None:
        return False
    return abs(started - recorded) < 0.01 if isinstance(recorded, float) else True


def read_state(tag: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((STATE_DIR / f"{tag}.json").read_text())
    except (OSError, ValueError):
        return None
    return data


@contextlib.contextmanager
def state_lock() -> Iterator[None]:
    STATE_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    with open(STATE_DIR / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold back SIGINT/SIGTERM (delivered afterwards) while cleaning up."""
    sigs = {signal.SIGINT, signal.SIGTERM}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, sigs)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def octets_in_use() -> set[int]:
    """Second octets X of 10.X.0.0/16 used in the root netns or by live labs."""
    used: set[int] = set()
    nets: list[str] = []
    proc = run(["ip", "-j", "-4", "addr", "show"], check=False)
    if proc.returncode == 0 and proc.stdout.strip():
        for link in json.loads(proc.stdout):
            for ai in link.get("addr_info", []):
                nets.append(f"{ai['local']}/{ai.get('prefixlen', 32)}")
    proc = run(["ip", "-j", "-4", "route", "show", "table", "all"], check=False)
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
            state = read_state(path.stem)
            if state and owner_alive(state) and isinstance(state.get("octet"), int):
                used.add(state["octet"])
    return used


def tag_in_use(names: LabNames) -> bool:
    state = read_state(names.tag)
    return (
        (state is not None and owner_alive(state))
        or any(link_exists(n) for n in names.root_links)
        or bool({names.ctr1, names.ctr2} & set(netns_names()))
    )


def destroy(names: LabNames, timeout: float = 10.0) -> None:
    """Remove all objects named by ``names``; missing objects are fine."""
    present = set(netns_names())
    for ns in (names.ctr2, names.ctr1):
        if ns not in present:
            continue
        # processes we started inside the lab namespace keep it alive -- end them by pid
        pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for link in (names.host_veth, names.bridge):
        if link_exists(link):
            run(["ip", "link", "del", "dev", link], check=False)
    for ns in (names.ctr2, names.ctr1):
        if ns in present:
            run(["ip", "netns", "del", ns], check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(link_exists(ln) for ln in names.root_links) and not ({names.ctr1, names.ctr2} & set(netns_names())):
            return
        time.sleep(0.05)


def kept_labs() -> list[str]:
    """Tags of the labs left up on purpose (:meth:`Lab.keep`, ``perfnet lab up``)."""
    if not STATE_DIR.is_dir():
        return []
    return sorted(p.stem for p in STATE_DIR.glob("*.json") if (read_state(p.stem) or {}).get("kept"))


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
    with state_lock(), signals_deferred():
        for tag, objs in sorted(candidates.items()):
            if not TAG_RE.match(tag):
                continue
            state = read_state(tag)
            if state is not None and owner_alive(state):
                continue
            if state is not None and state.get("prefix", PREFIX) != prefix:
                continue
            if state is None and tag not in marked:
                continue  # matches the pattern but is not provably ours
            destroy(LabNames.for_tag(tag, prefix))
            removed.extend(objs)
            names = LabNames.for_tag(tag, prefix)
            still = [ns for ns in (names.ctr1, names.ctr2) if ns in set(netns_names())]
            still += [ln for ln in names.root_links if link_exists(ln)]
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
    if not ipv6_available():
        return "perfnet lab expects /proc/sys/net/ipv6 (to disable IPv6 on lab links)"
    return None
