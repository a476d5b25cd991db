#!/usr/bin/env python3
"""Capture the example perfnet bundles (``perfnet report --example``), on a throwaway lab (root).

The lab routes from perfnet's namespace through a bridge and a veth into one container and on
into a second one; both containers name their device ``eth0``.  One traced command runs, from
perfnet's namespace:

* 2 pings to the second container (ICMP echo and reply through both containers);
* 2 HTTP requests to a server in the second container, one TCP connection each (the server is
  a child of the traced command, so its replies are traced too: no system-wide capture, no
  unrelated host traffic);
* 1 UDP datagram to a port nobody listens on in the second container: dropped there, and
  ``skb:kfree_skb`` names the reason (``NO_SOCKET``).

Events: ``net:*``, the ``skb:*`` frees and perfnet's skb free marker (``kmem:kmem_cache_free``
filtered to the skb caches), which ends the TCP packets the kernel frees without an ``skb:*``
event.

Written to ``--outdir`` (default ``tests/fixtures/example``): ``lab-example.txt`` (perf trace's
text as printed), the ``kfree_skb`` format beside it (``.formats``: the drop reason by name),
the kernel symbols the drop locations fall in (``.kallsyms.gz``, only those), the lab's
topology (``.topology.json``) and ``README.md`` with the command, perf and kernel versions.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import platform
import re
import shutil
import sys
from pathlib import Path

import perfnet
from perfnet.host.kernel import PROC_KALLSYMS
from perfnet.host.perf import SKB_FREE_EVENT, perf_binary, perf_version, skb_free_marker
from perfnet.kallsyms import load_kallsyms
from perfnet.lab import Lab, require_root_and_tools

HERE = Path(__file__).resolve().parent
TRAFFIC = HERE / "lab_traffic.py"
NAME = "lab-example.txt"
EVENTS = ("net:*", "skb:kfree_skb", "skb:consume_skb", SKB_FREE_EVENT)  # the last filtered to skbs
PORT = 8080
CLOSED_PORT = 9  # discard: nobody listens in the lab

DRIVER = """
import socket, subprocess, sys, time
ns, addr, traffic, port, closed = sys.argv[1:6]
server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, traffic, "rr-server", addr, port, "2", "1200"],
                          stdout=subprocess.PIPE, text=True)
assert server.stdout.readline().strip() == "ready"
subprocess.run(["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", addr], check=True)
subprocess.run([sys.executable, traffic, "rr-client", addr, port, "2", "1"], check=True)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    sock.sendto(b"nobody listens here", (addr, int(closed)))
    time.sleep(0.3)
assert server.wait(10) == 0
"""


def _used_symbols(raw: Path, out: Path) -> int:
    """Write the kernel symbols the capture's drop locations fall in (and the next ones, which
    bound them) in ``/proc/kallsyms`` format, gzipped; how many."""
    symbols = load_kallsyms(PROC_KALLSYMS)
    addresses = symbols.addresses
    wanted: set[int] = set()
    for location in re.findall(r"kfree_skb\(.*?location: (0x[0-9a-f]+)", raw.read_text()):  # as perf printed
        i = int(addresses.searchsorted(int(location, 16), side="right")) - 1
        wanted |= {i, i + 1}
    with gzip.open(out, "wt", encoding="utf-8") as dest:
        for i in sorted(i for i in wanted if 0 <= i < len(addresses)):
            dest.write(f"{int(addresses[i]):016x} T {symbols.names[i]}\n")
    return len(wanted)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--outdir", type=Path, default=HERE.parent / "tests" / "fixtures" / "example")
    args = parser.parse_args(argv)
    reason = require_root_and_tools()
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    marker = skb_free_marker()
    if marker is None:
        print("this kernel has no skb slab caches to mark frees with", file=sys.stderr)
        return 2
    args.outdir.mkdir(parents=True, exist_ok=True)
    raw = args.outdir / NAME
    with Lab() as lab:
        command = [sys.executable, "-c", DRIVER, lab.ctr2, lab.ctr2_addr, str(TRAFFIC), str(PORT), str(CLOSED_PORT)]
        trace = perfnet.capture(command, events=EVENTS, filter=marker[1], raw_output=raw)
        names = lab.names
    if trace.partial is not None:
        print(f"capture cut short: {trace.partial}", file=sys.stderr)
        return 1
    # keep what the example needs: the drop reason's table, the drop locations' symbols
    formats = Path(f"{raw}.formats")
    for sub in formats.iterdir():
        for event in sub.iterdir():
            if f"{sub.name}:{event.name}" != "skb:kfree_skb":
                shutil.rmtree(event)
        if not any(sub.iterdir()):
            sub.rmdir()
    kallsyms = Path(f"{raw}.kallsyms.gz")
    kept = _used_symbols(raw, kallsyms)
    stats = trace.capture_stats
    again = perfnet.read(raw)
    facts = [
        "# The bundled example (`perfnet report --example`)",
        "",
        "Made by `scripts/capture_example.py` (run as root) on a throwaway lab; do not edit, rerun it.",
        "",
        f"* perf: `perf version {perf_version(perf_binary())}`",
        f"* kernel: `{platform.release()}` ({platform.machine()})",
        f"* captured: {datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()}",
        f"* lab: `{names.bridge}` > `{names.host_veth}` > `{names.ctr1}:eth0`, routed out of `{names.ctr1}:eth1`"
        f" to `{names.ctr2}:eth0` (two namespaces, two devices named `eth0`)",
        f"* perf command: `{' '.join(stats.argv[: stats.argv.index('--')])} -- <driver>`",
        "* driver (the traced command, from perfnet's namespace): 2 pings to the second container, 2 HTTP"
        " requests to a server in it (one TCP connection each; the server is the driver's child), 1 UDP"
        f" datagram to its closed port {CLOSED_PORT} (dropped: `NO_SOCKET`)",
        f"* {len(again.events)} events, {len(again.packets)} packets, {len(again.drops)} drop rows;"
        f" lost: {again.lost}; unparsed lines: {len(again.errors)}",
        f"* beside it: `{NAME}.formats/` (kfree_skb's format only), `{NAME}.kallsyms.gz` ({kept} symbols:"
        f" those the drop locations fall in and the next ones), `{NAME}.topology.json`",
        "",
        "Interface counters against events (from the capture's stats):",
        "",
        "```",
        stats.counters.to_string(index=False),
        "```",
    ]
    (args.outdir / "README.md").write_text("\n".join(facts) + "\n", encoding="utf-8")
    print((args.outdir / "README.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
