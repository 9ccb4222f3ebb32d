"""The latent pyramid's geometry and its upsampling, without torch (the decoder's side).

Level ``l`` of an H×W image is a grid of ceil(H / 2^l) × ceil(W / 2^l) values. Every level is
brought to the pixel grid by separable bicubic interpolation (Keys, a = −0.75, sample centres
aligned: PyTorch's ``interpolate(mode="bicubic", align_corners=False)``, indices clamped at the
borders); level 0 is already there. One axis's interpolation is a table of 4 taps per output
sample (``taps``): the trainer gathers through the same table (torch ops), the decoder runs it
in a fixed order (``render``), so both interpolate with the same weights.
"""

from __future__ import annotations

import numpy as np

_A = -0.75  # Keys' cubic convolution parameter (PyTorch, OpenCV)


def level_shape(height: int, width: int, level: int) -> tuple[int, int]:
    """(rows, cols) of level ``level``: ceil(H / 2^l) × ceil(W / 2^l)."""
    f = 1 << level
    return -(-height // f), -(-width // f)


def level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    return [level_shape(height, width, lv) for lv in range(levels)]


def taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """One axis's interpolation from ``n_in`` to ``n_out`` samples: source indices int32
    (n_out, 4) and weights float32 (n_out, 4) (computed in float64, then rounded once)."""
    a = _A
    src = (n_in / n_out) * (np.arange(n_out, dtype=np.float64) + 0.5) - 0.5
    i0 = np.floor(src)
    t = src - i0
    x = np.stack([t + 1, t, 1 - t, 2 - t], axis=1)  # distances to the 4 samples
    near = ((a + 2) * x - (a + 3)) * x * x + 1  # |x| <= 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a  # 1 < |x| < 2
    wt = np.where((np.arange(4) == 1) | (np.arange(4) == 2), near, far)
    idx = np.clip(i0[:, None].astype(np.int64) - 1 + np.arange(4), 0, n_in - 1)
    return idx.astype(np.int32), wt.astype(np.float32)
