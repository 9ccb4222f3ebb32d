"""ModelSpec -> nn.Module, and the stored tensors in and out of a module.

The stored tensors (``ModelSpec.tensor_shapes``) are what the file holds; a KAN stores its
spline coefficients with the per-edge scale folded in, so a decoded KAN has unit scales.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kancoin.grid import coordinates
from kancoin.kan import KAN
from kancoin.siren import Siren
from kancoin.spec import ModelSpec


def build_model(spec: ModelSpec, backend: str = "auto") -> nn.Module:
    if spec.arch == "kan":
        return KAN(
            spec.widths, spec.grid_size, spec.spline_order, spec.grid_range, backend,
            basis=spec.basis, node_bias=spec.node_bias, layernorm=spec.layernorm,
            first_grid_size=spec.first_grid_size,
        )  # fmt: skip
    if spec.arch == "siren":
        return Siren(spec.widths, spec.w0, spec.w0_initial)
    raise ValueError(f"unknown architecture {spec.arch!r}")


def export_tensors(model: nn.Module, spec: ModelSpec) -> list[np.ndarray]:
    """The tensors to store, float32, in ``spec.tensor_shapes()`` order."""
    out: list[torch.Tensor] = []
    with torch.no_grad():
        for layer in model.layers:
            if spec.arch == "kan":
                out += [layer.stored_tensor(name) for name in layer.stored_names]
            else:
                out += [layer.linear.weight, layer.linear.bias]
    arrays = [t.detach().float().cpu().numpy().copy() for t in out]
    for a, (name, shape) in zip(arrays, spec.tensor_shapes()):
        assert a.shape == shape, (name, a.shape, shape)
    return arrays


def load_tensors(model: nn.Module, spec: ModelSpec, arrays: list[np.ndarray]) -> None:
    """Inverse of ``export_tensors`` (B-spline KAN scales set to 1)."""
    it = iter(arrays)
    with torch.no_grad():
        for layer in model.layers:
            if spec.arch == "kan":
                for name in layer.stored_names:
                    layer.load_stored(name, torch.from_numpy(next(it)))
            else:
                layer.linear.weight.copy_(torch.from_numpy(next(it)))
                layer.linear.bias.copy_(torch.from_numpy(next(it)))


def separable_on_grid(model: nn.Module, device: str | torch.device) -> bool:
    """A CPU B-spline KAN whose first layer splits on the pixel grid (``KAN.grid_terms``):
    rendering and training then evaluate that layer on W + H coordinates, not per pixel."""
    return isinstance(model, KAN) and torch.device(device).type == "cpu" and model.grid_separable()


def render(
    model: nn.Module,
    height: int,
    width: int,
    device: str | torch.device = "cpu",
    chunk: int = 1 << 16,
) -> torch.Tensor:
    """Evaluate the network on the pixel grid in chunks (bounded memory): uint8 (H, W, C)
    on ``device``: outputs clamped to [0, 1], × 255, rounded half to even."""
    coords = coordinates(height, width)
    outs = []
    with torch.no_grad():
        if separable_on_grid(model, device):  # the same numbers from W + H evaluations
            tx, ty = model.grid_terms(coords[:width, 0], coords[::width, 1])
            rows = max(1, chunk // width)
            for r in range(0, height, rows):
                h = (ty[r : r + rows, None, :] + tx[None, :, :]).reshape(-1, tx.shape[1])
                pred = model.forward_from_first(h)
                outs.append(torch.round(pred.clamp(0.0, 1.0) * 255.0).to(torch.uint8))
        else:
            for start in range(0, coords.shape[0], chunk):
                pred = model(coords[start : start + chunk].to(device))
                outs.append(torch.round(pred.clamp(0.0, 1.0) * 255.0).to(torch.uint8))
    return torch.cat(outs).reshape(height, width, -1)
