"""The .kc file format, declared once as field tables; reader, writer and size derive from them.

Layout (big-endian, bit-packed, no alignment between fields):

    HEADER_FIELDS                       fixed header
    HIDDEN_WIDTH_FIELD × (n_layers-1)   widths of the hidden layers
    KAN_FIELDS | SIREN_FIELDS           architecture hyperparameters (by ``arch``)
    TENSOR_FIELDS × n_tensors           bit depth and quantization range of each stored tensor
    ENTROPY_FIELDS × n_tensors          (coding = 1 only) each tensor's entropy model
    payload   coding 0 (fixed):  every tensor's integers, ``t_bits`` bits each, tensors in order,
                                 then zero bits up to the next byte
              coding 1 (range):  zero bits up to the next byte, then the range-coded stream
                                 (``entropy``) up to the CRC
    CRC32 (32 bits)                     over all preceding bytes

Older versions are read, never written: version 3 had no ``first_grid_size`` field (every
layer on ``grid_size``); version 2 also had no ``basis``, ``node_bias`` and
``layernorm`` fields (B-spline KANs without either); version 1 also had no ``coding`` and no
``t_bits`` fields (fixed-width payload, every tensor at the header's ``bits``).

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

from kancoin import entropy
from kancoin.entropy import EntropyModel
from kancoin.errors import KancoinError
from kancoin.quant import MAX_BITS, MIN_BITS, QuantParams
from kancoin.spec import ARCHS, BASES, IN_FEATURES, MAX_SIDE, ModelSpec

MAGIC = b"KANC"
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)
CODINGS = ("fixed", "range")
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
    Field("version", "uint:8", 1, VERSION, doc="format version"),
    Field("height", "uint:16", 1, MAX_SIDE, doc="image height H"),
    Field("width", "uint:16", 1, MAX_SIDE, doc="image width W"),
    Field("channels", "uint:2", choices=(1, 3), doc="1 (grey) or 3 (RGB)"),
    Field("arch", "uint:2", 0, len(ARCHS) - 1, doc="0 KAN, 1 SIREN"),
    Field("bits", "uint:5", MIN_BITS, MAX_BITS, doc="bits per weight requested (largest t_bits)"),
    Field("coding", "uint:1", 0, 1, doc="payload coding: 0 fixed-width, 1 range-coded"),
    Field("n_layers", "uint:5", 1, 31, doc="number of layers"),
)
HIDDEN_WIDTH_FIELD = Field("hidden_width", "uint:12", 1, 4095, doc="one hidden layer's width")
KAN_FIELDS = (
    Field("basis", "uint:3", 0, len(BASES) - 1, doc="edge functions: " + ", ".join(
        f"{i} {b}" for i, b in enumerate(BASES))),
    Field("node_bias", "uint:1", 0, 1, doc="1: a bias per output node"),
    Field("layernorm", "uint:1", 0, 1, doc="1: LayerNorm on hidden layers' inputs"),
    Field("grid_size", "uint:12", 0, 4095,
          doc="grid intervals G (bspline), centres (rbf, rsf), degree (chebyshev), "
              "frequencies (fourier), 0 (tanh)"),
    Field("first_grid_size", "uint:12", 0, 4095,
          doc="the first layer's grid intervals G1 (bspline; = grid_size for other bases)"),
    Field("spline_order", "uint:3", 1, 7, doc="B-spline order k (3 for other bases)"),
    Field("grid_lo", "floatbe:32", -1e6, 1e6, doc="grid_range[0]"),
    Field("grid_hi", "floatbe:32", -1e6, 1e6, doc="grid_range[1] (> grid_lo)"),
)
SIREN_FIELDS = (
    Field("w0", "floatbe:32", 1e-6, 1e6, doc="hidden-layer frequency"),
    Field("w0_initial", "floatbe:32", 1e-6, 1e6, doc="first-layer frequency"),
)
TENSOR_FIELDS = (
    Field("t_bits", "uint:5", MIN_BITS, MAX_BITS, doc="bits of this tensor's integers"),
    Field("q_lo", "floatbe:32", -1e30, 1e30, doc="value of integer 0"),
    Field("q_step", "floatbe:32", 1e-38, 1e30, doc="quantization step"),
)
ENTROPY_FIELDS = (
    Field("e_model", "uint:1", 0, 1, doc="0 quantized Gaussian, 1 quantized Laplace"),
    Field("e_mean", "floatbe:16", -65504, 65504, doc="model mean, in integer units"),
    Field("e_scale", "floatbe:16", 1e-3, 65504, doc="std (Gaussian) or scale (Laplace)"),
)


def _header_fields(version: int) -> tuple[Field, ...]:
    if version == 1:
        return tuple(f for f in HEADER_FIELDS if f.name != "coding")
    return HEADER_FIELDS


_V3_KAN_ONLY = ("basis", "node_bias", "layernorm")
_V4_KAN_ONLY = ("first_grid_size",)


def _tensor_fields(version: int) -> tuple[Field, ...]:
    return TENSOR_FIELDS[1:] if version == 1 else TENSOR_FIELDS


@dataclass(frozen=True)
class FileHeader:
    """Everything in a .kc file but the payload."""

    height: int
    width: int
    bits: int
    spec: ModelSpec
    qparams: tuple[QuantParams, ...]  # per tensor: range and bits
    coding: int = 0  # index into CODINGS
    emodels: tuple[EntropyModel, ...] = ()  # per tensor, coding 1 only
    version: int = VERSION

    @property
    def channels(self) -> int:
        return self.spec.channels

    @property
    def tensor_bits(self) -> list[int]:
        return [qp.bits for qp in self.qparams]


def _arch_fields(arch: str, version: int = VERSION) -> tuple[Field, ...]:
    if arch != "kan":
        return SIREN_FIELDS
    absent = (_V3_KAN_ONLY if version < 3 else ()) + (_V4_KAN_ONLY if version < 4 else ())
    return tuple(f for f in KAN_FIELDS if f.name not in absent)


def _sections(spec: ModelSpec, coding: int = 0, version: int = VERSION) -> list[Field]:
    """Every header field in file order for this architecture and coding."""
    n_layers = len(spec.widths) - 1
    fields = list(_header_fields(version)) + [HIDDEN_WIDTH_FIELD] * (n_layers - 1)
    fields += list(_arch_fields(spec.arch, version))
    n_tensors = len(spec.tensor_shapes())
    fields += list(_tensor_fields(version)) * n_tensors
    if coding == 1:
        fields += list(ENTROPY_FIELDS) * n_tensors
    return fields


def header_bits(spec: ModelSpec, coding: int = 0, version: int = VERSION) -> int:
    return sum(f.nbits for f in _sections(spec, coding, version))


def file_bytes(
    spec: ModelSpec,
    bits: int | list[int],
    coding: int = 0,
    payload_bytes: int | None = None,
    version: int = VERSION,
) -> int:
    """Exact size of the file: fixed coding from the bit depths (one, or one per tensor);
    range coding from the coded stream's length ``payload_bytes``."""
    if coding == 1:
        if payload_bytes is None:
            raise ValueError("range coding: the size depends on the coded payload")
        return (header_bits(spec, 1, version) + 7) // 8 + payload_bytes + CRC_BITS // 8
    sizes = [math.prod(shape) for _, shape in spec.tensor_shapes()]
    per_tensor = [bits] * len(sizes) if isinstance(bits, int) else list(bits)
    payload = sum(n * b for n, b in zip(sizes, per_tensor, strict=True))
    body = header_bits(spec, 0, version) + payload
    return (body + 7) // 8 + CRC_BITS // 8


