"""The .kc container: header and payload in and out, and the exact size of a file.

Everything here walks the field tables of ``layout`` (and each network family's own fields,
``kancoin.nets``), so reader, writer and size cannot disagree about what a version holds.
"""

from __future__ import annotations

import functools
import math
import zlib
from dataclasses import dataclass

import bitstring
import numpy as np

from kancoin import bitfields
from kancoin.errors import KancoinError
from kancoin.format import context, limits
from kancoin.format.entropy import EntropyModel
from kancoin.format.layout import (
    CODINGS,
    CRC_BITS,
    ENTROPY_FIELDS,
    HEADER_FIELDS,
    HIDDEN_WIDTH_FIELD,
    MAGIC,
    READ_VERSIONS,
    TENSOR_FIELDS,
    VERSION,
)
from kancoin.format.quant import QuantParams
from kancoin.nets import NetSpec, family_by_id, family_of

__all__ = [
    "CODINGS", "CheckedFile", "FileHeader", "VERSION", "check_file", "estimated_file_bytes",
    "file_bytes", "header_bits", "overhead_bytes", "read_bytes", "read_header", "write_bytes",
]  # fmt: skip


@dataclass(frozen=True)
class FileHeader:
    """Everything in a .kc file but the payload."""

    height: int
    width: int
    bits: int
    spec: NetSpec
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


def _sections(spec: NetSpec, coding: int = 0, version: int = VERSION) -> list[bitfields.Field]:
    """Every header field a file of ``version`` holds for this network and coding, in order."""
    n_layers = len(spec.widths) - 1
    n_tensors = len(spec.tensor_shapes())
    fields = list(HEADER_FIELDS) + [HIDDEN_WIDTH_FIELD] * (n_layers - 1)
    fields += list(family_of(spec).header_fields)
    fields += list(TENSOR_FIELDS) * n_tensors
    if coding == 1:
        fields += list(ENTROPY_FIELDS) * n_tensors
    return list(bitfields.stored(fields, version))


@functools.lru_cache(maxsize=4096)  # rate control asks for thousands of candidates
def header_bits(spec: NetSpec, coding: int = 0, version: int = VERSION) -> int:
    return sum(f.nbits for f in _sections(spec, coding, version))


