"""Real captures (tests/fixtures, made by scripts/capture_fixtures.py): every variant parses with
zero errors and exact counts, and one workload captured concurrently in several variants yields
identical typed events."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

import perfnet

FIXTURES = Path(__file__).parent / "fixtures"
FORMATS = FIXTURES / "lab.formats"
MANIFEST = json.loads((FIXTURES / "lab.json").read_text())
LAB = MANIFEST["captures"]["lab"]["lab"]
LAB_DEVICES = {LAB["bridge"], LAB["host_veth"], "eth0", "eth1"}

NET_COUNTS = {
    "net:net_dev_queue": 122,
    "net:net_dev_start_xmit": 122,
    "net:net_dev_xmit": 122,
    "net:netif_receive_skb": 118,
    "net:netif_rx_entry": 96,
    "net:netif_rx": 96,
    "net:netif_rx_exit": 96,
    "net:netif_receive_skb_entry": 22,
    "net:netif_receive_skb_exit": 22,
    "skb:kfree_skb": 8,
}
# consume_skb also fires for unrelated host sockets, so it depends on when each tracer started.
FULL = {**NET_COUNTS, "skb:consume_skb": 59}
RECORDED = {**NET_COUNTS, "skb:consume_skb": 56}
CALLGRAPH = {"net:net_dev_queue": 122, "net:netif_receive_skb": 118}

CASES = {
    "lab-trace.txt": ("trace", FULL, 0),
    "lab-trace-T.txt": ("trace", FULL, 0),
    "lab-trace-libtraceevent.txt": ("trace-libtraceevent", FULL, 0),
    "lab-trace-old-converted.txt": ("trace-old", FULL, 0),
    "lab-trace-callgraph.txt": ("trace", CALLGRAPH, 0),
    "lab-script.txt": ("script", RECORDED, 0),
    "lab-script-ns.txt": ("script", RECORDED, 0),
    "lab-script-g.txt": ("script", CALLGRAPH, 0),
    "lab-ftrace.txt": ("ftrace", FULL, 12),
    "lab-ftrace-tgid.txt": ("ftrace", FULL, 12),
}


def read(name: str) -> perfnet.Trace:
    return perfnet.read(FIXTURES / name, formats=FORMATS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_capture_parses_with_zero_errors_and_exact_counts(name: str) -> None:
    variant, counts, headers = CASES[name]
    trace = read(name)
    assert trace.format == variant
    assert trace.errors.empty, trace.errors.head().to_dict("records")
    assert trace.event_counts() == counts
    assert trace.lost == 0
    assert trace.messages["kind"].tolist() == ["header"] * headers
    # every line is accounted for: events (with folded callchain frames), messages, blank lines
    assert MANIFEST["fixtures"][name]["lines"] == len((FIXTURES / name).read_bytes().splitlines())


def lab_events(name: str) -> Counter[tuple[str, str, int, int]]:
    ev = read(name).events
    ev = ev[ev["dev"].isin(LAB_DEVICES)]
    return Counter(zip(ev["event"], ev["dev"], ev["len"].astype(int), ev["skbaddr"].astype("uint64"), strict=True))


@pytest.mark.parametrize("name", sorted(n for n, c in CASES.items() if c[1] is not CALLGRAPH and n != "lab-trace.txt"))
def test_concurrent_captures_give_the_same_typed_events(name: str) -> None:
    reference = lab_events("lab-trace.txt")
    assert sum(reference.values()) == 698
    assert lab_events(name) == reference


def all_net_fields(name: str) -> Counter[tuple[str, tuple[tuple[str, object], ...]]]:
    """Every field of every net:* event, except `location` (an address or a symbol by variant)."""
    return Counter(
        (r.event, tuple(sorted((k, v) for k, v in r.fields.items() if k != "location")))
        for r in perfnet.iter_records(FIXTURES / name, formats=FORMATS)
        if r.event.startswith("net:")
    )


@pytest.mark.parametrize(
    "name", ["lab-trace-libtraceevent.txt", "lab-script.txt", "lab-ftrace.txt", "lab-trace-old-converted.txt"]
)
def test_every_typed_field_agrees_across_variants(name: str) -> None:
    assert all_net_fields(name) == all_net_fields("lab-trace.txt")


def test_callchain_captures_agree_and_carry_frames() -> None:
    trace, script = read("lab-trace-callgraph.txt").events, read("lab-script-g.txt").events
    key = ["event", "dev", "len", "skbaddr"]
    assert Counter(map(tuple, trace[key].astype(str).values)) == Counter(map(tuple, script[key].astype(str).values))
    queue = trace[trace["event"] == "net:net_dev_queue"]
    assert all(chain[:2] == ("__traceiter_net_dev_queue", "__dev_queue_xmit") for chain in queue["callchain"])
    # perf script prints the same frames with their offsets
    script_queue = script[script["event"] == "net:net_dev_queue"]
    assert {chain[:2] for chain in script_queue["callchain"]} == {
        ("__traceiter_net_dev_queue+0x29", "__dev_queue_xmit+0x486")
    }
    assert sorted(map(len, trace["callchain"])) == sorted(map(len, script["callchain"]))
    assert all(len(chain) > 3 for chain in trace["callchain"])


def test_drop_reasons_are_named_in_every_variant() -> None:
    for name in ("lab-trace.txt", "lab-script.txt", "lab-ftrace.txt"):
        drops = read(name).df("skb:kfree_skb")
        assert Counter(drops["reason"]) == {"NO_SOCKET": 5, "QUEUE_PURGE": 3}
    assert set(read("lab-script.txt").df("skb:kfree_skb")["location"]) == {
        "ping_rcv+0xab",
        "sk_stream_kill_queues+0x57",
    }
    without_table = perfnet.read(FIXTURES / "lab-trace.txt").df("skb:kfree_skb")
    assert Counter(without_table["reason"]) == {3: 5, 104: 3}  # numbers stay numbers


def test_script_ns_and_us_timestamps_are_the_same_clock() -> None:
    us, ns = read("lab-script.txt").events, read("lab-script-ns.txt").events
    assert (ns["time_ns"] // 1000 * 1000).tolist() == us["time_ns"].tolist()
    assert (ns["time_ns"] % 1000 != 0).sum() > 800


def test_perf_trace_a_prints_out_of_order_and_events_are_sorted() -> None:
    ev = read("lab-trace.txt").events
    assert not ev["lineno"].is_monotonic_increasing
    assert ev["time_ns"].is_monotonic_increasing


def test_absolute_timestamps() -> None:
    assert read("lab-trace-T.txt").events["time_ns"].iloc[0] == 970_616_526_000
    assert read("lab-trace.txt").events["time_ns"].iloc[0] == 0


def test_pings_through_the_lab() -> None:
    ev = read("lab-trace.txt").events
    pings = MANIFEST["captures"]["lab"]["workload"]["ping"]["count"]
    requests = ev[(ev["event"] == "net:net_dev_queue") & (ev["dev"] == LAB["bridge"]) & (ev["len"] == 98)]
    assert len(requests) == pings == 5


def test_bundled_example_capture() -> None:
    trace = perfnet.read(FIXTURES / "ping-bridge.txt")
    assert trace.format == "trace" and trace.errors.empty
    assert trace.event_counts()["net:net_dev_queue"] == 9


def test_jupyter_view_shows_counts_paths_and_hop_latency_in_microseconds() -> None:
    html = read("lab-trace.txt")._repr_html_()
    assert "<b>lab-trace.txt</b>: format <code>trace</code>, 883 events, 48 packets, 0 lost, 0 unparsed lines" in html
    forward = f"{LAB['bridge']}&gt;{LAB['host_veth']}&gt;eth0@inferred-2&gt;eth1@inferred-2&gt;eth0@inferred-1</td>"
    assert forward in html
    assert "<th>p99 (µs)</th>" in html and "<th>share (%)</th>" in html


@pytest.mark.parametrize("name", sorted(CASES))
def test_fast_path_and_pyparsing_grammar_give_the_same_records(name: str) -> None:
    """Every event line of every capture: the compiled regexes and the pyparsing grammars agree."""
    import pyparsing as pp

    from perfnet.grammar import BodyParser, Variant, parse_header, parse_header_grammar
    from perfnet.reader import open_lines
    from perfnet.schema import load_schemas

    variant = Variant(CASES[name][0])
    schemas = load_schemas()
    by_short = {s.name: s for s in schemas.values()}
    bodies: dict[str, BodyParser] = {}
    checked = 0
    for line in open_lines(FIXTURES / name):
        try:
            fast = parse_header(variant, line)
        except pp.ParseException:
            continue  # not an event line (callchain frames, headers)
        assert parse_header_grammar(variant, line) == fast, line
        schema = by_short.get(fast.event) if variant == "ftrace" else schemas.get(fast.event)
        parser = bodies.setdefault(fast.event, BodyParser(schema, variant == "trace", {}))
        assert parser.parse_with_grammar(fast.body) == parser.parse(fast.body), line
        checked += 1
    assert checked == sum(CASES[name][1].values())
