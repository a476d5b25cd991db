"""Mutated real lines, over 100,000 per run (seeded, so every run tries the same ones): a lenient
read never raises and accounts for every line exactly once; a strict read raises only ParseError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import perfnet
from perfnet.errors import ParseError

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = {
    "lab-trace.txt": "trace",
    "lab-trace-libtraceevent.txt": "trace-libtraceevent",
    "lab-trace-old-converted.txt": "trace-old",
    "lab-trace-callgraph.txt": "trace",
    "lab-script.txt": "script",
    "lab-script-g.txt": "script",
    "lab-ftrace-tgid.txt": "ftrace",
}
PER_CAPTURE = 15_000


def mutated(name: str, count: int, seed: int) -> list[bytes]:
    """``count`` lines of the capture, each changed once: a bit flipped, a byte deleted,
    inserted or replaced by a digit, letter, quote or space, or the line cut short."""
    lines = [line for line in (FIXTURES / name).read_bytes().split(b"\n") if line]
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(lines), count):
        line = bytearray(lines[i])
        at = int(rng.integers(0, len(line)))
        op = int(rng.integers(0, 5))
        if op == 0:
            line[at] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            del line[at]
        elif op == 2:
            line.insert(at, int(rng.integers(0, 256)))
        elif op == 3:
            line[at] = b'0123456789xZ" ,:=(-'[int(rng.integers(0, 19))]
        else:
            del line[at:]
        out.append(bytes(line).replace(b"\n", b" ").replace(b"\r", b" "))
    return out


def blank(line: bytes) -> bool:
    text = perfnet.reader._decode(line)  # the reader's own decoding: UTF-8 with U+FFFD, no ANSI codes
    return not isinstance(text, perfnet.reader.ControlCodes) and not text.strip(" \t")


@pytest.mark.parametrize("name", list(CAPTURES))
def test_lenient_read_of_mutated_lines_never_raises_and_accounts_for_every_line(name: str) -> None:
    lines = mutated(name, PER_CAPTURE, seed=sum(map(ord, name)))
    trace = perfnet.read(lines, format=CAPTURES[name])
    assert repr(trace) and len(trace.packets) <= len(trace.events)  # every frame builds
    linenos = [*trace.events["lineno"], *trace.messages["lineno"], *trace.errors["lineno"]]
    assert len(linenos) == len(set(linenos))
    frames = sum(map(len, trace.events["callchain"]))
    assert len(linenos) + frames + sum(map(blank, lines)) == len(lines)


@pytest.mark.parametrize("name", list(CAPTURES))
def test_strict_read_of_a_mutated_line_raises_only_parse_error(name: str) -> None:
    for line in mutated(name, 400, seed=7 + sum(map(ord, name))):
        try:
            assert len(perfnet.read([line], format=CAPTURES[name], strict=True).events) <= 1
        except ParseError as exc:
            assert exc.lineno == 1 and exc.column >= 1
