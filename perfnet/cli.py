"""The ``perfnet`` command."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

import perfnet
from perfnet import analysis
from perfnet.bundled import example_capture
from perfnet.convert import CHUNK_LINES, REORDER_WINDOW_NS, convert
from perfnet.dataset import is_dataset, write_dataset
from perfnet.display import ethertypes, protocol_name, readable
from perfnet.errors import PerfnetError, UsageError
from perfnet.export import FORMATS, TABLES, format_of, write_table
from perfnet.live import STOPPED_BY, RecordStream, configure, react_to_signals
from perfnet.topology import Topology, device_label, snapshot

_SHOWN_ERRORS = 5


def _source_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="captured perf output ('-' for stdin; .gz/.xz/.zst ok)")
    parser.add_argument(
        "--example", action="store_true", help="use the real capture bundled with perfnet instead of FILE"
    )
    parser.add_argument(
        "--format",
        choices=[v.value for v in perfnet.Variant],
        help="the variant perf printed FILE in (default: detected)",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first line that does not parse")
    parser.add_argument(
        "--formats", metavar="DIR", help="tracefs root or saved copy of tracepoint format files, to name enums"
    )
    parser.add_argument(
        "--topology",
        metavar="FILE",
        help="the capturing host's devices (perfnet topology save); default FILE.topology.json, else inferred",
    )


def _load(source: str | Path, args: argparse.Namespace) -> perfnet.Trace:
    """One capture, read with the source options of ``args``."""
    # a progress bar on a terminal (standard error), never in pipes and logs
    return perfnet.read(
        source,
        format=args.format,
        strict=args.strict,
        formats=args.formats,
        topology=args.topology,
        progress=sys.stderr.isatty(),
    )


def _read(args: argparse.Namespace) -> perfnet.Trace:
    if args.example == (args.file is not None):
        raise PerfnetError("give a FILE or --example (not both)")
    return _load(example_capture() if args.example else args.file, args)


def _non_negative(what: str) -> Callable[[str], float]:
    """An argument type: a number of ``what`` (0 or more), checked before a capture is read."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise argparse.ArgumentTypeError(f"{what} (0 or more), not {text!r}")
        return value

    return parse


_seconds = _non_negative("seconds from the capture's first event")


def _positive(text: str) -> int:
    """A count of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number (1 or more), not {text!r}")
    return value


def _ethertype(text: str) -> int:
    """An ethertype given to ``--protocol`` by name or number, checked before the capture is read."""
    try:
        (number,) = ethertypes(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return number


_FILTERS = ("dev", "netns", "protocol", "since", "until")


def _filter_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "filters",
        "keep the packets (whole paths) that match every option given; --dev, --netns and --protocol may be "
        "repeated (any of the values)",
    )
    group.add_argument("--dev", action="append", metavar="NAME", help="visited this device: eth0, or eth0@NETNS")
    group.add_argument("--netns", action="append", metavar="NAME", help="visited a device of this namespace")
    group.add_argument(
        "--protocol", action="append", type=_ethertype, metavar="P", help="ethertype: ipv4, ipv6, arp, ... or 0x0800"
    )
    group.add_argument("--since", type=_seconds, metavar="S", help="started S seconds or more after the first event")
    group.add_argument("--until", type=_seconds, metavar="S", help="started less than S seconds after the first event")


def _filtered(trace: perfnet.Trace, args: argparse.Namespace) -> tuple[perfnet.Trace, dict[str, Any] | None]:
    """The trace cut down to the packets the filter options ask for (``Trace.filter``), and
    what was asked and kept, for the output to say so (None: no filter option given)."""
    by = {name: getattr(args, name) for name in _FILTERS if getattr(args, name) is not None}
    if not by:
        return trace, None
    kept = trace.filter(**by)
    return kept, {"by": by, "packets": len(kept.packets), "of": len(trace.packets)}


def _check_window(args: argparse.Namespace) -> None:
    """Refuse ``--until`` before ``--since`` in the CLI's words, before a long read for nothing."""
    since, until = getattr(args, "since", None), getattr(args, "until", None)
    if since is not None and until is not None and until < since:
        raise UsageError(f"--until {until:g} is before --since {since:g}: no packet can match")


