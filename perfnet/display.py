"""Frames for people: nanosecond columns shown in microseconds, shares in percent.

The frames keep integer nanoseconds (exact, and what computations want); the CLI, Jupyter
view and HTML report show microseconds with the unit in the column name.
"""

from __future__ import annotations

import pandas as pd


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with ``*_ns`` columns in µs (``p50_ns`` -> ``p50 (µs)``) and
    ``share`` in percent (``share (%)``)."""
    out = frame.copy()
    renames = {}
    for column in frame.columns:
        if column.endswith("_ns"):
            out[column] = out[column].astype("float64") / 1000
            renames[column] = column.removesuffix("_ns").replace("_", " ") + " (µs)"
        elif column == "share":
            out[column] = out[column] * 100
            renames[column] = "share (%)"
    return out.rename(columns=renames)


def to_html(frame: pd.DataFrame) -> str:
    """An HTML table of the readable frame, one decimal for floats."""
    return readable(frame).to_html(index=False, float_format="{:.1f}".format, border=0)
