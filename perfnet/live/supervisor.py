"""The supervisor: perf's workload, which starts the traced command once tracing is live.

Run by perf as ``python -I -S supervisor.py STATUS_FD CONTROL_FD STDERR_FD [COMMAND...]`` once
its events are enabled (standard library only: nothing of perfnet is imported).  Protocol:

* it writes ``ready PID`` on STATUS and waits for one byte on CONTROL: ``g`` starts the command
  (``q`` or EOF exits);
* SIGINT/SIGTERM are forwarded to the command (or, without one, end the wait);
* when the command ends it writes ``exit RC`` (``error ERRNO`` if it could not start) and waits
  for one more byte, so perfnet can read the interface counters while tracing is still live.

perf leaks descriptors (its ``-o`` file) to its workload: all but 0-2 and these three are
closed first.  If perf dies, the supervisor gets SIGTERM (a parent-death signal) and kills the
command.  If perfnet dies, CONTROL reads EOF while the command runs: the supervisor kills the
command and perf (perf ignores a parent-death signal of its own).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1
_STOP = {signal.SIGINT, signal.SIGTERM}


def _close_other_fds(keep: tuple[int, ...]) -> None:
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))
    for fd in keep:
        os.set_inheritable(fd, False)


def _run(argv: list[str], status: int, control: int, err: int, perf: int) -> int:
    """Start the command (or, without one, wait to be stopped); its exit status."""
    ended = threading.Event()  # the command has ended
    done = threading.Event()  # perfnet's last byte came (or its end of the pipe closed)

    def watch(target: int) -> None:
        # perfnet closes its end only once perf has ended: closed earlier, perfnet died
        # (SIGKILL, the OOM killer), and perf and the command go with it
        os.read(control, 1)
        if not ended.is_set():
            for pid in (target, perf):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        done.set()

    rc = 0
    if argv:
        reset = _STOP | {signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ}
        try:
            child = os.posix_spawnp(
                argv[0], argv, os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, err, 2)], setsigmask=(), setsigdef=reset
            )
        except OSError as exc:
            os.write(status, b"error %d\n" % (exc.errno or 0))
            os.read(control, 1)
            return 0
        threading.Thread(target=watch, args=(child,), daemon=True).start()
        while True:
            sig = signal.sigwait(_STOP | {signal.SIGCHLD})
            if sig != signal.SIGCHLD:
                os.kill(child, sig if os.getppid() == perf else signal.SIGKILL)  # no perf: no command
                continue
            pid, wstatus = os.waitpid(child, os.WNOHANG)
            if pid:
                rc = os.waitstatus_to_exitcode(wstatus)
                break
    else:
        threading.Thread(target=watch, args=(os.getpid(),), daemon=True).start()
        signal.sigwait(_STOP)
    ended.set()
    os.write(status, b"exit %d\n" % rc)
    done.wait()
    return rc


def main() -> None:
    perf = os.getppid()
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)  # perf gone: stop the command
    if os.getppid() != perf:
        sys.exit(0)
    status, control, err = (int(fd) for fd in sys.argv[1:4])
    _close_other_fds((status, control, err))
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP | {signal.SIGCHLD})
    os.write(status, b"ready %d\n" % os.getpid())
    if os.read(control, 1) != b"g":
        sys.exit(0)
    _run(sys.argv[4:], status, control, err, perf)


if __name__ == "__main__":
    main()
