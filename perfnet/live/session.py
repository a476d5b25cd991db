"""One capture session: perf, its workload and its output, from start to reaping, as a small
state machine (:class:`State`)."""

from __future__ import annotations

import enum
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Final

from perfnet.filters import check_filter
from perfnet.grammar import Variant
from perfnet.host.perf import (
    PerfError,
    perf_binary,
    perf_message,
)
from perfnet.host.procs import end_leftovers
from perfnet.live.config import CaptureConfig, check_command
from perfnet.live.facts import HostFacts
from perfnet.live.perf_process import PerfProcess
from perfnet.live.raw import RawOutput
from perfnet.live.stats import Accounting, CaptureStats, capture_stats
from perfnet.live.workload import Workload
from perfnet.reader import open_items
from perfnet.records import Item
from perfnet.schema import EventSchema, load_schemas

_START_TIMEOUT: Final = 60.0  # s perf may take to open its events and start its workload
_COMMAND_GRACE: Final = 3.0  # s between asking the command to stop (SIGINT) and SIGKILL
_PERF_GRACE: Final = 10.0  # s perf may take to flush and exit once its workload ended
_SIGNAL_GRACE: Final = 2.0  # s between SIGINT, SIGTERM and SIGKILL when perf itself must be stopped
_ESCALATION: Final = ((signal.SIGINT, 0.0), (signal.SIGTERM, _SIGNAL_GRACE), (signal.SIGKILL, 2 * _SIGNAL_GRACE))


class State(enum.Enum):
    """Where a session is.  Every state only moves forward."""

    NEW = "new"  # nothing started
    STARTING = "starting"  # perf runs, its events are not enabled yet
    LIVE = "live"  # tracing; the command runs
    STOPPING = "stopping"  # asked to stop: the command was interrupted, perf flushes and exits
    DONE = "done"  # perf and the command reaped, everything closed


