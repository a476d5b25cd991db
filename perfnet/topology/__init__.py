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

from perfnet.topology.labels import device_label, label_path, label_paths
from perfnet.topology.model import (
    COLUMNS,
    PAIR_KINDS,
    SCHEMA_VERSION,
    UNKNOWN_DEVICE,
    UNKNOWN_NETNS,
    Link,
    Netns,
    Topology,
)
from perfnet.topology.snapshot import snapshot

__all__ = [
    "COLUMNS",
    "PAIR_KINDS",
    "SCHEMA_VERSION",
    "UNKNOWN_DEVICE",
    "UNKNOWN_NETNS",
    "Link",
    "Netns",
    "Topology",
    "device_label",
    "label_path",
    "label_paths",
    "snapshot",
]
