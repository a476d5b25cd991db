"""Shared test helpers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

NOBODY = 65534


def run_as_nobody(work: Callable[[], str]) -> tuple[int, str]:
    """Run ``work`` in a forked child that dropped root for uid/gid 65534 (nobody).

    Forking keeps the modules this process already imported, so the child needs no access to
    the Python installation (which may live under root's home, closed to other users), only
    to what ``work`` itself touches.  Returns the child's exit status (0 when ``work``
    returned, 1 when it raised) and what ``work`` returned (or the exception, as text).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.chdir("/")
            text, status = work(), 0
        except BaseException as exc:
            text = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, text.encode())
            os._exit(status)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    _, wait_status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(wait_status), b"".join(chunks).decode()


def pytest_sessionstart(session: object) -> None:
    """Remove labs a crashed earlier run left behind (only ours, only with a dead owner)."""
    from perfnet.lab import cleanup_stale, require_root_and_tools

    if require_root_and_tools() is None:
        cleanup_stale()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """With ``CI=true`` a skipped test fails: CI runs as root with perf and the lab tools, so a
    root, perf or lab test that skips there is a broken environment, not a pass."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped with CI=true (root, perf and lab tests must run in CI): {report.longrepr}"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs, to fill for real (root only: mounting needs it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
