"""Faults during a live capture, caused for real (root, real perf): signals to the CLI and to a
program calling the library, a second Ctrl-C, perfnet killed outright, a failing command, a full
disk and bad output paths.  Each test asserts that no process perfnet started is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

import perfnet
from perfnet.errors import UsageError
from perfnet.lab import require_root_and_tools

REASON = require_root_and_tools()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
PERFNET = [sys.executable, "-m", "perfnet"]
LIBRARY_CAPTURE = "import perfnet; t = perfnet.capture(['sleep', '60']); print('returned', t.partial)"
LIBRARY_STREAM = "import perfnet\nwith perfnet.stream(['sleep', '60']) as s:\n    list(s)\nprint('after the block')"


def below_named(pid: int) -> dict[int, str]:
    """The processes below ``pid`` by pid, with their names (short-lived ones may vanish)."""
    named = {}
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            named[child.pid] = child.name()
    return named


def started(argv: list[str]) -> tuple[subprocess.Popen[str], set[int]]:
    """Start ``argv`` in its own session; once perf and its ``sleep`` run, return it and every
    process below it."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    below: set[int] = set()
    while time.monotonic() < deadline:
        named = below_named(proc.pid)
        below |= set(named)
        if {"perf", "sleep"} <= set(named.values()):
            time.sleep(0.3)  # tracing is live once the command runs
            return proc, below
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"perf and the command did not start: {proc.communicate()}")


def left(pids: set[int], within: float = 5.0) -> list[int]:
    """The processes of ``pids`` still running after ``within`` seconds (perf takes up to a
    second to tear down its ring buffers once killed)."""
    deadline = time.monotonic() + within
    while True:
        alive = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    alive.append(pid)
            except psutil.NoSuchProcess:
                pass
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@pytest.fixture
def reaped() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes a test started, killed if it fails half-way."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize(
    ("sig", "partial"), [(signal.SIGTERM, "terminated (SIGTERM)"), (signal.SIGHUP, "hung up (SIGHUP)")]
)
def test_the_cli_stops_on_sigterm_and_sighup_prints_its_summary_and_exits_128_plus_n(
    sig: signal.Signals, partial: str, reaped: list[subprocess.Popen[str]]
) -> None:
    proc, below = started([*PERFNET, "trace", "--", "sleep", "60"])
    reaped.append(proc)
    sent = time.monotonic()
    os.kill(proc.pid, sig)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 10
    assert proc.returncode == 128 + sig, stderr
    assert f"--- summary ({partial}) ---" in stdout and "perf:" in stdout
    assert "Traceback" not in stderr
    assert left(below) == []


def test_a_second_ctrl_c_kills_within_2_s_exits_130_without_a_traceback(reaped: list[subprocess.Popen[str]]) -> None:
    # the command ignores SIGINT, so the first Ctrl-C cannot end it: the second must
    ignoring = "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"
    proc, below = started([*PERFNET, "trace", "--", "sh", "-c", f"python3 -c '{ignoring}' & sleep 60"])
    reaped.append(proc)
    os.killpg(proc.pid, signal.SIGINT)
    time.sleep(0.5)
    sent = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert time.monotonic() - sent < 2
    assert proc.returncode == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert "--- summary (interrupted (Ctrl-C)" in stdout
    assert left(below) == []


