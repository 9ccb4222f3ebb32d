"""CUDA checks (opt-in: `python -m pytest -m gpu`): fit on the GPU, decode exactly on the CPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.codec.encode import encode_pixels
from kancoin.codec.options import EncodeOptions
from kancoin.metrics import psnr
from kancoin.nets.kan.network import KAN

from .conftest import crop, reference_decode

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
]


def test_cuda_encode_decodes_on_cpu_to_reported_psnr() -> None:
    pixels = crop(64, 96)
    res = encode_pixels(pixels, EncodeOptions(bpp=2.0, iters=500, device="cuda"))
    assert res.device.startswith("cuda")
    # the reported PSNR is the file's (decoded on the CPU, as `kancoin decode` runs it):
    # checked against an independent float64 decode
    assert psnr(reference_decode(res.data), pixels) == pytest.approx(res.psnr, abs=0.05)
    assert res.psnr > 20


def test_dense_cuda_equals_fused_cpu() -> None:
    """The GPU's dense layers (what a CUDA fit trains) compute the function the CPU's fused
    kernels decode and train, to float32 rounding."""
    torch.manual_seed(0)
    model = KAN((2, 12, 12, 3), 20, 3)
    x = torch.rand(20000, 2) * 2.2 - 1.1
    with torch.no_grad():
        cpu = {"decode": model.infer(x).numpy(), "train": model(x).numpy()}
        model.to("cuda")
        xg = x.cuda()
        gpu = {"infer": model.infer(xg).cpu().numpy(), "forward": model(xg).cpu().numpy()}
    assert model.layers[0].resolve_backend(x.cuda()) == "dense"
    for c_name, c in cpu.items():
        for g_name, g in gpu.items():
            err = np.abs(c - g).max() / np.abs(c).max()
            assert err < 1e-5, (c_name, g_name, err)
