"""One capture session: perf, its pseudo-terminal, the supervisor, the threads that read them,
and how everything is stopped and reaped."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Final

import psutil

from perfnet.errors import PerfnetError
from perfnet.filters import check_filter
from perfnet.grammar import Variant
from perfnet.kallsyms import Kallsyms, host_symbols, save_kallsyms
from perfnet.live import supervisor as supervisor_module
from perfnet.live.config import CaptureConfig, check_command
from perfnet.live.stats import CaptureStats, Counters, Tally, counter_frame, link_counters
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
    tracepoints,
)
from perfnet.reader import ANSI_ESCAPE, open_items
from perfnet.records import Item, Message, Record
from perfnet.schema import EventSchema, enum_tables_from_format, load_schemas
from perfnet.topology import Topology, snapshot
from perfnet.trace import Trace

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


class Session:
    """perf, its supervisor and the traced command, from start to the last line of output.

    Threads: one reads perf's output (pseudo-terminal), one its stderr, one the supervisor's
    status messages (and reads the counters at the command's end), one waits for perf (sampling
    its memory and process tree, escalating a stop that is not obeyed).  The caller's thread
    parses the lines.
    """

    def __init__(self, options: CaptureConfig) -> None:
        self.options = options
        self.partial: str | None = None
        self.returncode: int | None = None  # the traced command's
        self.perf_returncode: int | None = None
        self.spawn_errno: int | None = None
        self.stats: CaptureStats | None = None
        self.topology: Topology | None = None
        self.tally = Tally(set())
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
            check_command(opts.command)
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
        supervisor = [sys.executable, "-I", "-S", supervisor_module.__file__, str(status_w), str(control_r), str(err)]
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
        self.tally = Tally(set(captured))
        for event in captured:
            text = format_text(event)
            if text is not None:
                self._formats[event] = text
        self._symbols = host_symbols()
        self._before = link_counters()
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
            self._after = link_counters()  # perf still traces: the deltas cover the traced span
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
            counters=counter_frame(self._before, self._after, self.tally),
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
