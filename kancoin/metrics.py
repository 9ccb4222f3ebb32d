"""PSNR and bpp, measured the way DESIGN.md fixes them."""

from __future__ import annotations

import math

import numpy as np


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels of two uint8 images, in 8-bit units."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr_from_mse(m: float) -> float:
    return math.inf if m == 0 else 10.0 * math.log10(255.0**2 / m)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """10·log10(255² / MSE) in dB; inf for identical images."""
    return psnr_from_mse(mse(a, b))


def bpp(file_bytes: int, height: int, width: int) -> float:
    """8 × (whole file in bytes) / pixels."""
    return 8.0 * file_bytes / (height * width)
