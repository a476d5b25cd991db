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

from perfnet.live.api import STOPPED_BY, RecordStream, capture, react_to_signals, stream
from perfnet.live.config import DEFAULT_EVENTS, CaptureConfig, CaptureOptions, Mode, TracedCommandError, configure
from perfnet.live.stats import CaptureStats

__all__ = [
    "DEFAULT_EVENTS",
    "STOPPED_BY",
    "CaptureConfig",
    "CaptureOptions",
    "CaptureStats",
    "Mode",
    "RecordStream",
    "TracedCommandError",
    "capture",
    "configure",
    "react_to_signals",
    "stream",
]