def _conditions(by: dict[str, Any]) -> str:
    """The filter options given, as people write them: ``dev mv0 or eth1, since 0.5 s``."""
    said = []
    for name, value in by.items():
        if name in ("since", "until"):
            said.append(f"{name} {value:g} s")
        else:
            said.append(f"{name} " + " or ".join(protocol_name(v) if name == "protocol" else v for v in value))
    return ", ".join(said)


def _basics(trace: perfnet.Trace) -> dict[str, Any]:
    """What every command says about a capture: where from, which variant, how much, how clean."""
    return {
        "source": trace.source,
        "format": str(trace.format),
        "events": len(trace.events),
        "lost": trace.lost,
        "errors": len(trace.errors),
    }


def _parse_summary(trace: perfnet.Trace) -> dict[str, Any]:
    return {
        **_basics(trace),
        "events_per_tracepoint": trace.event_counts(),
        "messages": len(trace.messages),
        "first_errors": trace.errors.head(_SHOWN_ERRORS).to_dict("records"),
    }


def _print_parse(summary: dict[str, Any]) -> None:
    print(f"source:  {summary['source']}")
    print(f"format:  {summary['format']}")
    print(f"events:  {summary['events']}")
    width = max((len(e) for e in summary["events_per_tracepoint"]), default=0)
    for event, count in summary["events_per_tracepoint"].items():
        print(f"  {event:<{width}}  {count:>8}")
    print(f"lost:    {summary['lost']}")
    print(f"messages: {summary['messages']}")
    print(f"errors:  {summary['errors']}")
    for err in summary["first_errors"]:
        print(f"  line {err['lineno']}, column {err['column']}: {err['message']}")
        print(f"    {err['line'][:120]}")


def cmd_parse(args: argparse.Namespace) -> int:
    """``perfnet parse``: format, events per tracepoint, lost count, first errors."""
    summary = _parse_summary(_read(args))
    if args.json:
        json.dump(summary, sys.stdout, indent=2)
        print()
    else:
        _print_parse(summary)
    return 0


