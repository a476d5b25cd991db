"""perfnet's side of the supervisor, perf's workload (:mod:`perfnet.live.supervisor`): the
pipes to it, what it reports of the traced command, and how the command is stopped."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final

from perfnet.host.procs import close_fds, signal_tree

SUPERVISOR: Final = str(Path(__file__).with_name("supervisor.py"))
"""The supervisor's source, run as a script (never imported into perfnet's process)."""


class Workload:
    """The supervisor perf runs, and through it the traced command.

    :attr:`ready` is set when the supervisor has started (perf's events are enabled: tracing is
    live); :attr:`ended` when the command has ended, or the supervisor is gone.  Between, the
    supervisor waits for :meth:`go` (or :meth:`quit`); after the command's end it waits for
    :meth:`release`, so the interface counters can be read while perf still traces.
    """

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.ended = threading.Event()
        self.pid: int | None = None
        self.returncode: int | None = None  # the command's, once it has ended
        self.spawn_errno: int | None = None  # why the command could not start
        self.vanished = False  # the supervisor died without a word
        self._status, self._status_w = os.pipe()
        self._control_r, self._control = os.pipe()
        self._err = _dup_stderr()
        self._listener: threading.Thread | None = None

    def argv(self, command: tuple[str, ...]) -> list[str]:
        """perf's workload: the supervisor, then the command."""
        fds = (self._status_w, self._control_r, self._err)
        return [sys.executable, "-I", "-S", SUPERVISOR, *map(str, fds), *command]

    @property
    def pass_fds(self) -> tuple[int, ...]:
        """The descriptors perf must pass on to its workload."""
        return (self._status_w, self._control_r, self._err)

    def launched(self) -> None:
        """perf has been started (or failed to be): its copies are the supervisor's now."""
        close_fds(*self.pass_fds)
        self._status_w = self._control_r = self._err = -1

    def listen(self, on_end: Callable[[], None]) -> None:
        """Read the supervisor's messages in a thread, until it is gone; ``on_end`` runs when
        the command has ended, before :attr:`ended` is set."""
        self._listener = threading.Thread(target=self._listen, args=(on_end,), name="perfnet-workload", daemon=True)
        self._listener.start()

    def join(self, timeout: float) -> None:
        """Wait for the supervisor's last message (at most ``timeout`` seconds)."""
        if self._listener is not None:
            self._listener.join(timeout)

    def _listen(self, on_end: Callable[[], None]) -> None:
        try:
            with open(self._status, "rb", buffering=0) as status:
                for line in status:
                    word, _, value = line.decode().partition(" ")
                    if word == "ready":
                        self.pid = int(value)
                        self.ready.set()
                    elif word in ("exit", "error"):
                        if word == "error":
                            self.spawn_errno = int(value)
                        else:
                            self.returncode = int(value)
                        on_end()
                        self.ended.set()
            self.vanished = self.ready.is_set() and not self.ended.is_set()
        finally:
            self.ended.set()

    def go(self) -> None:
        """Start the command."""
        self._send(b"g")

    def quit(self) -> None:
        """Do not start the command: the capture was stopped while perf started."""
        self._send(b"q")

    def release(self) -> None:
        """The command has ended and the counters are read: the supervisor may exit."""
        self._send(b"d")

    @property
    def _alive(self) -> int | None:
        """The supervisor's pid while it runs: its status pipe is open until it exits (after
        that the pid may be another process's)."""
        listening = self._listener is not None and self._listener.is_alive()
        return self.pid if listening else None

    def interrupt(self) -> None:
        """Ask the command to stop (the supervisor forwards SIGINT to it)."""
        pid = self._alive
        if pid is not None and not self.ended.is_set():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)

    def kill_command(self) -> None:
        """Kill the command and what it started, at once."""
        signal_tree(self._alive, signal.SIGKILL, include_root=False)

    def kill(self) -> None:
        """Kill the supervisor, the command and what it started, at once."""
        signal_tree(self._alive, signal.SIGKILL, include_root=True)

    def close(self) -> None:
        """Close perfnet's ends: a supervisor still waiting for a byte reads EOF and exits (only
        once perf has ended: closed earlier, it would kill the command and perf)."""
        close_fds(self._control, self._status if self._listener is None else -1, *self.pass_fds)
        self._control = -1

    def stop(self, grace: float) -> None:
        """Ask the command to stop; kill it if it has not after ``grace`` seconds."""
        self.interrupt()
        if not self.ended.wait(grace):
            self.kill()

    def failure(self, *, stopped: bool) -> tuple[str, int] | None:
        """Why the command failed on its own, and its status (the shell's 127 or 126 when it
        could not start); None if it did not fail, or if it was ``stopped`` (by perfnet, or
        because perf died)."""
        if self.spawn_errno is not None:
            status = 127 if self.spawn_errno == errno.ENOENT else 126
            return f"command could not start: {os.strerror(self.spawn_errno)}", status
        rc = self.returncode
        if rc is None or rc == 0 or stopped:
            return None
        if rc < 0:
            return f"command killed by {signal.Signals(-rc).name}", rc
        return f"command failed with exit code {rc}", rc

    def _send(self, byte: bytes) -> None:
        with contextlib.suppress(OSError):  # the supervisor is gone
            os.write(self._control, byte)


def _dup_stderr() -> int:
    """A descriptor for the traced command's stderr: perfnet's own (perf's stderr is read by perfnet)."""
    try:
        return os.dup(2)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY)
