"""Frames for people: nanosecond columns shown in microseconds, shares in percent, skb
addresses in hex, ethertypes by name.

The frames keep integer nanoseconds, addresses and ethertypes as numbers (exact, and what
computations want); the CLI, Jupyter view and HTML report show them as people read them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

import pandas as pd

from perfnet.errors import UsageError

ETHERTYPES: Final[Mapping[str, int]] = {
    "ipv4": 0x0800,
    "arp": 0x0806,
    "vlan": 0x8100,
    "ipv6": 0x86DD,
    "qinq": 0x88A8,
    "mpls": 0x8847,
    "lldp": 0x88CC,
}
"""Ethertypes by name: the ``protocol`` the ``net:*`` events carry (nothing above it)."""

_ETHERTYPE_NAMES: Final = {number: name for name, number in ETHERTYPES.items()}


def protocol_name(protocol: object) -> str:
    """An ethertype as people say it: ``ipv4``, or ``0x88b5`` for one without a name here; an
    empty string where it is missing."""
    if protocol is None or protocol is pd.NA or protocol != protocol:
        return ""
    number = int(protocol)  # type: ignore[call-overload]
    return _ETHERTYPE_NAMES.get(number, f"{number:#06x}")


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``*_ns`` columns in µs (``p50_ns`` -> ``p50 (µs)``),
    ``share`` in percent (``share (%)``), ``skbaddr`` in hex and ``protocol`` by name."""
    out = frame.copy()
    renames = {}
    for column in frame.columns:
        if column == "skbaddr":
            out[column] = [f"{int(v):#x}" if pd.notna(v) else "" for v in frame[column]]
        elif column == "protocol":
            out[column] = [protocol_name(v) for v in frame[column]]
        elif column.endswith("_ns"):
            out[column] = out[column].astype("float64") / 1000
            renames[column] = column.removesuffix("_ns").replace("_", " ") + " (µs)"
        elif column == "share":
            out[column] = out[column] * 100
            renames[column] = "share (%)"
    return out.rename(columns=renames)


def to_html(frame: pd.DataFrame) -> str:
    """An HTML table of the readable frame, one decimal for floats."""
    return readable(frame).to_html(index=False, float_format="{:.1f}".format, border=0)


def ethertypes(given: str | int | Iterable[str | int]) -> list[int]:
    """Ethertype numbers of names (``ipv4``, see :data:`ETHERTYPES`) or numbers (``2048``,
    ``"0x0800"``).

    Raises:
        UsageError: a name that is neither.
    """
    numbers = []
    for one in [given] if isinstance(given, str | int) else given:
        if isinstance(one, int):
            numbers.append(one)
        elif one.lower() in ETHERTYPES:
            numbers.append(ETHERTYPES[one.lower()])
        else:
            try:
                numbers.append(int(one, 0))
            except ValueError:
                raise UsageError(
                    f"unknown protocol {one!r}: give an ethertype number or one of {sorted(ETHERTYPES)}"
                ) from None
    return numbers
