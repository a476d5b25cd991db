"""The public face of live captures: :func:`capture`, :func:`stream` and how signals stop them."""

from __future__ import annotations

import contextlib
import itertools
import shlex
import signal
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from types import FrameType
from typing import Final, Unpack

from perfnet.columns import ColumnBuilder, build_columns
from perfnet.grammar import Variant
from perfnet.live.config import CaptureConfig, CaptureOptions, TracedCommandError, configure
from perfnet.live.session import Session
from perfnet.live.stats import CaptureStats
from perfnet.records import Item, Record
from perfnet.topology import Topology
from perfnet.trace import Trace

STOPPED_BY: Final[Mapping[int, str]] = {
    signal.SIGINT: "interrupted (Ctrl-C)",
    signal.SIGTERM: "terminated (SIGTERM)",
    signal.SIGHUP: "hung up (SIGHUP)",
}
"""What ``partial`` says of a capture a signal stopped."""


def react_to_signals(capture: Session | RecordStream, received: Sequence[int]) -> None:
    """What a capture does on the signals received so far: the first stops it (perf flushes
    what it has), a second kills perf and the command at once."""
    if len(received) == 1:
        capture.stop(STOPPED_BY[received[0]])
    elif received:
        capture.kill(f"{STOPPED_BY[received[0]]}, then killed by a second signal")


@contextlib.contextmanager
def _signals_stop(session: Session, signals: Sequence[signal.Signals]) -> Iterator[list[int]]:
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
        react_to_signals(session, received)

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


def _command_error(command: Sequence[str], trace: Trace | None, failure: tuple[str, int]) -> TracedCommandError:
    """The error to raise when the traced command failed (:meth:`Session.failure`)."""
    reason, rc = failure
    where = "are on this error's .trace" if trace is not None else "were handed out"
    return TracedCommandError(
        f"traced {reason}: {shlex.join(command)}\n"
        f"hint: check the command on its own; the events captured until it ended {where}",
        trace,
        rc,
    )


# --- public API -----------------------------------------------------------------------------


def capture(
    command: Sequence[str] | CaptureConfig | None = None,
    **options: Unpack[CaptureOptions],
) -> Trace:
    """Trace a command (or the whole system, or a process) with perf and parse what it prints.

    Args:
        command: the command to run and trace, an argv list (never a shell string), or a
            :class:`CaptureConfig` made by :func:`configure` (then no other arguments).  Without
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
    config = configure(command, **options)
    session = Session(config)
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
        source=str(config.raw_output or ""),
        topology=session.facts.topology,
        partial=failure[0] if failure is not None else session.partial,
        capture_stats=session.stats,
    )
    if failure is not None:
        raise _command_error(session.options.command, trace, failure)
    return trace


class RecordStream(Iterator[Record]):
    """The records of a running capture, in the order perf prints them (see :func:`stream`).

    Once the capture has ended, ``partial``, ``returncode`` and ``capture_stats`` describe it as
    for :func:`capture`.
    """

    def __init__(self, session: Session) -> None:
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
            raise _command_error(self._session.options.command, None, failure)
        raise StopIteration

    def close(self) -> None:
        """Stop reading perf's output (a record-mode stream left early ends its perf script)."""
        if isinstance(self._items, Generator):
            self._items.close()

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
        return self._session.facts.topology

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
    command: Sequence[str] | CaptureConfig | None = None,
    **options: Unpack[CaptureOptions],
) -> Iterator[RecordStream]:
    """Capture as :func:`capture` does, handing out typed records while the command still runs::

        with perfnet.stream(["ping", "-c", "3", addr]) as records:
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
    config = configure(command, **options)
    session = Session(config)
    with _signals_stop(session, (signal.SIGTERM, signal.SIGHUP)):
        session.start()
        records = RecordStream(session)
        try:
            yield records
        except KeyboardInterrupt:
            session.stop("interrupted (Ctrl-C)")
            raise
        finally:
            session.stop("stopped by the caller")
            with _signals_stop(session, (signal.SIGINT,)):
                records.close()
                session.close()
