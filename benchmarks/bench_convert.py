"""Benchmark ``perfnet convert`` on a capture of at least 5,000,000 lines: throughput, and the
peak resident memory of every process it runs, against ``perf script`` decoding the recording.

The capture is the flood benchmark's ``perf script`` text (``benchmarks/bench_parse.py`` makes
it) repeated until it has ``--lines`` lines, each copy shifted in time past the one before, so
the result reads as one long capture (written once into ``--dir``).  The script then runs, each
in a fresh process:

* ``perf script -i big.data > /dev/null``, the flood's recording (its lines per second scale
  the rest: perf decoding its own data);
* ``perfnet convert big-script-long.txt -o DIR``, the whole conversion, with the peak
  resident set of the process (``wait4``; a text file's conversion runs in one process);
* ``perfnet report DIR --json``: reading the dataset back (a whole Trace, in memory).

Ratios, not seconds, are the result: the machine is shared and noisy.  Usage::

    python benchmarks/bench_convert.py [--dir DIR] [--lines N]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

_TIME = re.compile(rb"^(.{1,64}?\]\s+)(\d+)\.(\d{6}):", re.M)


def long_capture(script_txt: Path, lines: int, out: Path) -> int:
    """Write ``script_txt`` repeated until ``lines`` lines, each copy shifted in time after
    the one before; the number of lines written."""
    text = script_txt.read_bytes()
    per_copy = text.count(b"\n")
    times = [int(m[2]) * 1_000_000 + int(m[3]) for m in _TIME.finditer(text)]
    span = max(times) - min(times) + 1_000_000  # one second between copies
    copies = -(-lines // per_copy)
    with out.open("wb") as dest:
        for copy in range(copies):
            shift = copy * span

            def shifted(match: re.Match[bytes], shift: int = shift) -> bytes:
                micros = int(match[2]) * 1_000_000 + int(match[3]) + shift
                return b"%s%d.%06d:" % (match[1], micros // 1_000_000, micros % 1_000_000)

            dest.write(_TIME.sub(shifted, text) if shift else text)
    return copies * per_copy


def line_count(path: Path) -> int:
    """Lines of a file, read 1 MiB at a time: this process stays small, and so does each child
    it forks (a child's peak counts what it inherited before it ran its program)."""
    with path.open("rb") as file:
        return sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b""))


def timed(argv: list[str]) -> tuple[float, int]:
    """Run ``argv`` (output discarded): its wall time, and its own peak resident set in bytes
    (``wait4``: this process alone; ``perfnet convert`` of a text file starts no other)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        sys.exit(f"{argv} failed: {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/perfnet-big"), help="where the flood capture is")
    parser.add_argument("--lines", type=int, default=5_000_000)
    args = parser.parse_args()
    script_txt, data = args.dir / "big-script.txt", args.dir / "big.data"
    if not script_txt.exists():
        sys.exit(f"no flood capture in {args.dir}: run benchmarks/bench_parse.py --dir {args.dir} (as root) first")
    long_txt = args.dir / "big-script-long.txt"
    if not long_txt.exists() or line_count(long_txt) < args.lines:
        long_capture(script_txt, args.lines, long_txt)
    lines = line_count(long_txt)
    dataset = args.dir / "big-script-long.ds"
    shutil.rmtree(dataset, ignore_errors=True)
    perf_seconds, _ = timed(["perf", "script", "-i", str(data)])
    perf_rate = script_txt.read_bytes().count(b"\n") / perf_seconds
    perfnet = [sys.executable, "-m", "perfnet"]
    convert_seconds, convert_peak = timed([*perfnet, "convert", str(long_txt), "-o", str(dataset)])
    read_seconds, read_peak = timed([*perfnet, "report", str(dataset), "--json"])
    size = sum(p.stat().st_size for p in dataset.rglob("*") if p.is_file())
    print(f"capture: {long_txt} ({lines:,} lines, {long_txt.stat().st_size / 2**20:,.0f} MiB)")
    print(f"{'what':<40} {'lines/s':>10} {'vs perf script':>15}")
    print(f"{'perf script -i big.data':<40} {perf_rate:>10,.0f} {1:>14.2f}x")
    for what, seconds in (
        ("perfnet convert (read, packets, write)", convert_seconds),
        ("perfnet report DATASET", read_seconds),
    ):
        rate = lines / seconds
        print(f"{what:<40} {rate:>10,.0f} {perf_rate / rate:>14.2f}x")
    print(f"convert: peak RSS {convert_peak / 2**20:,.0f} MiB (one process; {convert_peak / lines:.0f} B/line)")
    print(f"dataset: {size / 2**20:,.0f} MiB on disk ({size / lines:.1f} B/line)")
    print(f"report DATASET: peak RSS {read_peak / 2**20:,.0f} MiB (the whole Trace in memory)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
