"""The live commands, run as users run them: `perfnet trace` and `perfnet lab` (root, real perf)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from perfnet.lab import Lab, kept_labs, require_root_and_tools

REASON = require_root_and_tools()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
PERFNET = [sys.executable, "-m", "perfnet"]


def test_lab_demo_prints_events_then_netns_paths() -> None:
    out = subprocess.run([*PERFNET, "lab", "demo", "--count", "2"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    tag = lines[0].split()[1].rstrip(":")
    assert sum("net:net_dev_queue" in line and " 98 " in line for line in lines) == 2 * 5  # 5 devices each way
    summary = lines[lines.index("--- summary ---") :]
    assert "packets: 4    devices: snapshot of the capturing host" in summary
    forward = f"pnbr{tag}>pnv{tag}>eth0@pnc1-{tag}>eth1@pnc1-{tag}>eth0@pnc2-{tag}"
    assert any(line.split()[:2] == [forward, "2"] for line in summary)
    assert not [
        ns for ns in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout.split() if tag in ns
    ]


def test_trace_a_command_and_keep_raw_output(tmp_path: os.PathLike[str]) -> None:
    with Lab() as lab:
        raw = f"{tmp_path}/raw.txt"
        out = subprocess.run(
            [*PERFNET, "trace", "-e", "net:*", "-o", raw, "--", *lab.ping_argv(lab.ctr2_addr, 2)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    queued = [line for line in out.stdout.splitlines() if "net:net_dev_queue" in line and " 98 " in line]
    assert len(queued) == 2 * 5
    assert f"{lab.bridge} " in queued[0]  # the bridge is in perfnet's namespace: written bare
    summary = out.stdout.split("--- summary ---\n", 1)[1].splitlines()
    assert summary[0] == f"source:  {raw}"
    live_lines = [line for line in out.stdout.split("--- summary")[0].splitlines() if " ms  " in line]
    assert summary[1].split()[:4] == ["format:", "trace", "events:", str(len(live_lines))]
    report = json.loads(subprocess.run([*PERFNET, "report", raw, "--json"], capture_output=True, text=True).stdout)
    assert report["packets"] == 4  # the topology saved beside the raw output labels the paths
    assert {(p["path"], p["count"]) for p in report["paths"]} == {
        (f"{lab.bridge}>{lab.host_veth}>eth0@{lab.ctr1}>eth1@{lab.ctr1}>eth0@{lab.ctr2}", 2),
        (f"eth0@{lab.ctr2}>eth1@{lab.ctr1}>eth0@{lab.ctr1}>{lab.host_veth}>{lab.bridge}", 2),
    }


def test_unknown_tracepoint_is_a_named_error_with_a_suggestion() -> None:
    out = subprocess.run([*PERFNET, "trace", "-e", "net:net_dev_queuee", "--", "true"], capture_output=True, text=True)
    assert out.returncode == 2
    assert "net:net_dev_queuee" in out.stderr and "net:net_dev_queue" in out.stderr.split("net:net_dev_queuee", 1)[1]


def test_ctrl_c_on_system_wide_trace_prints_summary_exits_130_and_leaves_nothing() -> None:
    proc = subprocess.Popen(
        [*PERFNET, "trace", "-a", "-e", "net:*", "--duration", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        descendants: set[int] = set()
        while time.monotonic() < deadline:
            children = psutil.Process(proc.pid).children(recursive=True)
            descendants |= {child.pid for child in children}
            if any(child.name() == "perf" for child in children):
                break
            time.sleep(0.1)
        assert descendants, "perf did not start"
        time.sleep(1.0)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole process group
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "--- summary (interrupted (Ctrl-C)) ---" in stdout or "--- summary" in stdout
    assert "perf:" in stdout.split("--- summary", 1)[1]
    alive = [pid for pid in descendants if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"]
    assert alive == []


def test_lab_up_then_down() -> None:
    before = set(kept_labs())
    up = subprocess.run([*PERFNET, "lab", "up"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    (tag,) = set(kept_labs()) - before
    try:
        assert f"lab {tag} is up" in up.stdout
        assert f"pnc2-{tag}" in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
    finally:
        down = subprocess.run([*PERFNET, "lab", "down", tag], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and f"lab {tag} is down" in down.stdout
    assert f"pnc2-{tag}" not in subprocess.run(["ip", "netns"], capture_output=True, text=True).stdout
