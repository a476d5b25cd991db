"""The ``perfnet`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import perfnet
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


def _parse_summary(trace: perfnet.Trace) -> dict[str, Any]:
    errors = trace.errors
    return {
        "source": trace.source,
        "format": str(trace.format),
        "events": len(trace.events),
        "events_per_tracepoint": trace.event_counts(),
        "lost": trace.lost,
        "messages": len(trace.messages),
        "errors": len(errors),
        "first_errors": errors.head(_SHOWN_ERRORS).to_dict("records"),
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="perfnet", description=perfnet.__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    parse = commands.add_parser("parse", help="parse a capture and summarise what is in it")
    _source_arg(parse)
    parse.add_argument("--json", action="store_true", help="print the summary as JSON")
    parse.set_defaults(run=cmd_parse)
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