def overhead_bytes(spec: ModelSpec, coding: int, version: int = VERSION) -> int:
    """Bytes of a file that are not payload: header, alignment and CRC."""
    n_tensors = len(spec.tensor_shapes())
    return file_bytes(spec, [0] * n_tensors, coding, payload_bytes=0, version=version)


def estimated_file_bytes(spec: ModelSpec, bits_per_weight: float, coding: int) -> int:
    """Size for rate control: exact for fixed coding, an estimate for range coding."""
    if coding == 0:
        return file_bytes(spec, int(bits_per_weight))
    return file_bytes(spec, 0, 1, payload_bytes=math.ceil(spec.n_params * bits_per_weight / 8))


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
        h.coding,
        len(spec.widths) - 1,
    ]
    vals += list(spec.hidden)
    if spec.arch == "kan":
        vals += [BASES.index(spec.basis), int(spec.node_bias), int(spec.layernorm)]
        vals += [spec.grid_size, spec.first_grid_size, spec.spline_order]
        vals += [spec.grid_range[0], spec.grid_range[1]]
    else:
        vals += [spec.w0, spec.w0_initial]
    for qp in h.qparams:
        vals += [qp.bits, qp.lo, qp.step]
    if h.coding == 1:
        for m in h.emodels:
            vals += [m.kind, m.mean, m.scale]
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
    if header.coding == 1 and len(header.emodels) != len(shapes):
        raise ValueError("range coding needs one entropy model per tensor")
    if header.version != VERSION:
        raise ValueError(f"only format version {VERSION} is written")
    fields = _sections(spec, header.coding)
    values = _values(header)
    for f, v in zip(fields, values, strict=True):
        f.check(v)
    if max(header.tensor_bits) > header.bits:
        raise ValueError("a tensor has more bits than the header's bits")
    stream = bitstring.BitStream()
    stream.append(bitstring.pack(", ".join(f.fmt for f in fields), *values))
    for q, (name, shape), b in zip(qtensors, shapes, header.tensor_bits):
        if tuple(q.shape) != shape or (q.size and int(q.max()) >= 1 << b):
            raise ValueError(f"tensor {name} has the wrong shape or range")
    if header.coding == 0:
        for q, b in zip(qtensors, header.tensor_bits):
            stream.append(_pack_uints(q.ravel(), b))
        stream.append(bitstring.Bits((-stream.len) % 8))  # zero bits to the byte boundary
        body = stream.tobytes()
        payload_bytes = None
    else:
        stream.append(bitstring.Bits((-stream.len) % 8))
        coded = entropy.encode(qtensors, header.tensor_bits, list(header.emodels))
        body = stream.tobytes() + coded
        payload_bytes = len(coded)
    data = body + zlib.crc32(body).to_bytes(4, "big")
    assert len(data) == file_bytes(spec, header.tensor_bits, header.coding, payload_bytes)
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
    if version not in READ_VERSIONS:
        raise KancoinError(
            f"unsupported format version {version} (this kancoin reads "
            f"{', '.join(map(str, READ_VERSIONS))})"
        )
    reader.pos = 0
    head = _read_fields(reader, _header_fields(version))
    if version == 1:
        _, _, height, width, channels, arch_id, bits, n_layers = head
        coding = 0
    else:
        _, _, height, width, channels, arch_id, bits, coding, n_layers = head
    hidden = tuple(_read_fields(reader, [HIDDEN_WIDTH_FIELD] * (n_layers - 1)))
    arch = ARCHS[arch_id]
    arch_vals = _read_fields(reader, _arch_fields(arch, version))
    widths = (IN_FEATURES, *hidden, channels)
    if arch == "kan":
        named = dict(zip((f.name for f in _arch_fields(arch, version)), arch_vals))
        basis_id = named.get("basis", 0)  # fields an older version lacks: their defaults
        node_bias, layernorm = named.get("node_bias", 0), named.get("layernorm", 0)
        grid_size, order = named["grid_size"], named["spline_order"]
        lo, hi = named["grid_lo"], named["grid_hi"]
        first_grid = named.get("first_grid_size", grid_size)
        if not hi > lo:
            raise KancoinError("field 'grid_hi' out of range: must exceed grid_lo")
        basis = BASES[basis_id]
        if (grid_size == 0) != (basis == "tanh"):
            raise KancoinError(f"field 'grid_size' out of range: {grid_size} for basis {basis}")
        if (first_grid == 0) != (grid_size == 0) or (
            basis != "bspline" and first_grid != grid_size
        ):
            raise KancoinError(
                f"field 'first_grid_size' out of range: {first_grid} for basis {basis}"
            )
        if basis != "bspline" and order != 3:
            raise KancoinError(f"field 'spline_order' out of range: {order} for basis {basis}")
        spec = ModelSpec(
            "kan", widths, grid_size=grid_size, spline_order=order, grid_range=(lo, hi),
            basis=basis, node_bias=bool(node_bias), layernorm=bool(layernorm),
            first_grid_size=first_grid,
        )  # fmt: skip
    else:
        spec = ModelSpec("siren", widths, w0=arch_vals[0], w0_initial=arch_vals[1])
    qparams = []
    for _ in spec.tensor_shapes():
        vals = _read_fields(reader, _tensor_fields(version))
        t_bits, lo, step = (bits, *vals) if version == 1 else vals
        if t_bits > bits:
            raise KancoinError(f"field 't_bits' out of range: {t_bits} > bits {bits}")
        qparams.append(QuantParams(lo, step, t_bits))
    emodels = []
    if coding == 1:
        for _ in spec.tensor_shapes():
            kind, mean, scale = _read_fields(reader, ENTROPY_FIELDS)
            emodels.append(EntropyModel(kind, mean, scale))
    header = FileHeader(
        height, width, bits, spec, tuple(qparams), coding, tuple(emodels), version
    )
    return header, reader.pos


