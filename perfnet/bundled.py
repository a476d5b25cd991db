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
    """A real capture bundled with perfnet: ``perf trace -e 'net:*' ping`` through a bridge
    and a veth pair into a network namespace (see ``tests/fixtures/README.md``)."""
    return bundled("examples/ping-bridge.txt", "tests/fixtures/ping-bridge.txt")
