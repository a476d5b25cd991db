"""What to capture: the options of :func:`~perfnet.live.capture` and :func:`~perfnet.live.stream`,
checked before perf starts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypedDict, Unpack

from perfnet.errors import UsageError
from perfnet.host.perf import PerfError, skb_free_marker
from perfnet.trace import Trace

Mode = Literal["trace", "record"]


class TracedCommandError(PerfError):
    """The traced command could not start, or exited with a non-zero status.

    Attributes:
        trace: what was captured until the command ended (its ``partial`` says why), or None
            when the command never ran or the records were streamed (:func:`stream`).
        returncode: the command's exit status (negative: killed by that signal; 127: not found,
            126: not executable).
    """

    def __init__(self, message: str, trace: Trace | None, returncode: int) -> None:
        super().__init__(message)
        self.trace = trace
        self.returncode = returncode


@dataclass(frozen=True)
class CaptureConfig:
    """One capture's options, checked (see :func:`configure`); the keywords of
    :func:`~perfnet.live.capture` and :func:`~perfnet.live.stream`, with the skb free marker
    perfnet adds to its default events."""

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

    def perf_args(self, perf: str, output: str) -> list[str]:
        """perf's command line before its workload, writing to ``output`` (``-o``)."""
        args = [perf, "trace", "--no-syscalls"] if self.mode == "trace" else [perf, "record"]
        for event in self.events:
            args += ["-e", event]
        if self.filter is not None:
            args += ["--filter", self.filter]
        for event, marker_filter in self.markers:  # a --filter applies to the -e right before it
            args += ["-e", event, "--filter", marker_filter]
        if self.system_wide:
            args.append("-a")
        if self.pid is not None:
            args += ["-p", str(self.pid)]
        if self.callgraph is not None:
            args.append(f"--call-graph={self.callgraph}")
        return [*args, "-o", output]


DEFAULT_EVENTS: Final = ("net:*",)
"""What perfnet traces when not told: every ``net:*`` tracepoint, plus the skb free marker
(:func:`perfnet.host.perf.skb_free_marker`) where the host has it."""


class CaptureOptions(TypedDict, total=False):
    """The keywords of :func:`~perfnet.live.capture` and :func:`~perfnet.live.stream` (see
    :func:`~perfnet.live.capture` for what each means); :func:`configure` checks them."""

    events: Sequence[str] | None
    system_wide: bool
    pid: int | None
    duration: float | None
    callgraph: str | None
    filter: str | None
    raw_output: str | Path | None
    mode: Mode


def configure(command: Sequence[str] | CaptureConfig | None = None, **options: Unpack[CaptureOptions]) -> CaptureConfig:
    """The options of a capture, checked before perf starts.

    ``command`` may be a :class:`CaptureConfig` already made (then no keywords).

    Raises:
        TypeError: ``command`` or ``events`` is a string, or an argument is not a string.
        UsageError: an invalid option: nothing to trace, an unknown mode, a duration that is
            not positive, an empty event name, an output path perf cannot write.
    """
    if isinstance(command, CaptureConfig):
        if options:
            raise UsageError(f"give a CaptureConfig or keywords, not both: {sorted(options)}")
        return command
    unknown = set(options) - set(CaptureOptions.__annotations__)
    if unknown:
        raise TypeError(f"unknown capture options: {sorted(unknown)}")
    events = options.get("events")
    system_wide = bool(options.get("system_wide", False))
    pid = options.get("pid")
    duration = options.get("duration")
    raw_output = options.get("raw_output")
    mode = options.get("mode", "trace")
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
    return CaptureConfig(
        argv,
        tuple(events),
        system_wide,
        pid,
        duration,
        options.get("callgraph"),
        options.get("filter"),
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
        raise UsageError(f"the raw output {path} is a directory; give a file name in it")
    if not path.parent.is_dir():
        raise UsageError(f"the raw output {path}: the directory {path.parent} does not exist")


def check_command(argv: Sequence[str]) -> None:
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
