"""Bit-packed header fields declared as data: format, valid values and the versions that hold them.

A ``Field`` says how it is stored (a bitstring token such as ``uint:12``), which values a valid
file may hold, since which format version it exists (and until which, for a field a later
version stores wider), and the value it has in the versions before it. Reader, writer, exact
size and the documentation all derive from these declarations (``kancoin.format``), so a new
format version is a change of the tables, not of the code that walks them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import bitstring

from kancoin.errors import KancoinError


@dataclass(frozen=True)
class Field:
    """One header field.

    name: its name (unique within a section); fmt: bitstring token (``uint:5``, ``floatbe:32``,
    ``bytes:4``); lo / hi: inclusive range (None: any finite value); choices: the allowed
    values; since / until: the first and last format version that store it; default: its value
    in a version that does not store it, or ``default_from``: the name of an earlier field whose
    value it takes there.
    """

    name: str
    fmt: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple | None = None
    doc: str = ""
    since: int = 1
    until: int | None = None
    default: Any = None
    default_from: str | None = None

    @property
    def nbits(self) -> int:
        return int(self.fmt.split(":")[1]) * (8 if self.fmt.startswith("bytes") else 1)

    def stored_in(self, version: int) -> bool:
        return self.since <= version and (self.until is None or version <= self.until)

    def check(self, value: Any) -> None:
        """Raise KancoinError (one line) if ``value`` is not valid for this field."""
        if self.fmt.startswith("bytes"):
            return
        bad = False
        if isinstance(value, float) and not math.isfinite(value):
            bad = True
        elif self.choices is not None and value not in self.choices:
            bad = True
        elif self.lo is not None and value < self.lo:
            bad = True
        elif self.hi is not None and value > self.hi:
            bad = True
        if bad:
            raise KancoinError(f"field '{self.name}' out of range: {value!r}")

    def valid_text(self) -> str:
        if self.choices:
            return " or ".join(str(c) for c in self.choices)
        if self.lo is not None:
            return f"{self.lo:g} … {self.hi:g}"
        return "—"

    def versions_text(self) -> str:
        if self.until is not None:
            return f"{self.since}–{self.until}"
        return "all" if self.since == 1 else f"≥ {self.since}"


def stored(fields: Iterable[Field], version: int) -> tuple[Field, ...]:
    """The fields a file of ``version`` holds, in file order."""
    return tuple(f for f in fields if f.stored_in(version))


def names(fields: Iterable[Field]) -> tuple[str, ...]:
    """Each name once, in order (a field stored wider from some version on is listed twice)."""
    return tuple(dict.fromkeys(f.name for f in fields))


def nbits(fields: Iterable[Field], version: int) -> int:
    return sum(f.nbits for f in stored(fields, version))


def read(
    reader: bitstring.ConstBitStream,
    fields: Iterable[Field],
    version: int,
    known: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Read and check the fields ``version`` stores; the others get their defaults (a
    ``default_from`` looks in the values read so far, then in ``known``)."""
    fields = tuple(fields)
    present = stored(fields, version)
    try:
        raw = reader.readlist(", ".join(f.fmt for f in present)) if present else []
    except bitstring.ReadError:
        raise KancoinError("file is truncated (header incomplete)") from None
    values: dict[str, Any] = {}
    for f, v in zip(present, raw, strict=True):
        f.check(v)
        values[f.name] = v
    for f in fields:
        if f.name in values:  # read (or stored in another width in this version)
            continue
        if f.default_from is not None:
            source = {**(known or {}), **values}
            values[f.name] = source[f.default_from]
        else:
            values[f.name] = f.default
    return values


def pack(fields: Iterable[Field], values: Mapping[str, Any], version: int) -> bitstring.Bits:
    """Check and pack the fields ``version`` stores, taking each one's value by name."""
    present = stored(fields, version)
    vals = [values[f.name] for f in present]
    for f, v in zip(present, vals, strict=True):
        f.check(v)
    if not present:
        return bitstring.Bits()
    return bitstring.pack(", ".join(f.fmt for f in present), *vals)


def markdown_rows(section: str, fields: Iterable[Field]) -> list[str]:
    """One table row per field: section, name, bits, valid values, versions, meaning."""
    return [
        f"| {section} | `{f.name}` | {f.nbits} | {f.valid_text()} | {f.versions_text()} "
        f"| {f.doc} |"
        for f in fields
    ]
