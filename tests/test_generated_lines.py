"""Generated bodies for every tracepoint schema, in perf trace's printer and in every kernel print
format: the compiled fast path and the pyparsing grammar read the same fields (hypothesis)."""

from __future__ import annotations

import pyparsing as pp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perfnet.grammar import BodyError, BodyParser
from perfnet.schema import CONVERSION, EventSchema, Field, load_schemas

SCHEMAS = load_schemas()
CASES = [(event, None) for event in SCHEMAS] + [
    (event, index) for event, schema in SCHEMAS.items() for index in range(len(schema.formats))
]
NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12)


def number(field: Field) -> st.SearchStrategy[int]:
    bits = 8 * field.size if field.size else 32
    low = -(1 << (bits - 1)) if field.signed else 0
    return st.integers(min_value=low, max_value=(1 << bits) - 1 if not field.signed else (1 << (bits - 1)) - 1)


def printed_value(field: Field, draw: st.DrawFn) -> str:
    """A value as perf trace's own printer shows it."""
    if field.kind == "str":
        return f'"{draw(NAME)}"'
    if field.kind in ("ptr", "symbol"):
        return hex(draw(st.integers(min_value=1, max_value=(1 << 64) - 1)))
    if field.kind == "bool":
        return str(draw(st.integers(0, 1)))
    return str(draw(number(field)))


def formatted_value(field: Field, conv: str, following: str, draw: st.DrawFn) -> str:
    """A value as the kernel prints it with conversion ``conv``."""
    if conv == "s":
        text = draw(NAME)
        return text if not following or following.strip() not in text else "x"
    if conv == "p":
        return draw(st.sampled_from(["(nil)", hex(draw(st.integers(1, (1 << 64) - 1)))]))
    if conv.startswith("p"):
        return f"{draw(NAME)}+0x{draw(st.integers(0, 4095)):x}"
    if conv in ("x", "X"):
        return f"{draw(st.integers(0, (1 << (8 * (field.size or 4))) - 1)):x}"
    if conv == "c":
        return draw(st.sampled_from("abcxyz"))
    if field.kind == "bool":
        return str(draw(st.integers(0, 1)))
    return str(draw(number(field)))


@st.composite
def body(draw: st.DrawFn, schema: EventSchema, index: int | None) -> str:
    if index is None:
        fields = [f for f in schema.fields if draw(st.booleans())]  # perf trace omits zero fields
        return ", ".join(f"{(f.aliases or (f.name,))[0]}: {printed_value(f, draw)}" for f in fields)
    fmt = schema.formats[index]
    pieces = CONVERSION.split(fmt.text)
    literals, convs = pieces[0::4], pieces[3::4]
    out = [literals[0]]
    for i, (conv, arg) in enumerate(zip(convs, fmt.args, strict=True)):
        out.append(formatted_value(schema.lookup[arg], conv, literals[i + 1], draw) + literals[i + 1])
    return "".join(out)


@pytest.mark.parametrize(("event", "index"), CASES, ids=[f"{e}-{'printer' if i is None else i}" for e, i in CASES])
@settings(max_examples=40, derandomize=True, deadline=None)
@given(data=st.data())
def test_fast_path_and_grammar_read_generated_bodies_alike(event: str, index: int | None, data: st.DataObject) -> None:
    schema = SCHEMAS[event]
    text = data.draw(body(schema, index))
    parser = BodyParser(schema, printer_fields=index is None, tables={})
    try:
        fast = parser.parse(text)
    except BodyError:
        with pytest.raises(pp.ParseException):
            parser.parse_with_grammar(text)
        return
    assert parser.parse_with_grammar(text) == fast
