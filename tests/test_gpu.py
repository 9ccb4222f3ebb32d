"""CUDA checks (opt-in: `python -m pytest -m gpu`): fit on the GPU, decode exactly on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.decode import decode_bytes
from kancoin.encode import EncodeOptions, encode_pixels
from kancoin.kan import KAN
from kancoin.metrics import psnr

from .conftest import crop

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cuda_encode_decodes_on_cpu_to_reported_psnr() -> None:
    pixels = crop(64, 96)
    res = encode_pixels(pixels, EncodeOptions(bpp=2.0, iters=500, device="cuda"))
    assert res.device.startswith("cuda")
    decoded = decode_bytes(res.data)  # the CPU decoder, as `kancoin decode` runs it
    assert psnr(decoded.pixels, pixels) == pytest.approx(res.psnr, abs=1e-9)
    assert res.psnr > 20


def test_dense_cuda_equals_fused_cpu() -> None:
    torch.manual_seed(0)
    model = KAN((2, 12, 12, 3), 20, 3)
    x = torch.rand(20000, 2) * 2.2 - 1.1
    with torch.no_grad():
        cpu = model(x).numpy()
        gpu = model.to("cuda")(x.cuda()).cpu().numpy()
    assert np.abs(cpu - gpu).max() / np.abs(cpu).max() < 1e-5
