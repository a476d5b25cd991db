"""Benchmark many captures: ``perfnet.dask`` on a local cluster against a serial loop.

The captures are the 8 largest path fixtures (``tests/fixtures/paths``: real perf trace and
perf script recordings of the mixed and UDP workloads, 13,000 to 17,000 events each), copied
``--copies`` times into a temporary folder so that each copy is a capture of its own; or the
files a ``--captures`` glob matches.  This script then times, in one run:

* serial, frames: a loop of ``perfnet.read`` and its four frames, each concatenated over the
  captures (with a ``capture`` column), all in this process;
* dask, frames: ``dask.compute`` of the same four frames of ``perfnet.dask.read_traces``, on a
  ``distributed.LocalCluster`` of ``--workers`` single-threaded worker processes, brought back
  to this process;
* serial, hop latency: the loop, hops only, and ``analysis.hop_latency`` of their concatenation;
* dask, hop latency: ``Traces.hop_latency()`` (only the summary comes back; checked equal).

and prints each one's wall time (the fastest of ``--repeat`` runs) and, for dask, its time as a
multiple of the serial one's (below 1.0x: faster).  The cluster is started, and its workers
import perfnet, before the clock starts.  Ratios, not seconds, are the result: the machine is
shared and noisy, and here the workers share its cores with this process and the scheduler.
Usage::

    python benchmarks/bench_dask.py [--captures GLOB] [--copies N] [--workers N] [--repeat N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dask
import pandas as pd
from distributed import Client, LocalCluster

import perfnet
import perfnet.dask
from perfnet import analysis

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "paths"


def best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` runs (seconds) and what the last run returned."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def serial_frames(captures: list[str]) -> dict[str, pd.DataFrame]:
    """Every capture read in turn, each frame concatenated over the captures."""
    frames: dict[str, list[pd.DataFrame]] = {name: [] for name in perfnet.dask.FRAMES}
    for path in captures:
        trace = perfnet.read(path)
        for name in perfnet.dask.FRAMES:
            frames[name].append(getattr(trace, name).assign(capture=path))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in frames.items()}


def serial_hop_latency(captures: list[str]) -> pd.DataFrame:
    """The hop summary of every capture's hops, read in turn and concatenated."""
    return analysis.hop_latency(pd.concat([perfnet.read(path).hops for path in captures], ignore_index=True))


def dask_frames(captures: list[str]) -> dict[str, pd.DataFrame]:
    """The four frames of :func:`perfnet.dask.read_traces`, computed together."""
    traces = perfnet.dask.read_traces(captures)
    computed = dask.compute(*(getattr(traces, name) for name in perfnet.dask.FRAMES))
    return dict(zip(perfnet.dask.FRAMES, computed, strict=True))


def make_captures(folder: Path, copies: int) -> list[str]:
    """``copies`` copies of the 8 largest path fixtures in ``folder``, sorted."""
    largest = sorted(FIXTURES.glob("*.txt.gz"), key=lambda path: path.stat().st_size)[-8:]
    for copy in range(copies):
        for path in largest:
            shutil.copyfile(path, folder / f"{copy}-{path.name}")
    return sorted(str(path) for path in folder.iterdir())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", help="a glob of the captures to read (default: copies of path fixtures)")
    parser.add_argument("--copies", type=int, default=1, help="copies of the 8 fixtures, without --captures")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perfnet-bench-dask-") as folder:
        if args.captures:
            captures = list(perfnet.dask.read_traces(args.captures).captures)
        else:
            captures = make_captures(Path(folder), args.copies)
        start = time.perf_counter()
        with (
            LocalCluster(
                n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster),
        ):
            perfnet.dask.read_traces(captures[: args.workers]).hop_latency()  # the workers import perfnet
            started = time.perf_counter() - start
            frames_s, frames = best_of(args.repeat, lambda: serial_frames(captures))
            dask_frames_s, computed = best_of(args.repeat, lambda: dask_frames(captures))
            hops_s, expected = best_of(args.repeat, lambda: serial_hop_latency(captures))
            dask_hops_s, summary = best_of(args.repeat, lambda: perfnet.dask.read_traces(captures).hop_latency())
    events = len(frames["events"])
    workers = f"dask, {args.workers} workers"
    rows = [
        ("serial: read + concat 4 frames", frames_s, frames_s),
        (f"{workers}: 4 frames to client", dask_frames_s, frames_s),
        ("serial: hop_latency", hops_s, hops_s),
        (f"{workers}: hop_latency", dask_hops_s, hops_s),
    ]
    print(f"{len(captures)} captures, {events} events; cluster start and warm-up {started:.2f} s")
    print(f"{'what':<36} {'seconds':>8} {'events/s':>10} {'time vs serial':>15}")
    for name, seconds, serial in rows:
        print(f"{name:<36} {seconds:>8.2f} {events / seconds:>10.0f} {seconds / serial:>14.2f}x")
    rows_equal = all(len(frames[name]) == len(computed[name]) for name in perfnet.dask.FRAMES)
    print(f"same rows per frame: {rows_equal}; hop_latency equal: {summary.equals(expected)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
