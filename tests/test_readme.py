"""Every python block of the README runs: offline blocks against the bundled capture, live
blocks (perfnet.capture, perfnet.stream) on a lab, as root."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import perfnet
import perfnet.dask
from perfnet.lab import Lab, require_root_and_tools

README = Path(__file__).parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(encoding="utf-8"), re.S | re.M)
LIVE = [block for block in BLOCKS if "perfnet.capture(" in block or "perfnet.stream(" in block]
OFFLINE = [block for block in BLOCKS if block not in LIVE]
README_ADDRESS = "10.1.0.2"  # the live blocks' example address: a lab's second container here


def test_the_readme_has_the_blocks_it_should() -> None:
    assert len(BLOCKS) == 5 and len(LIVE) == 1 and len(OFFLINE) == 4
    assert sum("perfnet.read(perfnet.example_capture())" in block for block in OFFLINE) == 2


def test_offline_blocks_run_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(README.parent)  # paths in the blocks are the repository's
    names: dict[str, object] = {}
    for block in OFFLINE:
        exec(compile(block, str(README), "exec"), names)
    trace = names["trace"]
    assert isinstance(trace, perfnet.Trace) and len(trace.packets) == 26
    named = names["named"]
    assert isinstance(named, perfnet.analysis.Named)
    assert sorted(set(named.drops["dev"])) == ["eth0@pnc2-463d", "pnbr463d"]
    traces = names["traces"]
    assert isinstance(traces, perfnet.dask.Traces) and len(traces.captures) == 14  # the path captures


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = require_root_and_tools()
    if reason is not None:
        pytest.skip(reason)
    with Lab() as lab:
        yield lab


def test_live_blocks_run_on_a_lab(lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    names: dict[str, object] = {"perfnet": perfnet}
    for block in LIVE:
        assert README_ADDRESS in block
        exec(compile(block.replace(README_ADDRESS, lab.ctr2_addr), str(README), "exec"), names)
    trace = names["trace"]
    assert isinstance(trace, perfnet.Trace) and trace.partial is None
    # 3 echo requests and 3 replies, each through the lab's bridge
    assert set(trace.packets["path"].astype(str)) >= {f"{lab.bridge}>{lab.host_veth}>eth0>eth1>eth0"}
    assert (tmp_path / "ping.txt").stat().st_size > 0
