"""The .kc format: bit-exact round trip, exact size formula, every corruption rejected."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from kancoin.bitstream import (
    FileHeader,
    _sections,
    field_table_markdown,
    file_bytes,
    read_bytes,
    write_bytes,
)
from kancoin.errors import KancoinError
from kancoin.quant import QuantParams
from kancoin.spec import ModelSpec

SPECS = [
    ModelSpec("kan", (2, 5, 4, 3), grid_size=7, spline_order=3),
    ModelSpec("kan", (2, 3, 1), grid_size=1, spline_order=1, grid_range=(-2.0, 1.5)),
    ModelSpec("kan", (2, 4, 4, 3), grid_size=6, first_grid_size=40),
    ModelSpec("siren", (2, 6, 6, 3), w0=30.0, w0_initial=25.0),
]


def _file(spec: ModelSpec, bits: int, seed: int = 0) -> tuple[FileHeader, list[np.ndarray]]:
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
def test_round_trip_is_bit_exact(spec: ModelSpec, bits: int) -> None:
    header, q = _file(spec, bits)
    data = write_bytes(header, q)
    assert len(data) == file_bytes(spec, bits)
    header2, q2 = read_bytes(data)
    assert header2 == header
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


def test_unknown_version(good: bytes) -> None:
    with pytest.raises(KancoinError, match="version 7"):
        read_bytes(_with_crc(good[:4] + bytes([7]) + good[5:-4]))


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


def test_first_layer_grid_shapes_the_first_tensors() -> None:
    spec = ModelSpec("kan", (2, 4, 4, 3), grid_size=6, first_grid_size=40)
    shapes = dict(spec.tensor_shapes())
    assert shapes["layers.0.spline_coef"] == (4, 2, 43)
    assert shapes["layers.1.spline_coef"] == (4, 4, 9)
    assert ModelSpec("kan", (2, 4, 3), grid_size=6).first_grid_size == 6  # 0: the same
    with pytest.raises(ValueError, match="bspline"):
        ModelSpec("kan", (2, 4, 3), grid_size=6, first_grid_size=40, basis="rbf")


def test_reader_rejects_a_first_layer_grid_without_a_grid() -> None:
    spec = ModelSpec("kan", (2, 4, 4, 3), grid_size=6, first_grid_size=40)
    header, q = _file(spec, 9)
    data = bytearray(write_bytes(header, q))
    # the field's bit offset, from the format's field table
    fields = [f.name for f in _sections(spec)]
    pos = sum(f.nbits for f in _sections(spec)[: fields.index("first_grid_size")])
    bits = "".join(f"{b:08b}" for b in data)
    assert int(bits[pos : pos + 12], 2) == 40
    bits = bits[:pos] + "0" * 12 + bits[pos + 12 :]
    body = int(bits, 2).to_bytes(len(data), "big")[:-4]
    with pytest.raises(KancoinError, match="'first_grid_size' out of range"):
        read_bytes(_with_crc(body))


def test_format_table_lists_every_field() -> None:
    table = field_table_markdown()
    for name in ("magic", "version", "height", "grid_size", "first_grid_size", "q_step", "crc32"):
        assert f"`{name}`" in table
