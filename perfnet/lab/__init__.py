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

from perfnet.lab.lab import Lab
from perfnet.lab.plan import HTTP_FILE, HTTP_PORT, PREFIX, STATE_DIR, HttpServer, LabError, LabNames
from perfnet.lab.registry import cleanup_stale, kept_labs, require_root_and_tools

__all__ = [
    "HTTP_FILE",
    "HTTP_PORT",
    "PREFIX",
    "STATE_DIR",
    "HttpServer",
    "Lab",
    "LabError",
    "LabNames",
    "cleanup_stale",
    "kept_labs",
    "require_root_and_tools",
]
