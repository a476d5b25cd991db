"""pyparsing grammars for every text variant perf (and ftrace) prints, built from the schemas.

A line is parsed in two steps.  The *header* grammar of the variant reads the timestamp, the
task, the CPU and the event name, and hands back the event's *body*.  The body grammar of that
tracepoint, built from its schema, reads the fields: from the kernel's print formats for the
variants that print them (libtraceevent, ``perf script``, ftrace, old perf), or as perf trace's
own ``name: value`` list.  Every element is named (``set_name``) so that errors say what was
expected, and where.

Variants (``Variant``):

* ``trace``: ``perf trace`` (perf >= 5.5) printing fields itself:
  ``0.000 ping/2202 net:net_dev_queue(skbaddr: 0xffff88810a929800, len: 42, name: "pnv0")``.
  Zero-valued fields are omitted and signed fields print as unsigned 32-bit numbers.
* ``trace-libtraceevent``: ``perf trace --libtraceevent_print``:
  ``0.000 ping/3472 net:net_dev_queue(dev=br-pn skbaddr=0xffff888109f09b00 len=98)``.
* ``trace-old``: perf before 5.5: ``0.000 ping/48922 net:net_dev_queue:dev=docker0 ...``,
  sometimes with a stray ``)`` at the end.
* ``script``: ``perf script``: ``ping  3833 [000]   154.231676:  net:net_dev_queue: dev=...``.
* ``ftrace``: tracefs ``trace``/``trace_pipe``: ``ping-4277 [000] b.... 163.370723: net_dev_queue: ...``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

import pyparsing as pp

from perfnet.records import FieldValue
from perfnet.schema import CONVERSION, EventSchema, Field


class Variant(StrEnum):
    """The text variants perfnet reads."""

    TRACE = "trace"
    TRACE_LIBTRACEEVENT = "trace-libtraceevent"
    TRACE_OLD = "trace-old"
    SCRIPT = "script"
    FTRACE = "ftrace"


EnumTables = Mapping[str, Mapping[str, Mapping[int, str]]]
"""event (``skb:kfree_skb``) -> field (``reason``) -> number -> symbolic name."""


class BodyError(Exception):
    """A body did not parse: ``loc`` is its 0-based offset inside the body."""

    def __init__(self, loc: int, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


@dataclass(frozen=True, slots=True)
class Header:
    """What a header grammar reads from an event line."""

    time_ns: int
    comm: str | None
    tid: int | None
    cpu: int | None
    event: str
    body: str
    body_start: int  # offset of the body in the line, for error columns


# --- header grammars -----------------------------------------------------------------------

_EVENT_NAME = r"[\w-]+:[\w-]+"

_timestamp = pp.Regex(r"\d+\.\d+")("time").set_name("timestamp")
_perf_trace_duration = pp.Regex(r"\(\s*(?:[\d.]+ ms)?\s*\):").set_name("duration column")
# The comm may hold spaces, slashes, colons and dashes (`CPU 0/KVM/3750`, `kworker/1:1-eve/41`,
# `:0/0`): it is everything before the last `/TID` that is followed by the event name.
_perf_trace_task = pp.Regex(rf"(?:(?P<comm>.*?)/)?(?P<tid>\d+)\s+(?={_EVENT_NAME}[(:])").set_name("comm/tid")
_event = pp.Regex(_EVENT_NAME)("event").set_name("event name (subsystem:name)")

_perf_trace_head = (_timestamp + pp.Opt(_perf_trace_duration) + pp.Opt(_perf_trace_task) + _event).set_name(
    "perf trace event header"
)
# Records where the body starts, so errors inside it point at the right column.
_body_start = pp.Empty().set_parse_action(lambda _s, loc, _t: loc)("body_start")
_paren_body = (
    pp.Suppress("(") + _body_start + pp.Regex(r".*(?=\)\s*$)")("body").set_name("event fields") + pp.Suppress(")")
).leave_whitespace()
_colon_body = (
    pp.Suppress(":") + _body_start + pp.Regex(r".*?(?=\)?\s*$)")("body").set_name("event fields") + pp.Opt(")")
).leave_whitespace()

_script_task = pp.Regex(r"(?P<comm>.*?)\s+(?:(?P<pid>\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]").set_name(
    "comm, tid and [cpu]"
)
_script_head = (
    _script_task + _timestamp + pp.Suppress(":") + pp.Regex(r"(?:\d+\s+)?").suppress() + _event + pp.Suppress(":")
).set_name("perf script event header")

_ftrace_task = pp.Regex(r"(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]").set_name(
    "task-pid, optional (tgid) and [cpu]"
)
_ftrace_flags = pp.Regex(r"[.a-zA-Z0-9]{4,5}(?=\s)").set_name("irq flags")
_ftrace_head = (
    _ftrace_task
    + pp.Opt(_ftrace_flags)
    + _timestamp
    + pp.Suppress(":")
    + pp.Regex(r"\w+")("event").set_name("event name")
    + pp.Suppress(":")
).set_name("ftrace event header")

_rest = _body_start + pp.Regex(r".*")("body").set_name("event fields")

HEADERS: dict[Variant, pp.ParserElement] = {
    Variant.TRACE: _perf_trace_head + _paren_body,
    Variant.TRACE_LIBTRACEEVENT: _perf_trace_head + _paren_body,
    Variant.TRACE_OLD: _perf_trace_head + _colon_body,
    Variant.SCRIPT: _script_head + pp.Opt(pp.White(" \t")).suppress() + _rest,
    Variant.FTRACE: _ftrace_head + pp.Opt(pp.White(" \t")).suppress() + _rest,
}

# Seconds-since-boot variants keep their clock; perf trace prints milliseconds.
_TIME_DIGITS = {Variant.SCRIPT: 9, Variant.FTRACE: 9}


def time_to_ns(text: str, seconds_digits: int) -> int:
    """Convert a decimal timestamp exactly (no float) to integer nanoseconds.

    ``seconds_digits`` is 9 for seconds and 6 for milliseconds.
    """
    whole, _, frac = text.partition(".")
    return int(whole) * 10**seconds_digits + int((frac + "0" * seconds_digits)[:seconds_digits])


def parse_header(variant: Variant, line: str) -> Header:
    """Read the header of an event line.

    Raises:
        pyparsing.ParseException: the line is not an event line of this variant.
    """
    result = HEADERS[variant].parse_string(line, parse_all=True)
    body = result.get("body", "")
    tid = result.get("tid")
    cpu = result.get("cpu")
    return Header(
        time_ns=time_to_ns(result["time"], _TIME_DIGITS.get(variant, 6)),
        comm=result.get("comm") or None,
        tid=int(tid) if tid is not None else None,
        cpu=int(cpu) if cpu is not None else None,
        event=result["event"],
        body=body,
        body_start=result["body_start"],
    )


# --- body grammars -------------------------------------------------------------------------


def _conversion_pattern(conv: str, flags: str, following: str) -> str:
    """The text a printf conversion can produce, as the kernel or libtraceevent print it."""
    if conv == "s":
        return rf".*?(?={re.escape(following)})" if following else r".*"
    if conv == "p":
        return r"\(nil\)|(?:0x)?[0-9a-fA-F]+"
    if conv.startswith("p"):  # %pS and friends: a symbol, `ping_rcv+0xab/0xd0`, or an address
        return r"\S+"
    if conv in ("x", "X"):
        return r"(?:0x)?[0-9a-fA-F]+" if "#" in flags else r"[0-9a-fA-F]+"
    if conv == "c":
        return r"."
    return r"-?\d+" if conv in ("d", "i") else r"\d+"


@dataclass(frozen=True, slots=True)
class _BodyFormat:
    grammar: pp.ParserElement
    conversions: Mapping[str, str]  # field name -> conversion letter, for typing its value


def _format_grammar(schema: EventSchema, index: int) -> _BodyFormat:
    fmt = schema.formats[index]
    pieces = CONVERSION.split(fmt.text)
    # re.split with groups yields: literal, flags, length, conv, literal, ...
    literals = pieces[0::4]
    convs = list(zip(pieces[1::4], pieces[3::4], strict=True))
    elements: list[pp.ParserElement] = []
    if literals[0]:
        elements.append(pp.Literal(literals[0]))
    conversions: dict[str, str] = {}
    for i, ((flags, conv), arg) in enumerate(zip(convs, fmt.args, strict=True)):
        following = literals[i + 1]
        token = pp.Regex(_conversion_pattern(conv, flags, following))
        elements.append(token(arg).set_name(f"{arg} (%{flags}{conv})"))
        conversions[arg] = conv
        if following:
            elements.append(pp.Literal(following))
    grammar = (pp.And(elements) + pp.StringEnd()).leave_whitespace()
    return _BodyFormat(grammar.set_name(f"{schema.event} format {index + 1}"), conversions)


@cache
def _format_grammars(schema: EventSchema) -> tuple[_BodyFormat, ...]:
    return tuple(_format_grammar(schema, i) for i in range(len(schema.formats)))


_key_equals = pp.Regex(r"(?P<key>\w+)=(?P<value>\S*)").set_name("key=value")
_generic_pairs = (pp.ZeroOrMore(pp.Group(_key_equals)) + pp.StringEnd()).set_name("key=value list")

_field_value = (pp.QuotedString('"', esc_char="\\", unquote_results=False) | pp.Regex(r"[^,]*")).set_name("field value")
_field_pair = pp.Group(pp.Regex(r"\w+")("key").set_name("field name") + pp.Suppress(":") + _field_value("value"))
_field_list = (pp.Opt(pp.DelimitedList(_field_pair, ",")) + pp.StringEnd()).set_name("name: value list")


def _to_int(text: str, conv: str | None) -> int:
    if text == "(nil)":
        return 0
    if conv in ("x", "X", "p") or text.startswith(("0x", "-0x")):
        return int(text, 16)
    return int(text)


def typed_value(field: Field, text: str, conv: str | None, enum: Mapping[int, str] | None) -> FieldValue:
    """Type one printed value from its schema field.

    ``conv`` is the printf conversion that printed it (None for perf trace's own printer,
    which prints numbers in decimal and pointers in hex).  Signed fields printed as
    unsigned (perf trace prints ``mac_header: 4294967282`` for -14) get their sign back.
    """
    if field.kind == "str":
        return text[1:-1].replace('\\"', '"') if text.startswith('"') else text
    if field.kind == "symbol":
        # ftrace prints `%pS` as `sym+off/size`; libtraceevent as `sym+off`: keep the latter.
        return text.split("/", 1)[0] if "+" in text else text
    if field.kind == "ptr":
        return _to_int(text, "p")
    if field.kind == "enum":
        if not re.fullmatch(r"-?\d+", text):
            return text
        number = int(text)
        return enum.get(number, number) if enum else number
    value = _to_int(text, conv)
    if field.kind == "bool":
        return value != 0
    if field.signed and value >= 1 << (8 * field.size - 1):
        value -= 1 << (8 * field.size)
    return value


def _zero(field: Field, enum: Mapping[int, str] | None) -> FieldValue:
    """The value of a field perf trace omitted because it was zero."""
    if field.kind in ("str", "symbol"):
        return ""
    if field.kind == "bool":
        return False
    if field.kind == "enum" and enum:
        return enum.get(0, 0)
    return 0


def _infer(text: str) -> FieldValue:
    """Type a value of a field no schema describes: ints where it is clearly a number."""
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if re.fullmatch(r"-?\d+|0x[0-9a-fA-F]+", text):
        return _to_int(text, None)
    return text


def parse_body(schema: EventSchema | None, body: str, printer_fields: bool, enums: EnumTables) -> dict[str, FieldValue]:
    """Parse an event body into typed fields.

    Args:
        schema: the tracepoint's schema, or None for events perfnet has no schema for (their
            fields are kept as printed, so no line is dropped for being unknown).
        body: the text between the event name and the end of the event.
        printer_fields: True for perf trace's own ``name: value`` printer, False for print formats.
        enums: symbolic names for numeric enum fields.

    Raises:
        BodyError: the body matches none of the schema's print formats.
    """
    tables = enums.get(schema.event, {}) if schema else {}
    if printer_fields:
        try:
            pairs = _field_list.parse_string(body, parse_all=True)
        except pp.ParseException as exc:
            raise BodyError(exc.loc, f"expected {exc.msg.removeprefix('Expected ')}") from None
        if schema is None:
            return {p["key"]: _infer(p["value"]) for p in pairs}
        fields = {f.name: _zero(f, tables.get(f.name)) for f in schema.fields}
        for pair in pairs:
            field = schema.lookup.get(pair["key"])
            if field is None:
                fields[pair["key"]] = _infer(pair["value"])
            else:
                fields[field.name] = typed_value(field, pair["value"], None, tables.get(field.name))
        return fields
    if schema is None or not schema.formats:
        try:
            pairs = _generic_pairs.parse_string(body, parse_all=True)
        except pp.ParseException:
            return {"text": body}
        return {p["key"]: _infer(p["value"]) for p in pairs}
    furthest: pp.ParseException | None = None
    for fmt in _format_grammars(schema):
        try:
            result = fmt.grammar.parse_string(body, parse_all=True)
        except pp.ParseException as exc:
            if furthest is None or exc.loc > furthest.loc:
                furthest = exc
            continue
        return {
            name: typed_value(schema.lookup[name], result[name], conv, tables.get(name))
            for name, conv in fmt.conversions.items()
        }
    assert furthest is not None
    raise BodyError(furthest.loc, f"does not match any print format of {schema.event}: {furthest.msg}")
