"""Range coding of the quantized weights: exact round trips, real savings, bad streams."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from kancoin.errors import KancoinError
from kancoin.format import entropy
from kancoin.format.container import FileHeader, _sections, file_bytes, read_bytes, write_bytes
from kancoin.format.layout import ENTROPY_FIELDS, VERSION
from kancoin.format.quant import QuantParams, quantize_tensor
from kancoin.nets.kan import KanSpec


def _trained_like(rng: np.random.Generator, shape, heavy: bool = False) -> np.ndarray:
    w = rng.laplace(size=shape) if heavy else rng.standard_normal(shape)
    return w.astype(np.float32)


@pytest.mark.parametrize("bits", [2, 5, 9, 16])
def test_round_trip_exact(bits: int) -> None:
    rng = np.random.default_rng(bits)
    shapes = [((14, 14, 27), False), ((14, 14), True), ((3,), False)]
    qs = [quantize_tensor(_trained_like(rng, s, h), bits)[0] for s, h in shapes]
    qs.append(np.zeros(0, dtype=np.uint32))  # an empty tensor codes to nothing
    tb = [bits] * len(qs)
    models = entropy.choose_models(qs, tb)
    data = entropy.encode(qs, tb, models)
    back = entropy.decode(data, [q.size for q in qs], tb, models)
    for q, b in zip(qs, back, strict=True):
        assert np.array_equal(q.ravel(), b)


def test_outliers_and_extremes_are_codable() -> None:
    # every level in range must stay codable (leaky model), even far in the tails
    q = np.array([0, 511, 255, 256, 0, 511] * 10, dtype=np.uint32)
    m = [entropy.EntropyModel(0, 256.0, 0.5)]  # a model that thinks everything is at 256
    data = entropy.encode([q], [9], m)
    assert np.array_equal(entropy.decode(data, [q.size], [9], m)[0], q)


def test_bell_shaped_weights_cost_less_than_fixed_width() -> None:
    rng = np.random.default_rng(0)
    q = quantize_tensor(_trained_like(rng, (20000,)), 9)[0]
    coded = len(entropy.encode([q], [9], entropy.choose_models([q], [9])))
    assert coded * 8 / q.size < 8.6  # a Gaussian at the MSE-optimal range: about 8.2-8.4
    assert coded * 8 / q.size > 7.5  # and not an impossible saving


def test_laplace_chosen_for_heavy_tails() -> None:
    rng = np.random.default_rng(1)
    q = quantize_tensor(_trained_like(rng, (20000,), heavy=True), 9)[0]
    (m,) = entropy.choose_models([q], [9])
    assert entropy.MODEL_KINDS[m.kind] == "laplace"


def test_every_kind_fits_the_current_e_model_field() -> None:
    assert entropy.MODEL_KINDS == tuple(k.name for k in entropy.KINDS.values())
    assert set(entropy.KINDS) == set(range(len(entropy.KINDS)))
    (field,) = [f for f in ENTROPY_FIELDS if f.name == "e_model" and f.stored_in(VERSION)]
    assert field.nbits == 4 and (field.lo, field.hi) == (0, max(entropy.KINDS))


def _range_file(seed: int = 0) -> tuple[FileHeader, list[np.ndarray], bytes]:
    rng = np.random.default_rng(seed)
    spec = KanSpec((2, 5, 4, 3), grid_size=7, spline_order=3)
    bits = [9, 8, 9, 7, 9, 9]
    qs, qps = [], []
    for (_, shape), b in zip(spec.tensor_shapes(), bits, strict=True):
        q, qp = quantize_tensor(_trained_like(rng, shape), b)
        qs.append(q)
        qps.append(qp)
    models = tuple(entropy.choose_models(qs, bits))
    header = FileHeader(37, 53, 9, spec, tuple(qps), 1, models)
    return header, qs, write_bytes(header, qs)


def test_file_round_trip_with_per_tensor_bits() -> None:
    header, qs, data = _range_file()
    header2, qs2 = read_bytes(data)
    assert header2 == header
    assert header2.tensor_bits == [9, 8, 9, 7, 9, 9]
    for a, b in zip(qs, qs2, strict=True):
        assert np.array_equal(a, b)
    assert write_bytes(header2, qs2) == data
    payload = len(entropy.encode(qs, header.tensor_bits, list(header.emodels)))
    assert len(data) == file_bytes(header.spec, header.tensor_bits, 1, payload)


def test_fixed_file_with_per_tensor_bits() -> None:
    header, qs, _ = _range_file()
    fixed = FileHeader(header.height, header.width, 9, header.spec, header.qparams)
    data = write_bytes(fixed, qs)
    assert len(data) == file_bytes(header.spec, header.tensor_bits)
    h2, qs2 = read_bytes(data)
    assert h2 == fixed and all(np.array_equal(a, b) for a, b in zip(qs, qs2, strict=True))


def test_corrupt_range_payload_is_a_clean_error() -> None:
    _, _, data = _range_file()
    bad = bytearray(data)
    bad[-8] ^= 0x55
    with pytest.raises(KancoinError, match="CRC"):
        read_bytes(bytes(bad))
    with pytest.raises(KancoinError, match="truncated|CRC"):
        read_bytes(data[: len(data) // 2])


def test_unknown_entropy_model_kind_rejected() -> None:
    # the first tensor's e_model (4 bits) set to a kind no decoder knows
    header, qs, data = _range_file()
    sections = _sections(header.spec, 1)
    pos = sum(f.nbits for f in sections[: [f.name for f in sections].index("e_model")])
    bits = "".join(f"{b:08b}" for b in data[:-4])
    assert int(bits[pos : pos + 4], 2) == header.emodels[0].kind
    body = int(bits[:pos] + "1111" + bits[pos + 4 :], 2).to_bytes(len(data) - 4, "big")
    with pytest.raises(KancoinError, match="'e_model' out of range: 15"):
        read_bytes(body + zlib.crc32(body).to_bytes(4, "big"))


def test_tensor_bits_above_header_bits_rejected() -> None:
    header, qs, _ = _range_file()
    qps = list(header.qparams)
    qps[0] = QuantParams(qps[0].lo, qps[0].step, 10)
    bad = FileHeader(header.height, header.width, 9, header.spec, tuple(qps), 1, header.emodels)
    with pytest.raises(ValueError):
        write_bytes(bad, qs)
