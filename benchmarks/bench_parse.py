"""Benchmark parsing: ``perfnet.read`` against ``perf script`` on the same real recording.

A large capture is made on the lab (``scripts/capture_fixtures.py --big SECONDS``, as root):
one flood of traffic recorded concurrently by ``perf trace`` (text) and ``perf record``
(``big.data``), whose ``perf script`` text is saved too.  This script then times, in one run:

* ``perf script -i big.data > /dev/null``: perf decoding its own recording to text;
* ``perfnet.read(big-script.txt).events``: perfnet parsing that text into the events frame;
* ``perfnet.read(big-trace.txt).events``: the same for perf trace's own format;
* ``perfnet.iter_records(big-trace.txt)``: streaming typed records, no frame.

and prints events per second and each run's time as a multiple of ``perf script``'s (below
1.0x: faster than perf prints).  Each read is a first read of its file in this process.  Ratios, not seconds,
are the result: the machine is shared and noisy.  Usage::

    python benchmarks/bench_parse.py [--dir DIR] [--seconds S] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import perfnet

ROOT = Path(__file__).resolve().parent.parent


def best_of(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    """The fastest of ``repeat`` runs (seconds) and the event count the run reports."""
    best, count = float("inf"), 0
    for _ in range(repeat):
        start = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - start)
    return best, count


def perf_script(data: Path) -> int:
    out = subprocess.run(
        ["perf", "script", "-i", str(data)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=True
    )
    return out.stdout.count(b"\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/perfnet-big"), help="where the big capture is (or goes)")
    parser.add_argument("--seconds", type=int, default=5, help="flood duration if the capture must be made")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not (args.dir / "big.data").exists():
        if os.geteuid() != 0:
            sys.exit(f"no capture in {args.dir}: run as root to make one (scripts/capture_fixtures.py --big)")
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "capture_fixtures.py"),
                "--big",
                str(args.seconds),
                "--outdir",
                str(args.dir),
            ],
            check=True,
        )
    script_txt, trace_txt = args.dir / "big-script.txt", args.dir / "big-trace.txt"
    doubled = args.dir / "big-script-x2.txt"  # large enough to be read by several threads
    if not doubled.exists():
        doubled.write_bytes(script_txt.read_bytes() * 2)
    # first, while this process is small: a child's peak resident size counts its parent's
    # before exec, so the memory figures come from children of a parent that read nothing yet
    footprints = [f"{text.name}: {memory(text, args.repeat)}" for text in (script_txt, trace_txt, doubled)]
    perf = best_of(args.repeat, lambda: perf_script(args.dir / "big.data"))
    rows = [
        ("perf script -i big.data", *perf, 1),
        (
            "perfnet.read(perf script text).events",
            *best_of(args.repeat, lambda: len(perfnet.read(script_txt).events)),
            1,
        ),
        ("perfnet.read(perf trace text).events", *best_of(args.repeat, lambda: len(perfnet.read(trace_txt).events)), 1),
        (
            "perfnet.read(script text x2, threads).events",
            *best_of(args.repeat, lambda: len(perfnet.read(doubled).events)),
            2,  # against perf script printing it twice
        ),
        (
            "perfnet.iter_records(perf trace text)",
            *best_of(args.repeat, lambda: sum(1 for _ in perfnet.iter_records(trace_txt))),
            1,
        ),
    ]
    print(f"{'what':<44} {'events':>9} {'seconds':>8} {'events/s':>10} {'time vs perf script':>20}")
    for name, seconds, events, times in rows:
        ratio = seconds / (perf[0] * times)
        print(f"{name:<44} {events:>9} {seconds:>8.2f} {events / seconds:>10.0f} {ratio:>19.2f}x")
    print("", *footprints, sep="\n")
    return 0


# Run in a fresh process, so the figures are this read's alone.  The baseline is taken after a
# warm-up read (events and packets) of the small bundled capture, so one-time costs (modules
# imported lazily, compiled grammars and regexes) are not counted per event.
_MEASURE = """
import resource, sys, time
import psutil
import perfnet
warm = perfnet.read(perfnet.example_capture())
len(warm.events), len(warm.packets)
process = psutil.Process()
base = process.memory_info().rss
start = time.perf_counter()
trace = perfnet.read(sys.argv[1])
events = trace.events
read_s = time.perf_counter() - start
held = process.memory_info().rss - base
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
deep = events.memory_usage(deep=True).sum()
start = time.perf_counter()
packets = len(trace.packets)
packets_s = time.perf_counter() - start
print(len(events), read_s, deep, held, peak, packets, packets_s)
"""


def memory(text: Path, repeat: int) -> str:
    """Events frame bytes per event (deep); resident bytes per event held after read and
    events, and the peak while reading (a read runs in one process, on several threads for
    large files); trace.packets events/s (inference, walk, labels).  Measured in ``repeat``
    fresh processes: the fastest packets time, the largest memory figures."""
    runs = []
    for _ in range(repeat):
        done = subprocess.run([sys.executable, "-c", _MEASURE, str(text)], capture_output=True, text=True, check=True)
        runs.append([float(x) for x in done.stdout.split()])
    events, deep, packets = runs[0][0], runs[0][2], runs[0][5]
    held, peak = max(r[3] for r in runs), max(r[4] for r in runs)
    packets_s = min(r[6] for r in runs)
    return (
        f"events frame {deep / events:.0f} B/event deep; resident after read+events {held / events:.0f} B/event "
        f"held, {peak / events:.0f} B/event peak; trace.packets {events / packets_s / 1e6:.2f} M events/s "
        f"({packets:.0f} packets)"
    )


if __name__ == "__main__":
    sys.exit(main())
