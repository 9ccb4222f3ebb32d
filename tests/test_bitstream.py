"""The .kc format: bit-exact round trip, exact size formula, every corruption rejected, every
older version read with the defaults of the fields it lacks."""

from __future__ import annotations

import zlib
from dataclasses import replace

import bitstring
import numpy as np
import pytest

from kancoin import bitfields
from kancoin.errors import KancoinError
from kancoin.format.container import (
    FileHeader,
    _sections,
    file_bytes,
    header_bits,
    read_bytes,
    read_header,
    write_bytes,
)
from kancoin.format.entropy import EntropyModel
from kancoin.format.layout import (
    ENTROPY_FIELDS,
    HEADER_FIELDS,
    HIDDEN_WIDTH_FIELD,
    MAGIC,
    READ_VERSIONS,
    TENSOR_FIELDS,
    VERSION,
    field_table_markdown,
)
from kancoin.format.quant import QuantParams
from kancoin.nets import NetSpec, families, family_of
from kancoin.nets.kan import KanSpec
from kancoin.nets.siren import SirenSpec

SPECS = [
    KanSpec((2, 5, 4, 3), grid_size=7, spline_order=3),
    KanSpec((2, 3, 1), grid_size=1, spline_order=1, grid_range=(-2.0, 1.5)),
    KanSpec((2, 4, 4, 3), grid_size=6, first_grid_size=40),
    SirenSpec((2, 6, 6, 3), w0=30.0, w0_initial=25.0),
]


def _file(spec: NetSpec, bits: int, seed: int = 0) -> tuple[FileHeader, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    shapes = spec.tensor_shapes()
    q = [rng.integers(0, 1 << bits, size=s, dtype=np.uint32) for _, s in shapes]
    qp = tuple(
        QuantParams(float(np.float32(rng.normal())), float(np.float32(0.01 + rng.random())), bits)
        for _ in shapes
    )
    return FileHeader(37, 53, bits, spec, qp), q


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
@pytest.mark.parametrize("bits", [2, 9, 16])
def test_round_trip_is_bit_exact(spec: NetSpec, bits: int) -> None:
    header, q = _file(spec, bits)
    data = write_bytes(header, q)
    assert len(data) == file_bytes(spec, bits)
    header2, q2 = read_bytes(data)
    assert header2 == header and header2.version == VERSION == 11
    for a, b in zip(q, q2, strict=True):
        assert np.array_equal(a, b)
    assert write_bytes(header2, q2) == data


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "big")


@pytest.fixture
def good() -> bytes:
    header, q = _file(SPECS[0], 9)
    return write_bytes(header, q)


def test_wrong_magic(good: bytes) -> None:
    with pytest.raises(KancoinError, match="magic"):
        read_bytes(b"PNG!" + good[4:])


@pytest.mark.parametrize("version", [0, VERSION + 1, 200])
def test_unknown_version(good: bytes, version: int) -> None:
    with pytest.raises(KancoinError, match=f"version {version} "):
        read_bytes(_with_crc(good[:4] + bytes([version]) + good[5:-4]))


@pytest.mark.parametrize("cut", [1, 5, 12, 100, 1000])
def test_truncated(good: bytes, cut: int) -> None:
    with pytest.raises(KancoinError, match="truncated|magic"):
        read_bytes(good[: min(cut, len(good) - 1)])
    with pytest.raises(KancoinError, match="truncated"):
        read_bytes(good[:-1])


def test_trailing_bytes(good: bytes) -> None:
    with pytest.raises(KancoinError, match="trailing"):
        read_bytes(good + b"\0")


def test_bad_crc(good: bytes) -> None:
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10  # inside the payload
    with pytest.raises(KancoinError, match="CRC"):
        read_bytes(bytes(flipped))


def test_field_out_of_range(good: bytes) -> None:
    # height is bits 40..55: zero it (height 0 is out of range)
    bad = bytearray(good)
    bad[5] = 0
    bad[6] = 0
    with pytest.raises(KancoinError, match="'height' out of range"):
        read_bytes(_with_crc(bytes(bad[:-4])))


def test_writer_refuses_out_of_range_values() -> None:
    header, q = _file(SPECS[0], 9)
    q[0] = q[0] + 512  # does not fit 9 bits
    with pytest.raises(ValueError):
        write_bytes(header, q)


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12])
def test_writer_refuses_every_version_but_the_current(version: int) -> None:
    header, q = _file(SPECS[0], 9)
    with pytest.raises(ValueError, match=f"only format version {VERSION} is written"):
        write_bytes(replace(header, version=version), q)


def test_first_layer_grid_shapes_the_first_tensors() -> None:
    spec = KanSpec((2, 4, 4, 3), grid_size=6, first_grid_size=40)
    shapes = dict(spec.tensor_shapes())
    assert shapes["layers.0.spline_coef"] == (4, 2, 43)
    assert shapes["layers.1.spline_coef"] == (4, 4, 9)
    assert KanSpec((2, 4, 3), grid_size=6).first_grid_size == 6  # 0: the same
    with pytest.raises(ValueError, match="bspline"):
        KanSpec((2, 4, 3), grid_size=6, first_grid_size=40, basis="rbf")