@pytest.mark.parametrize("program", [LIBRARY_CAPTURE, LIBRARY_STREAM], ids=["capture", "stream"])
def test_sigterm_to_a_program_capturing_stops_perf_then_ends_the_program(
    program: str, reaped: list[subprocess.Popen[str]]
) -> None:
    proc, below = started([sys.executable, "-c", program])
    reaped.append(proc)
    os.kill(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGTERM, stderr  # raised again once perf was reaped
    assert stdout == "" and "Traceback" not in stderr
    assert left(below) == []


def test_perf_and_the_command_die_when_perfnet_is_killed_outright(reaped: list[subprocess.Popen[str]]) -> None:
    proc, below = started([sys.executable, "-c", LIBRARY_CAPTURE])
    reaped.append(proc)
    assert sorted(below_named(proc.pid).values()) == ["perf", "python3", "sleep"]  # python3: the supervisor
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    assert left(below) == []


def test_a_failing_command_still_gets_its_summary_and_its_status() -> None:
    out = subprocess.run([*PERFNET, "trace", "--", "sh", "-c", "exit 3"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 3
    assert "--- summary (command failed with exit code 3) ---" in out.stdout
    assert "traced command failed with exit code 3: sh -c 'exit 3'" in out.stderr
    assert "were streamed" not in out.stderr and "are were" not in out.stderr


@pytest.mark.parametrize("where", ["missing/raw.txt", "."], ids=["missing directory", "a directory"])
def test_a_bad_output_path_is_a_usage_error_before_perf_starts(where: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="the raw output"):
        perfnet.capture(["true"], raw_output=tmp_path / where)
    assert "perf" not in below_named(os.getpid()).values()  # refused before perf started
    out = subprocess.run([*PERFNET, "trace", "-o", str(tmp_path / where), "--", "true"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith("perfnet: ") and "Traceback" not in out.stderr


def test_a_full_disk_keeps_the_capture_in_memory_and_marks_the_file_incomplete(small_disk: Path) -> None:
    raw = small_disk / "raw.txt"
    trace = perfnet.capture(
        ["ping", "-c", "300", "-i", "0.002", "-q", "127.0.0.1"], events=["net:*"], raw_output=raw, duration=30
    )
    assert trace.partial is not None and "No space left on device" in trace.partial
    assert len(trace.events) > 300 * 4  # the events kept on reading after the disk filled
    assert not raw.exists()
    incomplete = small_disk / "raw.txt.incomplete"
    assert incomplete.exists() and incomplete.stat().st_size > 0


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("len > 99999999999999999999999", "len holds 0 to 4294967295; 99999999999999999999999 is out of its range"),
        ("len > 4294967296", "len holds 0 to 4294967295; 4294967296 is out of its range"),
        ("len > -1", "len holds 0 to 4294967295; -1 is out of its range"),
        ("mac_header < -2147483649", "mac_header holds -2147483648 to 2147483647"),
    ],
)
def test_filter_constants_are_checked_against_their_fields_types(expression: str, message: str) -> None:
    with pytest.raises(perfnet.FilterError, match=message):
        perfnet.capture(["true"], events=("net:netif_receive_skb_entry",), filter=expression)
    for fits in ("len > 4294967295", "mac_header < -14", "skbaddr == 0xffff888117519700"):
        perfnet.capture(["true"], events=("net:netif_receive_skb_entry",), filter=fits)


@pytest.mark.parametrize("events", [[""], ["net:*", " "]])
def test_an_empty_event_name_is_refused(events: list[str]) -> None:
    with pytest.raises(UsageError, match="an event name is empty"):
        perfnet.capture(["true"], events=events)


def test_lab_down_without_a_tag_removes_nothing_and_lists_what_is_up() -> None:
    from perfnet.lab import Lab, kept_labs

    lab = Lab().up()
    lab.keep()
    try:
        out = subprocess.run([*PERFNET, "lab", "down"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and f"lab {lab.tag} is up" in out.stdout
        assert "name the labs to remove" in out.stderr
        assert lab.tag in kept_labs()
        listed = subprocess.run([*PERFNET, "lab", "list"], capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0 and f"lab {lab.tag} is up" in listed.stdout.splitlines()
    finally:
        down = subprocess.run([*PERFNET, "lab", "down", lab.tag], capture_output=True, text=True, timeout=120)
    assert down.returncode == 0 and down.stdout == f"lab {lab.tag} is down\n"
    assert lab.tag not in kept_labs()


@pytest.mark.parametrize(
    ("victim", "mode", "partial"),
    [
        ("supervisor", "trace", "the command's supervisor died; the command was stopped"),
        ("perf", "trace", "perf was killed by SIGKILL"),
        ("perf", "record", "perf was killed by SIGKILL; the recording is unreadable ("),
    ],
)
def test_the_death_of_perf_or_the_supervisor_is_named_and_stops_the_command(
    victim: str, mode: str, partial: str, tmp_path: Path, reaped: list[subprocess.Popen[str]]
) -> None:
    raw = tmp_path / "raw.txt"
    program = (
        f"import perfnet; t = perfnet.capture(['sleep', '60'], mode={mode!r}, raw_output={str(raw)!r}); "
        "print(t.partial); print(len(t.events))"
    )
    proc, below = started([sys.executable, "-c", program])
    reaped.append(proc)
    name = Path(sys.executable).name[:15] if victim == "supervisor" else victim  # it runs as this interpreter
    (pid,) = [pid for pid, named in below_named(proc.pid).items() if named == name]
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert stdout.splitlines()[0].startswith(partial)
    assert left(below) == []
    if mode == "record":  # nothing could be read: no empty file, no side files
        assert sorted(p.name for p in tmp_path.iterdir()) == []
    else:
        assert raw.exists()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("mode", ["trace", "record"])
def test_a_capture_refused_before_perf_starts_leaves_no_descriptor_open(mode: str) -> None:
    before = open_fds()
    for _ in range(3):
        with pytest.raises(perfnet.TracedCommandError, match="command not found"):
            perfnet.capture(["no-such-command-here"], mode=mode)  # type: ignore[arg-type]
        with (
            pytest.raises(perfnet.TracedCommandError, match="command not found"),
            perfnet.stream(["no-such-command-here"], mode=mode),  # type: ignore[arg-type]
        ):
            pass
    assert open_fds() == before


def test_perf_that_cannot_be_started_is_an_error_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel refusing a fork (EAGAIN: out of processes) cannot be caused for root, whom
    # RLIMIT_NPROC does not bind: the failure is made in Popen.
    def refused(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr("perfnet.live.perf_process.subprocess.Popen", refused)
    before = open_fds()
    started = time.monotonic()
    with pytest.raises(BlockingIOError):
        perfnet.capture(["true"])
    assert time.monotonic() - started < 5  # not the 20 s wait for a perf that never ran
    assert open_fds() == before
