"""Quantization-aware fine-tuning: what was evaluated is what the file decodes to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.codec import qat
from kancoin.codec.decode import decode_bytes
from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.codec.ratecontrol import budget_bytes
from kancoin.format.container import FileHeader, write_bytes
from kancoin.format.quant import choose_params, dequantize, quantize
from kancoin.nets import build, render
from kancoin.nets.kan import KanSpec
from kancoin.nets.siren import SirenSpec

from .conftest import crop, reference_decode


def test_fake_quant_forward_is_the_decoder_value_and_gradient_passes_through() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal(1000).astype(np.float32)
    qp = choose_params(w, 7)
    t = torch.from_numpy(w).requires_grad_(True)
    out = qat.FakeQuant(qp)(t)
    assert np.array_equal(out.detach().numpy(), dequantize(quantize(w, qp), qp))
    out.sum().backward()
    assert torch.equal(t.grad, torch.ones_like(t))


@pytest.mark.parametrize("arch", ["kan", "siren"])
def test_export_equals_what_was_evaluated(arch: str) -> None:
    torch.manual_seed(0)
    spec = KanSpec((2, 6, 6, 3), grid_size=5) if arch == "kan" else SirenSpec((2, 8, 8, 3))
    model = build(spec)
    with torch.no_grad():  # make the spline scale non-trivial, so folding matters
        for p in model.parameters():
            p.mul_(1.3)
    params = qat.attach(model, spec, [6] * len(spec.tensor_shapes()))
    seen = render(model, spec, 16, 20)
    ints = qat.export_quantized(model, spec, params)
    data = write_bytes(FileHeader(16, 20, 6, spec, tuple(params)), ints)
    assert np.array_equal(decode_bytes(data).pixels, seen.numpy())


@pytest.mark.parametrize("arch", ["kan", "siren"])
def test_encoder_reports_the_decoded_psnr_after_qat(arch: str) -> None:
    px = crop(24, 32)
    opts = EncodeOptions(bpp=4.0, arch=arch, iters=120, qat=0.25, device="cpu", threads=1)
    res = encode_pixels(px, opts)
    assert res.qat_psnr is not None
    assert res.qat_psnr == pytest.approx(res.psnr, rel=1e-6)  # float32 vs float64 MSE
    # the file's PSNR, from an independent float64 decode (up to a level at a few pixels)
    assert res.psnr == pytest.approx(_psnr(reference_decode(res.data), px), abs=0.05)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.mark.parametrize(
    "bpp, coding", [(0.8, "range"), (6.0, "range"), (0.8, "fixed"), (2.0, "fixed")]
)
def test_rate_control_stays_within_budget(bpp: float, coding: str) -> None:
    px = crop(40, 48)
    opts = EncodeOptions(arch="kan", bpp=bpp, iters=30, device="cpu", coding=coding, threads=1)
    res = encode_pixels(px, opts)
    assert len(res.data) <= budget_bytes(bpp, 40, 48)
    assert res.bpp <= bpp
    assert res.coding == coding
    # and the budget is used: within 10 % (plus one header) of it
    assert len(res.data) > 0.8 * budget_bytes(bpp, 40, 48)


def test_siren_range_coding_is_not_worse_than_fixed() -> None:
    # 16-bit ranges cannot get finer: the budget fill must not clip them (it once did)
    px = crop(32, 40)
    common = dict(bpp=6.0, arch="siren", iters=80, device="cpu", threads=1, qat=0.0)
    fixed = encode_pixels(px, EncodeOptions(coding="fixed", **common))
    ranged = encode_pixels(px, EncodeOptions(coding="range", **common))
    assert ranged.bits == 16
    assert ranged.psnr > fixed.psnr - 0.5
