"""perfnet.dask: many captures as dask DataFrames, on a local two-worker distributed cluster,
checked against :func:`perfnet.read` of each capture and the pandas summaries of their concatenation."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dask
import pandas as pd
import pytest
from distributed import Client, LocalCluster

import perfnet
import perfnet.dask
from perfnet import analysis

FIXTURES = Path(__file__).parent / "fixtures"
CAPTURES = [
    str(FIXTURES / "lab-trace.txt"),
    str(FIXTURES / "lab-script.txt"),
    str(FIXTURES / "paths" / "udp-script.txt.gz"),
    str(FIXTURES / "paths" / "http-short-trace.txt.gz"),
]


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    """A local cluster of two single-threaded worker processes, the default scheduler while open."""
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def traces() -> dict[str, perfnet.Trace]:
    """Each capture read on its own, with pandas: the reference."""
    return {path: perfnet.read(path) for path in CAPTURES}


def with_capture(frame: pd.DataFrame, path: str, captures: list[str]) -> pd.DataFrame:
    """``frame`` with the ``capture`` column perfnet.dask documents: first, categorical over all captures."""
    return pd.concat(
        [pd.DataFrame({"capture": pd.Categorical([path] * len(frame), categories=captures)}), frame], axis=1
    )


def concatenated(traces: dict[str, perfnet.Trace], name: str) -> pd.DataFrame:
    """Frame ``name`` of every capture, with its capture column, concatenated in capture order."""
    return pd.concat(
        [with_capture(getattr(trace, name), path, CAPTURES) for path, trace in traces.items()], ignore_index=True
    )


def test_import_perfnet_does_not_import_dask() -> None:
    code = "import sys, perfnet; print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_module_uses_the_real_dask() -> None:
    # perfnet/dask.py must not shadow the dask package inside perfnet
    assert perfnet.dask.dask is dask
    assert Path(dask.__file__).parent.name == "dask"
    assert Path(perfnet.dask.__file__).parent == Path(perfnet.__file__).parent


def test_construction_reads_no_capture(monkeypatch: pytest.MonkeyPatch) -> None:
    example = perfnet.read(perfnet.example_capture())  # the frames' dtypes come from one such read
    columns = {name: ["capture", *getattr(example, name).columns] for name in perfnet.dask.FRAMES}
    perfnet.dask.read_traces(CAPTURES)
    reads: list[str] = []
    real_read = perfnet.read

    def counting_read(source: str, **kwargs: object) -> perfnet.Trace:
        reads.append(source)
        return real_read(source, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(perfnet, "read", counting_read)
    many = perfnet.dask.read_traces(CAPTURES)
    for name in perfnet.dask.FRAMES:
        frame = getattr(many, name)
        assert frame.npartitions == len(CAPTURES)
        assert list(frame.columns) == columns[name] and len(frame.dtypes) == len(columns[name])
    assert reads == []
    # computed in this process: frames computed together read each capture once
    dask.compute(many.hops, many.packets, many.stages, scheduler="sync")
    assert sorted(reads) == sorted(CAPTURES)


def test_missing_capture_fails_only_when_computed(client: Client) -> None:
    many = perfnet.dask.read_traces([*CAPTURES, str(FIXTURES / "no-such-capture.txt")])
    assert many.events.npartitions == len(CAPTURES) + 1 and "capture" in many.events.columns
    with pytest.raises(perfnet.PerfnetError, match="no-such-capture"):
        many.events.compute()


def test_partitions_are_the_captures(client: Client, traces: dict[str, perfnet.Trace]) -> None:
    many = perfnet.dask.read_traces(CAPTURES)
    n = len(CAPTURES)
    frames = [getattr(many, name) for name in perfnet.dask.FRAMES]
    parts = dask.compute(*(frame.get_partition(i) for frame in frames for i in range(n)))
    for i, name in enumerate(perfnet.dask.FRAMES):
        for part, (path, trace) in zip(parts[i * n : (i + 1) * n], traces.items(), strict=True):
            pd.testing.assert_frame_equal(part, with_capture(getattr(trace, name), path, CAPTURES))


def test_rows_per_capture(client: Client, traces: dict[str, perfnet.Trace]) -> None:
    many = perfnet.dask.read_traces(CAPTURES)
    assert many.events["capture"].cat.known and list(many.events["capture"].cat.categories) == CAPTURES
    names = ("events", "packets", "hops")
    *counts, keys = dask.compute(
        *(getattr(many, name).groupby("capture", observed=True).size() for name in names),
        many.packets[["capture", "packet_id"]],
    )
    for name, count in zip(names, counts, strict=True):
        assert count.to_dict() == {path: len(getattr(trace, name)) for path, trace in traces.items()}
        assert all(count > 0)
    # packet ids restart in each capture: (capture, packet_id) is the key
    assert not keys.duplicated().any() and keys["packet_id"].duplicated().any()


@pytest.mark.parametrize(
    "by", [("from_dev", "to_dev"), ("capture", "from_dev", "to_dev"), ("from_netns_dev", "to_netns_dev", "from_event")]
)
def test_hop_latency_equals_pandas(client: Client, traces: dict[str, perfnet.Trace], by: tuple[str, ...]) -> None:
    expected = analysis.hop_latency(concatenated(traces, "hops"), by)
    assert len(expected) > 3
    pd.testing.assert_frame_equal(perfnet.dask.read_traces(CAPTURES).hop_latency(by), expected)


@pytest.mark.parametrize("by", [("dev", "from_event", "to_event"), ("capture", "from_event", "to_event")])
def test_stage_latency_equals_pandas(client: Client, traces: dict[str, perfnet.Trace], by: tuple[str, ...]) -> None:
    expected = analysis.stage_latency(concatenated(traces, "stages"), by)
    assert len(expected) > 3
    pd.testing.assert_frame_equal(perfnet.dask.read_traces(CAPTURES).stage_latency(by), expected)


def test_summary_keys_follow_concat(client: Client) -> None:
    # one capture twice under two names: identical categories stay categorical, ties in category order
    twice = [CAPTURES[0], str(Path(CAPTURES[0]).parent / ".." / "fixtures" / Path(CAPTURES[0]).name)]
    trace = perfnet.read(CAPTURES[0])
    hops = pd.concat([with_capture(trace.hops, path, twice) for path in twice], ignore_index=True)
    summary = perfnet.dask.read_traces(twice).hop_latency()
    pd.testing.assert_frame_equal(summary, analysis.hop_latency(hops))
    assert isinstance(summary["from_dev"].dtype, pd.CategoricalDtype)


def test_capture_without_hops(client: Client, tmp_path: Path) -> None:
    # one event: a packet on one device and no hop (an empty hops frame may hold object columns)
    lone = tmp_path / "one-event.txt"
    lines = Path(CAPTURES[0]).read_text().splitlines(keepends=True)
    lone.write_text(next(line for line in lines if "net:net_dev_queue" in line))
    captures = [str(lone), CAPTURES[0]]
    reads = [perfnet.read(path) for path in captures]
    assert len(reads[0].packets) == 1 and reads[0].hops.empty
    many = perfnet.dask.read_traces(captures)
    assert len(many.hops.compute()) == len(reads[1].hops)
    hops = pd.concat(
        [with_capture(r.hops, path, captures) for path, r in zip(captures, reads, strict=True)], ignore_index=True
    )
    for by in [("from_dev", "to_dev"), ("capture", "from_netns_dev")]:
        pd.testing.assert_frame_equal(many.hop_latency(by), analysis.hop_latency(hops, by))


def test_glob_matches_in_sorted_order(client: Client) -> None:
    pattern = str(FIXTURES / "paths" / "udp-*.txt.gz")
    many = perfnet.dask.read_traces(pattern)
    matches = sorted(str(path) for path in (FIXTURES / "paths").glob("udp-*.txt.gz"))
    assert many.captures == tuple(matches) and len(matches) == 4
    captures = many.packets["capture"].compute()
    assert captures.unique().tolist() == matches
    counts = captures.value_counts(sort=False).to_dict()
    assert counts == {path: len(perfnet.read(path).packets) for path in matches}


def test_a_path_that_exists_is_not_a_pattern(tmp_path: Path) -> None:
    odd = tmp_path / "run[1].txt"  # as a pattern it would match run1.txt
    shutil.copy(CAPTURES[0], odd)
    assert perfnet.dask.read_traces(str(odd)).captures == (str(odd),)


def test_usage_errors() -> None:
    with pytest.raises(perfnet.UsageError, match="no capture matches"):
        perfnet.dask.read_traces(str(FIXTURES / "*.nothing"))
    with pytest.raises(perfnet.UsageError, match="no captures"):
        perfnet.dask.read_traces([])
    with pytest.raises(perfnet.UsageError, match="more than once"):
        perfnet.dask.read_traces([CAPTURES[0], CAPTURES[0]])
    with pytest.raises(perfnet.UsageError, match="no column"):
        perfnet.dask.read_traces(CAPTURES).hop_latency(by=("dev",))