def file_bytes(
    spec: NetSpec,
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


def overhead_bytes(spec: NetSpec, coding: int, version: int = VERSION) -> int:
    """Bytes of a file that are not payload: header, alignment and CRC."""
    n_tensors = len(spec.tensor_shapes())
    return file_bytes(spec, [0] * n_tensors, coding, payload_bytes=0, version=version)


def estimated_file_bytes(spec: NetSpec, bits_per_weight: float, coding: int) -> int:
    """Size for rate control: exact for fixed coding, an estimate for range coding."""
    if coding == 0:
        return file_bytes(spec, int(bits_per_weight))
    return file_bytes(spec, 0, 1, payload_bytes=math.ceil(spec.n_params * bits_per_weight / 8))


def _header_stream(h: FileHeader) -> bitstring.BitStream:
    spec, v = h.spec, h.version
    fam = family_of(spec)
    head = {
        "magic": MAGIC, "version": v, "height": h.height, "width": h.width,
        "channels": spec.channels, "arch": fam.arch_id, "bits": h.bits, "coding": h.coding,
        "n_layers": len(spec.widths) - 1,
    }  # fmt: skip
    stream = bitstring.BitStream()
    stream.append(bitfields.pack(HEADER_FIELDS, head, v))
    for w in spec.hidden:
        stream.append(bitfields.pack([HIDDEN_WIDTH_FIELD], {"hidden_width": w}, v))
    stream.append(bitfields.pack(fam.header_fields, fam.spec_values(spec), v))
    for qp in h.qparams:
        stream.append(bitfields.pack(TENSOR_FIELDS, {"t_bits": qp.bits, "q_lo": qp.lo,
                                                     "q_step": qp.step}, v))  # fmt: skip
    if h.coding == 1:
        for m in h.emodels:
            values = {"e_model": m.kind, "e_mean": m.mean, "e_scale": m.scale}
            stream.append(bitfields.pack(ENTROPY_FIELDS, values, v))
    return stream


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
    if max(header.tensor_bits) > header.bits:
        raise ValueError("a tensor has more bits than the header's bits")
    stream = _header_stream(header)
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
        coded = context.encode_stream(header, qtensors)
        body = stream.tobytes() + coded
        payload_bytes = len(coded)
    data = body + zlib.crc32(body).to_bytes(4, "big")
    expected = file_bytes(spec, header.tensor_bits, header.coding, payload_bytes)
    if len(data) != expected:  # the tables and the writer disagree: a bug, never a file
        raise RuntimeError(f"wrote {len(data)} bytes, the format says {expected}")
    return data


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
    head = bitfields.read(reader, HEADER_FIELDS, version)
    n_layers, bits, coding = head["n_layers"], head["bits"], head["coding"]
    hidden = tuple(
        bitfields.read(reader, [HIDDEN_WIDTH_FIELD], version)["hidden_width"]
        for _ in range(n_layers - 1)
    )
    fam = family_by_id(head["arch"])
    if version < fam.since_version:
        raise KancoinError(
            f"field 'arch' out of range: {fam.label} networks need format version "
            f"{fam.since_version}, the file says {version}"
        )
    values = bitfields.read(reader, fam.header_fields, version)
    widths = (fam.input_width(values), *hidden, head["channels"])
    try:
        spec = fam.spec_from_values(widths, values, (head["height"], head["width"]))
    except ValueError as e:  # values each in range that together make no network
        raise KancoinError(f"inconsistent header: {e}") from None
    n_tensors = len(spec.tensor_shapes())
    qparams = []
    for _ in range(n_tensors):
        t = bitfields.read(reader, TENSOR_FIELDS, version, known=head)
        if t["t_bits"] > bits:
            raise KancoinError(f"field 't_bits' out of range: {t['t_bits']} > bits {bits}")
        qparams.append(QuantParams(t["q_lo"], t["q_step"], t["t_bits"]))
    emodels = []
    if coding == 1:
        for _ in range(n_tensors):
            e = bitfields.read(reader, ENTROPY_FIELDS, version)
            emodels.append(EntropyModel(e["e_model"], e["e_mean"], e["e_scale"]))
    header = FileHeader(
        head["height"], head["width"], bits, spec, tuple(qparams), coding, tuple(emodels),
        version,
    )  # fmt: skip
    return header, reader.pos


@dataclass(frozen=True)
class CheckedFile:
    """A file whose header, size, CRC and decode cost were checked: the header, where the
    payload starts (bits), the range-coded stream's bytes (coding 1) and the decode cost."""

    header: FileHeader
    payload_bit: int
    stream: bytes
    cost: limits.DecodeCost


def check_file(data: bytes) -> CheckedFile:
    """Everything but decoding the payload: header fields, exact size (fixed coding), CRC and
    the decode's cost against its limits (``limits``). ``kancoin info`` stops here."""
    header, pos = read_header(data)
    spec = header.spec
    stream = b""
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
        stream = data[start:-4]
    if zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "big"):
        # a range-coded payload has no length field: a cut file shows up here
        what = "corrupt" if header.coding == 0 else "truncated or corrupt"
        raise KancoinError(f"file is {what} (CRC mismatch)")
    payload = len(stream) if header.coding == 1 else None
    cost = limits.check(spec, header.height, header.width, header.coding, payload)
    return CheckedFile(header, pos, stream, cost)


def read_bytes(data: bytes) -> tuple[FileHeader, list[np.ndarray]]:
    """Parse, validate (size, CRC, limits) and return the header and quantized tensors.

    A range-coded stream must be exactly what the encoder writes for the decoded integers:
    they are coded again and compared, so bytes appended to a stream (or a stream that decodes
    by luck) are refused, as trailing bytes of a fixed-width file are."""
    checked = check_file(data)
    header, spec = checked.header, checked.header.spec
    sizes = [math.prod(shape) for _, shape in spec.tensor_shapes()]
    if header.coding == 0:
        flats, offset = [], checked.payload_bit
        for n, b in zip(sizes, header.tensor_bits):
            raw = bitstring.Bits(bytes=data, offset=offset, length=n * b)
            flats.append(_unpack_uints(raw, n, b))
            offset += n * b
    else:
        try:
            laplaces: dict = {}  # the network's models, computed once for both passes
            flats = context.decode_stream(header, checked.stream, sizes, laplaces)
            again = context.encode_stream(header, flats, laplaces)
        except Exception as e:  # the CRC matched, so this is a bad file from a bad encoder
            raise KancoinError(f"cannot decode the range-coded payload ({e})") from None
        if again != checked.stream:
            extra = len(checked.stream) - len(again)
            what = f"{extra} bytes after the" if extra > 0 else "a corrupt"
            raise KancoinError(f"file has {what} range-coded stream")
    tensors = [f.reshape(shape) for f, (_, shape) in zip(flats, spec.tensor_shapes())]
    return header, tensors
