"""PSNR, MS-SSIM and bpp, measured the way DESIGN.md fixes them."""

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


# MS-SSIM (Wang, Simoncelli and Bovik 2003) as pytorch_msssim computes it: an 11-tap Gaussian
# window of sigma 1.5 applied without padding, K1 = 0.01, K2 = 0.03, five scales with these
# weights, 2x2 average pooling between scales (odd sides zero-padded, the zeros counted)
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WINDOW = 11
MS_SSIM_SIGMA = 1.5
MS_SSIM_K = (0.01, 0.03)
# the smallest side it is defined for: the window must fit the coarsest of the five scales
MS_SSIM_MIN_SIDE = (MS_SSIM_WINDOW - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1


def _gaussian_window(size: int = MS_SSIM_WINDOW, sigma: float = MS_SSIM_SIGMA) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The separable filter ``g`` along the last two axes of ``x`` (C, H, W), 'valid' part only
    (no padding): (C, H - n + 1, W - n + 1)."""
    n = len(g)
    h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    rows = np.multiply(x[:, 0:h, :], g[0])
    tmp = np.empty_like(rows)
    for k in range(1, n):
        rows += np.multiply(x[:, k : k + h, :], g[k], out=tmp)
    out = np.multiply(rows[:, :, 0:w], g[0])
    tmp = np.empty_like(out)
    for k in range(1, n):
        out += np.multiply(rows[:, :, k : k + w], g[k], out=tmp)
    return out


def _ssim_cs(x: np.ndarray, y: np.ndarray, g: np.ndarray, data_range: float):
    """Per-channel SSIM and contrast-structure term (the means of their maps)."""
    c1 = (MS_SSIM_K[0] * data_range) ** 2
    c2 = (MS_SSIM_K[1] * data_range) ** 2
    mu1, mu2 = _filter_valid(x, g), _filter_valid(y, g)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = _filter_valid(x * x, g) - mu1_sq
    s2 = _filter_valid(y * y, g) - mu2_sq
    s12 = _filter_valid(x * y, g) - mu12
    cs_map = (2.0 * s12 + c2) / (s1 + s2 + c2)
    ssim_map = (2.0 * mu12 + c1) / (mu1_sq + mu2_sq + c1) * cs_map
    return ssim_map.mean(axis=(1, 2)), cs_map.mean(axis=(1, 2))


def _avg_pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling with stride 2; an odd side is zero-padded by one on both ends and
    the zeros count in the average (torch's avg_pool2d, padding = side % 2)."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    h2, w2 = (x.shape[1] - 2) // 2 + 1, (x.shape[2] - 2) // 2 + 1
    x = x[:, : 2 * h2, : 2 * w2]
    return x.reshape(x.shape[0], h2, 2, w2, 2).mean(axis=(2, 4))


def ms_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """MS-SSIM of two 8-bit images (H, W) or (H, W, C), computed per channel and averaged over
    the channels. Both sides must be at least ``MS_SSIM_MIN_SIDE`` (161) pixels: ValueError
    otherwise."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(
            f"MS-SSIM needs at least {MS_SSIM_MIN_SIDE} pixels per side, got {a.shape[:2]}"
        )
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim == 2:
        x, y = x[:, :, None], y[:, :, None]
    x, y = np.moveaxis(x, -1, 0), np.moveaxis(y, -1, 0)  # (C, H, W)
    g = _gaussian_window()
    terms = []
    for i in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = _ssim_cs(x, y, g, data_range)
        if i < len(MS_SSIM_WEIGHTS) - 1:
            terms.append(np.maximum(cs, 0.0))
            x, y = _avg_pool2(x), _avg_pool2(y)
    terms.append(np.maximum(ssim, 0.0))
    w = np.asarray(MS_SSIM_WEIGHTS)[:, None]
    return float(np.mean(np.prod(np.stack(terms) ** w, axis=0)))


def ms_ssim_db(value: float) -> float:
    """-10·log10(1 - MS-SSIM) in dB; inf for 1."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)