def _report(trace: perfnet.Trace, filtered: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything ``perfnet report`` shows, as plain data (paths with namespaces where known);
    ``filtered`` is what :func:`_filtered` says it kept."""
    named = analysis.with_namespaces(trace)
    packets = named.packets
    return {
        **_basics(trace),
        "packets": len(packets),
        "filtered": filtered,
        "ended_by": {str(rule): int(n) for rule, n in packets["ended_by"].value_counts(sort=False).items()},
        "topology": "inferred from the events" if trace.topology.inferred else "snapshot of the capturing host",
        "paths": analysis.path_table(packets),
        "hops": analysis.hop_latency(named.hops),
        "drops": named.drops,
    }


def _wrote(path: str | Path, details: str = "") -> None:
    """Say that ``path`` was written: on standard error where that file is standard output
    (``-o /dev/stdout``), which would otherwise get the line in the middle of its data."""
    try:
        to_stdout = os.path.samestat(os.stat(path), os.fstat(1))
    except OSError:
        to_stdout = False
    print(f"wrote {path}{details}", file=sys.stderr if to_stdout else sys.stdout)


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def _print_report(report: dict[str, Any]) -> None:
    print(f"source:  {report['source']}")
    print(
        f"format:  {report['format']}    events: {report['events']}    lost: {report['lost']}    "
        f"unparsed lines: {report['errors']}"
    )
    print(f"packets: {report['packets']}    devices: {report['topology']}")
    filtered = report["filtered"]
    if filtered is not None:
        print(f"filtered: {_conditions(filtered['by'])}: {filtered['packets']} of {filtered['of']} packets")
    ended = report["ended_by"]
    print(
        "ended by: "
        + ", ".join(f"{rule} {n}" for rule, n in ended.items() if n)
        + f"  ({ended.get('idle', 0)} rest only on the idle rule: the least certain)"
    )
    paths = report["paths"]
    if not paths.empty:
        width = max(paths["path"].astype(str).map(len).max(), 4)
        print(f"\n{'path':<{width}}  {'packets':>7}  {'share':>6}  {'transit µs':>10}  {'to free µs':>10}")
        for row in paths.itertuples():
            print(
                f"{row.path!s:<{width}}  {row.count:>7}  {row.share:>6.1%}  {_us(row.median_transit_ns):>10}  "
                f"{_us(row.median_duration_ns):>10}"
            )
    hops = report["hops"]
    if not hops.empty:
        names = [f"{r.from_dev} > {r.to_dev}" for r in hops.itertuples()]
        width = max(map(len, names))
        print(
            f"\n{'hop latency (µs)':<{width}}  {'count':>6}  "
            + "  ".join(f"{name:>8}" for name in ("mean", "p50", "p90", "p99", "max"))
        )
        for name, r in zip(names, hops.itertuples(), strict=True):
            stats = "  ".join(f"{_us(v):>8}" for v in (r.mean_ns, r.p50_ns, r.p90_ns, r.p99_ns, r.max_ns))
            print(f"{name:<{width}}  {r.count:>6}  {stats}")
    drops = report["drops"]
    if not drops.empty:
        print("\ndrops (skb:kfree_skb)")
        for r in drops.itertuples():
            print(f"  {r.count:>6}  {r.reason!s:<24} at {r.location!s:<32} dev {r.dev}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, pd.DataFrame):
        return json.loads(value.to_json(orient="records"))
    return value


def cmd_report(args: argparse.Namespace) -> int:
    """``perfnet report``: packets, the paths they took, hop latencies and drops."""
    trace, filtered = _filtered(_read(args), args)
    if args.html:
        from perfnet import html_report  # matplotlib is imported only when a report is drawn

        try:
            _wrote(html_report.write(trace, args.html))
        except OSError as exc:
            raise PerfnetError(f"cannot write {args.html}: {exc.strerror or exc}") from exc
        return 0
    report = _report(trace, filtered)
    if args.json:
        json.dump({k: _jsonable(v) for k, v in report.items()}, sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
    return 0


def _event_line(rec: perfnet.Record, topology: Topology | None) -> str:
    """One live event: time, device (with its namespace where one event can tell), event, len, skb."""
    dev = rec.dev or "-"
    if rec.dev and topology is not None:
        dev = device_label(rec.dev, topology)
    length = "" if rec.len is None else str(rec.len)
    skb = "" if rec.skbaddr is None else f"{rec.skbaddr:#x}"
    return f"{rec.time_ns / 1e6:12.3f} ms  {dev:<22} {rec.event:<34} {length:>6}  {skb}"


def _live(args: argparse.Namespace, command: Sequence[str] | None) -> int:
    """Stream a capture: one line per event as it arrives, then the summary (also on Ctrl-C)."""
    if not (command or args.all or args.pid is not None):
        raise UsageError("nothing to trace: give a command (perfnet trace -- ping -c 3 ADDR), -a or -p PID")
    if args.duration is not None and not args.duration > 0:
        raise UsageError(f"--duration must be positive, not {args.duration:g}")
    config = configure(
        command or None,
        events=args.event,  # None: perfnet's default, net:* and the skb free marker
        system_wide=args.all,
        pid=args.pid,
        duration=args.duration,
        raw_output=args.output,
        mode="record" if args.record else "trace",
        filter=args.filter,
        callgraph=args.call_graph,
    )
    received: list[int] = []  # signals, in order
    live: list[RecordStream] = []

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        for stream in live:  # not there yet while perf starts: stopped as soon as it is
            react_to_signals(stream, received)

    previous = {sig: signal.signal(sig, stop) for sig in STOPPED_BY}
    failed: perfnet.TracedCommandError | None = None
    out = _Terminal()
    try:
        with perfnet.stream(config) as stream:
            live.append(stream)
            react_to_signals(stream, received)  # signals while perf started
            try:
                for rec in stream:
                    out.print(_event_line(rec, stream.topology))
            except perfnet.TracedCommandError as exc:  # the summary still comes, then its status
                failed = exc
            trace = stream.to_trace()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    out.print("\n--- summary" + (f" ({trace.partial})" if trace.partial else "") + " ---")
    out.report(_report(trace))
    stats = trace.capture_stats
    if stats is not None:
        rss_mib = stats.peak_rss_bytes / 2**20
        out.print(f"\nperf: {stats.cpu_s:.2f} s CPU, peak RSS {rss_mib:.1f} MiB, lost events: {stats.lost}")
        incomplete = stats.counters[~stats.counters["complete"].astype(bool)]
        if not incomplete.empty:
            out.print("devices whose packet counters and events disagree:")
            out.print(incomplete.to_string(index=False))
    if received:
        return 128 + received[0]  # 130 for Ctrl-C
    if failed is not None:
        out.print(f"perfnet: {failed}", err=True)
        return failed.returncode if failed.returncode > 0 else 128 - failed.returncode
    return 0


class _Terminal:
    """Writes to standard output (or error) until the terminal is gone (a hang-up, a closed
    pipe): then it stops writing, and the capture still ends cleanly."""

    def __init__(self) -> None:
        self.gone = False

    def print(self, text: str, err: bool = False) -> None:
        if self.gone:
            return
        try:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)
        except OSError:
            self.gone = True

    def report(self, report: dict[str, Any]) -> None:
        if self.gone:
            return
        try:
            _print_report(report)
            sys.stdout.flush()
        except OSError:
            self.gone = True


def cmd_trace(args: argparse.Namespace) -> int:
    """``perfnet trace``: run perf for the user, print events live, then paths and hop latencies."""
    command = args.command_argv[1:] if args.command_argv[:1] == ["--"] else args.command_argv
    return _live(args, command)


def cmd_lab(args: argparse.Namespace) -> int:
    """``perfnet lab up|down|demo``: a throwaway namespace lab for trying perfnet live."""
    from perfnet import lab as labs

    reason = labs.require_root_and_tools()
    if reason is not None:
        raise PerfnetError(reason)
    if args.action == "up":
        lab = labs.Lab().up()
        lab.keep()
        print(
            f"lab {lab.tag} is up: bridge {lab.bridge} ({lab.bridge_addr}) -> {lab.host_veth} -> "
            f"{lab.ctr1}:eth0 ({lab.ctr1_addr}) -> eth1 -> {lab.ctr2}:eth0 ({lab.ctr2_addr})"
        )
        print(f"try:  perfnet trace -- {' '.join(lab.ping_argv(lab.ctr2_addr, 3))}")
        print(f"then: perfnet lab down {lab.tag}")
        return 0
    if args.action == "list" or (args.action == "down" and not args.tags and not args.all):
        kept = labs.kept_labs()
        print("\n".join(f"lab {tag} is up" for tag in kept) or "no lab is up")
        if args.action == "down":  # labs may be someone else's: only named ones go
            print("perfnet lab down: name the labs to remove (perfnet lab down TAG ...), or --all", file=sys.stderr)
            return 2
        return 0
    if args.action == "down":
        for tag in labs.kept_labs() if args.all else args.tags:
            labs.Lab.attach(tag).down()
            print(f"lab {tag} is down")
        return 0
    with labs.Lab() as lab:
        print(
            f"lab {lab.tag}: ping {lab.ctr2_addr} from the root namespace through "
            f"{lab.bridge} > {lab.host_veth} > {lab.ctr1} (routes) > {lab.ctr2}\n"
        )
        args.event, args.all, args.pid, args.duration = None, False, None, None
        args.output, args.record, args.filter, args.call_graph = None, False, None, None
        return _live(args, lab.ping_argv(lab.ctr2_addr, args.count))


PLOTS = ("hops", "timeline", "stages", "over-time", "paths")


def cmd_plot(args: argparse.Namespace) -> int:
    """``perfnet plot``: one figure of a capture, written to a PNG (or any format matplotlib knows)."""
    from matplotlib.figure import Figure

    from perfnet import plot

    trace, filtered = _filtered(_read(args), args)
    if trace.packets.empty:
        if filtered is not None:
            raise PerfnetError(
                f"no packets to plot: none of the {filtered['of']} packets matches {_conditions(filtered['by'])}"
            )
        raise PerfnetError("the capture has no packets to plot")
    fig = Figure(figsize=(9, 4.5), layout="constrained")
    ax = fig.add_subplot()
    if args.kind == "hops":
        plot.hop_latency(trace, ax=ax)
    elif args.kind == "timeline":
        plot.timeline(trace, args.packet, ax=ax)
    elif args.kind == "stages":
        plot.stage_latency(trace, ax=ax)
    elif args.kind == "over-time":
        plot.latency_over_time(trace, args.hop, ax=ax)
    else:
        plot.path_frequency(trace, ax=ax)
    # without an extension matplotlib writes PNG and adds ".png": name that file ourselves
    named = Path(args.output)
    device = not named.suffix and named.exists() and not named.is_file()  # /dev/stdout, a pipe
    output = args.output if named.suffix or device else f"{args.output}.png"  # no type: a PNG
    try:
        if device:  # matplotlib would write <name>.png beside a name without a type
            with open(output, "wb") as out:
                fig.savefig(out, format="png", dpi=120)
        else:
            fig.savefig(output, dpi=120)
    except (OSError, ValueError) as exc:  # ValueError: a file type matplotlib cannot write
        raise PerfnetError(f"cannot write {output}: {exc}") from exc
    _wrote(output)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``perfnet compare``: per-hop (or per-stage) latency change between two captures,
    flagging real changes."""
    (before, filtered_a), (after, filtered_b) = (_filtered(_load(path, args), args) for path in (args.a, args.b))
    table = analysis.compare(
        before, after, frame="stages" if args.stages else "hops", min_effect_ns=int(args.min_effect_us * 1000)
    )
    if args.json:
        json.dump(_jsonable(table), sys.stdout, indent=2)
        print()
        return 0
    print(f"A: {args.a}\nB: {args.b}")
    if filtered_a is not None and filtered_b is not None:
        print(
            f"filtered: {_conditions(filtered_a['by'])}: A {filtered_a['packets']} of {filtered_a['of']} packets, "
            f"B {filtered_b['packets']} of {filtered_b['of']}"
        )
    print(readable(table).to_string(index=False, float_format="{:.1f}".format))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``perfnet export``: one frame of a capture (after the filters) as CSV, JSON Lines or Parquet."""
    to = args.to or format_of(args.output)
    if to is None:  # checked before a long read
        raise UsageError(
            f"cannot tell which format to write {args.output} in: name it "
            + ", ".join(f".{f}" for f in FORMATS)
            + " or give --to"
        )
    trace, _ = _filtered(_read(args), args)
    frame = getattr(trace, args.table)
    try:
        written = write_table(frame, args.output, to)
    except BrokenPipeError:  # -o /dev/stdout into a reader that stopped: as when printing
        raise
    except OSError as exc:
        raise PerfnetError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    _wrote(written, f": {len(frame)} rows of {args.table} ({to})")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """``perfnet convert``: a capture as a Parquet dataset, which ``perfnet.read(DIR)`` (and any
    command here) reads back as the same capture; a text capture is converted in bounded
    memory, whatever its length (see :mod:`perfnet.convert`)."""
    if args.example == (args.file is not None):
        raise PerfnetError("give a FILE or --example (not both)")
    source = example_capture() if args.example else args.file
    try:
        if is_dataset(source):
            trace = perfnet.read(source)
            out = write_dataset(trace, args.output, force=args.force)
            events, packets, late = len(trace.events), len(trace.packets), tuple[int, ...]()
        else:
            done = convert(
                source,
                args.output,
                force=args.force,
                format=args.format,
                strict=args.strict,
                formats=args.formats,
                topology=args.topology,
                progress=sys.stderr.isatty(),
                window_ns=round(args.window * 1e6),
                chunk_lines=args.chunk_lines,
            )
            out, events, packets, late = done.path, done.events, done.packets, done.late_linenos
            if done.late_events:
                lines = ", ".join(map(str, late)) + (", ..." if done.late_events > len(late) else "")
                print(
                    f"perfnet: {done.late_events} events came more than {args.window:g} ms after later ones "
                    f"(lines {lines}): written out of time order, perfnet.read puts them in place "
                    "(a larger --window keeps them in order)",
                    file=sys.stderr,
                )
    except OSError as exc:
        raise PerfnetError(f"cannot write {args.output}: {exc.strerror or exc}") from exc
    files = sum(1 for path in out.rglob("*") if path.is_file())
    print(f"wrote {out}: {events} events, {packets} packets, {files} files")
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    """``perfnet topology save|show``: the host's devices per namespace, to keep beside a capture."""
    if args.action == "save":
        target = Path(args.output or f"{args.capture}.topology.json")
        topology = snapshot()
        try:
            topology.save(target)
        except OSError as exc:
            raise PerfnetError(f"cannot write {target}: {exc.strerror or exc}") from exc
        _wrote(target, f": {len(topology.links)} devices in {len(topology.namespaces)} namespaces")
        if topology.unreadable:
            print(f"not readable (run as root): {', '.join(topology.unreadable)}")
        return 0
    topology = perfnet.read(args.capture).topology if args.capture else snapshot()
    origin = "inferred from the events" if topology.inferred else "snapshot"
    print(f"{origin}; home namespace: {topology.home}")
    for ns in topology.namespaces:
        forwards = {True: "forwards", False: "does not forward", None: "forwarding unknown"}[ns.forwarding]
        print(f"{ns.name} ({forwards})")
        for link in (link for link in topology.links if link.netns == ns.name):
            facts = [link.kind or "device"]
            if link.master:  # inferred: seen below it (a bridge's port, a macvlan's lower)
                facts.append(f"{'under' if topology.inferred else 'port of'} {link.master}")
            if link.peer_name:
                facts.append(f"peer {link.peer_name}@{link.peer_netns}")
            if link.lower:
                facts.append(f"over {link.lower}")
            print(f"  {link.name}: {', '.join(facts)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfnet", description=perfnet.__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"perfnet {perfnet.__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse", help="parse a capture and summarise what is in it")
    _source_arg(parse)
    parse.add_argument("--json", action="store_true", help="print the summary as JSON")
    parse.set_defaults(run=cmd_parse)
    report = commands.add_parser("report", help="packets, their paths through devices, hop latencies, drops")
    _source_arg(report)
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.add_argument("--html", metavar="OUT", help="write a self-contained HTML report (tables and figures)")
    _filter_args(report)
    report.set_defaults(run=cmd_report)
    plot_cmd = commands.add_parser("plot", help="draw one figure of a capture")
    _source_arg(plot_cmd)
    plot_cmd.add_argument("--kind", choices=PLOTS, default="hops", help="which figure (default: hops)")
    plot_cmd.add_argument("--packet", type=int, help="timeline: the packet_id to draw (default: the slowest)")
    plot_cmd.add_argument(
        "--hop", metavar="'FROM > TO'", help="over-time: the hop to draw, as the report names it (default: the busiest)"
    )
    plot_cmd.add_argument("-o", "--output", required=True, help="output file, e.g. hops.png (no extension: PNG)")
    _filter_args(plot_cmd)
    plot_cmd.set_defaults(run=cmd_plot)
    compare = commands.add_parser("compare", help="per-hop (or per-stage) latency change between two captures")
    compare.add_argument("a", help="the capture before (baseline)")
    compare.add_argument("b", help="the capture after")
    compare.add_argument("--format", choices=[v.value for v in perfnet.Variant], help="output variant of both")
    compare.add_argument("--strict", action="store_true", help="stop at the first line that does not parse")
    compare.add_argument("--formats", metavar="DIR", help="tracepoint format files, to name enums")
    compare.add_argument("--topology", metavar="FILE", help="the devices of the host both were captured on")
    compare.add_argument(
        "--min-effect-us",
        type=float,
        default=analysis.MIN_EFFECT_NS / 1000,
        help=f"smallest median change (µs) to flag as significant (default {analysis.MIN_EFFECT_NS / 1000:g})",
    )
    compare.add_argument(
        "--stages", action="store_true", help="compare stages (event to event within a device) instead of hops"
    )
    compare.add_argument("--json", action="store_true", help="print one object per hop (or stage) as JSON")
    _filter_args(compare)
    compare.set_defaults(run=cmd_compare)
    export_cmd = commands.add_parser("export", help="write one table of a capture as CSV, JSON Lines or Parquet")
    _source_arg(export_cmd)
    export_cmd.add_argument("--table", choices=TABLES, required=True, help="which table to write")
    export_cmd.add_argument("-o", "--output", required=True, metavar="OUT", help="the file to write, e.g. packets.csv")
    export_cmd.add_argument("--to", choices=FORMATS, help="OUT's format (default: from its extension)")
    _filter_args(export_cmd)
    export_cmd.set_defaults(run=cmd_export)
    convert_cmd = commands.add_parser(
        "convert", help="write a capture as a Parquet dataset (read back with perfnet.read(DIR), or any tool)"
    )
    _source_arg(convert_cmd)
    convert_cmd.add_argument("-o", "--output", required=True, metavar="DIR", help="the dataset directory to create")
    convert_cmd.add_argument("--force", action="store_true", help="replace DIR if it is a perfnet dataset")
    convert_cmd.add_argument(
        "--window",
        type=_non_negative("milliseconds"),
        default=REORDER_WINDOW_NS / 1e6,
        metavar="MS",
        help="how late an event may come (perf trace -a prints out of order) and still be written in place "
        "(default: %(default)g)",
    )
    convert_cmd.add_argument(
        "--chunk-lines",
        type=_positive,
        default=CHUNK_LINES,
        metavar="N",
        help="lines read at a time: fewer take less memory, more go faster (default: %(default)d)",
    )
    convert_cmd.set_defaults(run=cmd_convert)
    trace_cmd = commands.add_parser(
        "trace", help="run perf, print events as they arrive, then paths and hop latencies (root)"
    )
    trace_cmd.add_argument("-a", "--all", action="store_true", help="system-wide (perf -a)")
    trace_cmd.add_argument("-p", "--pid", type=int, help="trace this process (perf -p)")
    trace_cmd.add_argument(
        "-e", "--event", action="append", help="tracepoint, repeatable (default: net:* and the skb free marker)"
    )
    trace_cmd.add_argument("--filter", help="perf tracepoint filter for the last -e, e.g. 'len > 100'")
    trace_cmd.add_argument("--call-graph", help="record callchains (perf --call-graph MODE)")
    trace_cmd.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    trace_cmd.add_argument("-o", "--output", metavar="RAW", help="keep perf's raw output (re-read with perfnet.read)")
    trace_cmd.add_argument("--record", action="store_true", help="perf record + perf script, for high rates")
    trace_cmd.add_argument("command_argv", nargs=argparse.REMAINDER, metavar="-- CMD ...", help="command to trace")
    trace_cmd.set_defaults(run=cmd_trace)
    lab_cmd = commands.add_parser("lab", help="throwaway namespace lab: up, down, or a one-command demo (root)")
    lab_cmd.add_argument("action", choices=("up", "down", "list", "demo"))
    lab_cmd.add_argument("tags", nargs="*", help="down: the labs to remove (see `perfnet lab list`)")
    lab_cmd.add_argument("--all", action="store_true", help="down: every lab left up on this machine")
    lab_cmd.add_argument("--count", type=int, default=5, help="demo: pings to send (default 5)")
    lab_cmd.set_defaults(run=cmd_lab)
    topology_cmd = commands.add_parser(
        "topology", help="save this host's devices beside a capture, or show a capture's (saved or inferred)"
    )
    topology_cmd.add_argument("action", choices=("save", "show"))
    topology_cmd.add_argument(
        "capture", nargs="?", help="save: writes CAPTURE.topology.json (read() finds it); show: its devices"
    )
    topology_cmd.add_argument("-o", "--output", metavar="FILE", help="save: write here instead")
    topology_cmd.set_defaults(run=cmd_topology)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perfnet`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "topology" and args.action == "save" and not (args.capture or args.output):
        parser.error("topology save: give the capture it belongs to, or -o FILE")
    try:
        _check_window(args)
        code: int = args.run(args)
    except PerfnetError as exc:
        print(f"perfnet: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: the shell knows why, by the status
        return 130
    except BrokenPipeError:  # a reader that stopped (| head): nothing more to say, and nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit too
        return 0
    except OSError as exc:  # a file or device the library did not name in an error of its own
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"perfnet: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
