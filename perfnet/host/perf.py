"""perf itself: finding it, naming its failures, listing tracepoints, reading its recordings.

Every failure of perf becomes a :class:`PerfError` subclass whose message ends with a hint:
perf missing (how to install it), no permission (perf's own advice), an unknown tracepoint (the
closest real one), a filter perf would refuse.  :func:`read_perf_data` streams a ``perf record``
recording through ``perf script``, so :func:`perfnet.read` accepts ``perf.data`` files.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

from perfnet.errors import PerfnetError

TOOL_TIMEOUT: Final = 10.0  # s for helper commands (ip, perf --version, perf list)

PERF_DATA_MAGIC: Final = b"PERFILE2"
"""The first bytes of a ``perf record`` data file (file and pipe mode alike)."""

_TRACEFS_ROOTS: Final = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
_PARANOID: Final = Path("/proc/sys/kernel/perf_event_paranoid")

_INSTALL_HINT: Final = (
    "install perf: Debian `apt install linux-perf`; Ubuntu `apt install linux-tools-common "
    "linux-tools-$(uname -r)`; Fedora `dnf install perf`"
)
_PERMISSION_MARKERS: Final = (
    "No permission",
    "Permission denied",
    "perf_event_paranoid",
    "EACCES",
    "Access to performance monitoring",
    "not owned by current user",
)


# --- errors ---------------------------------------------------------------------------------


class PerfError(PerfnetError):
    """perf could not run, or failed; the message ends with a hint on what to do."""


class PerfNotFoundError(PerfError):
    """There is no ``perf`` on PATH."""


class PerfPermissionError(PerfError):
    """perf is not allowed to trace (not root, ``perf_event_paranoid``, tracefs permissions)."""


class UnknownEventError(PerfError):
    """perf does not know an event; ``event`` names it, ``suggestions`` are the closest real ones."""

    def __init__(self, message: str, event: str, suggestions: Sequence[str]) -> None:
        super().__init__(message)
        self.event = event
        self.suggestions = tuple(suggestions)


class FilterError(PerfError):
    """A ``filter`` expression is not valid for the event it applies to (checked before perf runs)."""


# --- perf recordings ------------------------------------------------------------------------


def is_perf_data(path: str | Path) -> bool:
    """Whether a file is a ``perf record`` recording (it starts with :data:`PERF_DATA_MAGIC`)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(len(PERF_DATA_MAGIC)) == PERF_DATA_MAGIC
    except OSError:
        return False