def _bit_offset(spec: NetSpec, name: str, coding: int = 0) -> int:
    """Where the first field called ``name`` starts, from the format's field tables."""
    sections = _sections(spec, coding)
    names = [f.name for f in sections]
    return sum(f.nbits for f in sections[: names.index(name)])


def _set_bits(data: bytes, pos: int, width: int, value: int) -> bytes:
    """``data`` with bits pos..pos+width replaced by ``value`` and its CRC recomputed."""
    bits = "".join(f"{b:08b}" for b in data)
    bits = bits[:pos] + format(value, f"0{width}b") + bits[pos + width :]
    return _with_crc(int(bits, 2).to_bytes(len(data), "big")[:-4])


def test_reader_rejects_a_first_layer_grid_without_a_grid() -> None:
    spec = KanSpec((2, 4, 4, 3), grid_size=6, first_grid_size=40)
    header, q = _file(spec, 9)
    data = write_bytes(header, q)
    pos = _bit_offset(spec, "first_grid_size")
    assert bitstring.Bits(bytes=data)[pos : pos + 12].uint == 40
    with pytest.raises(KancoinError, match="'first_grid_size' out of range"):
        read_bytes(_set_bits(data, pos, 12, 0))


def test_format_table_lists_every_field() -> None:
    table = field_table_markdown()
    for name in ("magic", "version", "height", "grid_size", "first_grid_size", "q_step", "crc32"):
        assert f"`{name}`" in table
    # e_model appears once per width it has been stored in: 1 bit in 2-4, 4 bits from 5
    (v4,) = [r for r in table.splitlines() if "`e_model` | 1 |" in r]
    (v5,) = [r for r in table.splitlines() if "`e_model` | 4 |" in r]
    assert "| 2–4 |" in v4 and "| ≥ 5 |" in v5


# -- every version: what it stores, and the defaults of what it lacks -----------------------


def _tables() -> list[tuple[str, tuple[bitfields.Field, ...]]]:
    tables = [
        ("header", HEADER_FIELDS),
        ("hidden", (HIDDEN_WIDTH_FIELD,)),
        ("tensor", TENSOR_FIELDS),
        ("entropy", ENTROPY_FIELDS),
    ]
    return tables + [(fam.name, fam.header_fields) for fam in families()]


def _not_default(f: bitfields.Field) -> object:
    """A valid value of ``f`` that differs from its default (so a default read shows)."""
    if f.fmt.startswith("bytes"):
        return MAGIC
    if f.choices is not None:
        return f.choices[-1]
    if f.fmt.startswith("float"):
        return 0.75 if f.lo is None or f.lo < 0.75 else f.lo * 2
    value = int(f.hi) if f.hi is not None else 1
    return value if value != f.default else value - 1


@pytest.mark.parametrize("version", READ_VERSIONS)
def test_every_field_is_read_back_or_defaulted_in_every_version(version: int) -> None:
    known = {"bits": 13}  # what a default_from may take from an earlier section
    for section, fields in _tables():
        values = {f.name: _not_default(f) for f in fields if f.stored_in(version)}
        packed = bitfields.pack(fields, values, version)
        assert packed.len == sum(f.nbits for f in fields if f.stored_in(version)), section
        read = bitfields.read(bitstring.ConstBitStream(packed), fields, version, known)
        assert set(read) == {f.name for f in fields}, section
        for name in read:
            versions = [f for f in fields if f.name == name]
            if any(f.stored_in(version) for f in versions):
                assert read[name] == values[name], (section, name)
                continue
            # a field stored wider from some version on: every width has the same default
            assert len({(f.default, f.default_from) for f in versions}) == 1, (section, name)
            f = versions[0]
            want = {**known, **read}[f.default_from] if f.default_from else f.default
            assert read[name] == want, (section, name)


def test_defaults_of_what_older_versions_lack() -> None:
    def read(fields, version, known=None, **values):
        values = {f.name: values.get(f.name, _not_default(f)) for f in fields}
        packed = bitfields.pack(fields, values, version)
        return bitfields.read(bitstring.ConstBitStream(packed), fields, version, known)

    kan = family_of(SPECS[0]).header_fields
    assert read(HEADER_FIELDS, 1)["coding"] == 0  # before 2: fixed-width payload only
    assert read(HEADER_FIELDS, 2, coding=1)["coding"] == 1
    assert read(TENSOR_FIELDS, 1, {"bits": 11})["t_bits"] == 11  # every tensor at bits
    assert read(TENSOR_FIELDS, 2, {"bits": 11}, t_bits=4)["t_bits"] == 4
    v2 = read(kan, 2)
    assert (v2["basis"], v2["node_bias"], v2["layernorm"]) == (0, 0, 0)  # B-splines, no extras
    v3 = read(kan, 3, grid_size=9, first_grid_size=30)
    assert v3["first_grid_size"] == v3["grid_size"] == 9  # one grid for every layer
    assert read(kan, 4, grid_size=9, first_grid_size=30)["first_grid_size"] == 30
    assert sum(f.nbits for f in bitfields.stored(ENTROPY_FIELDS, 4)) == 1 + 16 + 16
    assert sum(f.nbits for f in bitfields.stored(ENTROPY_FIELDS, 5)) == 4 + 16 + 16


