"""Traffic inside a lab: commands in its namespaces, pings, an HTTP server and client, counters."""

from __future__ import annotations

import contextlib
import ipaddress
import select
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from perfnet.errors import UsageError
from perfnet.host.commands import end, ns_argv, run_in, spawn_in
from perfnet.host.netns import packet_counters
from perfnet.lab.plan import HTTP_FILE, HTTP_PORT, HttpServer, LabError, Plan


class Workloads(Plan):
    """What runs inside a lab (mixed into :class:`~perfnet.lab.Lab`); it tracks the servers
    and temporary directories it started, which the lab's ``down`` ends."""

    _servers: list[subprocess.Popen[bytes]]
    _tmpdirs: list[tempfile.TemporaryDirectory[str]]

    def exec_argv(self, netns: str | None, argv: Sequence[str]) -> list[str]:
        """``argv`` wrapped in ``ip netns exec NS`` (unchanged for the root netns)."""
        self._own(netns)
        return ns_argv(netns, argv)

    def _own(self, netns: str | None) -> None:
        """Refuse a namespace that is not this lab's (None: the root namespace)."""
        if netns is not None and netns not in (self.ctr1, self.ctr2):
            raise UsageError(f"not a namespace of this lab: {netns!r}")

    def run(self, netns: str | None, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` in ``netns``.

        Defaults: ``check=True, capture_output=True, text=True, timeout=60``.
        """
        check = bool(kw.pop("check", True))
        kw.setdefault("text", True)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 60)
        self._own(netns)
        return run_in(netns, argv, check=check, **kw)

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
        argv = [sys.executable, "-u", "-m", "http.server", "--bind", addr, "--directory", tmp.name, str(port)]
        self._own(netns)
        proc = spawn_in(netns, argv)
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
        end(proc)
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
