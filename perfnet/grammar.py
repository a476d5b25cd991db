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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import pyparsing as pp

from perfnet.kallsyms import Kallsyms
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


class HeaderError(Exception):
    """A header value does not convert (a tid beyond 32 bits): ``loc`` is its offset in the line."""

    def __init__(self, loc: int, message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


_DECIMAL = re.compile(r"-?[0-9]+", re.ASCII)
_HEX = re.compile(r"(?:0x)?[0-9a-fA-F]+", re.ASCII)
_MAX_DIGITS = 20  # 2**64 has 20 decimal digits; longer numbers are refused before int() sees them


def checked_int(text: str, bits: int, *, hex_digits: bool = False, signed: bool = True) -> int:
    """``text`` as an integer of a C type of ``bits`` bits, or ValueError.

    Only ASCII digits (Python's ``int`` also takes ``٣٤``, ``9_9``, ``+98`` and spaces); hex
    with ``hex_digits`` (``0x`` optional), decimal otherwise, with a sign if ``signed``.  The
    value must fit in ``bits`` bits, read as signed or as unsigned (printers show a signed
    field's -14 as 4294967282, and an unsigned one as negative, alike).
    """
    pattern = _HEX if hex_digits else _DECIMAL
    if pattern.fullmatch(text) is None or len(text) > _MAX_DIGITS + 3 or (text[0] == "-" and not signed):
        raise ValueError(f"{text[:40]!r} is not a {'hex' if hex_digits else 'decimal'} number")
    value = int(text, 16) if hex_digits else int(text)
    if not -(1 << (bits - 1)) <= value < (1 << bits):
        raise ValueError(f"{text[:40]} does not fit in {bits} bits")
    return value


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
#
# Each header is a sequence of tokens.  From one token list perfnet builds both the pyparsing
# grammar (named elements, so a failing line is reported with what was expected and where)
# and one compiled regular expression (the fast path every line tries first).  Both read the
# same named groups; tests check they agree on every fixture line.


@dataclass(frozen=True, slots=True)
class Token:
    """One header element: a regex with named groups, its name for errors, and whether
    whitespace before it is skipped (pyparsing's default) and whether it may be absent."""

    pattern: str
    name: str
    optional: bool = False
    skip_space: bool = True


_EVENT_NAME = r"[\w-]+:[\w-]+"
_TIME = Token(r"(?P<time>\d+\.\d+)", "timestamp")
_PERF_TRACE_HEAD = (
    _TIME,
    Token(r"\(\s*(?:[\d.]+ ms)?\s*\):", "duration column", optional=True),
    # The comm may hold spaces, slashes, colons and dashes (`CPU 0/KVM/3750`, `kworker/1:1-eve/41`,
    # `:0/0`): it is everything before the last `/TID` that the event name follows.  perf trace
    # prints comm/tid only when it traces more than one thread.
    Token(rf"(?:(?P<comm>.*?)/)?(?P<tid>\d+)\s+(?={_EVENT_NAME})", "comm/tid", optional=True),
    Token(rf"(?P<event>{_EVENT_NAME})", "event name (subsystem:name)"),
)
_SCRIPT_HEAD = (
    Token(r"(?P<comm>.*?)\s+(?:(?P<pid>\d+)/)?(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]", "comm, tid and [cpu]"),
    _TIME,
    Token(r":(?:\s*\d+)?", "':'"),
    Token(rf"(?P<event>{_EVENT_NAME}):", "event name (subsystem:name:)"),
    Token(r"(?P<body>.*)", "event fields"),
)
_FTRACE_HEAD = (
    Token(r"(?P<comm>.*?)-(?P<tid>\d+)\s+(?:\(\s*(?:\d+|-+)\)\s+)?\[(?P<cpu>\d+)\]", "task-pid, (tgid) and [cpu]"),
    Token(r"[.a-zA-Z0-9]{4,5}(?=\s)", "irq flags", optional=True),
    _TIME,
    Token(r":", "':'", skip_space=False),
    Token(r"(?P<event>\w+):", "event name"),
    Token(r"(?P<body>.*)", "event fields"),
)
_PAREN_BODY = Token(r"\((?P<body>.*)\)\s*$", "'(' event fields ')'", skip_space=False)
# perf before 5.5 printed `event:fields`, sometimes with a stray `)` at the end.
_COLON_BODY = Token(r":(?P<body>.*?)\)?\s*$", "':' event fields", skip_space=False)

HEADER_TOKENS: dict[Variant, tuple[Token, ...]] = {
    Variant.TRACE: (*_PERF_TRACE_HEAD, _PAREN_BODY),
    Variant.TRACE_LIBTRACEEVENT: (*_PERF_TRACE_HEAD, _PAREN_BODY),
    Variant.TRACE_OLD: (*_PERF_TRACE_HEAD, _COLON_BODY),
    Variant.SCRIPT: _SCRIPT_HEAD,
    Variant.FTRACE: _FTRACE_HEAD,
}


def _pyparsing_header(tokens: tuple[Token, ...], name: str) -> pp.ParserElement:
    elements = []
    for token in tokens:
        element: pp.ParserElement = pp.Regex(token.pattern).set_name(token.name)
        if not token.skip_space:
            element = element.leave_whitespace()
        elements.append(pp.Opt(element) if token.optional else element)
    return (pp.And(elements) + pp.StringEnd()).set_name(name)


def _fast_header(tokens: tuple[Token, ...]) -> re.Pattern[str]:
    parts = []
    for token in tokens:
        body = f"(?:{token.pattern})" + ("?" if token.optional else "")
        parts.append((r"\s*" if token.skip_space else "") + body)
    return re.compile("".join(parts) + r"\s*$", re.ASCII)


HEADERS: dict[Variant, pp.ParserElement] = {
    v: _pyparsing_header(tokens, f"{v} event header") for v, tokens in HEADER_TOKENS.items()
}
_FAST_HEADERS: dict[Variant, re.Pattern[str]] = {v: _fast_header(t) for v, t in HEADER_TOKENS.items()}

# Seconds-since-boot variants keep their clock; perf trace prints milliseconds.
_TIME_DIGITS = {Variant.SCRIPT: 9, Variant.FTRACE: 9}


def time_to_ns(text: str, seconds_digits: int) -> int:
    """Convert a decimal timestamp exactly (no float) to integer nanoseconds.

    ``seconds_digits`` is 9 for seconds and 6 for milliseconds.
    """
    whole, _, frac = text.partition(".")
    return int(whole) * 10**seconds_digits + int((frac + "0" * seconds_digits)[:seconds_digits])


def _header(variant: Variant, groups: Mapping[str, str | None], body_start: int, line: str) -> Header:
    """The header's values, typed and checked (tids and CPUs are 32-bit, times at most 10**12 s).

    Raises:
        HeaderError: a value does not fit its type.
    """
    time, tid, cpu = groups["time"] or "0", groups.get("tid"), groups.get("cpu")

    def checked(text: str | None) -> int | None:
        try:
            return checked_int(text, 32, signed=False) if text is not None else None
        except ValueError as exc:
            raise HeaderError(max(line.find(text or ""), 0), str(exc)) from None

    # more than 12 digits is not even converted; the time must fit int64 nanoseconds (292 years)
    if len(time.partition(".")[0]) > 12 or (time_ns := time_to_ns(time, _TIME_DIGITS.get(variant, 6))) >= 1 << 63:
        raise HeaderError(max(line.find(time), 0), f"timestamp {time[:40]} is out of range")
    return Header(
        time_ns=time_ns,
        comm=groups.get("comm") or None,
        tid=checked(tid),
        cpu=checked(cpu),
        event=groups["event"] or "",
        body=groups.get("body") or "",
        body_start=body_start,
    )


def match_header(variant: Variant, line: str) -> Header | None:
    """Read the header of an event line with the fast regex only; None if it does not match.

    Raises:
        HeaderError: the line is an event line whose tid, CPU or time does not fit its type.
    """
    match = _FAST_HEADERS[variant].match(line)
    return None if match is None else _header(variant, match.groupdict(), match.start("body"), line)


def parse_header(variant: Variant, line: str) -> Header:
    """Read the header of an event line: the fast regex first, the pyparsing grammar if it fails.

    Raises:
        pyparsing.ParseException: the line is not an event line of this variant; its ``loc``
            and ``msg`` say where and what was expected.
    """
    return match_header(variant, line) or parse_header_grammar(variant, line)


def parse_header_grammar(variant: Variant, line: str) -> Header:
    """Read the header with the pyparsing grammar only (the reference the fast path must match)."""
    result = HEADERS[variant].parse_string(line, parse_all=True)
    groups = result.as_dict()
    body = groups.get("body") or ""
    # pyparsing does not report group offsets; the body ends the line (but for a closing `)`).
    return _header(variant, groups, line.rfind(body) if body else len(line.rstrip().rstrip(")")), line)


# --- body grammars -------------------------------------------------------------------------
#
# As for headers, each print format yields a pyparsing grammar (to locate errors) and a
# compiled regex (the fast path), from the same pieces; each field gets a converter, built
# once, that types its printed text.

Converter = Callable[[str], FieldValue]


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


def _to_int(text: str, conv: str | None, bits: int = 64, signed: bool = True) -> int:
    """A printed integer, checked (see :func:`checked_int`): hex for ``%x``/``%p`` and where
    ``0x`` says so, decimal otherwise; ``(nil)`` is the null pointer."""
    if text == "(nil)":
        return 0
    if conv in ("x", "X", "p") or text.startswith("0x"):
        return checked_int(text, bits, hex_digits=True)
    if text.startswith("-0x"):
        return -checked_int(text[1:], bits, hex_digits=True)
    return checked_int(text, bits, signed=signed)


def converter(
    field: Field, conv: str | None, enum: Mapping[int, str] | None, symbols: Kallsyms | None = None
) -> Converter:
    """The function that types one field's printed text.

    ``conv`` is the printf conversion that printed it (None for perf trace's own printer,
    which prints numbers in decimal and pointers in hex with ``0x``).  Signed fields printed
    as unsigned (perf trace prints ``mac_header: 4294967282`` for -14) get their sign back.
    Enums are named from ``enum`` (the kernel's table) where given; otherwise a number
    stays a number, and a name printed by the kernel stays that name.  Code addresses
    (``%pS`` fields perf trace prints as hex) are named from ``symbols`` where given.  A value
    that is not a number of the field's C type raises ValueError.
    """
    bits = 8 * field.size if field.size else 64
    if field.kind == "str":
        return lambda text: text[1:-1].replace('\\"', '"') if text.startswith('"') else text
    if field.kind == "symbol":
        return lambda text: _symbol(text, symbols)
    if field.kind == "ptr":
        return _printed_pointer if conv is None else lambda text: _to_int(text, "p", 64)
    if field.kind == "enum":
        table = enum or {}

        def enum_value(text: str) -> FieldValue:
            if not _DECIMAL.fullmatch(text):
                return text  # the kernel printed the name
            number = _to_int(text, conv, bits)
            return table.get(number, number)

        return enum_value
    if field.kind == "bool":
        return lambda text: _to_int(text, conv, bits) != 0
    if not field.signed:
        return lambda text: _to_int(text, conv, bits)

    def signed(text: str) -> int:
        value = _to_int(text, conv, bits)
        return value - (1 << bits) if value >= 1 << (bits - 1) else value

    return signed


def _printed_pointer(text: str) -> int:
    """A pointer as perf trace's printer shows it: ``0x...`` always, so a bare number is not one."""
    if text.startswith("0x") or text == "(nil)":
        return _to_int(text, None, 64)
    raise ValueError(f"{text[:40]!r} is not a pointer (0x...)")


def _symbol(text: str, symbols: Kallsyms | None) -> str:
    # ftrace prints `%pS` as `sym+off/size`, libtraceevent as `sym+off`: keep the latter;
    # perf trace prints the address, which a saved symbol table can name.
    if "+" in text:
        return text.split("/", 1)[0]
    if symbols is not None and text.startswith("0x") and _HEX.fullmatch(text) and len(text) <= 18:
        return symbols.symbolize(int(text, 16)) or text
    return text


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
    if len(text) <= _MAX_DIGITS + 2 and re.fullmatch(r"-?[0-9]+|0x[0-9a-fA-F]+", text, re.ASCII):
        try:
            return _to_int(text, None)
        except ValueError:  # beyond 64 bits: keep the text
            return text
    return text


@dataclass(frozen=True, slots=True)
class BodyFormat:
    """One print format, compiled: its pyparsing grammar, its regex, and the converter of each
    field in print order.  ``literals`` and ``patterns`` are its pieces (``literals[0]``,
    ``patterns[0]``, ``literals[1]``, ...), from which the columnar path splits bodies."""

    grammar: pp.ParserElement
    fast: re.Pattern[str]
    converters: tuple[tuple[str, Converter], ...]
    literals: tuple[str, ...]
    patterns: tuple[str, ...]


def _format_body(
    schema: EventSchema, index: int, tables: Mapping[str, Mapping[int, str]], symbols: Kallsyms | None
) -> BodyFormat:
    fmt = schema.formats[index]
    pieces = CONVERSION.split(fmt.text)
    # re.split with CONVERSION's three groups yields: literal, flags, length, conv, literal, ...
    literals = pieces[0::4]
    convs = list(zip(pieces[1::4], pieces[3::4], strict=True))
    elements: list[pp.ParserElement] = [pp.Literal(literals[0])] if literals[0] else []
    regex = [re.escape(literals[0])]
    converters, patterns = [], []
    for i, ((flags, conv), arg) in enumerate(zip(convs, fmt.args, strict=True)):
        following = literals[i + 1]
        pattern = _conversion_pattern(conv, flags, following)
        patterns.append(pattern)
        elements.append(pp.Regex(pattern)(arg).set_name(f"{arg} (%{flags}{conv})"))
        regex.append(f"(?P<{arg}>{pattern})" + re.escape(following))
        if following:
            elements.append(pp.Literal(following))
        converters.append((arg, converter(schema.lookup[arg], conv, tables.get(arg), symbols)))
    grammar = (pp.And(elements) + pp.StringEnd()).leave_whitespace()
    return BodyFormat(
        grammar.set_name(f"{schema.event} format {index + 1}"),
        re.compile("".join(regex) + "$"),
        tuple(converters),
        tuple(literals),
        tuple(patterns),
    )


# Possessive and atomic: a failing line is refused in linear time, never by backtracking
# through every way to split it (30 fields and junk took minutes).
_FAST_GENERIC_LIST = re.compile(r"\s*+(?:\w+=\S*+\s*+)*+")
_FAST_GENERIC_PAIRS = re.compile(r"(\w+)=(\S*)")
_generic_pairs = (
    pp.ZeroOrMore(pp.Group(pp.Regex(r"(?P<key>\w+)=(?P<value>\S*)").set_name("key=value"))) + pp.StringEnd()
).set_name("key=value list")

# perf trace's own printer: `name: value, name: "string", ...`.
_FIELD_VALUE = r'"(?:[^"\\]|\\.)*"|[^,]*'
_field_list = (
    pp.Opt(
        pp.DelimitedList(pp.Group(pp.Regex(rf"(?P<key>\w+): (?P<value>{_FIELD_VALUE})").set_name("name: value")), ",")
    )
    + pp.StringEnd()
).set_name("name: value list")
_FAST_FIELD_LIST = re.compile(r'(?:\w+: (?>"(?:[^"\\]|\\.)*+"|[^,]*+)(?:, |$))*+')
_FAST_FIELD_PAIRS = re.compile(rf"(\w+): ({_FIELD_VALUE})(?:, |$)")


class BodyParser:
    """Parses the bodies of one tracepoint (or of events without a schema) into typed fields.

    Args:
        schema: the tracepoint's schema, or None: fields are then kept as printed (ints where
            clearly numeric), so no line is dropped for being unknown.
        printer_fields: True for perf trace's own ``name: value`` printer, False for the
            kernel's print formats.
        tables: this tracepoint's enum tables (field -> number -> name).
        symbols: kernel text symbols, to name code addresses.
    """

    def __init__(
        self,
        schema: EventSchema | None,
        printer_fields: bool,
        tables: Mapping[str, Mapping[int, str]],
        symbols: Kallsyms | None = None,
    ):
        self.schema = schema
        self.printer_fields = printer_fields
        # the compiled print formats; for perf trace's printer, the value of each omitted
        # (zero) field and each printed name's field and converter
        self.formats = (
            tuple(_format_body(schema, i, tables, symbols) for i in range(len(schema.formats))) if schema else ()
        )
        self.zeros = {f.name: _zero(f, tables.get(f.name)) for f in schema.fields} if schema else {}
        self.printed = (
            {alias: (f.name, converter(f, None, tables.get(f.name), symbols)) for alias, f in schema.lookup.items()}
            if schema
            else {}
        )

    def parse(self, body: str) -> dict[str, FieldValue]:
        """Typed fields of one body.

        Raises:
            BodyError: the body matches none of the schema's print formats (or is not a
                ``name: value`` list, for perf trace's printer).
        """
        if self.printer_fields:
            return self._parse_printed(body)
        if not self.formats:
            if _FAST_GENERIC_LIST.fullmatch(body) is None:
                return {"text": body}
            return {key: _infer(value) for key, value in _FAST_GENERIC_PAIRS.findall(body)}
        for fmt in self.formats:
            match = fmt.fast.match(body)
            if match is not None:
                fields = {}
                for name, convert in fmt.converters:
                    try:
                        fields[name] = convert(match[name])
                    except ValueError as exc:
                        raise BodyError(match.start(name), f"{name}: {exc}") from None
                return fields
        raise self._format_error(body)

    def parse_with_grammar(self, body: str) -> dict[str, FieldValue]:
        """Typed fields read by the pyparsing grammars only: the reference the fast path must match.

        Raises:
            pyparsing.ParseException: no grammar accepts the body.
        """
        if self.printer_fields:
            pairs = _field_list.parse_string(body, parse_all=True)
            fields = dict(self.zeros)
            for pair in pairs:
                self._set_printed(fields, self.printed, pair["key"], pair["value"])
            return fields
        if not self.formats:
            try:
                pairs = _generic_pairs.parse_string(body, parse_all=True)
            except pp.ParseException:
                return {"text": body}
            return {p["key"]: _infer(p["value"]) for p in pairs}
        for fmt in self.formats:
            try:
                result = fmt.grammar.parse_string(body, parse_all=True)
            except pp.ParseException:
                continue
            return {name: convert(result[name]) for name, convert in fmt.converters}
        raise pp.ParseException(body, 0, "no print format matches")

    def _parse_printed(self, body: str) -> dict[str, FieldValue]:
        if _FAST_FIELD_LIST.fullmatch(body) is None:
            try:
                _field_list.parse_string(body, parse_all=True)
            except pp.ParseException as exc:
                raise BodyError(exc.loc, f"expected {exc.msg.removeprefix('Expected ')}") from None
            raise BodyError(0, "expected name: value")  # the grammar accepts what the fast path refused
        fields = dict(self.zeros)
        printed = self.printed
        for pair in _FAST_FIELD_PAIRS.finditer(body):
            try:
                self._set_printed(fields, printed, pair[1], pair[2])
            except ValueError as exc:
                raise BodyError(pair.start(2), f"{pair[1]}: {exc}") from None
        return fields

    @staticmethod
    def _set_printed(
        fields: dict[str, FieldValue], printed: Mapping[str, tuple[str, Converter]], key: str, value: str
    ) -> None:
        known = printed.get(key)
        if known is None:
            fields[key] = _infer(value)
        else:
            fields[known[0]] = known[1](value)

    def _format_error(self, body: str) -> BodyError:
        furthest: pp.ParseException | None = None
        for fmt in self.formats:
            try:
                fmt.grammar.parse_string(body, parse_all=True)
            except pp.ParseException as exc:
                if furthest is None or exc.loc > furthest.loc:
                    furthest = exc
        assert self.schema is not None
        if furthest is None:  # the grammar accepts what the fast regex refused: a perfnet bug
            return BodyError(0, f"fast path and grammar disagree on this {self.schema.event} line")
        return BodyError(furthest.loc, f"does not match any print format of {self.schema.event}: {furthest.msg}")
