"""Quantization-aware fine-tuning (encoder only).

After the float fit, every stored tensor is replaced in the forward pass by its quantized value
``lo + q × step`` (float32, exactly what the decoder rebuilds), while gradients flow to the float
weights unchanged (straight-through estimator). A short fine-tune at a small learning rate then
moves the float weights so that their *quantized* network fits the image, which recovers most
of the PSNR lost to rounding.

The ranges (lo, step) are searched once on the float weights at the start and kept fixed, and
``export_quantized`` quantizes with the same function and the same ranges: on the CPU the
network evaluated during fine-tuning (and the best checkpoint kept) is bit for bit the network
the file decodes to. On CUDA the fine-tune's float arithmetic differs in the last bits from the
CPU decoder's, so there it is the same integers, rendered slightly differently.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from kancoin.format.quant import QuantParams, choose_params
from kancoin.nets import NetSpec, family_of


class _RoundSTE(torch.autograd.Function):
    """Forward: the quantized weight; backward: identity (straight-through)."""

    @staticmethod
    def forward(ctx, w, lo, step, levels):  # noqa: D102
        return dequantize_t(quantize_t(w, lo, step, levels), lo, step)

    @staticmethod
    def backward(ctx, g):  # noqa: D102
        return g, None, None, None


def quantize_t(w: torch.Tensor, lo: torch.Tensor, step: torch.Tensor, levels: int) -> torch.Tensor:
    """float32 weights -> integer levels (as float32) in [0, levels - 1]."""
    return torch.clamp(torch.round((w - lo) / step), 0, levels - 1)


def dequantize_t(q: torch.Tensor, lo: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    # float32 multiply then add, the same two roundings as quant.dequantize / the decoder
    return lo + q * step


class FakeQuant(nn.Module):
    """Parametrization: weight -> its quantized value (STE gradient)."""

    def __init__(self, qp: QuantParams) -> None:
        super().__init__()
        self.qp = qp
        self.register_buffer("lo", torch.tensor(qp.lo, dtype=torch.float32))
        self.register_buffer("step", torch.tensor(qp.step, dtype=torch.float32))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return _RoundSTE.apply(w, self.lo, self.step, self.qp.levels)


def stored_parameters(model: nn.Module, spec: NetSpec) -> list[tuple[nn.Module, str]]:
    """(module, attribute) of each stored tensor, in ``spec.tensor_shapes()`` order, once the
    family's ``prepare_qat`` made each stored tensor a parameter of its own."""
    return family_of(spec).stored_parameters(model)


def attach(
    model: nn.Module, spec: NetSpec, qparams: list[QuantParams] | list[int]
) -> list[QuantParams]:
    """Fold scales and install fake quantizers with the given ranges (or, given bit depths,
    ranges searched on the float weights). Returns the ranges."""
    family_of(spec).prepare_qat(model)  # e.g. a B-spline KAN folds its per-edge scale
    params = []
    for (module, name), qp in zip(stored_parameters(model, spec), qparams, strict=True):
        if isinstance(qp, int):
            qp = choose_params(getattr(module, name).detach().float().cpu().numpy(), qp)
        parametrize.register_parametrization(module, name, FakeQuant(qp).to(_device(module)))
        params.append(qp)
    return params


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


def detach(model: nn.Module, spec: NetSpec) -> None:
    """Remove the fake quantizers, keeping the float weights."""
    for module, name in stored_parameters(model, spec):
        if parametrize.is_parametrized(module, name):
            parametrize.remove_parametrizations(module, name, leave_parametrized=False)


def export_quantized(
    model: nn.Module, spec: NetSpec, params: list[QuantParams]
) -> list[np.ndarray]:
    """Integer tensors (uint32) of the fake-quantized model, with the ranges it was trained at."""
    out = []
    with torch.no_grad():
        for (module, name), qp in zip(stored_parameters(model, spec), params, strict=True):
            if parametrize.is_parametrized(module, name):
                w = getattr(module.parametrizations, name).original
            else:
                w = getattr(module, name)
            lo = torch.tensor(qp.lo, dtype=torch.float32, device=w.device)
            step = torch.tensor(qp.step, dtype=torch.float32, device=w.device)
            q = quantize_t(w.detach().float(), lo, step, qp.levels)
            out.append(q.cpu().numpy().astype(np.uint32))
    return out
