"""Kernel text symbols, to name code addresses such as ``kfree_skb``'s ``location``.

perf trace's own printer shows ``location: 0xffffffff8207026b`` where other printers show
``ping_rcv+0xab``.  A live capture saves the kernel's text symbols beside its raw output
(``<raw>.kallsyms.gz``); reading the capture later names every address from that copy, on any
machine.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import IO, NamedTuple

import numpy as np
import numpy.typing as npt

from perfnet.errors import PerfnetError


class Kallsyms(NamedTuple):
    """Kernel text symbols: sorted start addresses and their names (unpacks as a pair).

    Read a copy saved beside a capture (``<raw>.kallsyms.gz``) with :func:`load_kallsyms`, to
    name addresses such as ``kfree_skb``'s ``location`` offline.
    """

    addresses: npt.NDArray[np.uint64]
    names: tuple[str, ...]

    def symbolize(self, addr: int) -> str | None:
        """``sym+0xoff`` of the symbol an address falls in, None below the first symbol.

        Symbol sizes are not recorded, so an address past the end of the last function is
        attributed to it.
        """
        i = int(np.searchsorted(self.addresses, np.uint64(addr), side="right")) - 1
        if i < 0:
            return None
        return f"{self.names[i]}+{addr - int(self.addresses[i]):#x}"


def load_kallsyms(path: str | Path) -> Kallsyms:
    """Read kernel symbols in ``/proc/kallsyms`` format (gzip-compressed if the name ends ``.gz``).

    Lines are ``address type name [module]``; only text symbols (type ``t``/``T``) are kept,
    module names dropped.

    Raises:
        PerfnetError: the file cannot be read.
    """
    path = Path(path)
    opener: Callable[..., IO[str]] = gzip.open if path.suffix == ".gz" else open  # type: ignore[assignment]
    addresses: list[int] = []
    names: list[str] = []
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
            for line in lines:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("t", "T"):
                    addresses.append(int(parts[0], 16))
                    names.append(parts[2])
    except (OSError, ValueError) as exc:
        raise PerfnetError(f"cannot read kernel symbols from {path}: {exc}") from exc
    array = np.array(addresses, dtype=np.uint64)
    order = np.argsort(array, kind="stable")
    return Kallsyms(array[order], tuple(names[i] for i in order))


def save_kallsyms(symbols: Kallsyms, dest: Path) -> None:
    """Write ``symbols`` to ``dest`` (gzip) in ``/proc/kallsyms`` format, for :func:`load_kallsyms`."""
    with gzip.open(dest, "wt", encoding="utf-8", compresslevel=6) as out:
        out.writelines(f"{int(a):016x} T {name}\n" for a, name in zip(symbols.addresses, symbols.names, strict=True))
