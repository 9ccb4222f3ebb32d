"""Per-tensor step allocation: stays within the cap, never worse, moves bits where they pay."""

from __future__ import annotations

import math

import pytest

from kancoin.codec.bitalloc import allocate
from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import budget_bytes
from kancoin.format.quant import QuantParams
from kancoin.metrics import psnr

from .conftest import crop, reference_decode


def test_allocation_moves_precision_to_the_sensitive_tensor() -> None:
    base = [QuantParams(-1.0, 2.0 / 255, 8) for _ in range(3)]
    sizes = (1000, 1000, 1000)  # weights per tensor
    weight = (100.0, 1.0, 1.0)  # tensor 0 matters 100x more per unit of squared step

    def size(qps):  # ~ bits per weight grow with log2(1 / step)
        bits = [8 + math.log2(base[0].step / qp.step) for qp in qps]
        return int(sum(n * b / 8 for n, b in zip(sizes, bits)))

    def distortion(qps):
        return sum(w * qp.step**2 for w, qp in zip(weight, qps))

    cap = size(base)
    qps, log = allocate(base, size, distortion, cap)
    assert size(qps) <= cap
    assert distortion(qps) < distortion(base)
    assert qps[0].step < base[0].step  # the sensitive tensor got finer
    assert qps[1].step > base[1].step or qps[2].step > base[2].step  # paid by the others
    assert log["mse"] == pytest.approx(distortion(qps))


def test_encoder_with_tensor_allocation_fits_and_reports_the_decoded_psnr() -> None:
    px = crop(32, 40)
    opts = EncodeOptions(
        arch="kan", bpp=3.0, iters=60, qat=0.2, device="cpu", threads=1, bit_alloc="tensor"
    )
    res = encode_pixels(px, opts)
    assert len(res.data) <= budget_bytes(3.0, 32, 40)
    assert res.qat_psnr == pytest.approx(res.psnr, rel=1e-6)
    assert psnr(reference_decode(res.data), px) == pytest.approx(res.psnr, abs=0.05)
