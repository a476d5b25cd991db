"""Commands run on the host, and in its network namespaces; its kernel settings."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from perfnet.errors import PerfnetError


class CommandError(PerfnetError, RuntimeError):
    """A command the host ran failed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Run ``argv``, its output captured as text.

    Raises:
        CommandError: it failed (with ``check``).
    """
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


def run_in(netns: str | None, argv: Sequence[str], *, check: bool, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """Run ``argv`` in ``netns`` (the current namespace for None), as :func:`subprocess.run` would."""
    return subprocess.run(ns_argv(netns, argv), check=check, **kw)


def spawn_in(netns: str | None, argv: Sequence[str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in ``netns``: its stdout piped, stdin and stderr null."""
    return subprocess.Popen(
        ns_argv(netns, argv), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL
    )


def end(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """End a process :func:`spawn_in` started: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(grace)
    if proc.stdout is not None:
        proc.stdout.close()


def sysctl(netns: str | None, key: str, value: str) -> None:
    """Set a kernel setting (``net.ipv6.conf.all.disable_ipv6``) in ``netns``.

    Raises:
        CommandError: it could not be set.
    """
    if netns is not None:
        run(ns_argv(netns, ["sysctl", "-q", "-w", f"{key}={value}"]))
        return
    try:
        Path("/proc/sys", *key.split(".")).write_text(value)
    except OSError as exc:
        raise CommandError(f"cannot set {key}={value}: {exc}") from None


def ipv6_available() -> bool:
    """The kernel has IPv6 (its settings exist)."""
    return Path("/proc/sys/net/ipv6").is_dir()


def ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    """``argv`` wrapped in ``ip netns exec NS`` (unchanged for None)."""
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def link_exists(ifname: str) -> bool:
    """A device of this name exists in the current namespace."""
    return Path("/sys/class/net", ifname).exists()
