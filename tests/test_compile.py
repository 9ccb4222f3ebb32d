"""The compiled training step (``--compile``, torch.compile) computes what the eager step does.

Slow (compiling takes tens of seconds): ``python -m pytest -m slow tests/test_compile.py``.
On CUDA, ``reduce-overhead`` adds CUDA graphs; ``scripts/gpu_check.sh`` times it there.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kancoin.codec.encode import plan
from kancoin.codec.fit import FitConfig, fit
from kancoin.codec.options import EncodeOptions
from kancoin.nets import build, export_arrays

from .conftest import crop

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("arch", ["siren", "kan"])
def test_compiled_step_equals_eager_on_cpu(arch: str) -> None:
    px = crop(24, 32)
    spec = plan(px.shape, EncodeOptions(arch=arch, bpp=6.0, coding="fixed"))
    weights = {}
    for mode in (None, "default"):
        torch.manual_seed(0)
        model = build(spec)
        cfg = FitConfig(iters=8, lr=1e-3, eval_every=10**9, compile=mode)
        fit(model, spec, px, cfg, torch.device("cpu"))
        weights[mode] = export_arrays(model, spec)
    for eager, compiled in zip(weights[None], weights["default"], strict=True):
        # fused kernels may reorder float sums: equal to float32 rounding, not bit for bit
        np.testing.assert_allclose(compiled, eager, rtol=1e-4, atol=1e-5)