def read_perf_data(path: str | Path) -> Iterator[str]:
    """The lines of ``perf script -i path --show-lost-events``, streamed while perf script runs.

    Lines come without their line ends.  Closing the iterator early ends perf script.

    Raises:
        PerfNotFoundError: there is no perf on PATH.
        PerfPermissionError: perf refuses the file (e.g. it belongs to another user).
        PerfError: perf script failed (a damaged or truncated recording).
    """
    argv = [perf_binary(), "script", "-i", str(path), "--show-lost-events"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        assert proc.stdout is not None
        try:
            for raw in proc.stdout:
                yield raw.decode("utf-8", errors="replace").rstrip("\r\n")
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            stderr = err.read().decode("utf-8", errors="replace")
            raise perf_error(stderr, proc.returncode, argv)


# --- tracefs, perf and ip helpers -----------------------------------------------------------


def perf_binary() -> str:
    perf = shutil.which("perf")
    if perf is None:
        raise PerfNotFoundError(f"perf is not on PATH ({os.environ.get('PATH', '')!r})\nhint: {_INSTALL_HINT}")
    return perf


def perf_version(perf: str) -> str:
    try:
        out = subprocess.run([perf, "--version"], capture_output=True, text=True, timeout=TOOL_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().removeprefix("perf version ").strip()


def _tracefs_events() -> Path | None:
    for root in _TRACEFS_ROOTS:
        with contextlib.suppress(OSError):
            if (root / "available_events").is_file():
                return root / "events"
    return None


def format_text(event: str) -> str | None:
    """The tracefs ``format`` file of ``subsystem:name``, None if unreadable or missing."""
    events = _tracefs_events()
    sub, _, name = event.partition(":")
    if events is None or not name:
        return None
    try:
        return (events / sub / name / "format").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def tracepoints() -> list[str]:
    """Every tracepoint the kernel has (``subsystem:name``): tracefs, else ``perf list``."""
    events = _tracefs_events()
    if events is not None:
        with contextlib.suppress(OSError):
            return (events.parent / "available_events").read_text().split()
    with contextlib.suppress(OSError, subprocess.SubprocessError, PerfNotFoundError):
        argv = [perf_binary(), "list", "--raw-dump", "tracepoint"]
        return subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT).stdout.split()
    return []


def expand_events(specs: Sequence[str], available: Sequence[str]) -> list[str]:
    """The tracepoints ``specs`` (globs allowed, as perf takes them) select, in kernel order."""
    return [event for event in available if any(fnmatch.fnmatchcase(event, spec) for spec in specs)]


# --- errors from perf's stderr --------------------------------------------------------------


SKB_FREE_EVENT: Final = "kmem:kmem_cache_free"
"""The marker perfnet adds to its default capture: the slab free of an skb, at its address."""

_SLAB: Final = Path("/sys/kernel/slab")
_SKB_CACHES: Final = ("skbuff_head_cache", "skbuff_fclone_cache")


def skb_free_marker(slab: Path = _SLAB) -> tuple[str, str] | None:
    """``(event, filter)`` that traces the frees of skbs and nothing else, or None if unavailable.

    TCP frees its skbs without ``skb:consume_skb``/``skb:kfree_skb``, but every skb goes back
    to its slab cache, ``skbuff_head_cache`` or (TCP's clones) ``skbuff_fclone_cache``.  With
    slab merging a cache is an alias of a merged one (a symlink in ``/sys/kernel/slab``), and
    ``kmem_cache_free`` prints the merged cache's own name, so the filter names every alias.
    Measured on the flood benchmark (``scripts/measure_markers.py``): +8% events per packet,
    perf CPU 1.01-1.04 times ``net:*`` alone, no LOST events.

    Args:
        slab: the slab directory (``/sys/kernel/slab``).

    Returns:
        The tracepoint and a perf ``--filter`` for it, to follow its ``-e``.
    """
    try:
        targets = {(slab / cache).resolve() for cache in _SKB_CACHES if (slab / cache).exists()}
        aliases = {entry.name for entry in slab.iterdir() if entry.resolve() in targets}
        names = sorted({name for name in aliases if not name.startswith(":")} | set(_SKB_CACHES))
    except OSError:
        return None
    if not targets:
        return None
    return SKB_FREE_EVENT, " || ".join(f'name == "{name}"' for name in names)


def perf_message(stderr: str) -> str:
    """perf's error text without its usage screen."""
    text = stderr.split("\n Usage:", 1)[0]
    return "\n".join(line.rstrip() for line in text.strip().splitlines() if line.strip())


def _paranoid() -> str:
    try:
        return _PARANOID.read_text().strip()
    except OSError:
        return "?"


def perf_error(stderr: str, returncode: int, argv: Sequence[str]) -> PerfError:
    """Classify perf's failure from what it printed."""
    message = perf_message(stderr) or f"perf exited with status {returncode} and printed nothing"
    if any(marker in stderr for marker in _PERMISSION_MARKERS):
        return PerfPermissionError(
            f"perf is not allowed to trace:\n{message}\n"
            "hint: run as root, or give perf CAP_PERFMON (Linux >= 5.8) or CAP_SYS_ADMIN; tracepoints also "
            "need read access to tracefs (`sudo mount -o remount,mode=755 /sys/kernel/tracing`) and a low "
            f"kernel.perf_event_paranoid (now {_paranoid()}; `sudo sysctl kernel.perf_event_paranoid=-1`)"
        )
    event = re.search(r"event syntax error: '([^']*)'", stderr)
    if event is not None:
        return _unknown_event(event[1], message)
    bad_filter = re.search(r'[Ff]ailed to set filter "(.*)" on event (\S+)', stderr)
    if bad_filter is not None:
        return FilterError(
            f"the kernel refused filter {bad_filter[1]!r} on {bad_filter[2]}:\n{message}\n"
            f"hint: check the fields of {bad_filter[2]} (tracefs events/.../format); a filter after an "
            "event pattern must suit every event the pattern matches"
        )
    return PerfError(f"perf failed (exit status {returncode}): {shlex.join(argv)}\n{message}")


def _unknown_event(event: str, message: str) -> UnknownEventError:
    known = tracepoints()
    sub, _, name = event.partition(":")
    if name and any(c in name for c in "*?["):
        subsystems = sorted({t.partition(":")[0] for t in known})
        suggestions = [f"{s}:{name}" for s in difflib.get_close_matches(sub, subsystems, n=3)]
    else:
        suggestions = difflib.get_close_matches(event, known, n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(suggestions)}?" if suggestions else "see `perf list tracepoint`"
    return UnknownEventError(f"perf does not know the event {event!r}:\n{message}\nhint: {hint}", event, suggestions)
