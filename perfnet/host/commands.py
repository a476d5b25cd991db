"""Commands run on the host, and in its network namespaces."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from perfnet.errors import PerfnetError


class CommandError(PerfnetError, RuntimeError):
    """A command the host ran failed."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise CommandError(f"command failed ({proc.returncode}): {' '.join(argv)}\n{proc.stderr.strip()}")
    return proc


def ns_argv(netns: str | None, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *argv] if netns else list(argv)


def link_exists(ifname: str) -> bool:
    return Path("/sys/class/net", ifname).exists()
