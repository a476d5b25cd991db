"""The ``perfnet`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd

import perfnet
from perfnet import analysis
from perfnet.bundled import example_capture
from perfnet.errors import PerfnetError

_SHOWN_ERRORS = 5


def _source_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="captured perf output ('-' for stdin; .gz/.xz/.zst ok)")
    parser.add_argument(
        "--example", action="store_true", help="use the real capture bundled with perfnet instead of FILE"
    )
    parser.add_argument(
        "--format", choices=[v.value for v in perfnet.Variant], help="output variant (default: detected)"
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first line that does not parse")
    parser.add_argument(
        "--formats", metavar="DIR", help="tracefs root or saved copy of tracepoint format files, to name enums"
    )


def _read(args: argparse.Namespace) -> perfnet.Trace:
    if args.example == (args.file is not None):
        raise PerfnetError("give a FILE or --example (not both)")
    source = example_capture() if args.example else args.file
    return perfnet.read(source, format=args.format, strict=args.strict, formats=args.formats)


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


def _report(trace: perfnet.Trace) -> dict[str, Any]:
    """Everything ``perfnet report`` shows, as plain data."""
    packets = trace.packets
    return {
        **_basics(trace),
        "packets": len(packets),
        "paths": analysis.path_table(packets),
        "hops": analysis.hop_latency(trace.hops),
        "drops": trace.drops,
    }


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f}"


def _print_report(report: dict[str, Any]) -> None:
    print(f"source:  {report['source']}")
    print(
        f"format:  {report['format']}    events: {report['events']}    lost: {report['lost']}    "
        f"unparsed lines: {report['errors']}"
    )
    print(f"packets: {report['packets']}")
    paths = report["paths"]
    if not paths.empty:
        width = max(paths["path"].astype(str).map(len).max(), 4)
        print(f"\n{'path':<{width}}  {'packets':>7}  {'share':>6}  {'median µs':>9}")
        for row in paths.itertuples():
            print(f"{row.path!s:<{width}}  {row.count:>7}  {row.share:>6.1%}  {_us(row.median_duration_ns):>9}")
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
    report = _report(_read(args))
    if args.json:
        json.dump({k: _jsonable(v) for k, v in report.items()}, sys.stdout, indent=2)
        print()
    else:
        _print_report(report)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfnet", description=perfnet.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse", help="parse a capture and summarise what is in it")
    _source_arg(parse)
    parse.add_argument("--json", action="store_true", help="print the summary as JSON")
    parse.set_defaults(run=cmd_parse)
    report = commands.add_parser("report", help="packets, their paths through devices, hop latencies, drops")
    _source_arg(report)
    report.add_argument("--json", action="store_true", help="print the report as JSON")
    report.set_defaults(run=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``perfnet`` console script."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except PerfnetError as exc:
        print(f"perfnet: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
