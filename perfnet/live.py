"""Live captures: run perf on a command (or system-wide) and parse its output while it prints.

:func:`capture` returns a :class:`~perfnet.trace.Trace` once the traced command ends (or the
duration passes, or Ctrl-C); :func:`stream` hands out typed records while the command still runs.
Both use ``perf trace`` (``mode="trace"``) or ``perf record`` + ``perf script``
(``mode="record"``, for event rates ``perf trace`` cannot print fast enough).

How a capture runs, and why:

* perf writes its output (``-o``) to a pseudo-terminal that perfnet reads in a thread: perf
  buffers ``-o`` files and FIFOs fully (records would only arrive when perf exits) and its default
  output, stderr, is shared with the traced command; on a terminal perf flushes every line.
* perf's workload is always a small perfnet *supervisor* (a few lines of Python, below).  perf
  starts it only once its events are enabled, so its first message tells perfnet that tracing
  is live; it then waits for perfnet's go-ahead (interface counters are read in between), starts
  the traced command, forwards the stop signal to it, and reports its exit status (perf itself
  always exits 0 when its workload fails).  Without a command it only waits to be stopped, so
  system-wide and ``pid`` captures end the same way.  It also hands the command perfnet's own
  stderr (so perf's stderr stays perf's) and closes the descriptors perf leaks to its workload
  (the ``-o`` file among them).
* perf runs in its own process group: the terminal's Ctrl-C reaches perfnet only, which stops
  the command; perf then sees its workload end, flushes and exits by itself.  Processes that do
  not end are killed after a grace period; nothing is left behind.
* Nothing that needs privileges is needed before perf has started successfully (tracefs and
  ``/proc/kallsyms`` are read afterwards), so an unprivileged user's first error is perf's
  permission error.  The one early look at tracefs, for a filter on an event perfnet has no
  schema of, fails quietly without privileges (the syntax is still checked).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Final, Literal

import pandas as pd
import psutil

from perfnet.columns import ColumnBuilder, build_columns
from perfnet.errors import PerfnetError, UsageError
from perfnet.filters import check_filter
from perfnet.grammar import Variant
from perfnet.host.netns import netns_names, packet_counters
from perfnet.kallsyms import Kallsyms, host_symbols, save_kallsyms
from perfnet.perf import (
    PerfError,
    TracedCommandError,
    expand_events,
    format_text,
    perf_binary,
    perf_error,
    perf_message,
    perf_version,
    read_perf_data,
    skb_free_marker,
    tracepoints,
)
from perfnet.reader import ANSI_ESCAPE, open_items
from perfnet.records import Item, Message, Record
from perfnet.schema import EventSchema, enum_tables_from_format, load_schemas
from perfnet.topology import Topology, snapshot
from perfnet.trace import Trace

__all__ = ["CaptureStats", "RecordStream", "capture", "stream"]

Mode = Literal["trace", "record"]


_START_TIMEOUT: Final = 60.0  # s perf may take to open its events and start its workload
_COMMAND_GRACE: Final = 3.0  # s between asking the command to stop (SIGINT) and SIGKILL
_PERF_GRACE: Final = 10.0  # s perf may take to flush and exit once its workload ended
_SIGNAL_GRACE: Final = 2.0  # s between SIGINT, SIGTERM and SIGKILL when perf itself must be stopped
_LEFTOVER_GRACE: Final = 1.0  # s between SIGTERM and SIGKILL for processes the command left behind
_SAMPLE_INTERVAL: Final = 0.05  # s between samples of perf's memory and process tree
_STDERR_LIMIT: Final = 1 << 20  # bytes of perf's stderr kept

_ANSI: Final = re.compile(ANSI_ESCAPE.encode())

# Events whose counts are compared with the interface counters: transmissions (net_dev_xmit
# with rc 0, else net_dev_queue when only that was captured) and receptions.
_XMIT: Final = "net:net_dev_xmit"
_QUEUE: Final = "net:net_dev_queue"
_RECEIVE: Final = "net:netif_receive_skb"


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CaptureStats:
    """What a live capture cost, and whether it saw every packet the interfaces counted.

    Attributes:
        argv: perf's command line as run (the traced command after ``--``; perfnet's supervisor,
            which starts it, is left out).
        command: the traced command, empty for none.
        returncode: the traced command's exit status; None when there was no command or it
            never started.
        perf_version: as ``perf --version`` prints it, e.g. ``6.1.187``.
        kernel: the kernel release (``uname -r``).
        wall_s: seconds from starting perf until it exited.
        started_at: when perf was started, wall-clock seconds since the epoch.
        boot_time: when the capturing host booted, seconds since the epoch: ``perf script``
            times are seconds since boot, so ``boot_time + time_ns / 1e9`` puts events of
            captures from many hosts on one clock (to the hosts' clock accuracy).
        cpu_user_s, cpu_system_s: perf's own CPU time (not its workload's), in clock ticks'
            resolution; for ``mode="record"`` that of ``perf record``, not ``perf script``.
        peak_rss_bytes: perf's peak resident set size (its ``VmHWM``, sampled while it ran).
        lost: events perf reported lost (``LOST`` lines, ``PERF_RECORD_LOST`` records).
        counters: one row per interface of every named network namespace (``ip netns``) and
            the current one: ``netns`` (missing, NaN, for perfnet's own), ``dev``, ``tx_packets`` and
            ``rx_packets`` (counter deltas between the moment tracing was live and the command's
            end), ``tx_events`` (``net_dev_xmit`` with rc 0 on a device of that name, or
            ``net_dev_queue`` if xmit was not captured) and ``rx_events``
            (``netif_receive_skb``), ``namesakes`` (how many namespaces have a device of that
            name: events carry only the name, so events are compared with the deltas summed
            over namesakes) and ``complete`` (the compared counts agree; False when neither
            direction was captured).  Empty when the counters could not be read.
        perf_stderr: what perf printed on its stderr (warnings, ``perf record``'s summary).
    """

    argv: tuple[str, ...]
    command: tuple[str, ...]
    returncode: int | None
    perf_version: str
    kernel: str
    wall_s: float
    started_at: float
    boot_time: float
    cpu_user_s: float
    cpu_system_s: float
    peak_rss_bytes: int
    lost: int
    counters: pd.DataFrame = field(repr=False)
    perf_stderr: str = field(default="", repr=False)

    @property
    def cpu_s(self) -> float:
        """perf's CPU time, user plus system, in seconds."""
        return self.cpu_user_s + self.cpu_system_s


Counters = dict[tuple[str | None, str], tuple[int, int]]


def _link_counters() -> Counters:
    """``(netns or None, dev) -> (tx_packets, rx_packets)`` for perfnet's namespace and every named one."""
    return {
        (netns, dev): packets for netns in [None, *netns_names()] for dev, packets in packet_counters(netns).items()
    }


def _counter_frame(before: Counters, after: Counters, tally: _Tally) -> pd.DataFrame:
    """Counter deltas per interface next to the events seen on devices of that name."""
    keys = [key for key in after if key in before]
    names = Counter(dev for _, dev in keys)
    frame = pd.DataFrame(
        {
            "netns": pd.array([netns for netns, _ in keys], dtype="object"),
            "dev": pd.array([dev for _, dev in keys], dtype="object"),
            "tx_packets": pd.array([after[key][0] - before[key][0] for key in keys], dtype="int64"),
            "rx_packets": pd.array([after[key][1] - before[key][1] for key in keys], dtype="int64"),
            "tx_events": pd.array([tally.tx_events(dev) for _, dev in keys], dtype="Int64"),
            "rx_events": pd.array([tally.rx_events(dev) for _, dev in keys], dtype="Int64"),
            "namesakes": pd.array([names[dev] for _, dev in keys], dtype="int64"),
        }
    )
    sums = frame.groupby("dev")[["tx_packets", "rx_packets"]].transform("sum")
    tx_ok = frame["tx_events"].isna() | (frame["tx_events"] == sums["tx_packets"])
    rx_ok = frame["rx_events"].isna() | (frame["rx_events"] == sums["rx_packets"])
    compared = frame["tx_events"].notna() | frame["rx_events"].notna()
    frame["complete"] = (tx_ok & rx_ok & compared).astype(bool)
    return frame.sort_values(["netns", "dev"], na_position="first", ignore_index=True)


class _Tally:
    """Counts the transmit and receive events per device name, as records pass by."""

    def __init__(self, captured: set[str]) -> None:
        self.tx_event = _XMIT if _XMIT in captured else _QUEUE if _QUEUE in captured else None
        self.rx_captured = _RECEIVE in captured
        self.tx: Counter[str] = Counter()
        self.rx: Counter[str] = Counter()

    def add(self, record: Record) -> None:
        dev = record.dev
        if dev is None:
            return
        if record.event == self.tx_event and (record.event != _XMIT or not record.fields.get("rc")):
            self.tx[dev] += 1
        elif record.event == _RECEIVE:
            self.rx[dev] += 1

    def tx_events(self, dev: str) -> int | None:
        return self.tx[dev] if self.tx_event else None

    def rx_events(self, dev: str) -> int | None:
        return self.rx[dev] if self.rx_captured else None


# --- the supervisor: perf's workload --------------------------------------------------------

# Run as `python -I -S -c _SUPERVISOR STATUS_FD CONTROL_FD STDERR_FD [COMMAND...]` by perf once
# its events are enabled.  Protocol: it writes "ready PID\n" on STATUS and waits for one byte on
# CONTROL: "g" starts the command ("q" or EOF exits).  SIGINT/SIGTERM are forwarded to the command
# (or, without one, end the wait).  When the command ends it writes "exit RC\n" ("error ERRNO\n"
# if it could not start) and waits for one more byte, so perfnet can read the interface counters
# while tracing is still live.  perf leaks descriptors (its -o file) to its workload: all but
# 0-2 and these three are closed first.  If perf dies, the supervisor gets SIGTERM (parent-death
# signal) and kills the command; if perfnet dies, CONTROL reads EOF early, and the supervisor
# kills the command and perf (perf ignores a parent-death signal of its own).
_SUPERVISOR: Final = r"""
import ctypes, os, signal, sys, threading
perf = os.getppid()
ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: perf gone, stop the command
if os.getppid() != perf:
    sys.exit(0)
status, control, err = (int(fd) for fd in sys.argv[1:4])
argv = sys.argv[4:]
low = 3
for fd in sorted((status, control, err)):
    os.closerange(low, fd)
    low = fd + 1
os.closerange(low, os.sysconf("SC_OPEN_MAX"))
for fd in (status, control, err):
    os.set_inheritable(fd, False)
stop = {signal.SIGINT, signal.SIGTERM}
signal.pthread_sigmask(signal.SIG_BLOCK, stop | {signal.SIGCHLD})
os.write(status, b"ready %d\n" % os.getpid())
if os.read(control, 1) != b"g":
    sys.exit(0)
rc = 0
ended = threading.Event()  # the command has ended
done = threading.Event()  # perfnet's last byte came (or its end of the pipe closed)


def watch(child):
    # perfnet closes its end only once perf has ended: closed earlier, perfnet died (SIGKILL,
    # the OOM killer), and perf and the command go with it
    os.read(control, 1)
    if not ended.is_set():
        for pid in (child, perf):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    done.set()


if argv:
    reset = stop | {signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ}
    try:
        child = os.posix_spawnp(
            argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, err, 2)], setsigmask=(), setsigdef=reset
        )
    except OSError as exc:
        os.write(status, b"error %d\n" % exc.errno)
        os.read(control, 1)
        sys.exit(0)
    threading.Thread(target=watch, args=(child,), daemon=True).start()
    while True:
        sig = signal.sigwait(stop | {signal.SIGCHLD})
        if sig != signal.SIGCHLD:
            os.kill(child, sig if os.getppid() == perf else signal.SIGKILL)  # no perf: no command
            continue
        pid, wstatus = os.waitpid(child, os.WNOHANG)
        if pid:
            rc = os.waitstatus_to_exitcode(wstatus)
            break
    ended.set()
else:
    threading.Thread(target=watch, args=(os.getpid(),), daemon=True).start()
    signal.sigwait(stop)
    ended.set()
os.write(status, b"exit %d\n" % rc)
done.wait()
"""


# --- options --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Options:
    command: tuple[str, ...]
    events: tuple[str, ...]
    system_wide: bool
    pid: int | None
    duration: float | None
    callgraph: str | None
    filter: str | None
    raw_output: Path | None
    mode: Mode
    markers: tuple[tuple[str, str], ...] = ()  # (event, filter) perfnet adds to the default events


DEFAULT_EVENTS: Final = ("net:*",)
"""What perfnet traces when not told: every ``net:*`` tracepoint, plus the skb free marker
(:func:`perfnet.perf.skb_free_marker`) where the host has it."""


def _options(
    command: Sequence[str] | None,
    events: Sequence[str] | None,
    system_wide: bool,
    pid: int | None,
    duration: float | None,
    callgraph: str | None,
    filter: str | None,
    raw_output: str | Path | None,
    mode: str,
) -> _Options:
    if isinstance(command, str | bytes):
        raise TypeError("command must be an argv list such as ['ping', '-c', '3', addr], not a string")
    if isinstance(events, str | bytes):
        raise TypeError("events must be a sequence of tracepoints such as ('net:*',), not a string")
    marker = skb_free_marker() if events is None else None
    events = DEFAULT_EVENTS if events is None else events
    argv = tuple(command or ())
    if not all(isinstance(arg, str) for arg in argv):
        raise TypeError("command arguments must be strings")
    if mode not in ("trace", "record"):
        raise UsageError(f"mode must be 'trace' or 'record', not {mode!r}")
    if not events:
        raise UsageError("give at least one event, e.g. events=('net:*',)")
    if not all(isinstance(event, str) and event.strip() for event in events):
        raise UsageError(f"an event name is empty: {list(events)!r} (perf would trace system calls instead)")
    if raw_output is not None:
        _check_output(Path(raw_output))
    if duration is not None and not duration > 0:
        raise UsageError(f"duration must be positive, not {duration!r}")
    if not (argv or system_wide or pid is not None):
        raise UsageError("nothing to trace: give a command, system_wide=True or pid")
    return _Options(
        argv,
        tuple(events),
        system_wide,
        pid,
        duration,
        callgraph,
        filter,
        Path(raw_output) if raw_output is not None else None,
        mode,  # type: ignore[arg-type]
        (marker,) if marker is not None else (),
    )


def _check_output(path: Path) -> None:
    """A raw output path perf can write, checked before perf starts.

    Raises:
        UsageError: it is a directory, or its directory does not exist.
    """
    if path.is_dir():
        raise UsageError(f"raw_output {path} is a directory; give a file name in it")
    if not path.parent.is_dir():
        raise UsageError(f"raw_output {path}: the directory {path.parent} does not exist")


def _check_command(argv: Sequence[str]) -> None:
    """Refuse a command that cannot start, before perf runs (perf would only print a warning)."""
    exe = argv[0]
    path = shutil.which(exe) if "/" not in exe else exe if os.path.isfile(exe) else None
    if path is None:
        where = "" if "/" in exe else " on PATH"
        raise TracedCommandError(
            f"command not found{where}: {exe!r}\nhint: pass an argv list whose first item is an installed program "
            "(check the spelling, or give its full path)",
            None,
            127,
        )
    if not os.access(path, os.X_OK):
        raise TracedCommandError(f"command is not executable: {path}\nhint: chmod +x {path}", None, 126)


# --- one capture session --------------------------------------------------------------------


class _Session:
    """perf, its supervisor and the traced command, from start to the last line of output.

    Threads: one reads perf's output (pseudo-terminal), one its stderr, one the supervisor's
    status messages (and reads the counters at the command's end), one waits for perf (sampling
    its memory and process tree, escalating a stop that is not obeyed).  The caller's thread
    parses the lines.
    """

    def __init__(self, options: _Options) -> None:
        self.options = options
        self.partial: str | None = None
        self.returncode: int | None = None  # the traced command's
        self.perf_returncode: int | None = None
        self.spawn_errno: int | None = None
        self.stats: CaptureStats | None = None
        self.topology: Topology | None = None
        self.tally = _Tally(set())
        self.lost = 0
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._command_done = threading.Event()
        self._perf_done = threading.Event()
        self._stop_at: float | None = None
        self._killed = False
        self._went = False
        self._closed = False
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._perf: psutil.Process | None = None
        self._supervisor_pid: int | None = None
        self._descendants: dict[int, psutil.Process] = {}
        self._threads: list[threading.Thread] = []
        self._lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._master = self._slave = self._status = self._control = -1
        self._stderr = bytearray()
        self._raw: IO[bytes] | None = None
        self._raw_error: OSError | None = None  # why the raw output could not be written
        self._timer: threading.Timer | None = None
        self._argv: list[str] = []
        self._perf_version = ""
        self._formats: dict[str, str] = {}
        self._symbols: Kallsyms | None = None
        self._before: Counters = {}
        self._after: Counters = {}
        self._started = self._ended = 0.0
        self._started_at = 0.0  # wall clock, when perf was started
        self._cpu = (0.0, 0.0)
        self._hwm = 0
        self._maxrss = 0

    # --- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run perf and wait until tracing is live; the traced command is started then.

        Raises:
            PerfError: (a subclass of) perf did not start, or the command cannot.
        """
        opts = self.options
        perf = perf_binary()
        if opts.command:
            _check_command(opts.command)
        schemas = load_schemas()
        if opts.filter is not None:
            check_filter(opts.filter, opts.events[-1], schemas)
        self._perf_version = perf_version(perf)
        try:
            self._launch(perf)
            self._await_ready()
            self._go(schemas)
        except BaseException:
            self.kill()
            created = self._raw is not None  # perf never ran: its output file goes
            self.close()
            if created and opts.raw_output is not None:
                with contextlib.suppress(OSError):
                    opts.raw_output.unlink()
            raise

    def _launch(self, perf: str) -> None:
        opts = self.options
        if opts.raw_output is not None:
            self._raw = open(opts.raw_output, "wb")  # noqa: SIM115 - closed in close()
        perf_args = self._perf_args(perf)
        self._argv = [*perf_args, "--", *opts.command]
        self._status, status_w = os.pipe()
        control_r, self._control = os.pipe()
        err = _dup_stderr()
        supervisor = [sys.executable, "-I", "-S", "-c", _SUPERVISOR, str(status_w), str(control_r), str(err)]
        try:
            self._proc = subprocess.Popen(
                [*perf_args, "--", *supervisor, *opts.command],
                stdin=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(status_w, control_r, err),
                process_group=0,
            )
        finally:
            for fd in (status_w, control_r, err):
                os.close(fd)
        self._started = time.monotonic()
        self._started_at = time.time()
        with contextlib.suppress(psutil.Error):
            self._perf = psutil.Process(self._proc.pid)
        self._spawn(self._read_stderr, self._read_status, self._watch)
        if opts.mode == "trace":
            self._spawn(self._read_output)

    def _perf_args(self, perf: str) -> list[str]:
        opts = self.options
        args = [perf, "trace", "--no-syscalls"] if opts.mode == "trace" else [perf, "record"]
        for event in opts.events:
            args += ["-e", event]
        if opts.filter is not None:
            args += ["--filter", opts.filter]
        for event, marker_filter in opts.markers:  # a --filter applies to the -e right before it
            args += ["-e", event, "--filter", marker_filter]
        if opts.system_wide:
            args.append("-a")
        if opts.pid is not None:
            args += ["-p", str(opts.pid)]
        if opts.callgraph is not None:
            args.append(f"--call-graph={opts.callgraph}")
        if opts.mode == "trace":
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no \r\n translation, no echo
            args += ["-o", os.ttyname(self._slave)]
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="perfnet-record-")
            args += ["-o", str(self._perf_data)]
        return args

    @property
    def _perf_data(self) -> Path:
        assert self._tmpdir is not None
        return Path(self._tmpdir.name, "perf.data")

    def _spawn(self, *targets: Callable[[], None]) -> None:
        for target in targets:
            thread = threading.Thread(target=target, name=f"perfnet{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _await_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready.wait(0.02):
            if self._perf_done.is_set():
                self._join_threads()
                stderr = self._stderr.decode("utf-8", errors="replace")
                raise perf_error(stderr, self.perf_returncode or 0, self._argv)
            if time.monotonic() > deadline:
                raise PerfError(
                    f"perf did not start tracing within {_START_TIMEOUT:g} s: {shlex.join(self._argv)}\n"
                    "hint: fewer events (a narrower pattern than `*:*`) start faster"
                )

    def _go(self, schemas: Mapping[str, EventSchema]) -> None:
        """Tracing is live: note what is captured, read the counters, start the command."""
        available = tracepoints()
        wanted = (*self.options.events, *(event for event, _ in self.options.markers))
        captured = expand_events(wanted, available or list(schemas))
        self.tally = _Tally(set(captured))
        for event in captured:
            text = format_text(event)
            if text is not None:
                self._formats[event] = text
        self._symbols = host_symbols()
        self._before = _link_counters()
        with contextlib.suppress(PerfnetError):  # best effort: labels are an extra, never a failure
            self.topology = snapshot()
        with self._lock:
            self._went = self._stop_at is None
            self._write_control(b"g" if self._went else b"q")
            if self._went and self.options.duration is not None:
                reason = "duration reached" if self.options.command else None
                self._timer = threading.Timer(self.options.duration, self.stop, (reason,))
                self._timer.daemon = True
                self._timer.start()

    # --- threads ------------------------------------------------------------------------------
    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with self._proc.stderr as stderr:
            while chunk := os.read(stderr.fileno(), 65536):
                if len(self._stderr) < _STDERR_LIMIT:
                    self._stderr += chunk

    def _read_status(self) -> None:
        try:
            with open(self._status, "rb", buffering=0) as status:
                for line in status:
                    word, _, value = line.decode().partition(" ")
                    if word == "ready":
                        self._supervisor_pid = int(value)
                        self._ready.set()
                    elif word in ("exit", "error"):
                        self._command_ended(word, int(value))
            if self._ready.is_set() and not self._command_done.is_set() and not self._killed:
                with self._lock:  # its end of the pipe closed without a word: it died
                    self.partial = self.partial or "the command's supervisor died; the command was stopped"
        finally:
            self._command_done.set()

    def _command_ended(self, word: str, value: int) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            if word == "error":
                self.spawn_errno = value
            elif self.options.command:
                self.returncode = value
            self._command_done.set()
        if self._before:
            self._after = _link_counters()  # perf still traces: the deltas cover the traced span
        with self._lock:
            self._write_control(b"d")

    def _read_output(self) -> None:
        """Split perf's output into lines (queued for the parser) and keep the raw text."""
        try:
            self._split_output()
        finally:
            self._lines.put(None)

    def _split_output(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError as exc:  # EIO: perf, the terminal's last user, is gone
                if exc.errno != errno.EIO:
                    raise
                chunk = b""
            if not chunk:
                break
            *complete, pending = (pending + chunk).split(b"\n")
            for line in complete:
                self._keep(line)
                self._lines.put(line)
        if pending:
            self._keep(pending)
            self._lines.put(pending)

    def _keep(self, line: bytes) -> None:
        if self._raw is None:
            return
        try:
            self._raw.write(_ANSI.sub(b"", line) + b"\n")
        except OSError as exc:  # a full disk (ENOSPC), EIO: the capture goes on in memory
            self._raw_failed(exc)

    def _raw_failed(self, exc: OSError) -> None:
        """The raw output cannot be written: stop writing it; :meth:`close` marks it incomplete."""
        self._raw_error = exc
        raw, self._raw = self._raw, None
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.close()

    def _watch(self) -> None:
        """Wait for perf: sample it, enforce stops, then reap it with its resource usage."""
        try:
            self._reap()
        finally:
            self._ended = time.monotonic()
            if self._slave >= 0:
                os.close(self._slave)  # the output reader sees EIO once it has read everything
                self._slave = -1
            self._perf_done.set()

    def _reap(self) -> None:
        assert self._proc is not None
        pid = self._proc.pid
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            self._sample()
            self._escalate()
            time.sleep(_SAMPLE_INTERVAL)
        if self._perf is not None:
            with contextlib.suppress(psutil.Error):  # a zombie still has its CPU times
                times = self._perf.cpu_times()
                self._cpu = (times.user, times.system)
        _, wstatus, usage = os.wait4(pid, 0)
        self._maxrss = usage.ru_maxrss * 1024
        self.perf_returncode = self._proc.returncode = os.waitstatus_to_exitcode(wstatus)

    def _sample(self) -> None:
        perf = self._perf
        if perf is None:
            return
        with contextlib.suppress(psutil.Error, OSError, ValueError):
            for child in perf.children(recursive=True):
                self._descendants.setdefault(child.pid, child)
            with open(f"/proc/{perf.pid}/status") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        self._hwm = max(self._hwm, int(line.split()[1]) * 1024)

    def _escalate(self) -> None:
        """A stop not obeyed in time: kill the command, then stop perf, harder each time."""
        with self._lock:
            if self._stop_at is None:
                return
            waited = time.monotonic() - self._stop_at
        if not self._command_done.is_set() and waited > _COMMAND_GRACE:
            self._signal_tree(self._supervisor_pid, signal.SIGKILL, include_root=False)
        steps = ((signal.SIGINT, 0.0), (signal.SIGTERM, _SIGNAL_GRACE), (signal.SIGKILL, 2 * _SIGNAL_GRACE))
        for sig, after in steps:
            if waited > _COMMAND_GRACE + _PERF_GRACE + after:
                self._signal_perf(sig)

    # --- stopping -----------------------------------------------------------------------------
    def stop(self, reason: str | None) -> None:
        """End the capture gracefully: the command gets SIGINT, perf flushes and exits.

        Args:
            reason: why, for ``Trace.partial``; None when the capture is complete anyway.
        """
        with self._lock:
            if self._stop_at is not None or self._perf_done.is_set():
                return
            self._stop_at = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
            if reason is not None and not self._command_done.is_set() and self.partial is None:
                self.partial = reason
            if self._went and self._supervisor_pid is not None and not self._command_done.is_set():
                with contextlib.suppress(OSError):
                    os.kill(self._supervisor_pid, signal.SIGINT)
            # not started yet: _go() sends "q" instead of "g"

    def kill(self, reason: str | None = None) -> None:
        """End everything now (SIGKILL); what perf already printed is still read."""
        with self._lock:
            self._killed = True
            if reason is not None and self.partial is None:
                self.partial = reason
        self._signal_tree(self._supervisor_pid, signal.SIGKILL, include_root=True)
        self._signal_perf(signal.SIGKILL)

    def _signal_perf(self, sig: signal.Signals) -> None:
        if self._proc is not None and not self._perf_done.is_set():
            with contextlib.suppress(OSError):
                self._proc.send_signal(sig)

    def _signal_tree(self, pid: int | None, sig: signal.Signals, *, include_root: bool) -> None:
        if pid is None:
            return
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [*root.children(recursive=True), *([root] if include_root else [])]:
                with contextlib.suppress(psutil.Error):
                    proc.send_signal(sig)

    def _write_control(self, byte: bytes) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone
            os.write(self._control, byte)

    # --- output and the end -------------------------------------------------------------------
    def lines(self) -> Iterator[bytes]:
        """perf's output, line by line: as perf trace prints it, or perf script's at the end."""
        if self.options.mode == "trace":
            while (line := self._lines.get()) is not None:
                yield line
            return
        self._perf_done.wait()
        if not self._perf_data.exists():
            return
        try:
            for text in read_perf_data(self._perf_data):
                line = text.encode("utf-8", errors="replace")
                self._keep(line)
                yield line
        except PerfError as exc:
            died = self.perf_returncode is not None and self.perf_returncode < 0
            if not (self._killed or died):
                raise
            reason = f"perf was killed by {signal.Signals(-(self.perf_returncode or -9)).name}"
            why = (str(exc).splitlines()[1:2] or [str(exc)])[0]  # perf script's first complaint
            self.partial = f"{self.partial or reason}; the recording is unreadable ({why})"
            self._raw_failed(OSError("no recording to convert"))

    def items(self) -> tuple[Variant, Iterator[Item]]:
        """perf's output parsed (the variant is read from the first event line), records tallied."""
        tables = {event: enum_tables_from_format(text) for event, text in self._formats.items()}
        enums = {event: table for event, table in tables.items() if table}
        variant, items = open_items(self.lines(), schemas=load_schemas(), enums=enums, symbols=self._symbols)
        return variant, self._tallied(items)

    def _tallied(self, items: Iterator[Item]) -> Iterator[Item]:
        for item in items:
            if isinstance(item, Record):
                self.tally.add(item)
            elif isinstance(item, Message):
                self.lost += item.lost
            yield item

    def close(self) -> None:
        """Wait for perf (stopping it if need be), end leftovers, write the side files, free all."""
        if self._closed:
            return
        self._closed = True
        if self._proc is not None:
            if not self._perf_done.wait(_COMMAND_GRACE + _PERF_GRACE + 3 * _SIGNAL_GRACE + 1):
                self.kill("perf did not exit")
                self._perf_done.wait()
            self._end_supervisor()
        self._close_fds(self._control)  # a supervisor still waiting for a byte now reads EOF and exits
        self._control = -1
        if self._proc is not None:
            self._join_threads()
            self._end_leftovers()
        if self._timer is not None:
            self._timer.cancel()
        self._close_fds(self._master, self._slave, self._status if self._proc is None else -1)
        self._master = self._slave = -1
        if self._raw is not None:
            try:
                self._raw.close()
            except OSError as exc:  # the last buffered write
                self._raw_failed(exc)
            self._raw = None
        if self._raw_error is not None and self.options.raw_output is not None:
            self._mark_incomplete(self.options.raw_output, self._raw_error)
        rc = self.perf_returncode
        if rc and not self._killed and self._ready.is_set() and self.partial is None:
            last = perf_message(self._stderr.decode("utf-8", errors="replace")).rpartition("\n")[2]
            ended = f"perf was killed by {signal.Signals(-rc).name}" if rc < 0 else f"perf exited with status {rc}"
            self.partial = ended + (f": {last}" if last and rc > 0 else "")
        if self._ready.is_set():
            self._write_side_files()
            self.stats = self._make_stats()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def _mark_incomplete(self, raw: Path, error: OSError) -> None:
        """Rename a raw output that could not be written whole to ``<raw>.incomplete``, and say
        so in ``partial`` (the trace itself is complete: it was parsed from perf's output)."""
        incomplete = Path(f"{raw}.incomplete")
        try:
            if raw.stat().st_size == 0:
                raise OSError("nothing was written")
            raw.replace(incomplete)
            where = f"what was written is in {incomplete}"
        except OSError:
            with contextlib.suppress(OSError):
                raw.unlink()
            where = "it was removed"
        reason = f"raw output {raw} could not be written ({error.strerror or error}); {where}"
        self.partial = f"{self.partial}; {reason}" if self.partial else reason

    @staticmethod
    def _close_fds(*fds: int) -> None:
        for fd in fds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _end_supervisor(self) -> None:
        """perf is gone, its workload may not be (``perf trace -p`` exits with its target, without
        waiting for it): stop the command as :meth:`stop` would, kill it if it does not obey."""
        if self._supervisor_pid is None or self._command_done.is_set():
            return
        with self._lock:
            self._stop_at = self._stop_at or time.monotonic()
            if self.options.command and self.partial is None:
                self.partial = "perf exited before the command ended"
        with contextlib.suppress(OSError):
            os.kill(self._supervisor_pid, signal.SIGINT)
        if not self._command_done.wait(_COMMAND_GRACE):
            self._signal_tree(self._supervisor_pid, signal.SIGKILL, include_root=True)

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=_PERF_GRACE)

    def _end_leftovers(self) -> None:
        """Processes the command left running (its own children) are ended: SIGTERM, then SIGKILL.

        Zombies are dead already (perf may exit before reaping its workload, which then waits
        for init).
        """
        alive = []
        for proc in self._descendants.values():
            with contextlib.suppress(psutil.Error):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    proc.terminate()
                    alive.append(proc)
        _, still = psutil.wait_procs(alive, timeout=_LEFTOVER_GRACE)
        for proc in still:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(still, timeout=_LEFTOVER_GRACE)

    def _write_side_files(self) -> None:
        """``<raw>.formats/``, ``<raw>.kallsyms.gz`` and ``<raw>.topology.json``, best effort."""
        raw = self.options.raw_output
        if raw is None or self._raw_error is not None:
            return
        for event, text in self._formats.items():
            sub, _, name = event.partition(":")
            dest = Path(f"{raw}.formats", sub, name, "format")
            with contextlib.suppress(OSError):
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(text, encoding="utf-8")
        if self._symbols is not None:  # read once, when tracing began
            with contextlib.suppress(OSError):
                save_kallsyms(self._symbols, Path(f"{raw}.kallsyms.gz"))
        if self.topology is not None:
            with contextlib.suppress(Exception):
                self.topology.save(f"{raw}.topology.json")

    def _make_stats(self) -> CaptureStats:
        return CaptureStats(
            argv=tuple(self._argv),
            command=self.options.command,
            returncode=self.returncode,
            perf_version=self._perf_version,
            kernel=os.uname().release,
            wall_s=self._ended - self._started,
            started_at=self._started_at,
            boot_time=psutil.boot_time(),
            cpu_user_s=self._cpu[0],
            cpu_system_s=self._cpu[1],
            peak_rss_bytes=self._hwm or self._maxrss,
            lost=self.lost,
            counters=_counter_frame(self._before, self._after, self.tally),
            perf_stderr=self._stderr.decode("utf-8", errors="replace"),
        )

    def failure(self) -> tuple[str, int] | None:
        """Why the command failed on its own (for ``Trace.partial``) and its status, or None."""
        if self.spawn_errno is not None:
            return f"command could not start: {os.strerror(self.spawn_errno)}", (
                127 if self.spawn_errno == errno.ENOENT else 126
            )
        rc = self.returncode
        perf = self.perf_returncode
        if rc is None or rc == 0 or self._stop_at is not None or (perf is not None and perf < 0 and not self._killed):
            return None  # stopped by perfnet, or ended because perf died (partial says so)
        if rc < 0:
            return f"command killed by {signal.Signals(-rc).name}", rc
        return f"command failed with exit code {rc}", rc

    def command_error(self, trace: Trace | None, failure: tuple[str, int]) -> TracedCommandError:
        """The error to raise for a :meth:`failure`."""
        reason, rc = failure
        where = "are on this error's .trace" if trace is not None else "were handed out"
        return TracedCommandError(
            f"traced {reason}: {shlex.join(self.options.command)}\n"
            f"hint: check the command on its own; the events captured until it ended {where}",
            trace,
            rc,
        )


def _dup_stderr() -> int:
    """A descriptor for the traced command's stderr: perfnet's own (perf's stderr is read by perfnet)."""
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)


STOPPED_BY: Final[Mapping[int, str]] = {
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hung up (SIGHUP)",
}
"""What ``partial`` says of a capture a signal stopped."""


@contextlib.contextmanager
def _signals_stop(session: _Session, signals: Sequence[signal.Signals]) -> Iterator[list[int]]:
    """While capturing, ``signals`` stop the capture instead of ending the process at once:
    the first stops perf and the command (perf flushes what it has), a second kills them.

    Only in the main thread (Python runs handlers there), and only for signals that have their
    default handling (SIGINT: Python's KeyboardInterrupt); a handler the program set stays.
    Yields the signals received.  On leaving, a SIGTERM or SIGHUP received is raised again
    for the handler that was there before: by default the process then ends with it, perf
    and the command already reaped.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            session.stop(STOPPED_BY[signum])
        else:
            session.kill(f"{STOPPED_BY[received[0]]}, then killed by a second signal")

    defaults = {signal.SIGINT: signal.default_int_handler}
    previous = {}
    for sig in signals:
        if signal.getsignal(sig) is defaults.get(sig, signal.SIG_DFL):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        ending = next((sig for sig in received if sig in (signal.SIGTERM, signal.SIGHUP)), None)
        if ending is not None:
            signal.raise_signal(ending)


# --- public API -----------------------------------------------------------------------------


def capture(
    command: Sequence[str] | None = None,
    *,
    events: Sequence[str] | None = None,
    system_wide: bool = False,
    pid: int | None = None,
    duration: float | None = None,
    callgraph: str | None = None,
    filter: str | None = None,
    raw_output: str | Path | None = None,
    mode: Mode = "trace",
) -> Trace:
    """Trace a command (or the whole system, or a process) with perf and parse what it prints.

    Args:
        command: the command to run and trace, an argv list (never a shell string).  Without
            ``system_wide``/``pid`` only its tasks are traced (with their children, and the
            softirq work done in their context).  Its stdout and stderr are perfnet's; its stdin
            is ``/dev/null``.
        events: tracepoints, as perf takes them (``"net:*"``, ``"skb:kfree_skb"``).  Default:
            :data:`DEFAULT_EVENTS` plus the skb free marker (``kmem:kmem_cache_free`` filtered to
            the skb caches), which ends TCP packets that free no ``skb:*`` event; given events
            are traced as given.
        system_wide: trace every CPU (perf ``-a``).
        pid: trace this running process (perf ``-p``); the capture ends when it exits.
        duration: stop after this many seconds (a command still running is stopped and the trace
            marked partial).  Without a command and without a duration, capture until Ctrl-C.
        callgraph: record kernel callchains: ``"fp"``, ``"dwarf"``, ``"lbr"`` (perf
            ``--call-graph``).
        filter: a kernel event filter for the last of ``events`` (perf ``--filter``), e.g.
            ``'len > 100 && name == "eth0"'``; checked before perf runs (:func:`validate_filter`).
        raw_output: keep perf's text output in this file (exactly as printed, without colour),
            and beside it ``<raw>.formats/`` (the tracefs formats of the captured events, so
            :func:`perfnet.read` names drop reasons), ``<raw>.kallsyms.gz`` (kernel text symbols,
            see :func:`perfnet.kallsyms.load_kallsyms`) and, if available, ``<raw>.topology.json``.
        mode: ``"trace"`` (``perf trace``, records as they happen) or ``"record"`` (``perf
            record`` then ``perf script``: records at the end, for rates perf trace cannot print).

    Returns:
        The parsed trace.  ``partial`` is None if the capture ran to its end, else why not
        (``"interrupted (Ctrl-C)"``, ``"duration reached"``); ``capture_stats`` is a
        :class:`CaptureStats`; ``topology`` the interfaces at the start (if perfnet.topology
        is available).  Ctrl-C stops the capture and returns what was captured (a second Ctrl-C
        kills perf at once); perf and the command never outlive this call.  SIGTERM and SIGHUP
        stop it the same way, then are raised again once perf is reaped (by default the process
        ends with them).  Signals are handled so only when called from the main thread, and
        only where the program has not set its own handler.  If the process dies outright
        (SIGKILL, the OOM killer, an unhandled signal), perf is killed with it and the command
        is stopped (parent-death signals), from any thread.

    Raises:
        TypeError: ``command`` or ``events`` is a string.
        UsageError: an invalid option (nothing to trace, unknown mode, non-positive duration).
        PerfNotFoundError, PerfPermissionError, UnknownEventError, FilterError, PerfError: perf
            is missing, not allowed, or refused the events, the filter or another option.
        TracedCommandError: the command could not start, or exited with a non-zero status (its
            ``trace`` holds what was captured).
    """
    options = _options(command, events, system_wide, pid, duration, callgraph, filter, raw_output, mode)
    session = _Session(options)
    with _signals_stop(session, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
        session.start()
        try:
            variant, items = session.items()
            columns = build_columns(items)
        except BaseException:
            session.kill()
            raise
        finally:
            session.close()
    failure = session.failure()
    trace = Trace(
        columns,
        variant,
        source=str(options.raw_output or ""),
        topology=session.topology,
        partial=failure[0] if failure is not None else session.partial,
        capture_stats=session.stats,
    )
    if failure is not None:
        raise session.command_error(trace, failure)
    return trace


class RecordStream(Iterator[Record]):
    """The records of a running capture, in the order perf prints them (see :func:`stream`).

    Once the capture has ended, ``partial``, ``returncode`` and ``capture_stats`` describe it as
    for :func:`capture`.
    """

    def __init__(self, session: _Session) -> None:
        self._session = session
        self._items: Iterator[Item] | None = None
        self._variant = Variant.SCRIPT if session.options.mode == "record" else Variant.TRACE
        self._others: list[Item] = []  # LOST lines, perf's messages, unparsed lines
        self._handed = ColumnBuilder(None, detected=False)  # everything, as columns: flat in memory
        self._done = False

    def __next__(self) -> Record:
        if self._done:
            raise StopIteration
        if self._items is None:
            self._variant, self._items = self._session.items()
        for item in self._items:
            self._handed.add_item(item)
            if isinstance(item, Record):
                return item
            self._others.append(item)
        self._done = True
        self._session.close()
        failure = self._session.failure()
        if failure is not None:
            raise self._session.command_error(None, failure)
        raise StopIteration

    def stop(self, reason: str = "stopped by the caller") -> None:
        """Ask the capture to end (like Ctrl-C); the records perf still prints keep coming.
        ``reason`` is what ``partial`` will say."""
        self._session.stop(reason)

    def kill(self, reason: str = "killed by the caller") -> None:
        """End perf and the command at once (SIGKILL, like a second Ctrl-C); what perf printed
        until then still comes."""
        self._session.kill(reason)

    @property
    def partial(self) -> str | None:
        """None if the capture ran to its end, else why it did not (or why the command failed)."""
        failure = self._session.failure() if self._done else None
        return failure[0] if failure is not None else self._session.partial

    @property
    def returncode(self) -> int | None:
        """The traced command's exit status, once it has ended."""
        return self._session.returncode

    @property
    def capture_stats(self) -> CaptureStats | None:
        """perf's resource use and the loss accounting, once the capture has ended."""
        return self._session.stats

    @property
    def topology(self) -> Topology | None:
        """The namespaces' interfaces, snapshotted when tracing began (None before, or if unreadable)."""
        return self._session.topology

    def to_trace(self, records: Iterable[Record] | None = None) -> Trace:
        """A :class:`Trace` of the records handed out (or of ``records``, a selection of them)
        and the messages and unparsed lines this stream kept, with the capture's facts, as
        :func:`capture` would return.  The records handed out are kept as columns, a few dozen
        bytes each, so a capture left running for hours stays small."""
        columns = self._handed.finish() if records is None else build_columns(itertools.chain(records, self._others))
        return Trace(
            columns,
            self._variant,
            source=str(self._session.options.raw_output or ""),
            topology=self.topology,
            partial=self.partial,
            capture_stats=self.capture_stats,
        )


@contextlib.contextmanager
def stream(
    command: Sequence[str] | None = None,
    *,
    events: Sequence[str] | None = None,
    system_wide: bool = False,
    pid: int | None = None,
    duration: float | None = None,
    callgraph: str | None = None,
    filter: str | None = None,
    raw_output: str | Path | None = None,
    mode: Mode = "trace",
) -> Iterator[RecordStream]:
    """Capture as :func:`capture` does, handing out typed records while the command still runs::

        with perfnet.live.stream(["ping", "-c", "3", addr]) as records:
            for rec in records:
                print(rec.time_ns, rec.event, rec.dev)

    The capture is live when the ``with`` body starts.  Iterating ends when perf has exited;
    leaving the block earlier stops the capture (the command gets SIGINT).  With
    ``mode="record"`` the records only come once the command has ended.  Ctrl-C raises
    KeyboardInterrupt in the body as usual; perf and the command end with the block.  SIGTERM
    and SIGHUP (in the main thread, where they have their default handling) stop the capture
    like :meth:`RecordStream.stop`; once the block has ended and perf is reaped, the signal is
    raised again, and by default ends the process.

    Raises:
        As :func:`capture`, at the start; :class:`TracedCommandError` (with ``trace`` None) from
        the iterator after the last record if the command failed.
    """
    options = _options(command, events, system_wide, pid, duration, callgraph, filter, raw_output, mode)
    session = _Session(options)
    with _signals_stop(session, (signal.SIGTERM, signal.SIGHUP)):
        session.start()
        try:
            yield RecordStream(session)
        except KeyboardInterrupt:
            session.stop("interrupted (Ctrl-C)")
            raise
        finally:
            session.stop("stopped by the caller")
            with _signals_stop(session, (signal.SIGINT,)):
                session.close()
