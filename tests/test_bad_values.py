"""Values that do not convert are bad lines with their line and column, never another exception
(lenient mode), or a ParseError naming them (strict mode); no regex backtracks on a bad line."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

import perfnet
from perfnet.errors import ParseError

GOOD = '     0.000 ping/1 net:net_dev_queue(skbaddr: 0xffff888100000100, len: 98, name: "br0")'


def queue(skbaddr: str = "0xffff888100000100", length: str = "98", tid: str = "1") -> str:
    return f'     0.000 ping/{tid} net:net_dev_queue(skbaddr: {skbaddr}, len: {length}, name: "br0")'


# (case, line, column, message)
BAD = [
    ("len not a number", queue(length="x"), 71, "len: 'x' is not a decimal number"),
    ("pointer not hex", queue(skbaddr="0xZZ"), 46, "skbaddr: '0xZZ' is not a hex number"),
    ("pointer empty", queue(skbaddr=""), 46, "skbaddr: '' is not a pointer (0x...)"),
    ("pointer without 0x", queue(skbaddr="12345"), 46, "skbaddr: '12345' is not a pointer (0x...)"),
    ("5000 digits", queue(length="9" * 5000), 71, f"len: '{'9' * 40}' is not a decimal number"),
    ("len beyond 32 bits", queue(length="99999999999"), 71, "len: 99999999999 does not fit in 32 bits"),
    ("tid beyond 32 bits", queue(tid="99999999999999999999"), 17, "99999999999999999999 does not fit in 32 bits"),
    ("non-ASCII digits", queue(length="٣٤"), 71, "len: '٣٤' is not a decimal number"),
    ("digit separator", queue(length="9_9"), 71, "len: '9_9' is not a decimal number"),
    ("plus sign", queue(length="+98"), 71, "len: '+98' is not a decimal number"),
    ("LOST beyond 64 bits", f"LOST {2**64} events!", 6, f"LOST count {2**64} does not fit in 64 bits"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "line", "column", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_value_that_does_not_convert_is_a_bad_line(case: str, line: str, column: int, message: str) -> None:
    trace = perfnet.read([GOOD, line])
    assert trace.errors[["lineno", "column", "message"]].values.tolist() == [[2, column, message]]
    assert len(trace.events) == 1 and len(trace.packets) == 1 and trace.lost == 0 and repr(trace)


@pytest.mark.parametrize(("case", "line", "column", "message"), BAD, ids=[b[0] for b in BAD])
def test_strict_mode_raises_parse_error_at_the_value(case: str, line: str, column: int, message: str) -> None:
    with pytest.raises(ParseError) as raised:
        perfnet.read([GOOD, line], strict=True)
    assert (raised.value.lineno, raised.value.column) == (2, column)


def test_lost_counts_are_unsigned_64_bit() -> None:
    trace = perfnet.read([GOOD, "LOST 9223372036854775808 events!", "LOST 18446744073709551615 events!"])
    assert trace.messages["lost"].tolist() == [2**63, 2**64 - 1]
    assert trace.lost == 2**63 + 2**64 - 1


@pytest.mark.parametrize(
    "line",
    [
        "     0.000 ping/1 net:net_dev_queue(" + ", ".join(f'f{i}: "x"' for i in range(30)) + " junk)",
        "     0.000 ping/1 net:net_dev_queue(" + ", ".join(f"f{i}: x" for i in range(40)) + ", junk)",
    ],
    ids=["30 quoted fields then junk", "40 fields then junk"],
)
def test_no_regex_backtracks_on_a_bad_line(line: str) -> None:
    """Lines that once took minutes: refused in well under a second (generous for a noisy machine)."""
    start = time.process_time()
    trace = perfnet.read([GOOD, line])
    assert time.process_time() - start < 5
    assert trace.errors["lineno"].tolist() == [2]


def test_the_generic_key_value_list_refuses_junk_in_linear_time() -> None:
    from perfnet.grammar import _FAST_GENERIC_LIST

    start = time.process_time()
    assert _FAST_GENERIC_LIST.fullmatch("a=" * 34 + " ?junk") is None
    assert _FAST_GENERIC_LIST.fullmatch("a= " * 5000 + "?") is None
    assert time.process_time() - start < 5


def test_perfnet_parse_reports_a_bad_value_without_a_traceback(tmp_path: object) -> None:
    path = f"{tmp_path}/bad.txt"
    with open(path, "w") as out:
        out.write(GOOD + "\n" + queue(length="x") + "\n")
    done = subprocess.run([sys.executable, "-m", "perfnet", "parse", path], capture_output=True, text=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr
    assert "2:71" in done.stdout or "line 2" in done.stdout


def read_bytes(data: bytes, tmp_path: Path) -> perfnet.Trace:
    path = tmp_path / "capture.txt"
    path.write_bytes(data)
    return perfnet.read(path)


def test_cr_only_line_ends_split_lines(tmp_path: Path) -> None:
    trace = read_bytes(("\r".join([GOOD] * 3) + "\r").encode(), tmp_path)
    assert (len(trace.events), len(trace.errors)) == (3, 0)


def test_only_cr_lf_and_crlf_end_lines(tmp_path: Path) -> None:
    """VT, FF, NEL and U+2028 are characters of a line (a bad one here), not line ends."""
    trace = read_bytes(f"{GOOD}\r\n{GOOD}\n\x0b\x0c\u0085\u2028\n{GOOD}\r".encode(), tmp_path)
    assert len(trace.events) == 3 and trace.errors["lineno"].tolist() == [3]


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    assert len(read_bytes(f"\ufeff{GOOD}\n{GOOD}\n".encode(), tmp_path).events) == 2
    assert len(perfnet.read([f"\ufeff{GOOD}", GOOD]).events) == 2


def test_lines_of_unicode_spaces_are_accounted_not_dropped(tmp_path: Path) -> None:
    trace = read_bytes(f"{GOOD}\n\u3000\u2003\n \t\n{GOOD}\n".encode(), tmp_path)
    assert len(trace.events) == 2 and trace.errors["lineno"].tolist() == [2]  # line 3 is blank


def test_a_30_mb_line_is_a_bad_line_read_in_bounded_memory(tmp_path: Path) -> None:
    import tracemalloc

    path = tmp_path / "long.txt"
    with path.open("wb") as out:
        out.write(f"{GOOD}\n".encode() + b"x" * 30_000_000 + f"\n{GOOD}\n".encode())
    tracemalloc.start()
    trace = perfnet.read(path)
    errors = trace.errors[["lineno", "column", "message"]].values.tolist()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert len(trace.events) == 2 and errors == [[2, 65537, "line longer than 65536 bytes"]]
    assert peak < 16_000_000  # the 30 MB line is never held whole (blocks of 4 MiB)


def test_a_summary_line_does_not_swallow_the_lines_after_it() -> None:
    trace = perfnet.read([GOOD, " Summary of events:", "garbage line", GOOD, "more garbage"])
    assert trace.messages[["lineno", "kind"]].values.tolist() == [[2, "summary"]]
    assert trace.errors["lineno"].tolist() == [3, 5] and len(trace.events) == 2


@pytest.mark.parametrize(
    "text",
    [
        "[    0.000000] Linux version 6.18.44 (gcc 12.2.0)\n[    0.000000] Command line: console=ttyS0\n",
        "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
        "\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\n",
    ],
    ids=["dmesg", "passwd", "ELF"],
)
def test_input_that_is_not_perf_output_is_a_named_error(text: str, tmp_path: Path) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(perfnet.NotPerfOutputError, match=r"not perf output.*line 1 reads"):
        perfnet.read(path)
    done = subprocess.run([sys.executable, "-m", "perfnet", "report", str(path)], capture_output=True, text=True)
    assert (
        done.returncode == 2 and done.stderr.startswith("perfnet: not perf output") and "Traceback" not in done.stderr
    )


def test_an_empty_input_or_only_perf_messages_stay_a_trace() -> None:
    assert len(perfnet.read([]).events) == 0
    assert len(perfnet.read(["", "  "]).errors) == 0
    quiet = perfnet.read(["LOST 3 events!", "# a header", "garbage"])
    assert (quiet.lost, quiet.errors["lineno"].tolist()) == (3, [3])
    forced = perfnet.read(["garbage"], format="trace")  # a variant given: its bad lines stay
    assert forced.errors["lineno"].tolist() == [1]


def test_compressed_input_is_known_by_its_bytes_not_its_name(tmp_path: Path) -> None:
    import bz2
    import gzip
    import lzma

    import zstandard

    text = f"{GOOD}\n{GOOD}\n".encode()
    for name, data in [
        ("a.txt", gzip.compress(text)),
        ("b", bz2.compress(text)),
        ("c.gz", lzma.compress(text)),
        ("d.log", zstandard.ZstdCompressor().compress(text) * 2),  # two frames
    ]:
        (tmp_path / name).write_bytes(data)
        assert len(perfnet.read(tmp_path / name).events) == 2 * (1 + name.startswith("d")), name


def test_a_truncated_zstd_capture_is_a_named_error(tmp_path: Path) -> None:
    import zstandard

    data = zstandard.ZstdCompressor().compress((f"{GOOD}\n" * 1000).encode())
    (tmp_path / "cut.zst").write_bytes(data[:-10])
    with pytest.raises(perfnet.PerfnetError, match="truncated zstd data"):
        perfnet.read(tmp_path / "cut.zst")


def test_compressed_capture_on_standard_input() -> None:
    import gzip

    data = gzip.compress(f"{GOOD}\n{GOOD}\n".encode())
    done = subprocess.run([sys.executable, "-m", "perfnet", "parse", "-", "--json"], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr
    assert b'"events": 2' in done.stdout


def test_a_line_of_terminal_control_codes_alone_is_accounted() -> None:
    trace = perfnet.read([GOOD, "\x1b[31m\x1b[0m", "\x1b[31mLOST 2 events!\x1b[0m", GOOD])
    assert trace.messages[["lineno", "kind", "lost"]].values.tolist() == [[2, "perf", 0], [3, "lost", 2]]
    assert trace.errors.empty and len(trace.events) == 2
