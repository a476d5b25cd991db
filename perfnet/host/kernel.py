"""This kernel's own tables: its text symbols, read where perf runs."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from perfnet.errors import PerfnetError
from perfnet.kallsyms import Kallsyms, load_kallsyms

PROC_KALLSYMS: Final = Path("/proc/kallsyms")


def host_symbols() -> Kallsyms | None:
    """This kernel's text symbols, or None where their addresses are hidden (kptr_restrict, no
    privileges) or ``/proc/kallsyms`` cannot be read."""
    try:
        symbols = load_kallsyms(PROC_KALLSYMS)
    except PerfnetError:
        return None
    return symbols if len(symbols.addresses) and symbols.addresses[-1] != 0 else None
