"""The .kc file format, declared once as field tables; reader, writer and size derive from them.

Layout (big-endian, bit-packed, no alignment between fields):

    HEADER_FIELDS                       fixed header
    HIDDEN_WIDTH_FIELD × (n_layers-1)   widths of the hidden layers
    KAN_FIELDS | SIREN_FIELDS           architecture hyperparameters (by ``arch``)
    TENSOR_FIELDS × n_tensors           quantization range of each stored tensor
    payload                             n_params integers of ``bits`` bits, tensors in order
    zero bits up to the next byte
    CRC32 (32 bits)                     over all preceding bytes

Input (2) and output (channels) widths and the tensor list follow from the header
(``ModelSpec.tensor_shapes``), so they are not stored.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import bitstring
import numpy as np

from kancoin.errors import KancoinError
from kancoin.quant import MAX_BITS, MIN_BITS, QuantParams
from kancoin.spec import ARCHS, IN_FEATURES, MAX_SIDE, ModelSpec

MAGIC = b"KANC"
VERSION = 1
CRC_BITS = 32


@dataclass(frozen=True)
class Field:
    """One header field: name, bitstring token, and the values a valid file may hold."""

    name: str
    fmt: str
    lo: float | None = None  # inclusive range (ints and floats); None: any finite value
    hi: float | None = None
    choices: tuple | None = None
    doc: str = ""

    @property
    def nbits(self) -> int:
        return int(self.fmt.split(":")[1]) * (8 if self.fmt.startswith("bytes") else 1)

    def check(self, value: Any) -> None:
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


HEADER_FIELDS = (
    Field("magic", "bytes:4", doc="b'KANC'"),
    Field("version", "uint:8", VERSION, VERSION, doc="format version"),
    Field("height", "uint:16", 1, MAX_SIDE, doc="image height H"),
    Field("width", "uint:16", 1, MAX_SIDE, doc="image width W"),
    Field("channels", "uint:2", choices=(1, 3), doc="1 (grey) or 3 (RGB)"),
    Field("arch", "uint:2", 0, len(ARCHS) - 1, doc="0 KAN, 1 SIREN"),
    Field("bits", "uint:5", MIN_BITS, MAX_BITS, doc="bits per stored weight"),
    Field("n_layers", "uint:5", 1, 31, doc="number of layers"),
)
HIDDEN_WIDTH_FIELD = Field("hidden_width", "uint:12", 1, 4095, doc="one hidden layer's width")
KAN_FIELDS = (
    Field("grid_size", "uint:12", 1, 4095, doc="grid intervals G"),
    Field("spline_order", "uint:3", 1, 7, doc="B-spline order k"),
    Field("grid_lo", "floatbe:32", -1e6, 1e6, doc="grid_range[0]"),
    Field("grid_hi", "floatbe:32", -1e6, 1e6, doc="grid_range[1] (> grid_lo)"),
)
SIREN_FIELDS = (
    Field("w0", "floatbe:32", 1e-6, 1e6, doc="hidden-layer frequency"),
    Field("w0_initial", "floatbe:32", 1e-6, 1e6, doc="first-layer frequency"),
)
TENSOR_FIELDS = (
    Field("q_lo", "floatbe:32", -1e30, 1e30, doc="value of integer 0"),
    Field("q_step", "floatbe:32", 1e-38, 1e30, doc="quantization step"),
)


@dataclass(frozen=True)
class FileHeader:
    """Everything in a .kc file but the payload."""

    height: int
    width: int
    bits: int
    spec: ModelSpec
    qparams: tuple[QuantParams, ...]

    @property
    def channels(self) -> int:
        return self.spec.channels


def _arch_fields(arch: str) -> tuple[Field, ...]:
    return KAN_FIELDS if arch == "kan" else SIREN_FIELDS


def _sections(spec: ModelSpec) -> list[Field]:
    """Every field in file order for this architecture."""
    n_layers = len(spec.widths) - 1
    fields = list(HEADER_FIELDS) + [HIDDEN_WIDTH_FIELD] * (n_layers - 1)
    fields += list(_arch_fields(spec.arch))
    fields += list(TENSOR_FIELDS) * len(spec.tensor_shapes())
    return fields


def header_bits(spec: ModelSpec) -> int:
    return sum(f.nbits for f in _sections(spec))


def file_bytes(spec: ModelSpec, bits: int) -> int:
    """Exact size of the file for this architecture and bit depth."""
    body = header_bits(spec) + spec.n_params * bits
    return (body + 7) // 8 + CRC_BITS // 8


def _values(h: FileHeader) -> list[Any]:
    spec = h.spec
    vals: list[Any] = [
        MAGIC,
        VERSION,
        h.height,
        h.width,
        spec.channels,
        ARCHS.index(spec.arch),
        h.bits,
        len(spec.widths) - 1,
    ]
    vals += list(spec.hidden)
    if spec.arch == "kan":
        vals += [spec.grid_size, spec.spline_order, spec.grid_range[0], spec.grid_range[1]]
    else:
        vals += [spec.w0, spec.w0_initial]
    for qp in h.qparams:
        vals += [qp.lo, qp.step]
    return vals


def _pack_uints(values: np.ndarray, bits: int) -> bitstring.Bits:
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    bitarr = ((values.astype(np.uint32)[:, None] >> shifts) & 1).astype(np.uint8).ravel()
    return bitstring.Bits(bytes=np.packbits(bitarr).tobytes(), length=bitarr.size)


def _unpack_uints(raw: bitstring.Bits, count: int, bits: int) -> np.ndarray:
    bitarr = np.unpackbits(np.frombuffer(raw.tobytes(), dtype=np.uint8))[: count * bits]
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.uint32)).astype(np.uint32)
    return (bitarr.reshape(count, bits).astype(np.uint32) * weights).sum(1).astype(np.uint32)


def write_bytes(header: FileHeader, qtensors: list[np.ndarray]) -> bytes:
    """Serialise a header and its quantized tensors (uint arrays in tensor order)."""
    spec = header.spec
    shapes = spec.tensor_shapes()
    if len(qtensors) != len(shapes) or len(header.qparams) != len(shapes):
        raise ValueError("tensor count does not match the architecture")
    fields = _sections(spec)
    values = _values(header)
    for f, v in zip(fields, values):
        f.check(v)
    stream = bitstring.BitStream()
    stream.append(bitstring.pack(", ".join(f.fmt for f in fields), *values))
    for q, (name, shape) in zip(qtensors, shapes):
        if tuple(q.shape) != shape or (q.size and int(q.max()) >= 1 << header.bits):
            raise ValueError(f"tensor {name} has the wrong shape or range")
    payload = np.concatenate([q.ravel() for q in qtensors])
    stream.append(_pack_uints(payload, header.bits))
    stream.append(bitstring.Bits((-stream.len) % 8))  # zero bits to the byte boundary
    body = stream.tobytes()
    data = body + zlib.crc32(body).to_bytes(4, "big")
    assert len(data) == file_bytes(spec, header.bits)
    return data


def _read_fields(reader: bitstring.ConstBitStream, fields: tuple[Field, ...] | list[Field]):
    try:
        values = reader.readlist(", ".join(f.fmt for f in fields))
    except bitstring.ReadError:
        raise KancoinError("file is truncated (header incomplete)") from None
    for f, v in zip(fields, values):
        f.check(v)
    return values


def read_header(data: bytes) -> tuple[FileHeader, int]:
    """Parse and validate the header; returns it and the bit offset of the payload."""
    if len(data) < 4 or data[:4] != MAGIC:
        raise KancoinError("not a kancoin file (wrong magic)")
    reader = bitstring.ConstBitStream(bytes=data)
    try:
        _, version = reader.readlist("bytes:4, uint:8")
    except bitstring.ReadError:
        raise KancoinError("file is truncated (header incomplete)") from None
    if version != VERSION:
        raise KancoinError(f"unsupported format version {version} (this kancoin reads {VERSION})")
    reader.pos = 0
    _, _, height, width, channels, arch_id, bits, n_layers = _read_fields(reader, HEADER_FIELDS)
    hidden = tuple(_read_fields(reader, [HIDDEN_WIDTH_FIELD] * (n_layers - 1)))
    arch = ARCHS[arch_id]
    arch_vals = _read_fields(reader, _arch_fields(arch))
    widths = (IN_FEATURES, *hidden, channels)
    if arch == "kan":
        grid_size, order, lo, hi = arch_vals
        if not hi > lo:
            raise KancoinError("field 'grid_hi' out of range: must exceed grid_lo")
        spec = ModelSpec(
            "kan", widths, grid_size=grid_size, spline_order=order, grid_range=(lo, hi)
        )
    else:
        spec = ModelSpec("siren", widths, w0=arch_vals[0], w0_initial=arch_vals[1])
    qparams = []
    for _ in spec.tensor_shapes():
        lo, step = _read_fields(reader, TENSOR_FIELDS)
        qparams.append(QuantParams(lo, step, bits))
    return FileHeader(height, width, bits, spec, tuple(qparams)), reader.pos


def read_bytes(data: bytes) -> tuple[FileHeader, list[np.ndarray]]:
    """Parse, validate (size, CRC) and return the header and quantized tensors."""
    header, pos = read_header(data)
    expected = file_bytes(header.spec, header.bits)
    if len(data) < expected:
        raise KancoinError(f"file is truncated: {len(data)} bytes, header says {expected}")
    if len(data) > expected:
        raise KancoinError(f"file has {len(data) - expected} unexpected trailing bytes")
    body, crc = data[:-4], int.from_bytes(data[-4:], "big")
    if zlib.crc32(body) != crc:
        raise KancoinError("file is corrupt (CRC mismatch)")
    n_params = header.spec.n_params
    raw = bitstring.Bits(bytes=data, offset=pos, length=n_params * header.bits)
    flat = _unpack_uints(raw, n_params, header.bits)
    tensors, start = [], 0
    for _, shape in header.spec.tensor_shapes():
        size = math.prod(shape)
        tensors.append(flat[start : start + size].reshape(shape))
        start += size
    return header, tensors


def field_table_markdown() -> str:
    """The format as a Markdown table (for the README and ``kancoin info --format``)."""
    rows = ["| section | field | bits | valid values | meaning |", "|---|---|---|---|---|"]

    def add(section: str, fields) -> None:
        for f in fields:
            if f.choices:
                valid = " or ".join(str(c) for c in f.choices)
            elif f.lo is not None:
                valid = f"{f.lo:g} … {f.hi:g}"
            else:
                valid = "—"
            rows.append(f"| {section} | `{f.name}` | {f.nbits} | {valid} | {f.doc} |")

    add("header", HEADER_FIELDS)
    add("× (n_layers − 1)", [HIDDEN_WIDTH_FIELD])
    add("KAN", KAN_FIELDS)
    add("SIREN", SIREN_FIELDS)
    add("× tensors", TENSOR_FIELDS)
    rows.append("| payload | weights | n_params × bits | 0 … 2^bits − 1 | tensors in order |")
    rows.append("| end | padding | 0–7 | 0 | zero bits to a byte boundary |")
    rows.append("| end | `crc32` | 32 | — | CRC-32 of all preceding bytes |")
    return "\n".join(rows)
