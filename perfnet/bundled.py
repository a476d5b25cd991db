"""Files shipped inside the wheel: the tracepoint schemas and an example capture.

In a wheel they live inside the package (``perfnet/grammars``, ``perfnet/examples``); in a source
checkout or an editable install they are read from where the repository keeps them.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_CHECKOUT = _PACKAGE.parent


def bundled(packaged: str, in_checkout: str) -> Path:
    """The path of a bundled file or directory, installed or in a checkout."""
    inside = _PACKAGE / packaged
    return inside if inside.exists() else _CHECKOUT / in_checkout


def grammars_dir() -> Path:
    """The directory of the bundled tracepoint schema files."""
    return bundled("grammars", "grammars")


def example_capture() -> Path:
    """A real capture bundled with perfnet, with the files a live capture keeps beside it (the
    ``kfree_skb`` format, the kernel symbols of its drop locations, the lab's topology): pings,
    two HTTP connections and a UDP datagram dropped at a closed port, routed from perfnet's
    namespace through a bridge, a veth and one container into a second one, both containers
    naming their device ``eth0`` (see ``tests/fixtures/example/README.md``)."""
    return bundled("examples/lab-example.txt", "tests/fixtures/example/lab-example.txt")
