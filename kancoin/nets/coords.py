"""Network inputs and targets on the pixel grid. Each axis is scaled to [-1, 1] on its own."""

from __future__ import annotations

import numpy as np
import torch


def axis(n: int) -> torch.Tensor:
    """(n,) float32: one axis's coordinates, -1 … 1 (0 for a single pixel)."""
    return torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1)


def coordinates(height: int, width: int) -> torch.Tensor:
    """(H·W, 2) float32 (x, y) in row-major pixel order, each axis in [-1, 1]."""
    return coordinates_of(torch.arange(height * width), height, width)


def coordinates_of(idx: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2) float32 (x, y) of row-major pixel indices idx (N,): the same values as rows of
    ``coordinates``, without building the whole grid (the decoder renders in chunks)."""
    xs, ys = axis(width), axis(height)
    return torch.stack([xs[idx % width], ys[idx // width]], dim=1).contiguous()


def targets(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, C) -> float32 (H·W, C) in [0, 1]."""
    h, w, c = pixels.shape
    return torch.from_numpy(pixels.reshape(h * w, c).astype(np.float32) / 255.0)


def to_uint8(pred: torch.Tensor) -> torch.Tensor:
    """Network outputs (N, C) -> 8-bit values: clamped to [0, 1], × 255, rounded half to even."""
    return torch.round(pred.clamp(0.0, 1.0) * 255.0).to(torch.uint8)
