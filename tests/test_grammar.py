"""Example lines of every variant side by side with the records they must give."""

from __future__ import annotations

from pathlib import Path

import pytest

import perfnet
from perfnet import Record
from perfnet.grammar import HEADER_TOKENS, Variant, parse_header, parse_header_grammar, time_to_ns

SKB = 0xFFFF888105959D00


def one(line: str, format: str | None = None, **kw: object) -> Record:
    trace = perfnet.read([line], format=format, **kw)  # type: ignore[arg-type]
    assert trace.errors.empty, trace.errors.to_dict("records")
    records = list(perfnet.iter_records([line], format=format, **kw))  # type: ignore[arg-type]
    assert len(records) == 1
    return records[0]


def test_perf_trace_field_printer() -> None:
    rec = one(
        '     0.027 ping/2000 net:net_dev_start_xmit(name: "brx", skbaddr: 0xffff888105959d00, '
        "protocol: 2054, len: 42, network_offset: 14)"
    )
    assert (rec.time_ns, rec.comm, rec.tid, rec.cpu) == (27_000, "ping", 2000, None)
    assert (rec.event, rec.dev, rec.skbaddr, rec.len) == ("net:net_dev_start_xmit", "brx", SKB, 42)
    # omitted fields are zero; signedness and booleans come from the schema
    assert rec.protocol == 2054 and rec.gso_size == 0 and rec.transport_offset_valid is False
    assert rec.fields["network_offset"] == 14


def test_perf_trace_unsigned_print_of_signed_field_is_restored() -> None:
    rec = one(
        '     0.068 ping/2000 net:netif_rx_entry(name: "eth0", skbaddr: 0xffff888105959d00, protocol: 2054, '
        "len: 28, truesize: 832, mac_header_valid: 1, mac_header: 4294967282)"
    )
    assert rec.mac_header == -14 and rec.mac_header_valid is True and rec.truesize == 832


def test_exit_event_has_no_fields_and_no_skbaddr() -> None:
    rec = one("     0.090 ping/2000 net:netif_rx_exit()", format="trace")
    assert rec.event == "net:netif_rx_exit" and rec.skbaddr is None and rec.ret == 0


def test_libtraceevent_print() -> None:
    rec = one(
        "     0.087 ping/2018 skb:kfree_skb(skbaddr=0xffff888105959100 rx_sk=(nil) protocol=2048 "
        "location=ping_rcv+0xab reason: NO_SOCKET)"
    )
    assert rec.fields == {
        "skbaddr": 0xFFFF888105959100,
        "rx_sk": 0,
        "protocol": 2048,
        "location": "ping_rcv+0xab",
        "reason": "NO_SOCKET",
    }


def test_old_perf_format_from_the_seed_with_stray_paren() -> None:
    rec = one(
        "     0.033 ping/48922 net:netif_rx_entry:dev=eth0 napi_id=0x2 queue_mapping=0 "
        "skbaddr=0xffff893aa3223400 vlan_tagged=0 vlan_proto=0x0000 vlan_tci=0x0000 protocol=0x0800 "
        "ip_summed=0 hash=0x00000000 l4_hash=0 len=84 data_len=0 truesize=768 mac_header_valid=1 "
        "mac_header=-14 nr_frags=0 gso_size=0 gso_type=0)"
    )
    assert (rec.dev, rec.skbaddr, rec.len, rec.napi_id, rec.protocol) == ("eth0", 0xFFFF893AA3223400, 84, 2, 0x800)
    assert rec.mac_header == -14 and rec.gso_type == 0


def test_perf_script_with_pid_tid_and_ns() -> None:
    rec = one(
        " CPU 0/KVM  3750/3751 [001]    96.185525701:    net:netif_rx: dev=eth0 skbaddr=0xffff88811c0f0200 len=84"
    )
    assert (rec.comm, rec.tid, rec.cpu, rec.time_ns) == ("CPU 0/KVM", 3751, 1, 96_185_525_701)
    assert (rec.dev, rec.len) == ("eth0", 84)


def test_ftrace_line_with_tgid_and_hashed_pointer() -> None:
    rec = one(
        "   kworker/1:1-eve-41    (     41) [001] d.s1.   102.584252: "
        "netif_rx: dev=eth0 skbaddr=000000000f0ffb08 len=84"
    )
    assert (rec.comm, rec.tid, rec.cpu, rec.time_ns) == ("kworker/1:1-eve", 41, 1, 102_584_252_000)
    assert (rec.event, rec.skbaddr) == ("net:netif_rx", 0x0F0FFB08)


def test_ftrace_symbol_loses_its_size_suffix() -> None:
    rec = one(
        "ping-2086 [001] ..s1. 102.584252: kfree_skb: skbaddr=ffff888105959400 rx_sk=0000000000000000 "
        "protocol=2048 location=ping_rcv+0xab/0xd0 reason: NO_SOCKET"
    )
    assert rec.location == "ping_rcv+0xab" and rec.rx_sk == 0 and rec.reason == "NO_SOCKET"


@pytest.mark.parametrize(
    ("line", "comm", "tid"),
    [
        ('  0.001 CPU 0/KVM/3750 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', "CPU 0/KVM", 3750),
        ('  0.001 kworker/1:1-eve/41 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', "kworker/1:1-eve", 41),
        ('  0.001 :0/0 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', ":0", 0),
        ('  0.001 4242 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', None, 4242),
        ('  0.001 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', None, None),
        ('  0.001 (         ): ping/7 net:netif_rx(skbaddr: 0x1, len: 1, name: "x")', "ping", 7),
    ],
)
def test_perf_trace_task_column_variations(line: str, comm: str | None, tid: int | None) -> None:
    rec = one(line)
    assert (rec.comm, rec.tid, rec.dev) == (comm, tid, "x")