def _old_file(header: FileHeader, q: list[np.ndarray], version: int) -> bytes:
    """A file of an older ``version`` (the writer writes only the current one): each section
    packed from the tables at that version, the fixed-width payload, the CRC."""
    spec, fam = header.spec, family_of(header.spec)
    head = {
        "magic": MAGIC, "version": version, "height": header.height, "width": header.width,
        "channels": spec.channels, "arch": fam.arch_id, "bits": header.bits,
        "coding": header.coding, "n_layers": len(spec.widths) - 1,
    }  # fmt: skip
    stream = bitstring.BitStream(bitfields.pack(HEADER_FIELDS, head, version))
    for w in spec.hidden:
        stream.append(bitfields.pack([HIDDEN_WIDTH_FIELD], {"hidden_width": w}, version))
    stream.append(bitfields.pack(fam.header_fields, fam.spec_values(spec), version))
    for qp in header.qparams:
        values = {"t_bits": qp.bits, "q_lo": qp.lo, "q_step": qp.step}
        stream.append(bitfields.pack(TENSOR_FIELDS, values, version))
    assert header.coding == 0
    for t, qp in zip(q, header.qparams, strict=True):
        stream.append(bitstring.pack(", ".join([f"uint:{qp.bits}"] * t.size), *t.ravel().tolist()))
    stream.append(bitstring.Bits((-stream.len) % 8))
    return _with_crc(stream.tobytes())


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("spec", [SPECS[0], SPECS[1], SPECS[3]], ids=lambda s: s.describe())
def test_older_versions_read_back(spec: NetSpec, version: int) -> None:
    header, q = _file(spec, 7)
    data = _old_file(header, q, version)
    assert len(data) == file_bytes(spec, 7, version=version)
    header2, q2 = read_bytes(data)
    assert header2 == replace(header, version=version)
    assert header2.coding == 0 and header2.tensor_bits == [7] * len(q)
    assert all(np.array_equal(a, b) for a, b in zip(q, q2, strict=True))


def test_v3_kan_header_has_one_grid_for_every_layer() -> None:
    header, q = _file(SPECS[0], 9)
    h3, _ = read_header(_old_file(header, q, 3))
    assert h3.spec.first_grid_size == h3.spec.grid_size == 7
    # a first-layer grid of its own cannot be expressed before 4: it reads as the shared grid
    own, q = _file(SPECS[2], 9)
    h3, _ = read_header(_old_file(own, q, 3))
    assert h3.spec.first_grid_size == h3.spec.grid_size == 6


def _independent_header_bits(spec: NetSpec, n_tensors: int, version: int) -> int:
    """Header bits of a range-coded file, counted by hand from docs/format.md."""
    fixed = 32 + 8 + 16 + 16 + 2 + 2 + 5 + 1 + 5  # magic … n_layers
    hidden = 12 * len(spec.hidden)
    family = 3 + 1 + 1 + 12 + 12 + 3 + 32 + 32 if spec.arch == "kan" else 32 + 32
    tensor = 5 + 32 + 32
    entropy = (4 if version >= 5 else 1) + 16 + 16
    return fixed + hidden + family + n_tensors * (tensor + entropy)


@pytest.mark.parametrize(
    "spec, n_tensors",
    [(SPECS[0], 6), (SPECS[1], 4), (SPECS[3], 6),  # bspline: base + spline; SIREN: W + b
     (KanSpec((2, 4, 4, 3), grid_size=5, layernorm=True, node_bias=True), 3 * 3 + 2 * 2),
     (KanSpec((2, 4, 3), grid_size=3, basis="fourier"), 2 * 2)],
    ids=lambda s: s.describe() if isinstance(s, NetSpec) else str(s),
)  # fmt: skip
def test_version_5_header_is_3_bits_per_tensor_longer(spec: NetSpec, n_tensors: int) -> None:
    assert len(spec.tensor_shapes()) == n_tensors
    v4, v5 = header_bits(spec, 1, 4), header_bits(spec, 1, 5)
    assert v5 - v4 == n_tensors * 3  # e_model: 1 bit -> 4 bits, once per tensor
    assert v4 == _independent_header_bits(spec, n_tensors, 4)
    assert v5 == _independent_header_bits(spec, n_tensors, 5)
    assert header_bits(spec, 0, 5) == header_bits(spec, 0, 4)  # fixed coding: no e_model
    # and the writer agrees: a range-coded version-5 file's header is that long
    header, q = _file(spec, 4)
    models = tuple(EntropyModel(n % 2, 8.0, 3.0) for n in range(n_tensors))
    data = write_bytes(replace(header, coding=1, emodels=models), q)
    h, pos = read_header(data)
    assert h.emodels == models and pos == v5
