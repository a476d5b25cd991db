"""Every error perfnet raises derives from :class:`PerfnetError`, so callers can catch one type."""

from __future__ import annotations


class PerfnetError(Exception):
    """Base class of every error perfnet raises."""


class SchemaError(PerfnetError):
    """A tracepoint schema file is malformed."""


class ParseError(PerfnetError):
    """A line of perf output did not parse (raised in strict mode).

    Attributes:
        lineno: 1-based line number in the input.
        column: 1-based column where parsing failed.
        line: the offending line, without its line end.
        reason: what the grammar expected there.
    """

    def __init__(self, lineno: int, column: int, line: str, reason: str) -> None:
        self.lineno = lineno
        self.column = column
        self.line = line
        self.reason = reason
        caret = " " * (column - 1) + "^"
        super().__init__(f"line {lineno}, column {column}: {reason}\n{line}\n{caret}")


class NotPerfOutputError(PerfnetError):
    """The input has lines, but not one event or message perf (or ftrace) prints."""


class UsageError(PerfnetError, ValueError):
    """An argument is invalid or names something the capture does not have (a packet, a hop)."""