class Session:
    """perf, its workload (the supervisor and the traced command) and its output.

    The caller's thread parses the lines (:meth:`items`); perf's threads are
    :class:`PerfProcess`'s, the workload's is :class:`Workload`'s.  A stop not obeyed in time
    escalates: the command is killed after :data:`_COMMAND_GRACE`, perf gets SIGINT, SIGTERM,
    SIGKILL after :data:`_PERF_GRACE` more.
    """

    def __init__(self, options: CaptureConfig) -> None:
        self.options = options
        self.state = State.NEW
        self.partial: str | None = None
        self.stats: CaptureStats | None = None
        self.accounting = Accounting()
        self._lock = threading.RLock()
        self._killed = False
        self._stop_at: float | None = None
        self._perf = PerfProcess(pty=options.mode == "trace")
        self._workload = Workload()
        self._raw: RawOutput | None = None
        self._timer: threading.Timer | None = None
        self._argv: list[str] = []
        self.facts = HostFacts()

    @property
    def returncode(self) -> int | None:
        """The traced command's exit status, once it has ended."""
        return self._workload.returncode if self.options.command else None

    # --- start ---------------------------------------------------------------------------
    def start(self) -> None:
        """Run perf and wait until tracing is live; the traced command is started then.

        Raises:
            PerfError: (a subclass of) perf did not start, or the command cannot.
        """
        opts = self.options
        try:  # whatever fails, the descriptors made for perf and its workload are closed
            perf = perf_binary()
            if opts.command:
                check_command(opts.command)
            schemas = load_schemas()
            if opts.filter is not None:
                check_filter(opts.filter, opts.events[-1], schemas)
            self._launch(perf)
            self._perf.wait_ready(self._workload.ready, _START_TIMEOUT, self._argv)
            self._go(schemas)
        except BaseException:
            self.kill()
            if self._raw is not None and not self._workload.ready.is_set():
                self._raw.discard()  # perf never ran: its output file goes
            self.close()
            raise

    def _launch(self, perf: str) -> None:
        opts = self.options
        if opts.raw_output is not None:
            self._raw = RawOutput(opts.raw_output)
        perf_args = opts.perf_args(perf, str(self._perf.output))
        self._argv = [*perf_args, "--", *opts.command]
        with self._lock:
            if self.state is State.NEW:  # a stop before this start is kept: _go() quits then
                self.state = State.STARTING
        try:
            argv = [*perf_args, "--", *self._workload.argv(opts.command)]
            self._perf.start(argv, self._workload.pass_fds, self._escalate, self._raw.write if self._raw else _drop)
        finally:
            self._workload.launched()
        self._workload.listen(self._command_ended)

    def _go(self, schemas: Mapping[str, EventSchema]) -> None:
        """Tracing is live: note what is captured, read the counters, start the command."""
        self.facts.read((*self.options.events, *(event for event, _ in self.options.markers)), schemas)
        self.accounting.begin(self.facts.captured)
        with self._lock:
            if self.state is not State.STARTING:  # stopped while perf started
                self._workload.quit()
                return
            self.state = State.LIVE
            self._workload.go()
            if self.options.duration is not None:
                reason = "duration reached" if self.options.command else None
                self._timer = threading.Timer(self.options.duration, self.stop, (reason,))
                self._timer.daemon = True
                self._timer.start()

    # --- while it runs (perf's and the workload's threads) -----------------------------------
    def _command_ended(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.accounting.end()  # perf still traces: the deltas cover the traced span
        self._workload.release()

    def _escalate(self) -> None:
        """A stop not obeyed in time: kill the command, then stop perf, harder each time."""
        with self._lock:
            if self._stop_at is None:
                return
            waited = time.monotonic() - self._stop_at
        if not self._workload.ended.is_set() and waited > _COMMAND_GRACE:
            self._workload.kill_command()
        for sig, after in _ESCALATION:
            if waited > _COMMAND_GRACE + _PERF_GRACE + after:
                self._perf.signal(sig)

    # --- stopping -----------------------------------------------------------------------------
    def stop(self, reason: str | None) -> None:
        """End the capture gracefully: the command gets SIGINT, perf flushes and exits.
        ``reason`` is for ``Trace.partial``: None when the capture is complete anyway."""
        with self._lock:
            if self.state in (State.STOPPING, State.DONE) or self._perf.done.is_set():
                return
            was_live = self.state is State.LIVE
            self.state = State.STOPPING
            self._stop_at = time.monotonic()
            if self._timer is not None:
                self._timer.cancel()
            if reason is not None and not self._workload.ended.is_set() and self.partial is None:
                self.partial = reason
            if was_live:  # still starting: _go() tells the workload to quit instead of go
                self._workload.interrupt()

    def kill(self, reason: str | None = None) -> None:
        """End everything now (SIGKILL); what perf already printed is still read."""
        with self._lock:
            self._killed = True
            if reason is not None and self.partial is None:
                self.partial = reason
        self._workload.kill()
        self._perf.signal(signal.SIGKILL)

    # --- output -------------------------------------------------------------------------------
    def lines(self) -> Iterator[bytes]:
        """perf's output, line by line: as perf trace prints it, or perf script's at the end."""
        if self.options.mode == "trace":
            while (line := self._perf.lines.get()) is not None:
                yield line
            return
        try:
            for line in self._perf.recorded():
                if self._raw is not None:
                    self._raw.write(line)
                yield line
        except PerfError as exc:
            rc = self._perf.returncode
            if not (self._killed or (rc is not None and rc < 0)):
                raise
            self.partial = _unreadable(self.partial, rc, exc)
            if self._raw is not None:
                self._raw.fail(OSError("no recording to convert"))

    def items(self) -> tuple[Variant, Iterator[Item]]:
        """perf's output parsed (the variant is read from the first event line), records tallied."""
        facts = self.facts
        variant, items = open_items(self.lines(), schemas=load_schemas(), enums=facts.enums(), symbols=facts.symbols)
        return variant, self.accounting.count(items)

    # --- the end ------------------------------------------------------------------------------
    def close(self) -> None:
        """Wait for perf (stopping it if need be), end leftovers, write the side files, free all."""
        if self.state is State.DONE:
            return
        started = self._perf.spawned
        self.state = State.DONE
        if started:
            if not self._perf.done.wait(_COMMAND_GRACE + _PERF_GRACE + 3 * _SIGNAL_GRACE + 1):
                self.kill("perf did not exit")
                self._perf.done.wait()
            self._end_workload()
        self._workload.close()
        if started:
            self._perf.join(_PERF_GRACE)
            self._workload.join(_PERF_GRACE)
            end_leftovers(self._perf.descendants.values())
        if self._timer is not None:
            self._timer.cancel()
        self._perf.close()
        self.partial = _ending(self.partial, self._killed, self._workload, self._raw, self._perf)
        if self._workload.ready.is_set():
            if self._raw is not None:
                self._raw.save_side_files(self.facts.formats, self.facts.symbols, self.facts.topology)
            self.stats = capture_stats(self._perf, self.accounting, self._argv, self.options.command, self.returncode)

    def _end_workload(self) -> None:
        """perf is gone, its workload may not be (``perf trace -p`` exits with its target, without
        waiting for it): stop the command as :meth:`stop` would, kill it if it does not obey."""
        if self._workload.pid is None or self._workload.ended.is_set():
            return
        with self._lock:
            self._stop_at = self._stop_at or time.monotonic()
            if self.options.command and self.partial is None:
                rc = self._perf.returncode  # killed by a signal: say so, whoever noticed first
                if rc is not None and rc < 0 and not self._killed:
                    self.partial = _killed_by(rc)
                else:
                    self.partial = "perf exited before the command ended"
        self._workload.stop(_COMMAND_GRACE)

    def failure(self) -> tuple[str, int] | None:
        """Why the command failed on its own (for ``Trace.partial``) and its status, or None."""
        perf_died = self._perf.returncode is not None and self._perf.returncode < 0 and not self._killed
        return self._workload.failure(stopped=self._stop_at is not None or perf_died)


def _drop(line: bytes) -> None:
    """Keep nothing of perf's output (no raw output was asked for)."""


def _killed_by(rc: int) -> str:
    """``partial`` for perf ended by a signal (``rc`` is minus its number)."""
    return f"perf was killed by {signal.Signals(-rc).name}"


def _unreadable(partial: str | None, rc: int | None, error: PerfError) -> str:
    """``partial`` for a recording perf script cannot read (perf was killed before it wrote it)."""
    reason = _killed_by(rc or -9)
    why = (str(error).splitlines()[1:2] or [str(error)])[0]  # perf script's first complaint
    return f"{partial or reason}; the recording is unreadable ({why})"


def _ending(
    partial: str | None, killed: bool, workload: Workload, raw: RawOutput | None, perf: PerfProcess
) -> str | None:
    """``partial`` with what the end of a capture adds: a supervisor that died, a raw output
    that could not be written, perf's own failure (when nothing else was said)."""
    if workload.vanished and not killed:
        partial = partial or "the command's supervisor died; the command was stopped"
    if raw is not None:
        raw.close()
        if raw.problem:
            partial = f"{partial}; {raw.problem}" if partial else raw.problem
    rc = perf.returncode
    if rc and not killed and workload.ready.is_set() and partial is None:
        last = perf_message(perf.stderr).rpartition("\n")[2]
        ended = _killed_by(rc) if rc < 0 else f"perf exited with status {rc}"
        partial = ended + (f": {last}" if last and rc > 0 else "")
    return partial
