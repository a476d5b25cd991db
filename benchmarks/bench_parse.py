"""Benchmark parsing: ``perfnet.read`` against ``perf script`` on the same real recording.

A large capture is made on the lab (``scripts/capture_fixtures.py --big SECONDS``, as root):
one flood of traffic recorded concurrently by ``perf trace`` (text) and ``perf record``
(``big.data``), whose ``perf script`` text is saved too.  This script then times, in one run:

* ``perf script -i big.data > /dev/null``: perf decoding its own recording to text;
* ``perfnet.read(big-script.txt).events``: perfnet parsing that text into the events frame;
* ``perfnet.read(big-trace.txt).events``: the same for perf trace's own format;
* ``perfnet.iter_records(big-trace.txt)``: streaming typed records, no frame.

and prints events per second and each figure's ratio to ``perf script``.  Ratios, not seconds,
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
    # first, while this process is small: a child's peak resident size counts its parent's
    # before exec, so the memory figures come from children of a parent that read nothing yet
    footprints = [f"{text.name}: {memory(text)}" for text in (script_txt, trace_txt)]
    rows = [
        ("perf script -i big.data", *best_of(args.repeat, lambda: perf_script(args.dir / "big.data"))),
        ("perfnet.read(perf script text).events", *best_of(args.repeat, lambda: len(perfnet.read(script_txt).events))),
        ("perfnet.read(perf trace text).events", *best_of(args.repeat, lambda: len(perfnet.read(trace_txt).events))),
        (
            "perfnet.iter_records(perf trace text)",
            *best_of(args.repeat, lambda: sum(1 for _ in perfnet.iter_records(trace_txt))),
        ),
    ]
    baseline = rows[0][2] / rows[0][1]
    print(f"{'what':<42} {'events':>9} {'seconds':>8} {'events/s':>10} {'vs perf script':>15}")
    for name, seconds, events in rows:
        rate = events / seconds
        print(f"{name:<42} {events:>9} {seconds:>8.2f} {rate:>10.0f} {rate / baseline:>14.2f}x")
    print("", *footprints, sep="\n")
    return 0


# Run in a fresh process, so the figures are this read's alone.
_MEASURE = """
import resource, sys, time
import perfnet
start = time.perf_counter()
trace = perfnet.read(sys.argv[1])
events = trace.events
read_s = time.perf_counter() - start
deep = events.memory_usage(deep=True).sum() / len(events)
start = time.perf_counter()
packets = len(trace.packets)
packets_s = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(len(events), read_s, deep, packets, packets_s, peak)
"""


def memory(text: Path) -> str:
    """Events frame bytes per event (deep), the process's peak resident bytes per event after
    read and packets (on top of an empty interpreter with perfnet imported), and trace.packets
    events/s (inference, walk, labels), measured in a fresh process."""
    base = subprocess.run(
        [sys.executable, "-c", "import resource, perfnet; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(text)], capture_output=True, text=True, check=True)
    events, _, deep, packets, packets_s, peak = (float(x) for x in done.stdout.split())
    peak_per_event = (peak - int(base.stdout) * 1024) / events
    return (
        f"events frame {deep:.0f} B/event deep; peak resident {peak_per_event:.0f} B/event above the interpreter; "
        f"trace.packets {events / packets_s / 1e6:.2f} M events/s ({packets:.0f} packets)"
    )


if __name__ == "__main__":
    sys.exit(main())
