"""Tracepoint schemas: which fields each tracepoint has, their C types, and how the kernel prints them.

The schemas live in declarative TOML files (``grammars/*.toml``, one per subsystem), shipped
inside the wheel.  Users may add files for other subsystems.  The grammar module builds its
parsers from these tables; nothing else in perfnet hard-codes a tracepoint's layout.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from perfnet.bundled import grammars_dir
from perfnet.errors import SchemaError

Kind = Literal["int", "ptr", "str", "bool", "enum", "symbol"]

# Byte sizes of the C integer types tracepoints use; everything else integral is 4 bytes.
_C_INT_SIZES = {
    "u8": 1,
    "s8": 1,
    "char": 1,
    "unsigned char": 1,
    "bool": 1,
    "u16": 2,
    "s16": 2,
    "short": 2,
    "unsigned short": 2,
    "__u16": 2,
    "__be16": 2,
    "u64": 8,
    "s64": 8,
    "long": 8,
    "unsigned long": 8,
    "long long": 8,
    "unsigned long long": 8,
    "__u64": 8,
    "size_t": 8,
}
_SIGNED_C_TYPES = {"s8", "char", "s16", "short", "int", "s32", "long", "long long", "s64"}

# A printf conversion as the kernel's print formats use them.
CONVERSION = re.compile(r"%(?P<flags>[#0-9.-]*)(?P<length>l{0,2}|h{0,2}|z)(?P<conv>[duixXsc]|p[SsBFfKx]?)")
_LABEL = re.compile(r"(\w+)(?:=|: )(?:0x)?$")


@dataclass(frozen=True, slots=True)
class Field:
    """One tracepoint field: its canonical name, C type and how its value is typed.

    ``name`` is the label in the kernel's print format (``dev``); ``aliases`` are the other
    names printers use for it (perf trace's field printer calls the device ``name``).
    """

    name: str
    ctype: str
    kind: Kind
    size: int
    signed: bool
    aliases: tuple[str, ...] = ()

    @property
    def dtype(self) -> str:
        """The pandas dtype of the field's column: its C integer type (nullable), boolean,
        category for strings and symbols, object for enums (a name, or a number the kernel's
        table lacks)."""
        if self.kind in ("str", "symbol"):
            return "category"
        if self.kind == "bool":
            return "boolean"
        if self.kind == "enum":
            return "object"
        if self.kind == "ptr":
            return "UInt64"
        return f"{'Int' if self.signed else 'UInt'}{8 * (self.size or 4)}"


@dataclass(frozen=True, slots=True)
class PrintFormat:
    """A kernel print format and the field each of its conversions prints, in order."""

    text: str
    args: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)
class EventSchema:
    """The schema of one tracepoint, e.g. ``net:net_dev_queue`` (hashed by identity)."""

    subsystem: str
    name: str
    fields: tuple[Field, ...]
    formats: tuple[PrintFormat, ...]
    lookup: Mapping[str, Field]  # canonical names and aliases -> field

    @property
    def event(self) -> str:
        """The ``subsystem:name`` form perf uses."""
        return f"{self.subsystem}:{self.name}"


def _kind_of(ctype: str, override: str | None) -> tuple[Kind, int, bool]:
    """Type a field from its C type (``u16``, ``void *``, ``__data_loc char[]`` ...)."""
    base = ctype.replace("const ", "").strip()
    if override is not None:
        if override not in ("int", "ptr", "str", "bool", "enum", "symbol"):
            raise SchemaError(f"unknown field kind {override!r}")
        return override, 8, False  # type: ignore[return-value]
    if "char[]" in base or base in ("char *", "const char *"):
        return "str", 0, False
    if base.endswith("*"):
        return "ptr", 8, False
    if base.startswith("enum "):
        return "enum", 4, False
    if base == "bool":
        return "bool", 1, False
    return "int", _C_INT_SIZES.get(base, 4), base in _SIGNED_C_TYPES


def _format_args(text: str, fields: Mapping[str, Field], where: str) -> tuple[str, ...]:
    """Infer which field each conversion prints from the ``label=`` text before it."""
    args = []
    for match in CONVERSION.finditer(text):
        label = _LABEL.search(text, 0, match.start())
        name = label.group(1) if label else None
        if name is None or name not in fields:
            raise SchemaError(f"{where}: cannot tell which field {match.group()!r} prints; list `args`")
        args.append(name)
    return tuple(args)


def _parse_event(subsystem: str, name: str, spec: Mapping[str, object], where: str) -> EventSchema:
    fields = []
    for raw in spec.get("fields", []):  # type: ignore[attr-defined]
        kind, size, signed = _kind_of(raw["type"], raw.get("kind"))
        fields.append(Field(raw["name"], raw["type"], kind, size, signed, tuple(raw.get("aliases", ()))))
    by_name = {f.name: f for f in fields}
    formats = []
    for raw in spec.get("formats", []):  # type: ignore[attr-defined]
        if isinstance(raw, str):
            formats.append(PrintFormat(raw, _format_args(raw, by_name, where)))
        else:
            args = tuple(raw["args"])
            unknown = set(args) - set(by_name)
            if unknown:
                raise SchemaError(f"{where}: args name unknown fields {sorted(unknown)}")
            formats.append(PrintFormat(raw["text"], args))
    lookup = {alias: f for f in fields for alias in f.aliases} | by_name
    return EventSchema(subsystem, name, tuple(fields), tuple(formats), lookup)


def load_schema_file(path: Path | str) -> dict[str, EventSchema]:
    """Load one schema file into a table from ``subsystem:name`` to its schema.

    Raises:
        SchemaError: the file is not valid TOML or names fields it does not define.
    """
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    subsystem = doc.get("subsystem")
    if not isinstance(subsystem, str):
        raise SchemaError(f'{path}: missing `subsystem = "..."`')
    classes = doc.get("classes", {})
    table = {}
    for name, spec in doc.get("events", {}).items():
        where = f"{path.name}: {subsystem}:{name}"
        if "class" in spec:
            if spec["class"] not in classes:
                raise SchemaError(f"{where}: unknown class {spec['class']!r}")
            spec = {**classes[spec["class"]], **{k: v for k, v in spec.items() if k != "class"}}
        schema = _parse_event(subsystem, name, spec, where)
        table[schema.event] = schema
    return table


def load_schemas(extra: Iterable[Path | str] = ()) -> dict[str, EventSchema]:
    """All bundled schemas plus the user's ``extra`` files (which win on conflicts)."""
    table: dict[str, EventSchema] = {}
    for path in [*sorted(grammars_dir().glob("*.toml")), *extra]:
        table.update(load_schema_file(path))
    return table


_SYMBOLIC = re.compile(r"__print_symbolic\(REC->(?P<field>\w+),(?P<table>(?:\s*\{\s*-?\w+\s*,\s*\"[^\"]*\"\s*\},?)+)\)")
_SYMBOL_ENTRY = re.compile(r"\{\s*(?P<number>-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*\"(?P<name>[^\"]*)\"\s*\}")


_FORMAT_FIELD: Final = re.compile(r"^\s*field:(?P<decl>[^;]+);", re.MULTILINE)
_DECL: Final = re.compile(r"^(?P<ctype>.*?)\s*(?P<name>\w+)\s*(?P<array>\[[^\]]*\])?$")


def format_fields(text: str) -> dict[str, bool]:
    """Field name -> whether it is a string, from a tracefs ``format`` file."""
    fields = {}
    for match in _FORMAT_FIELD.finditer(text):
        decl = _DECL.match(match["decl"].strip())
        if decl:
            ctype = decl["ctype"]
            fields[decl["name"]] = "char" in ctype and bool(decl["array"] or "[]" in ctype or "*" in ctype)
    return fields


def enum_tables_from_format(text: str) -> dict[str, dict[int, str]]:
    """Read the kernel's own number-to-name tables from a tracefs ``format`` file.

    The kernel prints enums such as ``kfree_skb``'s drop reason with ``__print_symbolic``;
    its table is in the print format, so names always match the running kernel.
    """
    tables: dict[str, dict[int, str]] = {}
    for match in _SYMBOLIC.finditer(text):
        entries = _SYMBOL_ENTRY.finditer(match["table"])
        tables[match["field"]] = {int(e["number"], 0): e["name"] for e in entries}
    return tables


def load_enum_tables(events_dir: Path | str) -> dict[str, dict[str, dict[int, str]]]:
    """Enum tables of every tracepoint under a tracefs ``events`` directory (or a saved copy).

    Accepts the tracefs root (``/sys/kernel/tracing``), its ``events`` directory, or a copy
    laid out as ``<subsystem>/<event>/format``.  Unreadable files are skipped: without a
    table, numbers stay numbers.
    """
    root = Path(events_dir)
    if (root / "events").is_dir():
        root = root / "events"
    tables: dict[str, dict[str, dict[int, str]]] = {}
    for fmt in root.glob("*/*/format"):
        try:
            text = fmt.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        found = enum_tables_from_format(text)
        if found:
            tables[f"{fmt.parent.parent.name}:{fmt.parent.name}"] = found
    return tables
