"""perf tracepoint filters (``--filter 'len > 100'``), checked before perf runs.

A filter names fields of the event it applies to; a typo would only surface as perf's terse
``Failed to set filter`` after perf started.  The expression is parsed here and its fields
checked against the event's schema (or its tracefs format), with a hint naming the fields.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Mapping
from typing import Final

from perfnet.host.perf import FilterError, format_text
from perfnet.schema import EventSchema, format_fields

# --- filters --------------------------------------------------------------------------------

_COMMON_FIELDS: Final = {
    "common_type": False,
    "common_flags": False,
    "common_preempt_count": False,
    "common_pid": False,
    "CPU": False,
    "cpu": False,
    "COMM": True,
    "comm": True,
}
_FILTER_TOKEN: Final = re.compile(
    r"""\s*(?:
        (?P<logic>&&|\|\|)
      | (?P<op>==|!=|<=|>=|<|>|&|~)
      | (?P<not>!)
      | (?P<paren>[()])
      | (?P<string>"[^"]*"|'[^']*')
      | (?P<word>[^\s()&|!=<>~"']+)
    )""",
    re.VERBOSE,
)
_NUMBER: Final = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|\d+)")
_IDENT: Final = re.compile(r"[A-Za-z_]\w*")
_STRING_OPS: Final = ("==", "!=", "~")


class _FilterSyntaxError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def _schema_fields(schema: EventSchema) -> tuple[dict[str, bool], dict[str, str], dict[str, tuple[int, int]]]:
    """Field names the kernel knows (struct members) -> is-string, print labels -> member, and
    each number's range (its C type's).

    A schema field's ``aliases`` are what perf trace's printer prints: the struct member, which
    is what filters use (``name``, where every other printer labels the device ``dev``).
    """
    fields: dict[str, bool] = {}
    renamed: dict[str, str] = {}
    ranges: dict[str, tuple[int, int]] = {}
    for f in schema.fields:
        member = f.aliases[0] if f.aliases else f.name
        fields[member] = f.kind == "str"
        bits = 8 * (f.size or 8)
        if f.kind != "str":
            ranges[member] = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if f.signed else (0, (1 << bits) - 1)
        if member != f.name:
            renamed[f.name] = member
    return fields, renamed, ranges


def validate_filter(
    expression: str,
    event: str,
    fields: Mapping[str, bool] | None,
    renamed: Mapping[str, str] | None = None,
    ranges: Mapping[str, tuple[int, int]] | None = None,
) -> None:
    """Check a tracepoint filter (perf's ``--filter``, the kernel's event filter syntax).

    Predicates ``field op value`` with ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``&`` (numbers)
    or ``==``, ``!=``, ``~`` (strings, ``~`` a glob), joined by ``&&``/``||``, negated with ``!``,
    grouped with parentheses.  The common fields (``common_pid``, ...) and ``CPU``/``COMM`` are
    always allowed.

    Args:
        expression: the filter.
        event: the event (or pattern) it applies to, for the message.
        fields: the event's fields: name -> whether it is a string; None if unknown (then only
            the syntax and the common fields are checked).
        renamed: labels that name a field differently in filters (``dev`` -> ``name``).
        ranges: the values each numeric field's C type holds; a constant outside them is refused.

    Raises:
        FilterError: with the offending position marked and a hint.
    """
    known = None if fields is None else {**_COMMON_FIELDS, **fields}
    try:
        _FilterParser(expression, known, renamed or {}, ranges or {}).parse()
    except _FilterSyntaxError as exc:
        caret = " " * exc.pos + "^"
        raise FilterError(
            f"invalid filter for {event}: {exc.message}\n  {expression}\n  {caret}\n"
            "hint: predicates are `field op value` (ops == != < <= > >= & for numbers, == != ~ for strings), "
            f"joined with && and ||, grouped with ( ); fields of {event}: {', '.join(sorted(fields or ())) or '?'}"
        ) from None


class _FilterParser:
    """Recursive-descent checker for the kernel's filter grammar (nothing is evaluated)."""

    def __init__(
        self,
        text: str,
        fields: Mapping[str, bool] | None,
        renamed: Mapping[str, str],
        ranges: Mapping[str, tuple[int, int]],
    ) -> None:
        self.text = text
        self.fields = fields
        self.renamed = renamed
        self.ranges = ranges
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(text):
            if not text[pos:].strip():
                break
            match = _FILTER_TOKEN.match(text, pos)
            if match is None or match.lastgroup is None:
                raise _FilterSyntaxError(len(text) - len(text[pos:].lstrip()), "unexpected character")
            self.tokens.append((match.lastgroup, match[match.lastgroup], match.start(match.lastgroup)))
            pos = match.end()
        self.i = 0

    def parse(self) -> None:
        if not self.tokens:
            raise _FilterSyntaxError(0, "empty filter")
        self._or()
        if self.i < len(self.tokens):
            _, value, pos = self.tokens[self.i]
            raise _FilterSyntaxError(pos, f"expected && or || before {value!r}")

    def _peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _take(self, what: str) -> tuple[str, str, int]:
        token = self._peek()
        if token is None:
            raise _FilterSyntaxError(len(self.text), f"expected {what} at the end")
        self.i += 1
        return token

    def _or(self) -> None:
        self._and()
        while (token := self._peek()) is not None and token[1] == "||":
            self.i += 1
            self._and()

    def _and(self) -> None:
        self._unary()
        while (token := self._peek()) is not None and token[1] == "&&":
            self.i += 1
            self._unary()

    def _unary(self) -> None:
        kind, value, pos = self._take("a predicate")
        if kind == "not":
            self._unary()
        elif value == "(":
            self._or()
            kind, value, pos = self._take("')'")
            if value != ")":
                raise _FilterSyntaxError(pos, f"expected ')' instead of {value!r}")
        elif kind == "word":
            self._predicate(value, pos)
        else:
            raise _FilterSyntaxError(pos, f"expected a field name instead of {value!r}")

    def _predicate(self, name: str, pos: int) -> None:
        if not _IDENT.fullmatch(name):
            raise _FilterSyntaxError(pos, f"{name!r} is not a field name")
        fields = self.fields if self.fields is not None else _COMMON_FIELDS
        if self.fields is not None and name not in fields:
            raise _FilterSyntaxError(pos, self._unknown_field(name, fields))
        kind, op, op_pos = self._take("an operator")
        if kind != "op":
            raise _FilterSyntaxError(op_pos, f"expected an operator (== != < <= > >= & ~) instead of {op!r}")
        kind, value, value_pos = self._take("a value")
        if kind not in ("word", "string"):
            raise _FilterSyntaxError(value_pos, f"expected a value instead of {value!r}")
        if name not in fields:
            return  # a field of an event perfnet has no description of: the kernel checks it
        if fields[name]:
            if op not in _STRING_OPS:
                raise _FilterSyntaxError(op_pos, f"{name} is a string: compare it with ==, != or ~")
        elif op == "~":
            raise _FilterSyntaxError(op_pos, f"{name} is a number: ~ (glob match) is for strings")
        elif kind == "string" or not _NUMBER.fullmatch(value):
            raise _FilterSyntaxError(value_pos, f"{name} is a number, {value} is not")
        elif name in self.ranges:
            low, high = self.ranges[name]
            number = int(value, 16 if value.lstrip("-")[:2].lower() == "0x" else 10) if len(value) <= 40 else None
            if number is None or not low <= number <= high:
                raise _FilterSyntaxError(value_pos, f"{name} holds {low} to {high}; {value[:40]} is out of its range")

    def _unknown_field(self, name: str, fields: Mapping[str, bool]) -> str:
        if name in self.renamed:
            return f"no field {name!r}: in filters it is called {self.renamed[name]!r}"
        close = difflib.get_close_matches(name, list(fields), n=1)
        return f"no field {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


def check_filter(expression: str, spec: str, schemas: Mapping[str, EventSchema]) -> None:
    """Validate ``expression`` against every event ``spec`` (maybe a glob) expands to.

    Fields come from perfnet's schemas; an event without one is read from tracefs, which only
    works with privileges (unreadable: only the syntax is checked, the kernel checks the rest).
    """
    matched = [event for event in schemas if fnmatch.fnmatchcase(event, spec)]
    if not matched:
        fmt = format_text(spec) if ":" in spec and not any(c in spec for c in "*?[") else None
        validate_filter(expression, spec, format_fields(fmt) if fmt is not None else None)
        return
    for event in matched:
        fields, renamed, ranges = _schema_fields(schemas[event])
        validate_filter(expression, event, fields, renamed, ranges)