def read_bytes(data: bytes) -> tuple[FileHeader, list[np.ndarray]]:
    """Parse, validate (size, CRC) and return the header and quantized tensors."""
    header, pos = read_header(data)
    spec = header.spec
    if header.coding == 0:
        expected = file_bytes(spec, header.tensor_bits, version=header.version)
        if len(data) < expected:
            raise KancoinError(f"file is truncated: {len(data)} bytes, header says {expected}")
        if len(data) > expected:
            raise KancoinError(f"file has {len(data) - expected} unexpected trailing bytes")
    else:
        start = (pos + 7) // 8
        if len(data) < start + 4:
            raise KancoinError("file is truncated (no payload)")
    body, crc = data[:-4], int.from_bytes(data[-4:], "big")
    if zlib.crc32(body) != crc:
        # a range-coded payload has no length field: a cut file shows up here
        what = "corrupt" if header.coding == 0 else "truncated or corrupt"
        raise KancoinError(f"file is {what} (CRC mismatch)")
    sizes = [math.prod(shape) for _, shape in spec.tensor_shapes()]
    if header.coding == 0:
        flats, offset = [], pos
        for n, b in zip(sizes, header.tensor_bits):
            raw = bitstring.Bits(bytes=data, offset=offset, length=n * b)
            flats.append(_unpack_uints(raw, n, b))
            offset += n * b
    else:
        try:
            flats = entropy.decode(body[start:], sizes, header.tensor_bits, list(header.emodels))
        except Exception as e:  # the CRC matched, so this is a bad file from a bad encoder
            raise KancoinError(f"cannot decode the range-coded payload ({e})") from None
    tensors = [f.reshape(shape) for f, (_, shape) in zip(flats, spec.tensor_shapes())]
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
    add("× tensors, coding 1", ENTROPY_FIELDS)
    rows.append(
        "| payload, coding 0 | weights | Σ size × t_bits | 0 … 2^t_bits − 1 | tensors in order, "
        "then zero bits to a byte boundary |"
    )
    rows.append(
        "| payload, coding 1 | stream | 8 × bytes | — | zero bits to a byte boundary, then the "
        "range-coded stream (32-bit words, big-endian, trailing zero bytes dropped) |"
    )
    rows.append("| end | `crc32` | 32 | — | CRC-32 of all preceding bytes |")
    return "\n".join(rows)