def test_absolute_timestamps_convert_exactly() -> None:
    assert one(' 92976.461 ping/2022 net:net_dev_queue(skbaddr: 0x1, len: 98, name: "brx")').time_ns == 92_976_461_000
    assert time_to_ns("96.185525701", 9) == 96_185_525_701
    assert time_to_ns("0.1", 6) == 100_000


def test_napi_poll_format_without_labels() -> None:
    rec = one(
        "  0.088 ping/2018 napi:napi_poll(napi poll on napi struct 0xffff888105959100 for device eth0 work 1 budget 64)"
    )
    assert (rec.dev, rec.work, rec.budget, rec.napi) == ("eth0", 1, 64, 0xFFFF888105959100)


def test_event_without_schema_is_kept_generically() -> None:
    rec = one('  0.100 ping/1 sock:inet_sock_set_state(family: 2, protocol: 6, saddr: "x")', format="trace")
    assert rec.event == "sock:inet_sock_set_state" and rec.fields == {"family": 2, "protocol": 6, "saddr": "x"}
    rec = one("<idle>-0 [000] ..s2. 102.6: foo_bar: a=1 b=two")
    assert rec.event == "ftrace:foo_bar" and rec.fields == {"a": 1, "b": "two"}
    rec = one("<idle>-0 [000] ..s2. 102.6: foo_bar: free text, not pairs")
    assert rec.fields == {"text": "free text, not pairs"}


def test_drop_reason_number_named_from_kernel_table(tmp_path: Path) -> None:
    root = tmp_path / "skb" / "kfree_skb"
    root.mkdir(parents=True)
    (root / "format").write_text(
        'print fmt: "reason: %s", __print_symbolic(REC->reason, { 2, "NOT_SPECIFIED" }, { 3, "NO_SOCKET" })\n'
    )
    line = "  0.653 ping/2000 skb:kfree_skb(skbaddr: 0x1, location: 0xffffffff8207026b, protocol: 2048, reason: 3)"
    assert one(line).reason == 3
    named = one(line, formats=str(tmp_path))
    assert named.reason == "NO_SOCKET" and named.location == "0xffffffff8207026b"


LINES = {
    Variant.TRACE: '  0.000 ping/2000 net:net_dev_queue(skbaddr: 0xffff888105959d00, len: 42, name: "brx")',
    Variant.TRACE_LIBTRACEEVENT: "  0.000 ping/2018 net:net_dev_queue(dev=brx skbaddr=0xffff888105959100 len=98)",
    Variant.TRACE_OLD: "0.000 ping/48922 net:net_dev_queue:dev=docker0 skbaddr=0xffff893aa3223400 len=98)",
    Variant.SCRIPT: "  ping  2038 [000]    96.185469:   net:net_dev_queue: dev=brx skbaddr=0xffff88811c0f0200 len=98",
    Variant.FTRACE: "ping-2064    [001] b....    99.931856: net_dev_queue: dev=brx skbaddr=000000000f0ffb08 len=98",
}


@pytest.mark.parametrize("variant", list(Variant))
def test_fast_header_and_pyparsing_grammar_agree(variant: Variant) -> None:
    assert variant in HEADER_TOKENS
    assert parse_header(variant, LINES[variant]) == parse_header_grammar(variant, LINES[variant])


@pytest.mark.parametrize("variant", list(Variant))
def test_variant_is_detected(variant: Variant) -> None:
    assert perfnet.read([LINES[variant]]).format == variant


def test_user_schema_file_types_another_subsystem(tmp_path: Path) -> None:
    schema = tmp_path / "sock.toml"
    schema.write_text(
        'subsystem = "sock"\n'
        "[events.sock_rcvqueue_full]\n"
        'fields = [{ name = "rmem_alloc", type = "int" }, { name = "truesize", type = "unsigned int" },'
        ' { name = "sk_rcvbuf", type = "int" }, { name = "flags", type = "u32" }]\n'
        'formats = ["rmem_alloc=%d truesize=%u sk_rcvbuf=%d flags=%x"]\n'
    )
    line = "  0.5 ping/1 sock:sock_rcvqueue_full(rmem_alloc=-3 truesize=768 sk_rcvbuf=212992 flags=10)"
    untyped = one(line)  # no schema: kept generically, numbers read as decimal
    assert untyped.fields == {"rmem_alloc": -3, "truesize": 768, "sk_rcvbuf": 212992, "flags": 10}
    rec = one(line, schemas=[schema])  # the schema's %x says hexadecimal
    assert rec.fields == {"rmem_alloc": -3, "truesize": 768, "sk_rcvbuf": 212992, "flags": 16}
    with pytest.raises(perfnet.ParseError, match="does not match any print format of sock:sock_rcvqueue_full"):
        perfnet.read([line.replace("truesize=768", "truesize=big")], schemas=[schema], strict=True)
    bad = tmp_path / "bad.toml"
    bad.write_text('subsystem = "x"\n[events.e]\nfields = []\nformats = ["a=%d"]\n')
    with pytest.raises(perfnet.SchemaError, match="cannot tell which field"):
        perfnet.read([line], schemas=[bad])


@pytest.mark.parametrize("body", ["a=1 b=two", "  a=0x10   b=", "free text, not pairs", "a=1b=2", "", "k=v x"])
def test_generic_fast_path_and_grammar_agree(body: str) -> None:
    from perfnet.grammar import BodyParser

    parser = BodyParser(None, False, {})
    assert parser.parse(body) == parser.parse_with_grammar(body)
