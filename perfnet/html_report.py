"""A self-contained HTML report of one capture: tables and figures in one file to mail a colleague.

Figures are drawn with :mod:`perfnet.plot` on figures made without pyplot (so no display is
needed and a notebook's backend is left alone) and embedded as base64 PNG, so the file needs
nothing beside it.  Tables and figures name devices alike: paths, hops, stages and drops
qualified by namespace (``eth0@ctr1``, :func:`perfnet.analysis.with_namespaces`).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from perfnet import analysis, plot
from perfnet.display import to_html
from perfnet.trace import Trace

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { padding: 0.2em 0.8em; text-align: right; border-bottom: 1px solid #ddd; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""

DPI = 110
"""Resolution of the report's PNG figures, in dots per inch."""


def _draw(draw: Callable[[Axes], Axes], size: tuple[float, float] = (9, 4.5)) -> Figure:
    """A figure of ``size`` inches with one Axes drawn by ``draw``."""
    fig = Figure(figsize=size, layout="constrained")  # no pyplot: no display, no global state
    draw(fig.add_subplot())
    return fig


def figures(trace: Trace) -> dict[str, Figure]:
    """The report's figures, keyed by the :mod:`perfnet.plot` function that drew each, in the
    report's order; none for a capture without packets.

    The stage boxes get the height :func:`perfnet.plot.stage_latency_size` gives them, so that
    their labels never overlap however many stages there are.
    """
    if trace.packets.empty:
        return {}
    n_stages = len(analysis.stage_latency(analysis.with_namespaces(trace).stages))
    return {
        "path_frequency": _draw(lambda ax: plot.path_frequency(trace, ax=ax)),
        "hop_latency": _draw(lambda ax: plot.hop_latency(trace, ax=ax)),
        "latency_over_time": _draw(lambda ax: plot.latency_over_time(trace, ax=ax)),
        "timeline": _draw(lambda ax: plot.timeline(trace, ax=ax), size=(9, 4)),
        "stage_latency": _draw(lambda ax: plot.stage_latency(trace, ax=ax), size=plot.stage_latency_size(n_stages)),
    }


def _img(fig: Figure) -> str:
    """``fig`` as an ``<img>`` with an embedded PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return f'<img alt="" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def render(trace: Trace) -> str:
    """The HTML text of the report for ``trace``."""
    name = html.escape(Path(trace.source).name if trace.source else "(stream)")
    named = analysis.with_namespaces(trace)
    sections = [
        f"<h1>perfnet report: {name}</h1>",
        f"<p>Format <code>{trace.format}</code>, {len(trace.events)} events, {len(trace.packets)} packets, "
        f"{trace.lost} events lost, {len(trace.errors)} unparsed lines.</p>",
    ]
    if trace.packets.empty:
        sections.append("<p>No packets: the capture has no events on network devices.</p>")
    else:
        drawn = {key: _img(fig) for key, fig in figures(trace).items()}
        sections += [
            "<h2>Paths</h2>",
            to_html(analysis.path_table(named.packets)),
            drawn["path_frequency"],
            "<h2>Hop latency</h2>",
            to_html(analysis.hop_latency(named.hops)),
            drawn["hop_latency"],
            drawn["latency_over_time"],
            "<h2>Slowest packet</h2>",
            to_html(analysis.slowest(named.packets, n=5)),
            drawn["timeline"],
            "<h2>Stages within devices</h2>",
            to_html(analysis.stage_latency(named.stages)),
            drawn["stage_latency"],
        ]
    if not named.drops.empty:
        sections += ["<h2>Drops</h2>", to_html(named.drops)]
    body = "\n".join(sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>perfnet: {name}</title>'
        f"<style>{_STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def write(trace: Trace, path: str | Path) -> Path:
    """Write the report for ``trace`` to ``path`` and return the path."""
    path = Path(path)
    path.write_text(render(trace), encoding="utf-8")
    return path
