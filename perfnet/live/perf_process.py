"""perf as a child process: started in its own process group, its output read from a
pseudo-terminal, its stderr kept, sampled while it runs, reaped with its resource usage."""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import shlex
import signal
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Final

import psutil

from perfnet.host.perf import PerfError, perf_error, read_perf_data
from perfnet.host.procs import close_fds, peak_rss

SAMPLE_INTERVAL: Final = 0.05  # s between samples of perf's memory and process tree
_STDERR_LIMIT: Final = 1 << 20  # bytes of perf's stderr kept


class PerfProcess:
    """One perf process and the threads that read it.

    perf writes its output (``-o``) to a pseudo-terminal (:attr:`tty`) when it is asked for
    lines as they happen: it buffers files and FIFOs fully, and flushes a terminal every line.
    The lines come in :attr:`lines` (None after the last).  One thread keeps perf's stderr, one
    waits for perf: every :data:`SAMPLE_INTERVAL` it notes perf's peak memory and its process
    tree (to end what the command leaves behind) and calls ``tick`` (which escalates a stop
    not obeyed), then reaps it with its CPU times.  :attr:`done` is set once perf is reaped.
    """

    def __init__(self, *, pty: bool) -> None:
        """``pty``: perf's output is read as it comes; else perf records into :attr:`output`,
        a file in a temporary directory removed by :meth:`close`."""
        self.returncode: int | None = None
        self.done = threading.Event()
        self.lines: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.started = self.ended = 0.0  # monotonic
        self.started_at = 0.0  # wall clock
        self.cpu = (0.0, 0.0)  # user, system seconds
        self.descendants: dict[int, psutil.Process] = {}  # every process seen under perf
        self._hwm = self._maxrss = 0
        self._stderr = bytearray()
        self._proc: subprocess.Popen[bytes] | None = None
        self._process: psutil.Process | None = None
        self._threads: list[threading.Thread] = []
        self._master = self._slave = -1
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if pty:
            self._master, self._slave = os.openpty()
            tty.setraw(self._slave)  # no \r\n translation, no echo
            self.output = Path(os.ttyname(self._slave))
        else:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="perfnet-record-")
            self.output = Path(self._tmpdir.name, "perf.data")

    @property
    def spawned(self) -> bool:
        """perf was started (it may have exited since)."""
        return self._proc is not None

    @property
    def running(self) -> bool:
        """perf was started and is not yet reaped."""
        return self._proc is not None and not self.done.is_set()

    @property
    def stderr(self) -> str:
        """What perf wrote on stderr (its first MiB)."""
        return self._stderr.decode("utf-8", errors="replace")

    @property
    def peak_rss(self) -> int:
        """perf's peak resident memory in bytes (VmHWM while it ran, else its rusage)."""
        return self._hwm or self._maxrss

    def start(
        self, argv: Sequence[str], pass_fds: Sequence[int], tick: Callable[[], None], keep: Callable[[bytes], None]
    ) -> None:
        """Run perf; ``keep`` sees each output line before it is queued.

        Raises:
            OSError: perf could not be started (no memory, no processes left); :attr:`done`
                is set, as for a perf that exited.
        """
        try:
            self._proc = subprocess.Popen(
                list(argv), stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, pass_fds=tuple(pass_fds), process_group=0
            )
        except BaseException:
            self.done.set()
            raise
        self.started = time.monotonic()
        self.started_at = time.time()
        with contextlib.suppress(psutil.Error):
            self._process = psutil.Process(self._proc.pid)
        self._spawn(self._read_stderr)
        self._spawn(self._watch, tick)
        if self._master >= 0:
            self._spawn(self._read_output, keep)

    def wait_ready(self, ready: threading.Event, timeout: float, argv: Sequence[str]) -> None:
        """Wait until ``ready`` is set (perf started its workload: its events are enabled).

        Raises:
            PerfError: (a subclass of) perf exited first, or did not start within ``timeout`` s.
        """
        deadline = time.monotonic() + timeout
        while not ready.wait(0.02):
            if self.done.is_set():
                self.join(timeout)
                raise perf_error(self.stderr, self.returncode or 0, argv)
            if time.monotonic() > deadline:
                raise PerfError(
                    f"perf did not start tracing within {timeout:g} s: {shlex.join(argv)}\n"
                    "hint: fewer events (a narrower pattern than `*:*`) start faster"
                )

    def recorded(self) -> Iterator[bytes]:
        """The lines ``perf script`` prints of the recording, once perf has ended.

        Raises:
            PerfError: perf script cannot read it (perf was killed before it wrote its header).
        """
        self.done.wait()
        if self.output.exists():
            for text in read_perf_data(self.output):
                yield text.encode("utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to perf, if it still runs."""
        if self.running:
            assert self._proc is not None
            with contextlib.suppress(OSError):
                self._proc.send_signal(sig)

    def join(self, timeout: float) -> None:
        """Wait for the reading threads to finish (each at most ``timeout`` seconds)."""
        for thread in self._threads:
            thread.join(timeout=timeout)

    def close(self) -> None:
        """Close the terminal, remove the recording (once perf and its readers are done)."""
        close_fds(self._master, self._slave)
        self._master = self._slave = -1
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"perfnet{target.__name__}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        with self._proc.stderr as stderr:
            while chunk := os.read(stderr.fileno(), 65536):
                if len(self._stderr) < _STDERR_LIMIT:
                    self._stderr += chunk

    def _read_output(self, keep: Callable[[bytes], None]) -> None:
        """Split perf's output into lines: kept, then queued for the parser."""
        pending = b""
        try:
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
                    keep(line)
                    self.lines.put(line)
            if pending:
                keep(pending)
                self.lines.put(pending)
        finally:
            self.lines.put(None)

    def _watch(self, tick: Callable[[], None]) -> None:
        try:
            self._reap(tick)
        finally:
            self.ended = time.monotonic()
            if self._slave >= 0:
                os.close(self._slave)  # the output reader sees EIO once it has read everything
                self._slave = -1
            self.done.set()

    def _reap(self, tick: Callable[[], None]) -> None:
        assert self._proc is not None
        pid = self._proc.pid
        while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
            self._sample()
            tick()
            time.sleep(SAMPLE_INTERVAL)
        if self._process is not None:
            with contextlib.suppress(psutil.Error):  # a zombie still has its CPU times
                times = self._process.cpu_times()
                self.cpu = (times.user, times.system)
        _, wstatus, usage = os.wait4(pid, 0)
        self._maxrss = usage.ru_maxrss * 1024
        self.returncode = self._proc.returncode = os.waitstatus_to_exitcode(wstatus)

    def _sample(self) -> None:
        process = self._process
        if process is None:
            return
        with contextlib.suppress(psutil.Error):
            for child in process.children(recursive=True):
                self.descendants.setdefault(child.pid, child)
            self._hwm = max(self._hwm, peak_rss(process.pid))
