"""Processes of this host: peak memory, process trees, ending what is left behind."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable
from typing import Final

import psutil

LEFTOVER_GRACE: Final = 1.0  # s between SIGTERM and SIGKILL for processes left behind


def close_fds(*fds: int) -> None:
    """Close these descriptors (negative ones are not open), ignoring any already closed."""
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def peak_rss(pid: int) -> int:
    """The process's peak resident set in bytes (``VmHWM``, which psutil does not report), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def signal_tree(pid: int | None, sig: signal.Signals, *, include_root: bool) -> None:
    """Send ``sig`` to every descendant of ``pid`` (and to ``pid`` itself if ``include_root``)."""
    if pid is None:
        return
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        for proc in [*root.children(recursive=True), *([root] if include_root else [])]:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)


def end_leftovers(procs: Iterable[psutil.Process]) -> None:
    """End the processes still running among ``procs``: SIGTERM, then SIGKILL.

    Zombies are dead already (their parent may exit before reaping them; init then does).
    """
    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                proc.terminate()
                alive.append(proc)
    _, still = psutil.wait_procs(alive, timeout=LEFTOVER_GRACE)
    for proc in still:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(still, timeout=LEFTOVER_GRACE)
